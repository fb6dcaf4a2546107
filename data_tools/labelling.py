"""Monte-Carlo step labels (Math-Shepherd): roll out from each step's prefix, check final answers.

For step i of a solution, the completer continues the solution from the end of step i, N times; a
rollout succeeds when its final answer matches the gold answer. The soft label is the fraction of
successes, the hard label whether any succeeded. The last step needs no rollout: the solution's own
final answer decides it. Prefixes shared by several solutions of one problem (a wrong solution
shares the gold one's steps up to its error) are rolled out once.

How the completer is asked matters as much as the completer (DESIGN.md): a plain completion after a
few worked examples in one fixed format. ``FEW_SHOT`` is that format; ``render_prefix`` builds the
text a rollout continues.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from data_tools.answers import answers_match, extract_answer
from data_tools.rollouts import Completer, RolloutRequest, rollout_seed
from data_tools.schema import DataError, StepwiseExample

# Four worked examples covering every order of the two operations, each step restating the
# sentence it acts on. Measured with SmolLM2-135M on two-step problems (see the demo's summary).
FEW_SHOT = (
    "Question: Tom has 5 apples. Tom buys 3 more apples. Tom gives away 2 apples. "
    "How many apples does Tom have now?\nAnswer:\nTom buys 3 more apples: 5 + 3 = 8\n"
    "Tom gives away 2 apples: 8 - 2 = 6\nThe answer is 6.\n\n"
    "Question: Anna has 9 pencils. Anna gives away 4 pencils. Anna buys 7 more pencils. "
    "How many pencils does Anna have now?\nAnswer:\nAnna gives away 4 pencils: 9 - 4 = 5\n"
    "Anna buys 7 more pencils: 5 + 7 = 12\nThe answer is 12.\n\n"
    "Question: Ben has 6 marbles. Ben buys 2 more marbles. Ben buys 5 more marbles. "
    "How many marbles does Ben have now?\nAnswer:\nBen buys 2 more marbles: 6 + 2 = 8\n"
    "Ben buys 5 more marbles: 8 + 5 = 13\nThe answer is 13.\n\n"
    "Question: Mia has 10 cards. Mia gives away 3 cards. Mia gives away 5 cards. "
    "How many cards does Mia have now?\nAnswer:\nMia gives away 3 cards: 10 - 3 = 7\n"
    "Mia gives away 5 cards: 7 - 5 = 2\nThe answer is 2.\n\n"
)


def render_prefix(prompt: str, steps: Sequence[str], few_shot: str | None = None) -> str:
    """The text a rollout continues: worked examples, the question, and the steps so far."""
    text = f"{FEW_SHOT if few_shot is None else few_shot}Question: {prompt}\nAnswer:\n"
    return text + "".join(s + "\n" for s in steps)


@dataclass
class LabelReport:
    """What a labelling run spent and saw; bad model output is counted here, never raised."""

    solutions: int = 0
    rollouts: int = 0
    successes: int = 0
    unparseable: int = 0
    reasons: Counter = field(default_factory=Counter)

    def to_json(self) -> dict:
        return {"solutions": self.solutions, "rollouts": self.rollouts, "successes": self.successes,
                "unparseable": self.unparseable, "success_rate": self.successes / max(self.rollouts, 1)}


def mc_label(examples: Sequence[StepwiseExample], completer: Completer, rollouts: int = 8,
             base_seed: int = 0, answer_key: str = "answer") -> tuple[list[StepwiseExample], LabelReport]:
    """Label every step of every example with soft MC labels (``meta['hard_labels']`` keeps hard ones).

    ``labels`` holds the soft label (fraction of successful rollouts, a float in [0, 1]); the hard
    labels (any rollout succeeded) go to ``meta['hard_labels']``. Gold answers are read from
    ``meta[answer_key]``.
    """
    if rollouts < 1:
        raise DataError(f"--rollouts must be at least 1, got {rollouts}")
    report = LabelReport(solutions=len(examples))
    # Unique (problem, prefix) pairs -> (problem id, gold answer): shared prefixes are rolled out once.
    keys: dict[tuple[str, tuple[str, ...]], tuple[str, str]] = {}
    for n, ex in enumerate(examples):
        if answer_key not in ex.meta:
            raise DataError(f"example {n} has no meta['{answer_key}'] (the gold answer) to check rollouts against")
        pid = str(ex.meta.get("problem_id", ex.meta.get("id", n)))
        for i in range(len(ex.steps) - 1):
            keys.setdefault((ex.prompt, tuple(ex.steps[: i + 1])), (pid, str(ex.meta[answer_key])))
    requests = [
        RolloutRequest(render_prefix(prompt, steps),
                       tuple(rollout_seed(f"{pid}|{hash_steps(steps)}", len(steps) - 1, s, base_seed)
                             for s in range(rollouts)))
        for (prompt, steps), (pid, _) in keys.items()
    ]
    outputs = completer.complete(requests) if requests else []
    soft_by_key: dict[tuple[str, tuple[str, ...]], float] = {}
    for (key, (_, gold)), texts in zip(keys.items(), outputs, strict=True):
        ok = 0
        for text in texts:
            verdict = answers_match(extract_answer(text), gold)
            report.rollouts += 1
            if verdict.reason.startswith("unparseable"):
                report.unparseable += 1
            ok += verdict.correct
        report.successes += ok
        soft_by_key[key] = ok / max(len(texts), 1)
    labelled = []
    for ex in examples:
        soft = [soft_by_key[(ex.prompt, tuple(ex.steps[: i + 1]))] for i in range(len(ex.steps) - 1)]
        final_ok = answers_match(extract_answer(ex.steps[-1]), str(ex.meta[answer_key])).correct
        soft.append(1.0 if final_ok else 0.0)
        meta = dict(ex.meta, hard_labels=[s > 0 for s in soft], rollouts_per_step=rollouts)
        labelled.append(StepwiseExample(ex.prompt, list(ex.steps), soft, meta))
    return labelled, report


def hash_steps(steps: Sequence[str]) -> str:
    import hashlib

    return hashlib.blake2b("\x1f".join(steps).encode(), digest_size=6).hexdigest()


def first_error(labels: Sequence[float | bool | None]) -> int:
    """Index of the first step labelled wrong (0 / False / 0.0), or -1 if none."""
    for i, lab in enumerate(labels):
        if lab is not None and not lab:
            return i
    return -1
