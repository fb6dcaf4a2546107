"""The rollout bank and what every labeller shares: its settings, its report, the batch-labeller types.

For step i of a solution, the completer continues the solution from the end of step i; a rollout
succeeds when its final answer matches the gold answer. The last step needs no rollout: the
solution's own final answer decides it. Labellers (``mc``, ``binary``) draw from a ``RolloutBank``.

The bank owns what makes labels reproducible and cheap: prefixes shared by several solutions of one
problem (a wrong solution shares the gold one's steps up to its error) are rolled out once, and
sample s of a prefix always has the same seed (problem id, prefix, sample index), so drawing 8 at
once or 1 + 1 + 2 + 4 with early stopping yields the same rollouts; stopping changes only how many.
``LabelReport`` counts what a run spent and saw; bad model output is counted there, never raised.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from data_tools.answers import answers_match, extract_answer
from data_tools.completers.protocol import Completer, RolloutRequest, rollout_seed
from data_tools.flags import opt, problems
from data_tools.labelling.prompt import render_prefix
from data_tools.schema import DataError, StepwiseExample

METHODS = ("mc", "binary", "reference")


@dataclass
class LabelConfig:
    """How steps are labelled (``prm label`` flags of the same names)."""

    method: str = opt("mc", choices=METHODS)
    """mc: roll out from every step's prefix (Math-Shepherd); binary: search for the first wrong step (OmegaPRM); reference: the first step whose numbers the reference solution does not support (no rollouts, no completer)"""
    rollouts: int = opt(8, min=1)
    """rollouts per step prefix (at most, when a prefix stops early)"""
    early_stop: bool = False
    """mc: stop rolling out a prefix at its first success (the hard label is decided); soft labels are then successes/drawn, biased high"""
    trust_final_answer: bool = True
    """binary: a solution whose own final answer is right is all right, with no rollout (OmegaPRM); --no-trust-final-answer probes it too, reproducing MC's hard labels wherever they are monotone"""
    seed: int = 0
    """base seed of all rollout seeds"""
    answer_key: str = "answer"
    """meta key holding the gold final answer"""
    reference_key: str = "reference_solution"
    """reference: meta key holding the reference solution (GSM8K answer text, <<expr=result>> annotations optional), as prm sample and the mr-gsm8k reader write it"""

    def problems(self) -> list[str]:
        out = problems(self)
        if self.early_stop and self.method == "binary":
            out.append("--early-stop is for --method mc (binary search always stops a prefix at its first success)")
        if self.early_stop and self.method == "reference":
            out.append("--early-stop is for --method mc (reference labels draw no rollouts)")
        return out


@dataclass
class LabelReport:
    """What a labelling run spent and saw; bad model output is counted here, never raised."""

    solutions: int = 0
    """examples labelled"""
    rollouts: int = 0
    successes: int = 0
    unparseable: int = 0
    reasons: Counter = field(default_factory=Counter)
    failed_solutions: int = 0
    """examples left unlabelled because a completer request failed for good (a rerun retries them)"""
    failed_requests: int = 0
    by_step: dict[int, list[int]] = field(default_factory=dict)
    """step index of a prefix's last step -> [rollouts, successes]"""
    truth_compared: int = 0
    """labelled examples whose input carried meta.first_error (ground truth)"""
    truth_agreed: int = 0
    """... whose first wrong step, by the hard labels, is that one"""
    completer: dict = field(default_factory=dict)
    """the backend's own counters (HTTP requests, retries, timeouts)"""
    odd: Counter = field(default_factory=Counter)
    """reference labels: odd cases met in the solutions (steps without numbers, no final answer)"""
    seconds: float = 0.0

    def count(self, example: StepwiseExample | None) -> None:
        """One example delivered: labelled, or None when a completer request it needed failed for good."""
        if example is None:
            self.failed_solutions += 1
            return
        self.solutions += 1
        truth = example.meta.get("first_error")
        if isinstance(truth, int) and not isinstance(truth, bool):
            self.truth_compared += 1
            self.truth_agreed += example.first_error() == truth

    def to_json(self) -> dict:
        return {
            "solutions": self.solutions, "rollouts": self.rollouts, "successes": self.successes,
            "unparseable": self.unparseable, "success_rate": self.successes / max(self.rollouts, 1),
            "failed_solutions": self.failed_solutions, "failed_requests": self.failed_requests,
            "success_rate_by_step": [{"step": i, "rollouts": n, "successes": k, "rate": round(k / max(n, 1), 4)}
                                     for i, (n, k) in sorted(self.by_step.items())],
            "first_error_agreement": (round(self.truth_agreed / self.truth_compared, 4)
                                      if self.truth_compared else None),
            "first_error_compared": self.truth_compared,
            "unparseable_reasons": dict(self.reasons.most_common(5)), "odd_cases": dict(self.odd.most_common()),
            "completer": self.completer, "seconds": round(self.seconds, 2),
            "rollouts_per_s": round(self.rollouts / self.seconds, 2) if self.seconds else None,
        }


PrefixKey = tuple[str, str, tuple[str, ...]]  # (problem id, prompt, the steps up to and including this one)


@dataclass
class _Tally:
    request: RolloutRequest  # its seeds are filled in per draw
    seed_id: str
    gold: str
    drawn: int = 0
    successes: int = 0
    failed: bool = False


class RolloutBank:
    """The rollouts drawn for one batch of examples, tallied by step prefix (see the module docstring)."""

    def __init__(self, completer: Completer, rollouts: int, base_seed: int = 0, answer_key: str = "answer",
                 few_shot: str | None = None, report: LabelReport | None = None):
        if rollouts < 1:
            raise DataError(f"--rollouts must be at least 1, got {rollouts}")
        self.completer, self.rollouts, self.base_seed = completer, rollouts, base_seed
        self.answer_key, self.few_shot = answer_key, few_shot
        self.report = report if report is not None else LabelReport()
        self.tallies: dict[PrefixKey, _Tally] = {}

    def keys(self, example: StepwiseExample, n: int) -> list[PrefixKey]:
        """The prefix keys of ``example``'s steps but the last (``n``: its index, the id of last resort)."""
        if self.answer_key not in example.meta:
            raise DataError(f"{example.origin or f'example {n}'} has no meta['{self.answer_key}'] (the gold "
                            "answer) to check rollouts against")
        gold = str(example.meta[self.answer_key])
        pid = str(example.meta.get("problem_id", example.meta.get("id", n)))
        keys = []
        for i in range(len(example.steps) - 1):
            steps = tuple(example.steps[: i + 1])
            key = (pid, example.prompt, steps)
            if key not in self.tallies:
                request = RolloutRequest(render_prefix(example.prompt, steps, self.few_shot), (), example.prompt,
                                         steps, example.meta)
                self.tallies[key] = _Tally(request, f"{pid}|{hash_steps(steps)}", gold)
            keys.append(key)
        return keys

    def verdict(self, key: PrefixKey) -> bool | None:
        """True once a rollout succeeded, False once all ``rollouts`` failed, None while undecided."""
        t = self.tallies[key]
        return True if t.successes else (False if t.drawn >= self.rollouts else None)

    def failed(self, key: PrefixKey) -> bool:
        return self.tallies[key].failed

    def stats(self, key: PrefixKey) -> tuple[int, int]:
        """(rollouts drawn, successes) of a prefix."""
        t = self.tallies[key]
        return t.drawn, t.successes

    def next_target(self, key: PrefixKey) -> int:
        """How many samples a prefix that stops early should have after its next round: 1, 2, 4, ... rollouts.

        Doubling keeps batches large (a batched completer shares one prefill among a prefix's
        samples) while drawing at most twice what one-at-a-time early stopping would.
        """
        return min(self.rollouts, max(1, 2 * self.tallies[key].drawn))

    def draw(self, targets: Mapping[PrefixKey, int]) -> None:
        """Draw samples ``drawn .. target - 1`` of each prefix in one completer call, and tally them."""
        work = [(t, target) for key, target in targets.items()
                if target > (t := self.tallies[key]).drawn and not t.failed]
        requests = [RolloutRequest(t.request.prefix,
                                   tuple(rollout_seed(t.seed_id, len(t.request.steps) - 1, s, self.base_seed)
                                         for s in range(t.drawn, target)),
                                   t.request.prompt, t.request.steps, t.request.meta)
                    for t, target in work]
        outputs = self.completer.complete(requests) if requests else []
        report = self.report
        for (t, _), texts in zip(work, outputs, strict=True):
            if texts is None:
                t.failed = True
                report.failed_requests += 1
                continue
            ok = 0
            for text in texts:
                verdict = answers_match(extract_answer(text), t.gold)
                if verdict.reason.startswith("unparseable"):
                    report.unparseable += 1
                    report.reasons[verdict.reason] += 1
                ok += verdict.correct
            t.drawn += len(texts)
            t.successes += ok
            report.rollouts += len(texts)
            report.successes += ok
            by_step = report.by_step.setdefault(len(t.request.steps) - 1, [0, 0])
            by_step[0] += len(texts)
            by_step[1] += ok

    def final_ok(self, example: StepwiseExample) -> bool:
        """The last step is right when the solution's own final answer matches the gold one."""
        return answers_match(extract_answer(example.steps[-1]), str(example.meta[self.answer_key])).correct

    def labelled(self, example: StepwiseExample, keys: Sequence[PrefixKey], labels: list, hard: list[bool],
                 method: str) -> StepwiseExample:
        """``example`` with its labels and what they rest on: rollouts and successes per step (0 for the last)."""
        stats = [self.stats(k) for k in keys] + [(0, 0)]
        meta = dict(example.meta, hard_labels=hard, rollouts_per_step=self.rollouts, label_method=method,
                    step_rollouts=[n for n, _ in stats], step_successes=[k for _, k in stats])
        out = StepwiseExample(example.prompt, list(example.steps), labels, meta)
        out.origin = example.origin
        return out


Done = Callable[[int, "StepwiseExample | None"], None]
"""Called once per example of a batch as soon as its labels are final: (its index, labelled, or None if
a completer request it needed failed for good)."""
BatchLabeller = Callable[[Sequence[StepwiseExample], RolloutBank, Done], None]


def collect(label_batch: BatchLabeller, examples: Sequence[StepwiseExample],
            bank: RolloutBank) -> list[StepwiseExample]:
    """Run a batch labeller in memory: the labelled examples in input order; failed ones are counted, left out."""
    out: list[StepwiseExample | None] = [None] * len(examples)

    def done(i: int, labelled: StepwiseExample | None) -> None:
        out[i] = labelled
        bank.report.count(labelled)

    label_batch(examples, bank, done)
    return [ex for ex in out if ex is not None]


def hash_steps(steps: Sequence[str]) -> str:
    return hashlib.blake2b("\x1f".join(steps).encode(), digest_size=6).hexdigest()
