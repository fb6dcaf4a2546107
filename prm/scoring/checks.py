"""Applying the step checks to step scores: a step that is verifiably wrong by its own numbers scores low.

``data_tools.checks.check_steps`` finds the steps whose arithmetic is false, whose numbers come from
nowhere, or whose equation in x the solution's own answer breaks. A PRM of 135M parameters cannot
multiply; a check can, for certain. The ``Scorer`` applies this after calibration when the artifact's
``step_checks`` is on (or ``Scorer(checks=True)``), the same for every backend: the score of a flagged
step becomes at most ``CEILING``, and with a ``monotone`` artifact every later step's too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from data_tools.checks import check_steps

CEILING = 0.01
"""The most a flagged step scores: below any threshold a calibrated PRM is used at."""


def apply_checks(scores, prompt: str, steps: Sequence[str], monotone: bool = False) -> np.ndarray:
    """``scores`` (one per step) with every step ``check_steps`` flags capped at ``CEILING``."""
    out = np.array(scores, dtype=np.float64)
    flagged = [i for i, why in enumerate(check_steps(prompt, steps)) if why]
    if flagged:
        out[flagged] = np.minimum(out[flagged], CEILING)
        if monotone:
            out = np.minimum.accumulate(out)
    return out
