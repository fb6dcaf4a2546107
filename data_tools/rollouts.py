"""Moved: the protocol lives in ``data_tools.completers.protocol``, ``HFCompleter`` in ``prm.generation``."""

from data_tools.completers import *  # noqa: F403
from data_tools.completers import __all__  # noqa: F401
