"""The in-process torch completer: ``HFCompleter`` and ``load_completer``, which builds one from a backbone.

``HFCompleter`` follows ``data_tools.completers``' protocol. It runs a causal LM in-process with its
own decode loop rather than ``generate`` because it needs three things ``generate`` does not give
together: one RNG per sampled row (so a rollout does not depend on what else shared its batch), one
prefill per prefix shared by all of that prefix's samples (the KV cache is repeated, not
recomputed, or attended once with ``shared_prefix``), and rows that leave the batch as soon as they
hit a stop string. It imports torch lazily; the model and tokenizer are passed in. In bf16 its
logits move slightly with the batch's composition (fp32: they do not), so the same request can draw
other tokens in another batch; ``data_tools.labelling.job`` makes batches reproducible instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from data_tools.completers.protocol import STOP, RolloutRequest, truncate_at_stop


def load_completer(backbone: str, max_new_tokens: int = 40, temperature: float = 0.5, bf16: bool = True,
                   top_k: int = 50) -> HFCompleter:
    """Build the in-process rollout completer from a backbone name or folder (bf16 on CPU by default)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prm.backbone import resolve_backbone
    from prm.generation.shared_prefix import register

    path = resolve_backbone(backbone)
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    dtype = torch.bfloat16 if bf16 else torch.float32
    # Shared-prefix attention: the few-shot prefix common to all rollouts is attended once, not copied
    # into every sampled row (prm/generation/shared_prefix.py has the measurements).
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=False,
                                                 attn_implementation=register()).eval()
    return HFCompleter(model, tok, max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
                       shared_prefix_attention=True)


def hf_completer(backbone: str, sampling, bf16: bool = True) -> tuple[HFCompleter, dict]:
    """(completer, the settings that decide what it draws) for ``prm label --completer hf`` and the demo;
    ``sampling`` is a ``data_tools.completers.Sampling``. The settings are compared when a run resumes."""
    from dataclasses import asdict

    completer = load_completer(backbone, sampling.max_new_tokens, sampling.temperature, bf16=bf16, top_k=sampling.top_k)
    completer.stop = sampling.stop
    return completer, {"completer": "hf", "backbone": backbone, "dtype": "bf16" if bf16 else "fp32", **asdict(sampling)}


@dataclass
class HFCompleter:
    """Batched sampling from a transformers causal LM (left-padded prefill, shared per-prefix KV)."""

    model: object
    tokenizer: object
    max_new_tokens: int = 40
    temperature: float = 0.7
    top_k: int = 50
    stop: tuple[str, ...] = STOP
    prefixes_per_batch: int = 16
    rows_per_batch: int = 128  # more prefixes join a batch while its sampled rows stay within this
    shared_prefix_attention: bool = False  # model loaded with prm.generation.shared_prefix's attention
    tokens_generated: int = 0  # running count, for throughput reports
    last_token_counts: list[list[int]] | None = None  # per request, per sample: tokens sampled (stop/eos included)

    def complete(self, requests: Sequence[RolloutRequest]) -> list[list[str]]:
        out: list[list[str]] = []
        self.last_token_counts = []
        for batch in self._batches(requests):
            out.extend(self._complete_batch(batch))
        return out

    def _batches(self, requests: Sequence[RolloutRequest]) -> list[list[RolloutRequest]]:
        """Consecutive requests, ``prefixes_per_batch`` at a time, more while rows stay within ``rows_per_batch``.

        Requests with few samples each (early-stopping rounds, binary-search probes) would otherwise
        decode in batches of a few rows, which costs nearly as much per step as full ones.
        """
        batches: list[list[RolloutRequest]] = []
        batch: list[RolloutRequest] = []
        rows = 0
        for r in requests:
            if len(batch) >= self.prefixes_per_batch and rows + len(r.seeds) > self.rows_per_batch:
                batches.append(batch)
                batch, rows = [], 0
            batch.append(r)
            rows += len(r.seeds)
        return batches + [batch] if batch else batches

    def _complete_batch(self, requests: list[RolloutRequest]) -> list[list[str]]:
        import torch

        tok = self.tokenizer
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        ids = [tok(r.prefix, add_special_tokens=False)["input_ids"] for r in requests]
        common = min(_common_prefix_len(ids), min(len(x) for x in ids) - 1)  # each row keeps >= 1 own token
        with torch.inference_mode():
            if common < 8:
                return self._decode(requests, ids, 0, None)
            shared = self.model(input_ids=torch.tensor([ids[0][:common]]), use_cache=True, logits_to_keep=1)
            cache = shared.past_key_values
            if self.shared_prefix_attention:
                from prm.generation.shared_prefix import shared_prefix

                with shared_prefix(self.model, [(layer.keys, layer.values) for layer in cache.layers]):
                    return self._decode(requests, [x[common:] for x in ids], common, None)
            cache.batch_repeat_interleave(len(ids))
            return self._decode(requests, [x[common:] for x in ids], common, cache)

    def _decode(self, requests: list[RolloutRequest], ids: list[list[int]], offset: int, cache):
        """Prefill each row's own tokens (after ``offset`` shared ones), then sample step by step.

        ``cache`` holds the shared tokens repeated per prefix, or is None when there are none or
        shared-prefix attention supplies them. Rows are left-padded; the mask covers the rows' own
        tokens (plus the cached shared ones), positions count from ``offset`` without the padding.
        """
        import torch

        from prm.generation.kv_cache import preallocate

        tok, model = self.tokenizer, self.model
        enc = tok.pad({"input_ids": ids}, return_tensors="pt", padding_side="left")
        mask = enc["attention_mask"]  # [P, S]
        pos = offset + (mask.cumsum(-1) - 1).clamp(min=0)
        if cache is not None:
            mask = torch.cat([torch.ones(len(ids), offset, dtype=mask.dtype), mask], dim=1)
        out = model(input_ids=enc["input_ids"], attention_mask=mask, position_ids=pos,
                    cache=cache, use_cache=True, logits_to_keep=1)
        cache = preallocate(out.past_key_values, headroom=self.max_new_tokens)
        rows = torch.repeat_interleave(torch.arange(len(requests)), torch.tensor([len(r.seeds) for r in requests]))
        cache.batch_select_indices(rows)  # one row per sample
        logits = out.logits[rows, -1].float()  # [B, V]
        mask, pos = mask[rows], pos[rows, -1:]
        gens = [torch.Generator().manual_seed(s) for r in requests for s in r.seeds]
        owner = rows.tolist()
        texts = [""] * len(gens)
        sampled = [0] * len(gens)
        token_lists: list[list[int]] = [[] for _ in gens]
        active = list(range(len(gens)))  # sample index of each live batch row
        eos = tok.eos_token_id
        for _ in range(self.max_new_tokens):
            next_ids = self._sample(logits, [gens[a] for a in active])  # [b]
            keep = []
            for row, a in enumerate(active):
                t = int(next_ids[row])
                self.tokens_generated += 1
                sampled[a] += 1
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
                        cache=cache, use_cache=True)
            logits = out.logits[:, -1].float()
        grouped: list[list[str]] = [[] for _ in requests]
        counts: list[list[int]] = [[] for _ in requests]
        for a, text in enumerate(texts):
            grouped[owner[a]].append(text)
            counts[owner[a]].append(sampled[a])
        if self.last_token_counts is not None:
            self.last_token_counts.extend(counts)
        return grouped

    def _sample(self, logits, gens):
        """One token per row, each row drawn with its own generator; top-k first when set.

        Restricting to the top k logits also makes the per-row draws cheap (k instead of the whole
        vocabulary), which matters: one multinomial per row per step.
        """
        import torch

        logits = logits / max(self.temperature, 1e-5)
        if self.top_k:
            logits, index = torch.topk(logits, min(self.top_k, logits.shape[-1]), dim=-1)  # [b, k]
        probs = torch.softmax(logits, dim=-1)
        picks = torch.cat([torch.multinomial(probs[i], 1, generator=g) for i, g in enumerate(gens)])
        return index.gather(1, picks[:, None])[:, 0] if self.top_k else picks


def _common_prefix_len(seqs: list[list[int]]) -> int:
    first, n = seqs[0], min(len(s) for s in seqs)
    for i in range(n):
        if any(s[i] != first[i] for s in seqs[1:]):
            return i
    return n
