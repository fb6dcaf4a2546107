"""A KV cache layer for sampling loops that writes new tokens in place instead of concatenating.

transformers' ``DynamicLayer`` grows by ``torch.cat`` on every decode step, which copies the whole
cache each time: with 128 rows and a 300-token few-shot prefix that copy costs about as much as all
of the model's matrix multiplies on this machine. ``GrowingLayer`` keeps a buffer with headroom and
exposes ``keys``/``values`` as views of its filled part, so a decode step writes one slot.

Only what ``HFCompleter`` needs is promised: decoding with a cache built by a prefill, dropping
finished rows (``batch_select_indices``) and repeating rows (``batch_repeat_interleave``).
Imported lazily: it needs torch and transformers.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer


class GrowingLayer(DynamicLayer):
    """A ``DynamicLayer`` whose storage is a pre-allocated buffer [B, H, capacity, D]."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, headroom: int):
        super().__init__()
        self.device = keys.device
        self.is_initialized = True
        self._len = keys.shape[-2]
        self._k = self._alloc(keys, self._len + headroom)
        self._v = self._alloc(values, self._len + headroom)
        self._refresh()

    @staticmethod
    def _alloc(src: torch.Tensor, capacity: int) -> torch.Tensor:
        buf = src.new_empty(*src.shape[:-2], capacity, src.shape[-1])
        buf[..., : src.shape[-2], :] = src
        return buf

    def _refresh(self) -> None:
        self.keys = self._k[..., : self._len, :]
        self.values = self._v[..., : self._len, :]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        new = key_states.shape[-2]
        if self._len + new > self._k.shape[-2]:  # out of headroom: double, amortised O(1) per token
            capacity = max(2 * self._k.shape[-2], self._len + new)
            self._k, self._v = self._alloc(self.keys, capacity), self._alloc(self.values, capacity)
        self._k[..., self._len: self._len + new, :] = key_states
        self._v[..., self._len: self._len + new, :] = value_states
        self._len += new
        self._refresh()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self._len

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._k, self._v = self._k[indices], self._v[indices]
        self._refresh()

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._k = self._k.repeat_interleave(repeats, dim=0)
        self._v = self._v.repeat_interleave(repeats, dim=0)
        self._refresh()


def preallocate(cache, headroom: int):
    """Swap every full-attention ``DynamicLayer`` of ``cache`` for a ``GrowingLayer`` (in place)."""
    for i, layer in enumerate(cache.layers):
        if type(layer) is DynamicLayer and layer.is_initialized:
            cache.layers[i] = GrowingLayer(layer.keys, layer.values, headroom)
    return cache
