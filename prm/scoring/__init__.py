"""Scoring: ``Scorer`` (one constructor over a table of backends), ``aggregate``, the backends.

``scorer.py`` owns encoding, batching, reading step logits and calibration; ``backends.py`` the
table of backends (torch, torch-bf16, torch-bf16-gptq, onnx, onnx-int8); ``bf16.py`` the run-time
kernels of torch-bf16-gptq; ``fpenv.py`` the floating-point environment around ONNX Runtime.
"""

from prm.artifacts import Artifact
from prm.scoring.backends import BACKENDS as _TABLE
from prm.scoring.scorer import OVERFLOW, Scorer, aggregate
from prm.tokenization import TooLongError

BACKENDS = tuple(_TABLE)
ONNX_FILE = Artifact.ONNX
ONNX_INT8_FILE = Artifact.ONNX_INT8

__all__ = ["BACKENDS", "ONNX_FILE", "ONNX_INT8_FILE", "OVERFLOW", "Scorer", "TooLongError", "aggregate"]
