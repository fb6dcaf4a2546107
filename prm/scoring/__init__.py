"""Scoring: ``Scorer`` (one constructor over a table of backends), ``aggregate``, the backends.

``scorer.py`` owns encoding, batching, reading step logits and calibration; ``backends.py`` the
table of backends (torch, torch-bf16, torch-bf16-gptq, onnx, onnx-int8, onnx-fp16) and ``default_backend``
(the fastest that passed its gate); ``bf16.py`` the run-time kernels of torch-bf16-gptq; ``fpenv.py``
the floating-point environment around ONNX Runtime; ``cuda.py`` whether a GPU is there; ``prefix_cache.py``
and ``incremental.py`` incremental scoring on the torch backends (``Scorer(prefix_cache_mb=...)``).
"""

from prm.artifacts import Artifact
from prm.scoring.backends import BACKENDS as _TABLE
from prm.scoring.backends import default_backend
from prm.scoring.scorer import OVERFLOW, Scorer, aggregate
from prm.tokenization import TooLongError

BACKENDS = tuple(_TABLE)
ONNX_FILE = Artifact.ONNX
ONNX_INT8_FILE = Artifact.ONNX_INT8
ONNX_FP16_FILE = Artifact.ONNX_FP16

__all__ = ["BACKENDS", "ONNX_FILE", "ONNX_FP16_FILE", "ONNX_INT8_FILE", "OVERFLOW", "Scorer", "TooLongError", "aggregate",
           "default_backend"]
