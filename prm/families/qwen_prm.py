"""``qwen-prm``: Qwen2.5-Math-PRM-7B/72B (and Qwen2.5-Math-7B-PRM800K), as their model card runs them.

Their ``Qwen2ForProcessRewardModel`` (remote code, never run here) is a stock Qwen2 backbone
(``model.*``) with ``score = Sequential(Linear(h, h), ReLU, Linear(h, 2))`` on every position. The
card renders [system: "Please reason step by step, and put your final answer within \\boxed{}.",
user: the problem, assistant: the steps each followed by ``<extra_0>``] with the tokenizer's chat
template, tokenizes that string once (``tokenizer.encode``) and reads softmax(score)[1] at every
``<extra_0>`` token. softmax([l0, l1])[1] = sigmoid(l1 - l0), so the last layer folds into one logit:
weight ``W[1] - W[0]``, bias ``b[1] - b[0]``; the head becomes our ``mlp`` head.
"""

from __future__ import annotations

from pathlib import Path

from prm.families.common import Conversion, ImportConfig, read_tensors, token_id

SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
SEPARATOR = "<extra_0>"
HEAD = ["score.0.weight", "score.0.bias", "score.2.weight", "score.2.bias"]


def convert(src: Path, tok, cfg: ImportConfig) -> Conversion:
    if not getattr(tok, "chat_template", None):
        raise ValueError(f"{src}'s tokenizer has no chat template: Qwen2.5-Math-PRM's input is its chat template")
    sep = token_id(tok, SEPARATOR, "the step separator")
    t = read_tensors(src, HEAD)
    w2, b2 = t["score.2.weight"], t["score.2.bias"]
    if tuple(w2.shape)[0] != 2:
        raise ValueError(f"{src}: score.2.weight has shape {tuple(w2.shape)}, not the two-class head of Qwen2.5-Math-PRM")
    state = {"0.weight": t["score.0.weight"], "0.bias": t["score.0.bias"],
             "2.weight": (w2[1] - w2[0]).unsqueeze(0), "2.bias": (b2[1] - b2[0]).reshape(1)}
    rendering = {"family": "qwen-prm", "layout": "chat", "system": SYSTEM, "separator": SEPARATOR,
                 "add_special_tokens": True, "check_id": True}
    return Conversion("mlp", state, rendering, SEPARATOR, sep,
                      notes={"head": "score: Linear(h, h), ReLU, Linear(h, 2) -> last layer as W[1] - W[0], b[1] - b[0]"})
