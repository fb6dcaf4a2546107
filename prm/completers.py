"""Choosing a completer on the command line: its flags, their checks, and building it.

``prm label`` (rollouts) and ``prm sample`` (whole solutions) share this: ``--completer`` picks hf (a
transformers model in-process, ``prm.generation``), openai (OpenAI-compatible servers), vllm (vLLM
in-process, GPU) or simulated (no model); each backend's own flags carry its prefix, and a flag of a
backend that was not chosen is refused rather than silently ignored. The sampling flags apply to the
model-backed ones.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from data_tools.completers import Sampling
from data_tools.completers.openai import OpenAIConfig
from data_tools.completers.simulated import SimulatedConfig
from data_tools.completers.vllm import VLLMConfig
from data_tools.flags import add_config_flags, config_from

COMPLETERS = ("hf", "openai", "vllm", "simulated")
# Each backend's own flags: (its config class, the flag prefix); flags of the others must stay unset.
BACKEND_FLAGS = {"openai": (OpenAIConfig, "openai-"), "vllm": (VLLMConfig, "vllm-"), "simulated": (SimulatedConfig, "sim-")}


def add_completer_flags(parser: argparse.ArgumentParser, what: str, sampling_defaults: dict | None = None) -> None:
    parser.add_argument("--completer", choices=COMPLETERS, default="hf",
                        help=f"what draws {what}: hf (a transformers model in-process), openai (OpenAI-compatible "
                        "servers), vllm (vLLM in-process, GPU), simulated (no model; for tests and benchmarks)")
    add_config_flags(parser.add_argument_group("sampling (hf, openai, vllm)"), Sampling, defaults=sampling_defaults)
    hf = parser.add_argument_group("hf")
    hf.add_argument("--backbone", default="smollm2-135m", help="model name or folder (default: embedded SmolLM2-135M)")
    hf.add_argument("--fp32", action="store_true", help="run in fp32 instead of bf16 (slower; samples then do not "
                    "depend on batching at all)")
    for name, (cls, prefix) in BACKEND_FLAGS.items():
        add_config_flags(parser.add_argument_group(name), cls, prefix=prefix)


def completer_problems(args: argparse.Namespace) -> list[str]:
    """What is wrong with the completer flags: the chosen backend's checks, and flags of the others."""
    out = [] if args.completer == "simulated" else config_from(args, Sampling).problems()
    for name, (cls, prefix) in BACKEND_FLAGS.items():
        config = config_from(args, cls, prefix)
        if name == args.completer:
            out += config.problems()
            continue
        for f in dataclasses.fields(config):
            if getattr(config, f.name) != f.default:
                out.append(f"--{(prefix + f.name).replace('_', '-')} is for --completer {name}, not {args.completer}")
    return out


def build_completer(args: argparse.Namespace, answer_key: str = "answer") -> tuple[Any, dict[str, Any]]:
    """The completer, and the settings that decide what it draws (compared when a run is resumed)."""
    sampling = config_from(args, Sampling)
    backend = config_from(args, *BACKEND_FLAGS[args.completer]) if args.completer in BACKEND_FLAGS else None
    drawn = dataclasses.asdict(sampling)
    if args.completer == "simulated":
        from data_tools.completers.simulated import SimulatedCompleter

        settings = {k: v for k, v in dataclasses.asdict(backend).items() if k != "latency_s"}
        return SimulatedCompleter(backend, answer_key), {"completer": "simulated", **settings}
    if args.completer == "openai":
        from data_tools.completers.openai import OpenAICompleter

        return OpenAICompleter(backend, sampling), {"completer": "openai", "model": backend.model, "chat": backend.chat,
                                                    "batch_samples": backend.batch_samples, **drawn}
    if args.completer == "vllm":
        from data_tools.completers.vllm import VLLMCompleter

        try:
            completer = VLLMCompleter(backend, sampling)
        except ImportError as exc:
            raise ValueError(str(exc)) from None
        return completer, {"completer": "vllm", "model": backend.model, "dtype": backend.dtype, **drawn}
    from prm.generation import hf_completer

    return hf_completer(args.backbone, sampling, bf16=not args.fp32)
