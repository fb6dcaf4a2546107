"""Rollouts from vLLM's offline engine, in-process on a GPU machine; vLLM is imported only when used.

Each rollout becomes one vLLM request (``n=1`` with that rollout's seed), so a rollout is the same
whatever else is in the batch, as with the other backends; vLLM batches and caches shared prefixes
(the few-shot examples) itself. ``vllm_inputs`` is the whole mapping from rollout requests to vLLM's
prompts and sampling parameters, kept free of vLLM so it can be checked anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from data_tools.completers.protocol import RolloutRequest, Sampling, truncate_at_stop
from data_tools.flags import opt, problems


@dataclass
class VLLMConfig:
    """The vLLM engine (``prm label --completer vllm`` flags, prefixed ``--vllm-``)."""

    model: str = ""
    """model folder or name for vllm.LLM"""
    dtype: str = "auto"
    """weights' dtype: auto, bfloat16, float16, float32"""
    tensor_parallel_size: int = opt(1, min=1)
    """GPUs to shard the model over"""
    gpu_memory_utilization: float = opt(0.9, above=0, max=1)
    """share of GPU memory vLLM may take (weights and KV cache)"""

    def problems(self) -> list[str]:
        out = problems(self, prefix="vllm-")
        if not self.model:
            out.insert(0, "--vllm-model is required with --completer vllm (a model folder or name)")
        return out


def vllm_inputs(requests: Sequence[RolloutRequest], sampling: Sampling) -> list[tuple[str, dict[str, Any]]]:
    """One (prompt, ``SamplingParams`` keyword arguments) per rollout, requests' samples in order."""
    return [(r.prefix, {"n": 1, "seed": seed, "temperature": sampling.temperature,
                        "top_k": sampling.top_k or -1,  # -1: the whole vocabulary, in every vLLM version
                        "max_tokens": sampling.max_new_tokens, "stop": list(sampling.stop)})
            for r in requests for seed in r.seeds]


class VLLMCompleter:
    def __init__(self, config: VLLMConfig, sampling: Sampling | None = None):
        try:
            import vllm
        except ImportError as exc:
            raise ImportError("--completer vllm needs vLLM, which is not installed here: pip install vllm "
                              "(on a machine with a supported GPU)") from exc
        self.config, self.sampling, self._vllm = config, sampling or Sampling(), vllm
        self.llm = vllm.LLM(model=config.model, dtype=config.dtype, tensor_parallel_size=config.tensor_parallel_size,
                            gpu_memory_utilization=config.gpu_memory_utilization)

    def complete(self, requests: Sequence[RolloutRequest]) -> list[list[str]]:
        items = vllm_inputs(requests, self.sampling)
        params = [self._vllm.SamplingParams(**kwargs) for _, kwargs in items]
        outputs = self.llm.generate([prompt for prompt, _ in items], params, use_tqdm=False)
        texts = iter(truncate_at_stop(o.outputs[0].text, self.sampling.stop)[0] for o in outputs)
        return [[next(texts) for _ in r.seeds] for r in requests]
