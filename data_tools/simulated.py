"""Moved: the code lives in ``data_tools.completers.simulated``; this path keeps old imports working."""

from data_tools.completers.simulated import SimulatedCompleter, SimulatedConfig  # noqa: F401
