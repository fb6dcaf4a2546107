"""Consensus labels: where two label sources cover the same solution, keep the steps they agree on.

The Qwen PRM lessons found that filtering Monte-Carlo labels by agreement with a second judge kept
about 40% of the data and matched the judge's quality. Here the two sources are any two labelled
files of the same solutions (Monte-Carlo and reference-guided labels, two completers, injected
errors and the reference labeller): solutions are matched by ``meta.id`` (else by prompt and
steps), each side's hard labels come from the schema's one rule (``StepwiseExample.hard_labels``),
and a step keeps its label where both say the same and becomes unlabelled (None) where they differ,
so training skips it. ``first_error_only`` keeps instead only the solutions whose first wrong step
both agree on, whole.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from data_tools.schema import StepwiseExample


@dataclass
class ConsensusReport:
    matched: int = 0
    unmatched: int = 0
    """solutions of the first source with no counterpart in the second (left out)"""
    steps: int = 0
    steps_kept: int = 0
    same_first_error: int = 0
    kept_solutions: int = 0

    def to_json(self) -> dict:
        return {"matched": self.matched, "unmatched": self.unmatched, "steps": self.steps, "steps_kept": self.steps_kept,
                "steps_kept_share": round(self.steps_kept / max(self.steps, 1), 4),
                "first_error_agreement": round(self.same_first_error / max(self.matched, 1), 4),
                "kept_solutions": self.kept_solutions}


def _key(ex: StepwiseExample) -> str:
    return str(ex.meta.get("id")) if ex.meta.get("id") is not None else ex.prompt + "\x1e" + "\x1f".join(ex.steps)


def agree(a: StepwiseExample, b: StepwiseExample) -> StepwiseExample:
    """``a`` with each step's hard label kept where ``b``'s is the same, None where they differ."""
    if len(a.steps) != len(b.steps):
        raise ValueError(f"solution {_key(a)[:60]!r}: {len(a.steps)} steps in one source, {len(b.steps)} in the other")
    labels = [x if x is not None and x == y else None for x, y in zip(a.hard_labels(), b.hard_labels(), strict=True)]
    meta = {k: v for k, v in a.meta.items() if k != "hard_labels"}
    return StepwiseExample(a.prompt, list(a.steps), labels, dict(meta, label_method="consensus"))


def consensus(first: Iterable[StepwiseExample], second: Iterable[StepwiseExample], first_error_only: bool = False,
              report: ConsensusReport | None = None) -> list[StepwiseExample]:
    """The solutions of ``first`` that ``second`` also labels, with the labels both agree on."""
    report = report if report is not None else ConsensusReport()
    others = {_key(b): b for b in second}
    out = []
    for a in first:
        b = others.get(_key(a))
        if b is None or b.labels is None and "hard_labels" not in b.meta:
            report.unmatched += 1
            continue
        report.matched += 1
        both = agree(a, b)
        same = a.first_error() == b.first_error()
        report.same_first_error += same
        report.steps += len(a.steps)
        if first_error_only:
            if same:
                out.append(StepwiseExample(a.prompt, list(a.steps), a.hard_labels(),
                                           dict(both.meta, label_method="consensus")))
                report.steps_kept += len(a.steps)
            continue
        report.steps_kept += sum(lab is not None for lab in both.labels)
        if any(lab is not None for lab in both.labels):
            out.append(both)
    report.kept_solutions = len(out)
    return out
