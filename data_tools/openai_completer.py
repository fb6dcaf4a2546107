"""Moved: the code lives in ``data_tools.completers.openai``; this path keeps old imports working."""

from data_tools.completers.openai import (  # noqa: F401
    FATAL_STATUS,
    MAX_BACKOFF_S,
    RETRY_STATUS,
    HTTPStats,
    OpenAICompleter,
    OpenAIConfig,
    ServerSettingsError,
)
