"""Incremental scoring on the torch backends: compute only the tokens no cached prefix covers.

``Incremental(model, cache, device)`` runs a torch ``StepScorer`` over token-id rows and returns each
row's step logit at every token, as the backend's full runner would, but for each row it first takes the
longest prefix ``prm.scoring.prefix_cache.PrefixCache`` holds and feeds the backbone only the rest, with
the cached keys/values as ``past_key_values`` (a ``DynamicCache``) and position ids that continue where
the prefix ended. Rows of one batch have prefixes of different lengths: their pasts are padded to the
longest and the padding masked out in a 2-D attention mask ``[B, past + new]``; new tokens are padded on
the right. Rows of one batch that share an uncached prefix (the candidates of one beam, at the first step
the prompt) get it computed once first, so a batch never computes the same prefix twice. What a row
computed goes back into the cache.

``Scorer`` reads the step positions, takes the running minimum, calibrates and applies the step checks
over the whole solution afterwards, exactly as for a full pass; only where the logits come from changes.

Supported: decoders whose every layer keeps a plain, full-length key/value cache (Llama, Qwen2, Mistral
without a sliding window, GPT-2 style ...); ``unsupported`` says why another model is not (sliding
windows, recurrent state), and ``Scorer`` then scores it in full. A self-check at construction compares
one split input with a full pass and refuses the model on a mismatch. The ONNX backends always score in
full: their graphs are exported without past inputs (see ``prm.scoring.scorer``).
"""

from __future__ import annotations

import logging

import numpy as np

from prm.scoring.prefix_cache import Match, PrefixCache

log = logging.getLogger(__name__)

SHARE_MIN = 4
"""Fewest uncached tokens that rows of a batch must share for that prefix to be computed once first."""


def unsupported(model) -> str | None:
    """Why ``model`` cannot be scored incrementally (None: it can)."""
    from transformers.cache_utils import DynamicCache, DynamicLayer

    backbone = getattr(model, "backbone", None)
    if backbone is None or not hasattr(model, "head"):
        return "not a StepScorer (backbone + head)"
    config = backbone.config
    if getattr(config, "is_encoder_decoder", False):
        return "an encoder-decoder"
    try:
        layers = DynamicCache(config=config).layers
    except Exception as exc:  # a config the cache cannot read
        return f"its cache cannot be built from its config ({exc})"
    kinds = {type(layer).__name__ for layer in layers}
    if any(type(layer) is not DynamicLayer for layer in layers):
        return f"its layers keep {sorted(kinds)} caches, not plain full-length ones (a sliding window or recurrent state)"
    return None


def incremental(runner, backend: str, mb: float) -> tuple[PrefixCache | None, Incremental | None]:
    """The prefix cache and incremental runner of a ``Scorer`` over ``runner`` (``mb`` MiB; 0: neither). A
    backend that cannot score incrementally is scored in full, and an INFO line says why."""
    if not mb:
        return None, None
    if runner.model is None:
        log.info("prefix cache off: backend %s runs a graph exported without past key/value inputs, so every input "
                 "is scored in full (a torch backend scores only the new tokens)", backend)
        return None, None
    cache = PrefixCache(int(mb * (1 << 20)))
    try:
        return cache, Incremental(runner.model, cache, runner.device)
    except ValueError as exc:
        log.info("prefix cache off: %s; every input is scored in full", exc)
        return None, None


def _cat(segments: list):
    import torch

    return segments[0] if len(segments) == 1 else torch.cat(segments, dim=-2)


class Incremental:
    def __init__(self, model, cache: PrefixCache, device: str = "cpu"):
        why = unsupported(model)
        if why is not None:
            raise ValueError(f"incremental scoring does not support this model: {why}")
        import inspect

        self.model, self.cache, self.device = model, cache, device
        # transformers 5.2x renamed ``past_key_values`` to ``cache`` (the old name warns, then goes)
        self._cache_arg = "cache" if "cache" in inspect.signature(model.backbone.forward).parameters else "past_key_values"
        self._self_check()

    def run(self, rows: list[list[int]]) -> list[np.ndarray]:
        """Step logits at every token of each row (float32 ``[len(row)]``)."""
        return self._run(rows, [self.cache.match(r) for r in rows])

    def _run(self, rows: list[list[int]], hits: list[Match]) -> list[np.ndarray]:
        shared = self._shared_prefixes(rows, hits)
        if shared:  # computed first (recursively: they may share a prefix among themselves), then matched
            self._run(shared, [self.cache.match(s, count=False) for s in shared])
            hits = [self.cache.match(r, count=False) if len(r) > h.length else h for r, h in zip(rows, hits, strict=True)]
        todo = [i for i, (r, h) in enumerate(zip(rows, hits, strict=True)) if h.length < len(r)]
        new = dict(zip(todo, self._compute([rows[i] for i in todo], [hits[i] for i in todo]), strict=True)) if todo else {}
        return [np.concatenate([h.logits, new[i]]) if i in new else h.logits[:len(rows[i])]
                for i, h in enumerate(hits)]

    @staticmethod
    def _shared_prefixes(rows: list[list[int]], hits: list[Match]) -> list[list[int]]:
        """Prefixes that several rows share past their cached part (each the longest such, distinct)."""
        order = sorted(range(len(rows)), key=lambda i: rows[i])
        out = set()
        for a, b in zip(order, order[1:], strict=False):
            ra, rb = rows[a], rows[b]
            n = 0
            top = min(len(ra), len(rb))
            while n < top and ra[n] == rb[n]:
                n += 1
            # a prefix worth computing once: past both rows' cached parts, and not the whole of either row
            if n - max(hits[a].length, hits[b].length) >= SHARE_MIN and n < top:
                out.add(tuple(ra[:n]))
        # keep only the longest of nested ones: a shorter one is covered by computing the longer
        return [list(p) for p in out if not any(q != p and q[:len(p)] == p for q in out)]

    def _compute(self, rows: list[list[int]], hits: list[Match]) -> list[np.ndarray]:
        """Run the uncached tokens of ``rows`` in one forward pass, store the rows, return their new logits."""
        import torch
        from transformers.cache_utils import DynamicCache

        b = len(rows)
        past = [h.length for h in hits]
        p, n = max(past), max(len(r) - h for r, h in zip(rows, past, strict=True))
        ids = np.zeros((b, n), dtype=np.int64)
        mask = np.zeros((b, p + n), dtype=np.int64)
        positions = np.zeros((b, n), dtype=np.int64)
        for i, (row, h) in enumerate(zip(rows, past, strict=True)):
            k = len(row) - h
            ids[i, :k] = row[h:]
            mask[i, :h], mask[i, p:p + k] = 1, 1
            positions[i] = np.minimum(np.arange(h, h + n), h + k - 1)  # padding repeats the last position
        own = [_cat(h.segments) if h.length else None for h in hits]  # [L, 2, Hkv, h, D] per row
        if p:
            ref = next(x for x in own if x is not None)
            stacked = ref.new_zeros(ref.shape[0], 2, b, *ref.shape[2:-2], p, ref.shape[-1])  # [L, 2, B, Hkv, P, D]
            for i, x in enumerate(own):
                if x is not None:
                    stacked[:, :, i, ..., :x.shape[-2], :] = x
            cache = DynamicCache(ddp_cache_data=[(layer[0], layer[1]) for layer in stacked], config=self.model.backbone.config)
        else:
            cache = DynamicCache(config=self.model.backbone.config)
        dev = self.device
        with torch.inference_mode():
            out = self.model.backbone(input_ids=torch.from_numpy(ids).to(dev), attention_mask=torch.from_numpy(mask).to(dev),
                                      position_ids=torch.from_numpy(positions).to(dev), use_cache=True,
                                      **{self._cache_arg: cache})
            hidden = out.last_hidden_state  # [B, N, H]
            # as StepScorer.step_logits: the head in fp32, outside any autocast
            with torch.autocast(device_type=hidden.device.type, enabled=False):
                logits = self.model.head(hidden.float()).squeeze(-1).float().cpu().numpy()  # [B, N]
            layers = cache.layers  # grown in place by the forward pass
            results = []
            for i, (row, h) in enumerate(zip(rows, past, strict=True)):
                k = len(row) - h
                fresh = torch.stack([torch.stack([layer.keys[i, ..., p:p + k, :], layer.values[i, ..., p:p + k, :]])
                                     for layer in layers])  # [L, 2, Hkv, k, D]
                results.append(logits[i, :k])
                self.cache.insert(row, _ranges(own[i], h, fresh), np.concatenate([hits[i].logits, logits[i, :k]]))
        self.cache.record(sum(len(r) - h for r, h in zip(rows, past, strict=True)))
        return results

    def _self_check(self) -> None:
        """Inputs scored in pieces must equal them scored whole (a model that ignores position ids, past keys or
        the mask over a padded past would not); the cache is left as it was."""
        import torch

        vocab = int(self.model.backbone.config.vocab_size)
        first = [t % vocab for t in range(3, 15)]
        second = first[:2] + [t % vocab for t in range(20, 27)]
        probe = Incremental.__new__(Incremental)
        probe.__dict__.update(self.__dict__, cache=PrefixCache(1 << 30))
        probe.run([first[:6]])
        split = probe.run([first, second])  # pasts of 6 and 2 tokens in one batch: a padded past
        worst = 0.0
        tensors = [*self.model.parameters(), *self.model.buffers()]
        tol = 1e-3 if all(t.dtype == torch.float32 for t in tensors if t.is_floating_point()) else 5e-2
        for row, got in zip((first, second), split, strict=True):
            with torch.inference_mode():
                ids = torch.tensor([row], device=self.device)
                whole = self.model.step_logits(ids, torch.ones_like(ids)).float().cpu().numpy()[0]
            worst = max(worst, float(np.abs(got - whole).max()) / (1.0 + float(np.abs(whole).max())))
        if worst > tol:
            raise ValueError(f"incremental scoring does not support this model: inputs scored in pieces differ from "
                             f"them scored whole by {worst:.3g} (relative to their largest logit)")


def _ranges(own, h: int, fresh):
    """``kv(a, b)`` over a row whose tokens ``0..h-1`` are ``own`` and ``h..`` are ``fresh``."""
    import torch

    def kv(a: int, b: int):
        if a >= h:
            return fresh[..., a - h:b - h, :]
        return torch.cat([own[..., a:h, :], fresh[..., :b - h, :]], dim=-2)

    return kv
