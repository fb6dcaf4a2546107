"""``token-classification``: any stock ``AutoModelForTokenClassification`` PRM read at a separator token.

The input is ``--prompt-template`` ({prompt} replaced), then each step followed by ``--separator``, the
steps joined by ``--joiner``; the whole text is tokenized once and the logits are read at each
separator's token (vLLM's STEP pooling with ``step_tag_id`` reads the same places). The separator
must be one token of the tokenizer. One label: its logit is the step logit (sigmoid); two labels:
softmax's share of ``--right-class`` = sigmoid(l_right - l_other), so weight and bias are the
difference of the two rows.
"""

from __future__ import annotations

from pathlib import Path

from prm.families.common import Conversion, ImportConfig, read_tensors, token_id


def head_name(src: Path) -> str:
    """The classification layer's name in the checkpoint (``score``, ``classifier``, ...), from the stock class."""
    import torch
    from transformers import AutoConfig, AutoModelForTokenClassification

    config = AutoConfig.from_pretrained(src, trust_remote_code=False)
    try:
        with torch.device("meta"):
            model = AutoModelForTokenClassification.from_config(config)
    except (ValueError, KeyError):
        raise ValueError(f"{src}: transformers has no token-classification class for model type "
                         f"{config.model_type!r}") from None
    heads = [name for name, child in model.named_children()
             if name != model.base_model_prefix and isinstance(child, torch.nn.Linear)]
    if len(heads) != 1:
        raise ValueError(f"{src}: {type(model).__name__} has no single linear classification layer ({heads})")
    return heads[0]


def convert(src: Path, tok, cfg: ImportConfig) -> Conversion:
    if not cfg.separator:
        raise ValueError("token-classification needs --separator TEXT: the token after each step whose logits are read")
    sep = token_id(tok, cfg.separator, "the separator")
    name = head_name(src)
    where = read_tensors(src, [f"{name}.weight"])
    w = where[f"{name}.weight"]
    try:
        b = read_tensors(src, [f"{name}.bias"])[f"{name}.bias"]
    except ValueError:
        b = w.new_zeros(w.shape[0])  # a classifier without bias
    labels = w.shape[0]
    if labels == 1:
        state = {"weight": w, "bias": b.reshape(1)}
    elif labels == 2:
        if cfg.right_class not in (0, 1):
            raise ValueError(f"--right-class must be 0 or 1 for a two-label model, got {cfg.right_class}")
        r = cfg.right_class
        state = {"weight": (w[r] - w[1 - r]).unsqueeze(0), "bias": (b[r] - b[1 - r]).reshape(1)}
    else:
        raise ValueError(f"{src} has {labels} labels: prm import reads one step logit (one label) or a right/wrong "
                         "pair (two labels, --right-class)")
    rendering = {"family": "token-classification", "layout": "text", "prompt_template": cfg.prompt_template,
                 "separator": cfg.separator, "joiner": cfg.joiner, "add_special_tokens": True, "check_id": True}
    return Conversion("linear", state, rendering, tok.convert_ids_to_tokens(sep), sep,
                      notes={"head": f"{name}" + (f": class {cfg.right_class} minus the other" if labels == 2 else "")})
