"""Run-time kernels of the ``torch-bf16-gptq`` backend: bf16 linear layers and bf16 attention.

Every backbone ``nn.Linear`` becomes a ``BF16Linear`` (bf16 weight, bf16 GEMM, fp32 in and out) and
attention runs as bf16 SDPA (``sdpa_bf16``, fp32 in and out; with the causal kernel, since
``Scorer`` pads on the right); the residual stream, norms and the step head stay fp32 (a bf16
residual stream changed 35 of the demo model's 2,520 held-out decisions). The weights come from the
artifact's ``bf16/model.safetensors``, rounded by GPTQ at export time (``prm.export.gptq``).
"""

from __future__ import annotations

import torch
from torch import nn


class BF16Linear(nn.Module):
    """A linear layer with a bf16 weight: fp32 in, bf16 GEMM (fp32 accumulation), fp32 out."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.register_buffer("weight", weight.to(torch.bfloat16))
        self.register_buffer("bias", None if bias is None else bias.detach().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = nn.functional.linear(x.to(torch.bfloat16), self.weight).float()
        return out if self.bias is None else out + self.bias


def linears(module: nn.Module) -> dict[str, nn.Linear]:
    return {name: m for name, m in module.named_modules() if isinstance(m, nn.Linear)}


def use_bf16_weights(backbone: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Swap every ``nn.Linear`` of ``backbone`` for a ``BF16Linear`` with its weight from ``weights``."""
    for name, lin in linears(backbone).items():
        key = f"{name}.weight"
        if key not in weights or tuple(weights[key].shape) != tuple(lin.weight.shape):
            raise ValueError(f"the bf16 weights have no {key!r} of shape {tuple(lin.weight.shape)}: they were written "
                             "for another model; rewrite them with `prm export MODEL --bf16 --calib DATA`")
        parent_name, _, child = name.rpartition(".")
        parent = backbone.get_submodule(parent_name) if parent_name else backbone
        setattr(parent, child, BF16Linear(weights[key], lin.bias))


def bf16_sdpa(module, query, key, value, attention_mask, **kwargs):
    """transformers' SDPA attention run in bf16 (fp32 in and out): the ``sdpa_bf16`` implementation."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    out, weights = sdpa_attention_forward(module, query.to(torch.bfloat16), key.to(torch.bfloat16),
                                          value.to(torch.bfloat16), attention_mask, **kwargs)
    return out.float(), weights


def register_bf16_attention() -> str:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register("sdpa_bf16", bf16_sdpa)
    # SDPA's mask builder too: for an implementation without one transformers passes no mask at all, and SDPA's
    # is_causal then aligns queries with the first key, wrong once past keys come first (prm.scoring.incremental).
    # A plain causal batch still gets no mask (the builder skips it), so the full path is unchanged.
    ALL_MASK_ATTENTION_FUNCTIONS.register("sdpa_bf16", sdpa_mask)
    return "sdpa_bf16"
