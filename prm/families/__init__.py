"""``prm import``: a public PRM's Hugging Face folder as this toolkit's artifact.

``FAMILIES`` maps a family name to its module's ``convert(src, tokenizer, ImportConfig) -> Conversion``;
``import_prm`` loads the source's backbone through a stock ``transformers`` class, puts the family's
head (folded into one step logit) on it, scores a probe solution in memory with the family's rendering,
and writes the artifact (``prm.artifacts.Artifact``). Every later stage (calibrate, export, eval, serve,
the scoring backends) then reads it like a trained one: ``prm_config.json``'s ``head`` and ``rendering``
say what differs. The exact rendering and score rule of each family is in its module's docstring and in
the README ("Serving the PRMs people already use").
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from types import ModuleType

from prm.families import math_shepherd, qwen_prm, rlhflow, skywork, token_classification
from prm.families.common import PROBE, ImportConfig, load_backbone, max_length, source_dir, unescaped

FAMILIES: dict[str, ModuleType] = {
    "qwen-prm": qwen_prm,
    "math-shepherd": math_shepherd,
    "rlhflow": rlhflow,
    "skywork-prm": skywork,
    "token-classification": token_classification,
}
ONLY_TOKEN_CLASSIFICATION = ("separator", "prompt_template", "joiner", "right_class")


def import_prm(family: str, source: str | Path, out: str | Path, cfg: ImportConfig | None = None) -> dict:
    """Write the artifact for the ``family`` PRM in folder ``source`` to ``out``; returns what was done."""
    import torch

    from prm.artifacts import Artifact
    from prm.config import PRMConfig
    from prm.model import StepScorer
    from prm.pretrained import PRM
    from prm.scoring import Scorer
    from prm.tokenization import load_tokenizer

    cfg = dataclasses.replace(cfg or ImportConfig())
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}: one of {', '.join(FAMILIES)}")
    if family != "token-classification":
        given = [f"--{k.replace('_', '-')}" for k in ONLY_TOKEN_CLASSIFICATION
                 if unescaped(str(getattr(cfg, k))) != unescaped(str(ImportConfig.__dataclass_fields__[k].default))]
        if given:
            raise ValueError(f"{', '.join(given)} set the rendering of the token-classification family; {family} renders "
                             "its input its own way")
    for name in ("separator", "prompt_template", "joiner"):  # \n as typed on a command line, or a newline
        setattr(cfg, name, unescaped(getattr(cfg, name)))
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} exists and is not empty: give a new folder for the artifact")
    src = source_dir(source)
    tok = load_tokenizer(src)
    if not getattr(tok, "is_fast", False):
        raise ValueError(f"{src}'s tokenizer has no fast (tokenizers) version, which prm import needs to locate steps")
    conv = FAMILIES[family].convert(src, tok, cfg)
    backbone = load_backbone(src)
    scorer = StepScorer(backbone, conv.head)
    scorer.head.load_state_dict({k: v.float() for k, v in conv.head_state.items()})
    prm_cfg = PRMConfig(step_token=conv.step_token, step_token_id=int(conv.step_token_id),
                        max_length=max_length(backbone, cfg.max_length), aggregation=conv.aggregation,
                        label_type=conv.label_type, backbone=f"{src} (imported as {family})", head=conv.head,
                        rendering=conv.rendering)
    PRMConfig.from_json(prm_cfg.to_json())  # the recipe reads back
    with torch.inference_mode():
        probe = Scorer(PRM(scorer.eval(), tok, prm_cfg), backend="torch").score([PROBE])[0]
    if len(probe) != len(PROBE[1]) or not all(math.isfinite(p) for p in probe):
        raise ValueError(f"the imported model scored the probe solution {probe}: the import is broken")
    record = {"imported": {"family": family, "source": str(src.resolve()), "head": conv.head,
                           "rendering": conv.rendering, **conv.notes}}
    Artifact.save(out, scorer, tok, prm_cfg, training=record)
    return {"family": family, "source": str(src), "out": str(out), "head": conv.head,
            "max_length": prm_cfg.max_length, "aggregation": prm_cfg.aggregation, "probe_step_scores": probe}


__all__ = ["FAMILIES", "ImportConfig", "import_prm"]
