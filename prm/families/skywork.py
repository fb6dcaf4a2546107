"""``skywork-prm``: Skywork/Skywork-o1-Open-PRM-Qwen-2.5-1.5B and -7B, as skywork-o1-prm-inference runs them.

Their ``PRM_MODEL`` wraps a stock Qwen2 causal LM (``model.*``) with ``v_head`` = dropout (off in eval)
then ``summary = Linear(h, 1)`` on the last hidden state; the step reward is sigmoid of that value.
Their ``prepare_input`` tokenizes ``bos_token + problem + "\\n"`` alone, then each step alone
(``tokenizer.encode``), each followed by the id of the step token ``"\\n"`` (``encode("\\n")[-1]``),
and reads the reward at those ids. Steps that hold a newline of their own: their code would split them
into more steps; here each given step is scored once, at its end.
"""

from __future__ import annotations

from pathlib import Path

from prm.families.common import Conversion, ImportConfig, read_tensors

STEP_TOKEN = "\n"


def convert(src: Path, tok, cfg: ImportConfig) -> Conversion:
    if tok.bos_token is None:
        raise ValueError(f"{src}'s tokenizer has no bos_token, which Skywork's prepare_input opens every input with: "
                         "is this a Skywork-o1-Open-PRM folder?")
    sep = tok(STEP_TOKEN)["input_ids"][-1]
    t = read_tensors(src, ["v_head.summary.weight", "v_head.summary.bias"])
    state = {"weight": t["v_head.summary.weight"].reshape(1, -1), "bias": t["v_head.summary.bias"].reshape(1)}
    rendering = {"family": "skywork-prm", "layout": "pieces", "prompt_template": tok.bos_token + "{prompt}\n",
                 "add_special_tokens": True}
    return Conversion("linear", state, rendering, tok.convert_ids_to_tokens(sep), sep,
                      notes={"head": "v_head.summary (dropout off), sigmoid"})
