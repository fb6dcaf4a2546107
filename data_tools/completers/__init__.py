"""Completers: the protocol (``protocol``) and its HTTP (``openai``), ``vllm`` and ``simulated`` backends.

The package re-exports the protocol only; import a backend from its module (each imports its heavy
dependencies, if any, only when used). The torch backend lives in ``prm.generation``.
"""

from data_tools.completers.protocol import (
    STOP,
    Completer,
    RolloutRequest,
    Sampling,
    rollout_seed,
    truncate_at_stop,
)

__all__ = ["STOP", "Completer", "RolloutRequest", "Sampling", "rollout_seed", "truncate_at_stop"]
