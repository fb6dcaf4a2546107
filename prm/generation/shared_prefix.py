"""Shared-prefix ("cascade") attention for sampling many rows that continue one long common prefix.

Rollout prefixes all start with the same few-shot examples (~250 tokens) and differ only in their
last ~60. Repeating the common prefix's KV cache into every sampled row makes each decode step read
and copy 128 copies of it; measured here that cost more than all the model's matrix multiplies.
Instead the common prefix is run once, its keys and values are kept once per layer, and attention
computes each row's scores against them as one matrix multiply for all rows (query heads of a KV
head stacked as rows), then softmaxes them together with the row's own cached tokens. The model's
own cache and attention mask cover only each row's own tokens; position ids carry the offset.

Use: load the model with ``attn_implementation=register()``, and run the suffix prefill and the
decode steps inside ``with shared_prefix(model, keys_values):``. Outside that block the function
behaves like plain attention (SDPA for several query tokens, a grouped matmul for one, which is
~7x faster than SDPA's bf16 CPU kernel here). Inference only: training falls back to SDPA. Made
for Llama-style decoders (no attention bias, soft-capping or sliding windows).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

ATTN_IMPLEMENTATION = "prm_shared_prefix"
_ATTR = "_prm_shared_kv"


def shared_prefix_attention(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask: torch.Tensor | None, scaling: float, dropout: float = 0.0,
                            **kwargs):
    """query [B, Hq, Q, D], own key/value [B, Hkv, T, D] (+ shared [1, Hkv, P, D]) -> [B, Q, Hq, D]."""
    shared = getattr(module, _ATTR, None)
    b, hq, q_len, d = query.shape
    if module.training or (shared is None and q_len > 1):
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling,
                                      dropout=dropout, **kwargs)
    hkv, t = key.shape[1], key.shape[2]
    g = hq // hkv  # query heads per KV head: head h = kv * g + j, as in transformers' repeat_kv
    q = query.reshape(b, hkv, g * q_len, d)  # rows ordered (j, q)
    own = torch.matmul(q, key.transpose(-1, -2)).view(b, hkv, g, q_len, t) * scaling
    own = own.masked_fill(~_own_mask(attention_mask, q_len, t, query.device), torch.finfo(own.dtype).min)
    own = own.view(b, hkv, g * q_len, t)
    if shared is None:
        probs = torch.softmax(own, dim=-1, dtype=torch.float32).to(value.dtype)
        out = torch.matmul(probs, value)  # [B, Hkv, g*Q, D]
    else:
        ks, vs = shared  # [1, Hkv, P, D]
        p = ks.shape[2]
        rows = q.transpose(0, 1).reshape(hkv, b * g * q_len, d)  # every row of every batch item
        common = torch.matmul(rows, ks[0].transpose(-1, -2)) * scaling  # [Hkv, B*g*Q, P]
        common = common.view(hkv, b, g * q_len, p).transpose(0, 1)  # [B, Hkv, g*Q, P]
        probs = torch.softmax(torch.cat([common, own], dim=-1), dim=-1, dtype=torch.float32).to(value.dtype)
        out = torch.matmul(probs[..., p:], value)
        shared_probs = probs[..., :p].transpose(0, 1).reshape(hkv, b * g * q_len, p)
        out = out + torch.matmul(shared_probs, vs[0]).view(hkv, b, g * q_len, d).transpose(0, 1)
    return out.view(b, hkv, g, q_len, d).reshape(b, hq, q_len, d).transpose(1, 2), None


def _own_mask(mask: torch.Tensor | None, q_len: int, t: int, device) -> torch.Tensor:
    """Boolean [B|1, 1, 1, Q, T] (True = attend) over the row's own tokens; causal when none is given."""
    if mask is None:
        i = torch.arange(q_len, device=device)[:, None] + (t - q_len)
        return (torch.arange(t, device=device)[None, :] <= i)[None, None, None]
    if mask.dtype != torch.bool:  # additive float mask
        mask = mask > torch.finfo(mask.dtype).min / 2
    return mask[..., -q_len:, -t:][:, :, None]


@contextmanager
def shared_prefix(model, keys_values: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> Iterator[None]:
    """Within the block, layer i's attention also attends to ``keys_values[i]`` ([1, Hkv, P, D] each)."""
    modules = attention_modules(model)
    if len(modules) != len(keys_values):
        raise ValueError(f"{len(keys_values)} shared KV layers for {len(modules)} attention layers")
    for m in modules:
        setattr(m, _ATTR, keys_values[m.layer_idx])
    try:
        yield
    finally:
        for m in modules:
            setattr(m, _ATTR, None)


def attention_modules(model) -> list:
    return [m for m in model.modules() if hasattr(m, "layer_idx") and hasattr(m, "num_key_value_groups")]


def is_enabled(model) -> bool:
    return getattr(model.config, "_attn_implementation", None) == ATTN_IMPLEMENTATION


def register() -> str:
    """Make ``ATTN_IMPLEMENTATION`` available to ``from_pretrained``; returns the name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(ATTN_IMPLEMENTATION, shared_prefix_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTN_IMPLEMENTATION, sdpa_mask)
    return ATTN_IMPLEMENTATION
