"""Moved: the code lives in ``data_tools.completers.vllm``; this path keeps old imports working."""

from data_tools.completers.vllm import VLLMCompleter, VLLMConfig, vllm_inputs  # noqa: F401
