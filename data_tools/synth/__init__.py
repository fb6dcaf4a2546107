"""Synthetic data: generated problems (``problems``) and error injection into worked solutions
(``calculations`` reads a solution's arithmetic, ``variants`` corrupts one calculation and carries the
change, ``inject`` is ``prm inject-errors`` over a file). Import from the modules."""
