"""Completers: given text prefixes, sample continuations. The in-process transformers backend.

A completer takes ``RolloutRequest``s (a prefix, how many samples, one seed per sample) and returns,
per request, the sampled continuation strings. Seeds come from the caller (derived from example id,
step index and sample index), so every rollout can be reproduced alone.

``HFCompleter`` runs a causal LM in-process with its own decode loop rather than ``generate``
because it needs three things ``generate`` does not give together: one RNG per sampled row (so a
rollout does not depend on what else shared its batch), one prefill per prefix shared by all of that
prefix's samples (the KV cache is repeated, not recomputed), and rows that leave the batch as soon
as they hit a stop string. It imports torch lazily; the model and tokenizer are passed in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class RolloutRequest:
    prefix: str
    seeds: tuple[int, ...]  # one per sample; len(seeds) samples are drawn


class Completer(Protocol):
    def complete(self, requests: Sequence[RolloutRequest]) -> list[list[str]]: ...


def rollout_seed(example_id: str, step_index: int, sample_index: int, base_seed: int = 0) -> int:
    """A stable 63-bit seed from (example id, step index, sample index): resumable and auditable."""
    key = f"{base_seed}|{example_id}|{step_index}|{sample_index}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") >> 1


def truncate_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` at the earliest stop string; returns (text, stopped)."""
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


@dataclass
class HFCompleter:
    """Batched sampling from a transformers causal LM (left-padded prefill, shared per-prefix KV)."""

    model: object
    tokenizer: object
    max_new_tokens: int = 32
    temperature: float = 0.7
    top_k: int = 0
    stop: tuple[str, ...] = ("\n\n", "Question:")
    prefixes_per_batch: int = 16
    tokens_generated: int = 0  # running count, for throughput reports

    def complete(self, requests: Sequence[RolloutRequest]) -> list[list[str]]:
        out: list[list[str]] = []
        for i in range(0, len(requests), self.prefixes_per_batch):
            out.extend(self._complete_batch(list(requests[i:i + self.prefixes_per_batch])))
        return out

    def _complete_batch(self, requests: list[RolloutRequest]) -> list[list[str]]:
        import torch

        tok, model = self.tokenizer, self.model
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        enc = tok([r.prefix for r in requests], return_tensors="pt", padding=True,
                  padding_side="left", add_special_tokens=False)
        mask = enc["attention_mask"]
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            # prefill once per prefix: [P, T]
            out = model(input_ids=enc["input_ids"], attention_mask=mask, position_ids=pos,
                        use_cache=True, logits_to_keep=1)
            repeats = torch.tensor([len(r.seeds) for r in requests])
            cache = out.past_key_values
            rows = torch.repeat_interleave(torch.arange(len(requests)), repeats)  # [B]
            cache.batch_select_indices(rows)
            logits = out.logits[rows, -1].float()  # [B, V]
            mask, pos = mask[rows], pos[rows, -1:]
            gens = [torch.Generator().manual_seed(s) for r in requests for s in r.seeds]
            owner = rows.tolist()
            texts = [""] * len(gens)
            token_lists: list[list[int]] = [[] for _ in gens]
            active = list(range(len(gens)))  # sample index of each live batch row
            eos = tok.eos_token_id
            for _ in range(self.max_new_tokens):
                next_ids = self._sample(logits, [gens[a] for a in active])  # [b]
                keep = []
                for row, a in enumerate(active):
                    t = int(next_ids[row])
                    self.tokens_generated += 1
                    if t == eos:
                        continue
                    token_lists[a].append(t)
                    texts[a], stopped = truncate_at_stop(tok.decode(token_lists[a]), self.stop)
                    if not stopped:
                        keep.append(row)
                if not keep:
                    break
                if len(keep) < len(active):
                    idx = torch.tensor(keep)
                    cache.batch_select_indices(idx)
                    mask, pos, next_ids = mask[idx], pos[idx], next_ids[idx]
                    active = [active[r] for r in keep]
                mask = torch.cat([mask, torch.ones(len(active), 1, dtype=mask.dtype)], dim=1)
                pos = pos + 1
                out = model(input_ids=next_ids[:, None], attention_mask=mask, position_ids=pos,
                            past_key_values=cache, use_cache=True)
                logits = out.logits[:, -1].float()
        grouped: list[list[str]] = [[] for _ in requests]
        for a, text in enumerate(texts):
            grouped[owner[a]].append(text)
        return grouped

    def _sample(self, logits, gens):
        import torch

        logits = logits / max(self.temperature, 1e-5)
        if self.top_k:
            kth = torch.topk(logits, self.top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        return torch.cat([torch.multinomial(probs[i], 1, generator=g) for i, g in enumerate(gens)])
