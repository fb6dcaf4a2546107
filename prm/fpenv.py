"""Kept for existing imports: the floating-point environment helpers live in ``prm.scoring.fpenv``."""

from prm.scoring.fpenv import denormals_flushed, preserved

__all__ = ["denormals_flushed", "preserved"]
