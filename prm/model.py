"""The PRM: a Hugging Face backbone (no LM head) plus a step head (one linear layer; a small MLP for an
imported Qwen2.5-Math-PRM) read at separator tokens.

``StepScorer.forward`` returns a step logit for every position, ``[batch, seq]``; positions that are
not separators are simply never read. The loss is binary cross-entropy with the (possibly soft)
labels at separator positions, so a 0.25 label trains toward 0.25. The vocabulary projection of the
causal LM is never computed: the backbone is loaded with ``AutoModel``.

This module holds the ``nn.Module``s only; ``prm.pretrained.PRM`` is the whole model with its
tokenizer and settings, ``prm.artifacts.Artifact`` the folder it lives in.
"""

from __future__ import annotations

import torch
from torch import nn

from prm.tokenization import IGNORE


def step_head(kind: str, hidden: int) -> nn.Module:
    """A fresh step head of ``kind`` (``prm.config.HEADS``) over ``hidden``-wide states: one logit per position."""
    if kind == "linear":
        head = nn.Linear(hidden, 1)
        nn.init.normal_(head.weight, std=0.02)
        nn.init.zeros_(head.bias)
        return head
    if kind == "mlp":
        return nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))
    raise ValueError(f"unknown step head {kind!r}: this prm-toolkit knows 'linear' and 'mlp' (prm_config.json's head)")


class StepScorer(nn.Module):
    def __init__(self, backbone: nn.Module, head: str = "linear"):
        """``head``: 'linear' (``Linear(h, 1)``, what ``prm train`` trains) or 'mlp' (``Linear(h, h)``, ReLU,
        ``Linear(h, 1)``: Qwen2.5-Math-PRM's head, imported by ``prm import``)."""
        super().__init__()
        self.backbone = backbone
        self.head = step_head(head, backbone.config.hidden_size)

    @property
    def config(self):
        return self.backbone.config

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                      position_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.backbone(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                             use_cache=False).last_hidden_state  # [B, T, H]

    def step_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                    position_ids: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.hidden_states(input_ids, attention_mask, position_ids)  # [B, T, H]
        # The head always runs in fp32, also under bf16 autocast: its logit is a sum of large
        # terms that cancel (hidden states of middle layers reach the hundreds), and bf16's 8-bit
        # mantissa turns that into errors of several logits.
        with torch.autocast(device_type=hidden.device.type, enabled=False):
            return self.head(hidden.float()).squeeze(-1)  # [B, T]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        logits = self.step_logits(input_ids, attention_mask)
        out = {"logits": logits}
        if labels is not None:
            mask = labels != IGNORE  # [B, T]
            out["loss"] = nn.functional.binary_cross_entropy_with_logits(
                logits[mask], labels[mask].float())
        return out


class StepLogitsForExport(nn.Module):
    """What goes into ONNX: ``(input_ids, attention_mask) -> step logits [B, T]``, never vocab logits.

    ``causal_only`` (the default export) relies on right padding, which is how ``Scorer`` pads: in a
    causal backbone a real token then attends only to real tokens, so plain causal attention gives
    the masked result at every real position, and the graph gets a fused causal attention instead
    of a [B, 1, T, T] mask. Positions are 0..T-1 in every row, as the backbone numbers them with a
    mask too; the mask then only zeroes the logits at padding positions. ``causal_only=False``
    passes the mask to the backbone (any padding side).
    """

    def __init__(self, scorer: StepScorer, causal_only: bool = True):
        super().__init__()
        self.scorer, self.causal_only = scorer, causal_only

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if not self.causal_only:
            return self.scorer.step_logits(input_ids, attention_mask)
        b, t = input_ids.shape
        # One row of positions per batch row: ONNX RotaryEmbedding wants cos/sin shaped like its input.
        positions = torch.arange(t, device=input_ids.device).unsqueeze(0).expand(b, t)  # [B, T]
        logits = self.scorer.step_logits(input_ids, None, positions)  # [B, T]
        return torch.where(attention_mask.bool(), logits, torch.zeros_like(logits))


def unwrap_peft(backbone: nn.Module) -> nn.Module:
    """A peft-wrapped backbone with its adapters merged into the weights; any other module as is."""
    if hasattr(backbone, "merge_and_unload") and hasattr(backbone, "peft_config"):
        return backbone.merge_and_unload()
    return backbone
