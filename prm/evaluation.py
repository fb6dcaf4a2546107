"""Kept for old imports: the metrics live in ``prm.eval.metrics``."""

from prm.eval.metrics import auroc  # noqa: F401
