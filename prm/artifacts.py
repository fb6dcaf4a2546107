"""The on-disk PRM artifact: one folder every later stage reads without guessing.

    config.json, model.safetensors   backbone (``save_pretrained``, safetensors)
    step_head.safetensors            the step head
    tokenizer files                  with the step separator as an added special token
    prm_config.json                  separator and its id, max length, aggregation, label type
    calibration.json                 when calibrated
    onnx/model.onnx                  when exported
    training.json                    how it was trained (settings, loss history, tokens seen)
    manifest.json                    versions and sha256 of every file

Loading never unpickles (safetensors and JSON only) and never passes ``trust_remote_code``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from prm.config import PRMConfig

HEAD_FILE = "step_head.safetensors"
TRAINING_FILE = "training.json"


def load_tokenizer(folder: str | Path, step_token: str | None = None):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    if step_token is not None and step_token not in tok.get_vocab():
        tok.add_special_tokens({"additional_special_tokens": [step_token]})
    return tok


def new_scorer(backbone: str, step_token: str, max_length: int, dtype=None, num_layers: int = 0):
    """A fresh PRM from a backbone folder or name: the separator token is added and embedded.

    ``num_layers`` > 0 keeps only the first that many transformer layers: a small backbone's middle
    layers carry more of what a step head needs than its last ones, which specialise in predicting
    the next token (measured with linear probes on SmolLM2-135M), and every later stage gets faster.
    """
    import torch
    from transformers import AutoModel

    from prm.backbone import resolve_backbone
    from prm.model import StepScorer

    path = resolve_backbone(backbone)
    tok = load_tokenizer(path, step_token)
    model = AutoModel.from_pretrained(path, dtype=dtype or torch.float32, trust_remote_code=False)
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


def save_artifact(scorer, tokenizer, cfg: PRMConfig, folder: str | Path, training: dict | None = None) -> Path:
    """Write the artifact folder; ``training`` (what the run was) goes to ``training.json``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    scorer.backbone.save_pretrained(folder, safe_serialization=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in scorer.head.state_dict().items()}, folder / HEAD_FILE)
    tokenizer.save_pretrained(folder)
    cfg.save(folder)
    if training is not None:
        (folder / TRAINING_FILE).write_text(json.dumps(training, indent=1) + "\n")
    write_manifest(folder)
    return folder


def load_scorer(folder: str | Path, dtype=None):
    """(scorer, tokenizer, config) from an artifact folder; checks the separator id."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModel

    from prm.model import StepScorer

    folder = Path(folder)
    cfg = PRMConfig.load(folder)
    tok = load_tokenizer(folder)
    check_step_token(tok, cfg)
    backbone = AutoModel.from_pretrained(folder, dtype=dtype or torch.float32, trust_remote_code=False)
    scorer = StepScorer(backbone)
    scorer.head.load_state_dict(load_file(folder / HEAD_FILE))
    return scorer.eval(), tok, cfg


def check_step_token(tok, cfg: PRMConfig) -> None:
    """The separator is one dedicated id that this tokenizer knows, and that no text turns into."""
    got = tok.convert_tokens_to_ids(cfg.step_token)
    if got != cfg.step_token_id:
        raise ValueError(f"tokenizer maps step token {cfg.step_token!r} to id {got}, but prm_config.json "
                         f"says {cfg.step_token_id}: the tokenizer files do not belong to this model")
    spelled = tok(cfg.step_token, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    if cfg.step_token_id in spelled:
        raise ValueError(f"the text {cfg.step_token!r} tokenizes to the separator id {cfg.step_token_id}: "
                         "a step could fake a step boundary; the separator must be an added special token")


def write_manifest(folder: str | Path) -> dict:
    import platform

    import torch
    import transformers

    folder = Path(folder)
    files = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        # checkpoints/ holds training state for --resume, not the model
        if path.is_file() and path.name != "manifest.json" and rel.parts[0] != "checkpoints":
            files[str(rel)] = _sha256(path)
    manifest = {"format": "prm-toolkit-artifact/1", "python": platform.python_version(),
                "torch": torch.__version__, "transformers": transformers.__version__, "files": files}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
