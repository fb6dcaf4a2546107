"""Writing our labels (bool, soft float, or None) into formats that only know true/false.

TRL stepwise supervision, Math-Shepherd and ProcessBench hold hard labels only. What happens to
the others is decided here, once, and never silently:

- a soft label (a float strictly between 0 and 1) needs ``soft_threshold``: it becomes true when it
  is greater than the threshold (0 gives Math-Shepherd's "hard estimate": some rollout reached the
  gold answer); without one, the row is an error that names ``--soft-threshold``. 0.0 and 1.0 are
  simply false and true;
- unlabelled steps (None) follow ``unlabelled``: ``truncate`` (default) keeps the steps up to the
  last labelled one and hands back the unlabelled tail, which TRL and Math-Shepherd writers keep
  in an ``unlabelled_completions`` field, so nothing is lost and readers re-attach it;
  ``false`` marks them wrong; ``error`` refuses the row. An unlabelled step *before* a labelled one
  is an error unless ``unlabelled`` is ``false``.
"""

from __future__ import annotations

from collections.abc import Sequence

from data_tools.schema import DataError, Label

UNLABELLED_POLICIES = ("truncate", "false", "error")
TAIL_FIELD = "unlabelled_completions"


def hard_label(label: Label, index: int, soft_threshold: float | None) -> bool | None:
    if label is None or isinstance(label, bool):
        return label
    value = float(label)
    if value in (0.0, 1.0):
        return value == 1.0
    if soft_threshold is None:
        raise DataError(f"label {index} is {value:g}, a soft label, and this format holds true/false only: "
                        "pass --soft-threshold T (true when the label is greater than T)")
    return value > soft_threshold


def hard_labels(steps: Sequence[str], labels: Sequence[Label] | None, soft_threshold: float | None = None,
                unlabelled: str = "truncate") -> tuple[list[str], list[bool], list[str]]:
    """(steps kept, their true/false labels, the unlabelled tail that was cut off)."""
    if unlabelled not in UNLABELLED_POLICIES:
        raise ValueError(f"--unlabelled must be one of {', '.join(UNLABELLED_POLICIES)}, got {unlabelled!r}")
    hard = [hard_label(lab, i, soft_threshold) for i, lab in enumerate(labels or [None] * len(steps))]
    if unlabelled == "false":
        return list(steps), [bool(h) for h in hard], []
    labelled = [i for i, h in enumerate(hard) if h is not None]
    if not labelled:
        raise DataError("no step is labelled and this format needs labels: label the data first, "
                        "pass --unlabelled false to mark unlabelled steps wrong, or write --to stepwise")
    last = labelled[-1]
    gaps = [i for i in range(last) if hard[i] is None]
    if gaps:
        raise DataError(f"step {gaps[0]} is unlabelled but a later step is labelled: pass --unlabelled false "
                        "to mark unlabelled steps wrong, or write --to stepwise, which keeps them")
    if last < len(steps) - 1 and unlabelled == "error":
        raise DataError(f"steps {last + 1} to {len(steps) - 1} are unlabelled (--unlabelled error)")
    return list(steps[: last + 1]), [bool(h) for h in hard[: last + 1]], list(steps[last + 1:])


def first_wrong(labels: Sequence[Label] | None, soft_threshold: float | None = None) -> int:
    """The ProcessBench ``label``: index of the first wrong step, or -1 when every step is right.

    Every step before the first wrong one must be labelled right; what follows it does not matter.
    """
    hard = [hard_label(lab, i, soft_threshold) for i, lab in enumerate(labels or [])]
    for i, h in enumerate(hard):
        if h is None:
            raise DataError(f"step {i} is unlabelled before any wrong step, so the first wrong step is "
                            "unknown; ProcessBench needs it")
        if not h:
            return i
    if not hard:
        raise DataError("no step is labelled; ProcessBench needs the index of the first wrong step")
    return -1
