"""Shared-prefix attention and the pre-allocated KV cache give the same numbers as plain attention."""

import torch

from data_tools.labelling import render_prefix
from data_tools.problems import generate_dataset
from data_tools.rollouts import RolloutRequest


def _load(folder, attn):
    from transformers import AutoModelForCausalLM

    from prm.generation.shared_prefix import register

    register()
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation=attn).eval()


def test_cascade_prefill_and_decode_match_a_full_forward(tiny_backbone):
    from transformers import AutoTokenizer

    from prm.generation.kv_cache import preallocate
    from prm.generation.shared_prefix import ATTN_IMPLEMENTATION, shared_prefix

    tok = AutoTokenizer.from_pretrained(tiny_backbone)
    fast, plain = _load(tiny_backbone, ATTN_IMPLEMENTATION), _load(tiny_backbone, "sdpa")
    common = tok("Question: Tom has 5 apples. Tom buys 3 more apples.", add_special_tokens=False)["input_ids"]
    own = [tok(s, add_special_tokens=False)["input_ids"] for s in (" How many?", " Anna gives away 2 pencils: 9")]
    nxt = torch.tensor([[7], [9]])
    with torch.inference_mode():
        shared = fast(input_ids=torch.tensor([common]), use_cache=True).past_key_values
        enc = tok.pad({"input_ids": own}, return_tensors="pt", padding_side="left")
        mask = enc["attention_mask"]
        pos = len(common) + (mask.cumsum(-1) - 1).clamp(min=0)
        with shared_prefix(fast, [(layer.keys, layer.values) for layer in shared.layers]):
            out = fast(input_ids=enc["input_ids"], attention_mask=mask, position_ids=pos, use_cache=True)
            cache = preallocate(out.past_key_values, headroom=4)
            mask2 = torch.cat([mask, torch.ones(2, 1, dtype=mask.dtype)], dim=1)
            step = fast(input_ids=nxt, attention_mask=mask2, position_ids=pos[:, -1:] + 1, cache=cache,
                        use_cache=True)
        for row, ids in enumerate(own):
            full = plain(input_ids=torch.tensor([common + ids + nxt[row].tolist()])).logits[0]
            torch.testing.assert_close(out.logits[row, -1], full[-2], atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(step.logits[row, -1], full[-1], atol=1e-4, rtol=1e-4)


def test_shared_prefix_rollouts_equal_repeated_cache_rollouts(tiny_completer):
    """The fast path draws exactly the rollouts of the plain one (fp32: same seeds, same tokens)."""
    ex = generate_dataset(3, seed=2)
    requests = [RolloutRequest(render_prefix(e.prompt, e.steps[:k]), (k, 100 + k, 200 + k))
                for e in ex[:3] for k in (0, 1)]
    assert tiny_completer.shared_prefix_attention
    fast = tiny_completer.complete(requests)
    tiny_completer.model.set_attn_implementation("sdpa")
    tiny_completer.shared_prefix_attention = False
    try:
        plain = tiny_completer.complete(requests)
    finally:
        from prm.generation.shared_prefix import ATTN_IMPLEMENTATION

        tiny_completer.model.set_attn_implementation(ATTN_IMPLEMENTATION)
        tiny_completer.shared_prefix_attention = True
    assert fast == plain
    assert sum(len(t) for group in fast for t in group) > 0
