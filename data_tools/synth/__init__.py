"""Synthetic data: generated problems (``problems``) and error injection into worked solutions
(``calculations`` reads a solution's arithmetic, ``variants`` corrupts one calculation and carries the
change, ``real_errors`` adds error kinds that imitate real model errors, with ``cues`` reading the
problem's wording and ``rewrite`` rewriting a calculation and carrying its new value; ``inject`` is
``prm inject-errors`` over a file). Import from the modules."""
