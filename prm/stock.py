"""The artifact's weights as a stock ``transformers`` token-classification checkpoint.

A PRM whose step head is one ``nn.Linear(hidden, 1)`` read at the separator (``StepScorer``) is, to
``transformers``, a token-classification model with one label: ``<Arch>ForTokenClassification`` is
the same backbone with a ``Linear(hidden, num_labels)`` (``score`` or ``classifier``) on every
position, and dropout that is off in eval mode. So the artifact's ``config.json`` and
``model.safetensors`` are written as that model (``num_labels=1``, backbone weights under the
class's base-model prefix, the head beside them), and

    AutoModelForTokenClassification.from_pretrained(folder).logits[..., 0]

at the separator positions are the raw step logits, with no ``trust_remote_code`` and no prm-toolkit.
``step_head.safetensors`` keeps its own copy of the head (what prm-toolkit loads; both written from
the same tensors, checked equal at load).

Not promised: a stock view of any other head (a wider or deeper head, or an architecture that has no
token-classification class in ``transformers``): those folders keep the plain backbone
(``save_pretrained`` of ``AutoModel``) and load only through prm-toolkit. Monotone scores,
calibration and step checks are prm-toolkit's; the stock view gives raw logits only.
"""

from __future__ import annotations

import copy
from pathlib import Path

LABEL = "step"


def stock_head(scorer):
    """The scorer's head when the stock view can express it (a plain ``StepScorer`` whose head is one
    ``Linear(hidden, 1)``); None otherwise."""
    from torch import nn

    from prm.model import StepScorer

    head = getattr(scorer, "head", None)
    hidden = getattr(scorer.backbone.config, "hidden_size", None)
    if type(scorer).step_logits is not StepScorer.step_logits or not isinstance(head, nn.Linear):
        return None
    return head if head.out_features == 1 and head.in_features == hidden else None


def token_classification_model(scorer):
    """The scorer as ``<Arch>ForTokenClassification`` sharing its backbone and head tensors, or None when
    the head or the architecture has no such form. Built on the meta device, so nothing is copied."""
    import torch
    from transformers import AutoModelForTokenClassification

    head = stock_head(scorer)
    if head is None:
        return None
    cfg = copy.deepcopy(scorer.backbone.config)
    cfg.num_labels, cfg.id2label, cfg.label2id = 1, {0: LABEL}, {LABEL: 0}
    try:
        with torch.device("meta"):
            model = AutoModelForTokenClassification.from_config(cfg)
    except (ValueError, KeyError):  # no token-classification class for this model type
        return None
    heads = [name for name, child in model.named_children()
             if name != model.base_model_prefix and isinstance(child, torch.nn.Linear)]
    base = getattr(model, model.base_model_prefix, None)
    if len(heads) != 1 or type(base) is not type(scorer.backbone):
        return None
    setattr(model, model.base_model_prefix, scorer.backbone)
    setattr(model, heads[0], head)
    return model.eval()


def save_backbone(scorer, folder: str | Path) -> bool:
    """Write ``config.json`` and the weights: as a token-classification checkpoint when the head allows
    (returns True), else the plain backbone (False)."""
    model = token_classification_model(scorer)
    if model is None:
        scorer.backbone.save_pretrained(folder, safe_serialization=True)
        return False
    model.save_pretrained(folder, safe_serialization=True)
    return True


def is_stock(folder: str | Path) -> bool:
    """Whether the folder's ``config.json`` names a token-classification architecture."""
    import json

    path = Path(folder) / "config.json"
    if not path.is_file():
        return False
    archs = json.loads(path.read_text()).get("architectures") or []
    return any(a.endswith("ForTokenClassification") for a in archs)


def load_backbone(folder: str | Path, dtype=None):
    """(backbone, stock head or None): the base model of the folder, read through the token-classification
    class when the folder is one (so no weight is reported unexpected), else through ``AutoModel``."""
    import torch
    from transformers import AutoModel, AutoModelForTokenClassification

    dtype = dtype or torch.float32
    if not is_stock(folder):
        return AutoModel.from_pretrained(folder, dtype=dtype, trust_remote_code=False), None
    model = AutoModelForTokenClassification.from_pretrained(folder, dtype=dtype, trust_remote_code=False)
    heads = [child for name, child in model.named_children()
             if name != model.base_model_prefix and isinstance(child, torch.nn.Linear)]
    return model.base_model, (heads[0] if len(heads) == 1 else None)
