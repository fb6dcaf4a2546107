"""Moved: the protocol lives in ``data_tools.completers.protocol``, ``HFCompleter`` in ``prm.generation``."""

from data_tools.completers.protocol import (  # noqa: F401
    STOP,
    Completer,
    RolloutRequest,
    Sampling,
    rollout_seed,
    truncate_at_stop,
)
