"""``CompleterProposer``: a ``Propose`` over any of the project's completers (``data_tools.completers``'
protocol: the in-process ``prm.generation.HFCompleter``, OpenAI-compatible servers, vLLM, simulated).

Each next step is one sampled continuation of ``render_prefix(prompt, steps)`` (the few-shot prompt
the labeller uses, or ``few_shot``) cut at its first line. Seeds derive from (prompt, steps so far,
how many times this proposer has been asked for that prefix), so a rerun draws the same steps and two
strategies asking for the same prefix see the same samples in the same order: with ``cache`` (a dict
shared between proposers, or across runs) such repeats cost no generation, while each strategy still
counts the tokens the sample cost when it was drawn. ``reset()`` starts the per-prefix counts afresh
(call it between searches that should see the same samples). ``batch`` sends every prefix of a round
in one ``complete`` call.

Token counts: ``count_tokens(text)`` when given (e.g. the generator's tokenizer; add one for the stop
token), else the completer's running ``tokens_generated`` split over the call's samples by length,
else 0 (unknown). Standard library only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from data_tools.completers.protocol import RolloutRequest, rollout_seed
from data_tools.labelling.prompt import render_prefix
from serving.search.core import Proposal


def first_line(text: str) -> str:
    """The first non-empty line of a continuation: one step."""
    for line in text.split("\n"):
        if line.strip():
            return line.strip()
    return ""


def _key(prompt: str, steps: Sequence[str]) -> str:
    return hashlib.blake2b("\x1e".join([prompt, *steps]).encode(), digest_size=12).hexdigest()


class CompleterProposer:
    def __init__(self, completer: Any, seed: int = 0, few_shot: str | None = None,
                 count_tokens: Callable[[str], int] | None = None, cache: dict | None = None,
                 meta: dict | None = None, render: Callable[[str, Sequence[str]], str] | None = None):
        """``meta``: passed with each request (the simulated completer reads ``answer`` from it);
        ``render``: builds the text to continue from (prompt, steps), instead of ``render_prefix``."""
        self.completer, self.seed, self.few_shot = completer, seed, few_shot
        self.count_tokens, self.cache = count_tokens, cache if cache is not None else {}
        self.meta = dict(meta or {})
        self.render = render or (lambda prompt, steps: render_prefix(prompt, steps, self.few_shot))
        self.asked: dict[str, int] = {}
        self.generated_tokens = 0  # tokens actually generated (cache misses only)
        self.failed = 0  # requests the completer gave up on (returned None)

    def reset(self) -> None:
        self.asked = {}

    def __call__(self, prompt: str, steps: list[str], n: int) -> list[Proposal]:
        return self.batch(prompt, [(steps, n)])[0]

    def batch(self, prompt: str, requests: Sequence[tuple[list[str], int]]) -> list[list[Proposal]]:
        wanted: list[list[tuple[str, int, int]]] = []  # per request: (prefix key, sample index, seed)
        for steps, n in requests:
            key = _key(prompt, steps)
            start = self.asked.get(key, 0)
            self.asked[key] = start + n
            wanted.append([(key, k, rollout_seed(key, len(steps), k, self.seed)) for k in range(start, start + n)])
        missing: list[tuple[int, list[tuple[str, int, int]]]] = []
        for r, samples in enumerate(wanted):
            todo = [s for s in samples if (s[0], s[1]) not in self.cache]
            if todo:
                missing.append((r, todo))
        if missing:
            self._generate(prompt, requests, missing)
        return [[Proposal(*self.cache[(key, k)]) for key, k, _ in samples if (key, k) in self.cache]
                for samples in wanted]

    def _generate(self, prompt: str, requests, missing) -> None:
        reqs = [RolloutRequest(prefix=self.render(prompt, requests[r][0]), seeds=tuple(s[2] for s in todo),
                               prompt=prompt, steps=tuple(requests[r][0]), meta=self.meta)
                for r, todo in missing]
        before = getattr(self.completer, "tokens_generated", None)
        outputs = self.completer.complete(reqs)
        texts = [[first_line(t) for t in out] if out is not None else None for out in outputs]
        self.failed += sum(out is None for out in outputs)
        counts = self._counts([t for ts in texts if ts for t in ts], outputs, before)
        it = iter(counts)
        for (_, todo), ts in zip(missing, texts, strict=True):
            if ts is None:
                continue  # a failed request proposes nothing (and is drawn again next time)
            for (key, k, _), text in zip(todo, ts, strict=False):
                tokens = next(it)
                self.cache[(key, k)] = (text, tokens)
                self.generated_tokens += tokens

    def _counts(self, texts: list[str], outputs, before) -> list[int]:
        if self.count_tokens is not None:
            return [int(self.count_tokens(t)) for t in texts]
        after = getattr(self.completer, "tokens_generated", None)
        if before is None or after is None or not texts:
            return [0] * len(texts)
        total, weights = after - before, [len(t) + 1 for t in texts]
        shares = [total * w // sum(weights) for w in weights]
        shares[-1] += total - sum(shares)  # the rounding left over, so the shares add up to what was generated
        return shares
