"""Moved: the code lives in ``prm.generation``; this path keeps old imports working."""

from prm.generation import load_completer  # noqa: F401
