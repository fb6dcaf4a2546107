"""Kept for existing imports: the kernels live in ``prm.scoring.bf16``, the GPTQ export in ``prm.export.gptq``."""

from prm.artifacts import Artifact
from prm.export.gptq import gptq_bf16, input_hessians, write_bf16_weights
from prm.scoring.bf16 import BF16Linear, bf16_sdpa, linears, register_bf16_attention, use_bf16_weights

BF16_FILE = Artifact.BF16

__all__ = ["BF16_FILE", "BF16Linear", "bf16_sdpa", "gptq_bf16", "input_hessians", "linears",
           "register_bf16_attention", "use_bf16_weights", "write_bf16_weights"]
