"""Binary search for the first wrong step (OmegaPRM's divide and conquer), reusing every rollout drawn.

Same semantics as Monte-Carlo labels: a step is right when some rollout from its prefix reaches the
gold answer, and the last step is judged by the solution's own answer. Binary search adds one
assumption, OmegaPRM's: correctness is monotone along a solution. A prefix that can still reach the
gold answer makes every shorter prefix right too (the steps in between plus that rollout are a
continuation of the shorter one), and a prefix from which no rollout succeeds makes every longer one
wrong. So instead of rolling out from every step, it probes the middle of the steps not yet decided
and halves the range by each verdict: about log2(steps) probes per solution.

A solution whose own final answer is right needs no rollout at all: it is itself a continuation of
each of its prefixes that reaches the gold answer, so every step is right (OmegaPRM runs its search
only on solutions with a wrong answer), and its prefixes answer the probes of the other solutions
of the same problem that share them. Rollouts are reused three ways: a probe draws in doubling rounds (1, 1, 2, 4, ... rollouts) and
stops at its first success, so a right prefix usually costs one or two rollouts and only a wrong one
costs all N; a prefix shared by several solutions of one problem is drawn once (``RolloutBank``);
and what one solution's search implies about a shared prefix (right, because a longer prefix
succeeded; wrong, because a shorter one failed) answers the other solutions' probes of it, within
a batch. With the bank's seeds, a probe's verdict is exactly the Monte-Carlo hard label of that
prefix; the two methods disagree only where Monte-Carlo labels are not monotone (including a
right-answer solution that Monte-Carlo's rollouts failed from somewhere: ``trust_final_answer``).

Labels are first-error labels: ``labels`` and ``meta["hard_labels"]`` are true before the first
wrong step and false from it on (later steps were not examined: a solution that went wrong is
taken to stay wrong). ``meta["step_rollouts"]`` says which prefixes were actually rolled out.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from data_tools.completers.protocol import Completer
from data_tools.labelling.bank import Done, LabelReport, PrefixKey, RolloutBank, collect
from data_tools.schema import StepwiseExample


class _Search:
    """One solution's search: steps <= ``lo`` are right, steps >= ``hi`` wrong (``hi`` = m: not yet known)."""

    def __init__(self, keys: list[PrefixKey]):
        self.keys, self.lo, self.hi = keys, -1, len(keys)

    def probe(self, verdict, inferred: dict[PrefixKey, bool]) -> PrefixKey | None:
        """Narrow the range through every decided midpoint; the undecided one to roll out, or None when done."""
        while self.hi - self.lo > 1:
            mid = (self.lo + self.hi) // 2
            known = verdict(self.keys[mid])
            if known is None:
                return self.keys[mid]
            if known:
                for key in self.keys[self.lo + 1: mid]:
                    inferred.setdefault(key, True)
                self.lo = mid
            else:
                for key in self.keys[mid + 1: self.hi]:
                    inferred.setdefault(key, False)
                self.hi = mid
        return None


def binary_label_batch(examples: Sequence[StepwiseExample], bank: RolloutBank, done: Done,
                       trust_final_answer: bool = True) -> None:
    """First-error labels by binary search for a batch; all searches advance together, one probe each per round."""
    searches = [_Search(bank.keys(ex, n)) for n, ex in enumerate(examples)]
    inferred: dict[PrefixKey, bool] = {}
    for ex, search in zip(examples, searches, strict=True):
        if trust_final_answer and search.keys and bank.final_ok(ex):
            # The solution itself is a continuation of each of its prefixes that reaches the gold
            # answer: every step is right (OmegaPRM searches only solutions with a wrong answer).
            search.lo = len(search.keys) - 1
            for key in search.keys:
                inferred.setdefault(key, True)

    def verdict(key: PrefixKey) -> bool | None:
        direct = bank.verdict(key)
        return inferred.get(key) if direct is None else direct

    pending = list(range(len(examples)))
    while pending:
        probes: dict[PrefixKey, int] = {}
        still = []
        for i in pending:
            key = searches[i].probe(verdict, inferred)
            if key is None:
                done(i, _labels(examples[i], searches[i], bank))
            elif bank.failed(key):
                done(i, None)
            else:
                probes[key] = bank.next_target(key)
                still.append(i)
        bank.draw(probes)
        pending = still


def _labels(example: StepwiseExample, search: _Search, bank: RolloutBank) -> StepwiseExample:
    m = len(search.keys)
    first = search.hi if search.hi < m else (-1 if bank.final_ok(example) else m)
    hard = [first < 0 or i < first for i in range(m + 1)]
    return bank.labelled(example, search.keys, list(hard), hard, "binary")


def binary_label(examples: Sequence[StepwiseExample], completer: Completer, rollouts: int = 8,
                 base_seed: int = 0, answer_key: str = "answer",
                 few_shot: str | None = None,
                 trust_final_answer: bool = True) -> tuple[list[StepwiseExample], LabelReport]:
    """First-error labels for every example by binary search; ``mc_label``'s arguments and outputs.

    ``labels`` and ``meta['hard_labels']`` hold hard labels (see the module docstring);
    ``meta['step_rollouts']``/``meta['step_successes']`` the rollouts behind them (0 where a step's
    label was inferred). ``trust_final_answer=False`` probes solutions with a right final answer too,
    as Monte-Carlo estimation rolls out from them, so that both disagree only on non-monotone labels.
    """
    bank = RolloutBank(completer, rollouts, base_seed, answer_key, few_shot)
    labeller = partial(binary_label_batch, trust_final_answer=trust_final_answer)
    return collect(labeller, examples, bank), bank.report
