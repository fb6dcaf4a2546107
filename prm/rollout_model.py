"""Build the in-process rollout completer from a backbone name or folder (bf16 on CPU)."""

from __future__ import annotations


def load_completer(backbone: str, max_new_tokens: int = 40, temperature: float = 0.5, bf16: bool = True,
                   top_k: int = 50):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from data_tools.rollouts import HFCompleter
    from data_tools.shared_prefix import register
    from prm.backbone import resolve_backbone

    path = resolve_backbone(backbone)
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    dtype = torch.bfloat16 if bf16 else torch.float32
    # Shared-prefix attention: the few-shot prefix common to all rollouts is attended once, not copied
    # into every sampled row (data_tools/shared_prefix.py has the measurements).
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=False,
                                                 attn_implementation=register()).eval()
    return HFCompleter(model, tok, max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
                       shared_prefix_attention=True)
