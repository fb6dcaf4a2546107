"""Export: ONNX with a parity check (``onnx.py``), int8 behind a quality gate (``int8.py``), fp16 behind the
same gate (``fp16.py``, for GPUs), and GPTQ-rounded bf16 weights for the torch-bf16-gptq backend
(``gptq.py``). Each writes into the artifact through ``prm.artifacts.Artifact`` and refreshes its
manifest; each gate's outcome is recorded in its ``gates.json``.
"""

from prm.export.fp16 import convert_fp16
from prm.export.gptq import gptq_bf16, input_hessians, write_bf16_weights
from prm.export.int8 import (
    GateError,
    Int8Gate,
    Int8GateError,
    compare_backends,
    gate_labels,
    head_matmuls,
    quantize_int8,
    weight_matmuls,
)
from prm.export.onnx import EXPORT_PLANS, export_onnx, merge_shared_matmuls, parity
from prm.export.run import export_artifact

__all__ = ["EXPORT_PLANS", "GateError", "Int8Gate", "Int8GateError", "compare_backends", "convert_fp16",
           "export_artifact", "export_onnx", "gate_labels", "gptq_bf16", "head_matmuls", "input_hessians", "merge_shared_matmuls", "parity", "quantize_int8",
           "weight_matmuls", "write_bf16_weights"]
