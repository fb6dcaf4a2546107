"""The model as training wants it: a fresh PRM on the backbone, layers kept and frozen, LoRA, checkpointing."""

from __future__ import annotations

from prm.train.config import TrainConfig

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def build_scorer(cfg: TrainConfig):
    """(scorer, tokenizer, prm config): the backbone with the separator added, layers kept, frozen,
    LoRA-wrapped and checkpointed as ``cfg`` says."""
    from prm.backbone import new_scorer

    scorer, tok, prm_cfg = new_scorer(cfg.backbone, cfg.step_token, cfg.max_length, num_layers=cfg.num_layers)
    prm_cfg.label_type = cfg.label_type
    prm_cfg.monotone = cfg.monotone
    prm_cfg.step_checks = cfg.step_checks
    scorer.backbone.config._attn_implementation = attention_kernel(cfg, scorer.backbone.config._attn_implementation)
    if cfg.lora_r:
        add_lora(scorer, cfg, prm_cfg.step_token_id)
    elif cfg.freeze_layers:
        freeze_bottom(scorer.backbone, cfg.freeze_layers)
    if cfg.gradient_checkpointing:
        # Non-reentrant: works with frozen embeddings (no input that requires grad) and with LoRA.
        kwargs = {"use_reentrant": False}
        if hasattr(scorer.backbone, "activation_checkpointing_enable"):
            scorer.backbone.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:  # the older name
            scorer.backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        scorer.backbone.config.use_cache = False
    return scorer, tok, prm_cfg


def attention_kernel(cfg: TrainConfig, default: str) -> str:
    """The attention implementation to train with (see ``TrainConfig.attention``)."""
    import torch

    if cfg.attention not in ("auto", "eager", "sdpa"):  # also when called without TrainConfig.check
        raise ValueError(f"--attention must be auto, eager or sdpa, got {cfg.attention!r}")
    if cfg.attention != "auto":
        return cfg.attention
    return "eager" if cfg.bf16 and not torch.cuda.is_available() else default


def add_lora(scorer, cfg: TrainConfig, sep_id: int) -> None:
    """Wrap the backbone in peft LoRA adapters on the layers above ``freeze_layers``; the separator's
    embedding row trains too (peft's trainable tokens), since it is a new token."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise RuntimeError("--lora-r needs the 'peft' package: pip install peft (or train without --lora-r)") from None

    n_layers = len(scorer.backbone.layers)
    # A regex over module names ("layers.3.self_attn.q_proj"): peft's layers_to_transform expects a
    # prefix before "layers", which a base model loaded with AutoModel does not have.
    layers = "|".join(str(i) for i in range(cfg.freeze_layers, n_layers))
    targets = rf"(.*\.)?layers\.({layers})\..*\.({'|'.join(LORA_TARGETS)})"
    config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                        target_modules=targets, trainable_token_indices={"embed_tokens": [sep_id]})
    scorer.backbone = get_peft_model(scorer.backbone, config)


def merged_backbone(backbone):
    """The plain backbone with LoRA adapters folded into its weights (itself when there are none)."""
    from prm.model import unwrap_peft

    return unwrap_peft(backbone)


def freeze_bottom(backbone, n_layers: int) -> None:
    """No gradients for the input embeddings and the first ``n_layers`` layers."""
    backbone.get_input_embeddings().weight.requires_grad_(False)
    for layer in backbone.layers[:n_layers]:
        layer.requires_grad_(False)
