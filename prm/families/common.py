"""What every family's import shares: the settings, reading the source folder's tensors (safetensors only),
its backbone through a stock ``transformers`` class, and writing the artifact.

A family module (``prm.families.<name>``) only says what is its own: which tensors make its head and how
they fold into one step logit, and how its input is rendered (``prm.rendering``); ``Conversion`` carries
that. Nothing here unpickles (``*.bin`` weights are refused) or runs code shipped with a model
(``trust_remote_code`` is never passed; a folder's ``auto_map`` is dropped from the artifact's config).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from data_tools.flags import opt

MAX_LENGTH_CAP = 4096
PROBE = ("Tom has 3 apples and buys 2 more. How many apples does he have?", ["3 + 2 = 5.", "The answer is 5."])

log = logging.getLogger(__name__)


@dataclass
class ImportConfig:
    max_length: int = opt(0, min=0)
    """Longest input in tokens (the family's whole rendering); 0: the backbone's positions, at most 4096."""
    separator: str = ""
    """token-classification: the text after each step whose token is read, one token of the tokenizer (e.g. an
    added special token, vLLM's step_tag_id); \\n stands for a newline."""
    prompt_template: str = "{prompt}\\n"
    """token-classification: the text before the steps, {prompt} standing for the problem."""
    joiner: str = ""
    """token-classification: the text between a step's separator and the next step."""
    right_class: int = opt(1, min=0)
    """token-classification with two labels: the class that means a correct step (its logit minus the other's)."""


def unescaped(text: str) -> str:
    r"""``\n``, ``\t`` and ``\\`` in a rendering flag, as typed on a command line, as the characters they name."""
    return re.sub(r"\\([nt\\])", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), "\\"), text)


@dataclass
class Conversion:
    """A family's head folded into one logit, and how its input is rendered."""

    head: str
    head_state: dict
    rendering: dict
    step_token: str
    step_token_id: int
    aggregation: str = "min"
    label_type: str = "hard"
    notes: dict = field(default_factory=dict)


def source_dir(source: str | Path) -> Path:
    """The source folder, refused with what to do when it is not a Hugging Face model folder."""
    path = Path(source)
    if not path.is_dir():
        raise ValueError(f"{source} is not a folder: give the model's local Hugging Face folder (download it first, "
                         f"e.g. `hf download ORG/NAME --local-dir DIR --exclude '*.bin'`)")
    if not (path / "config.json").is_file():
        raise ValueError(f"{path} has no config.json: give the folder that holds the model's config.json, "
                         "tokenizer files and *.safetensors")
    return path


def weight_files(src: Path) -> dict[str, Path]:
    """Tensor name -> the safetensors file that holds it (one file, or shards listed in the index)."""
    index = src / "model.safetensors.index.json"
    if index.is_file():
        return {name: src / file for name, file in json.loads(index.read_text())["weight_map"].items()}
    files = sorted(src.glob("*.safetensors"))
    if not files:
        pickled = sorted(p.name for p in src.iterdir() if p.suffix in (".bin", ".pt", ".pth"))
        raise ValueError(f"{src} has no *.safetensors weights" + (f" (only pickled {', '.join(pickled[:3])})" if pickled else "")
                         + ": prm import reads safetensors only and never unpickles; convert the weights once with a "
                         "tool you trust, or download the model's safetensors revision")
    from safetensors import safe_open

    out = {}
    for file in files:
        with safe_open(str(file), "pt") as f:
            out.update({name: file for name in f.keys()})  # noqa: SIM118 (safe_open is not a dict)
    return out


def read_tensors(src: Path, names: list[str], rows: dict[str, list[int]] | None = None) -> dict:
    """The named tensors of the source folder (float64); ``rows``: only these rows of a (large) matrix."""
    import torch
    from safetensors import safe_open

    where = weight_files(src)
    missing = [n for n in names if n not in where]
    if missing:
        some = ", ".join(sorted(where)[:4])
        raise ValueError(f"{src} has no tensor {missing[0]!r} (it holds {some}, ...): is it a model of this family?")
    out = {}
    for name in names:
        with safe_open(str(where[name]), "pt") as f:
            if rows and name in rows:
                sl = f.get_slice(name)
                out[name] = torch.stack([sl[r:r + 1][0] for r in rows[name]]).double()
            else:
                out[name] = f.get_tensor(name).double()
    return out


def lm_head_name(src: Path) -> str:
    """The tensor of a causal LM's output projection (its input embeddings when the model ties them)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(src, trust_remote_code=False)
    archs = getattr(config, "architectures", None) or []
    if not any(a.endswith("ForCausalLM") for a in archs):
        raise ValueError(f"{src}/config.json names {archs or 'no architecture'}, not a causal language model "
                         "(*ForCausalLM), whose '+'/'-' logits this family reads")
    name = "model.embed_tokens.weight" if config.tie_word_embeddings else "lm_head.weight"
    if name not in weight_files(src):
        raise ValueError(f"{src} has no {name}, the output projection of its causal language model")
    return name


def token_id(tok, text: str, what: str) -> int:
    """The id of ``text`` as one token of ``tok`` (ValueError naming ``what`` it is for otherwise)."""
    ids = tok(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(f"the tokenizer turns {what} {text!r} into {len(ids)} tokens {ids}, not one: is this folder a "
                         "model of this family?")
    return int(ids[0])


def load_backbone(src: Path):
    """The source's base model (no LM or classification head) through ``AutoModel``, in its stored dtype."""
    import transformers
    from transformers import AutoModel

    weight_files(src)  # safetensors present, or a clear refusal
    level = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # the family's head tensors are "unused" here, by design
    try:
        model, info = AutoModel.from_pretrained(src, dtype="auto", trust_remote_code=False, use_safetensors=True,
                                                output_loading_info=True)
    finally:
        transformers.logging.set_verbosity(level)
    if info.get("missing_keys"):
        raise ValueError(f"{src}: the {type(model).__name__} backbone misses weights {sorted(info['missing_keys'])[:3]} "
                         "in the folder's safetensors: the folder does not hold a stock model of its config's type")
    if getattr(model.config, "auto_map", None):
        del model.config.auto_map  # the artifact never points at remote code
    return model.eval()


def max_length(backbone, asked: int) -> int:
    positions = getattr(backbone.config, "max_position_embeddings", None)
    if not asked:
        return min(positions or MAX_LENGTH_CAP, MAX_LENGTH_CAP)
    if positions and asked > positions:
        raise ValueError(f"--max-length {asked} is past the backbone's {positions} positions: use at most {positions}")
    return asked
