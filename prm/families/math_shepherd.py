"""``math-shepherd``: peiyi9979/math-shepherd-mistral-7b-prm, as its model card runs it.

A stock causal LM (Mistral). The card builds ``f"{question} {output}"`` where ``output`` is the steps each
followed by `` ки`` and joined by newlines (``"Step 1: ... ки\\nStep 2: ... ки"``), tokenizes it once with
``tokenizer.encode`` (BOS added), and reads softmax over the LM logits of the two candidate tokens
``tokenizer.encode("+ -")[1:]`` at every step tag ``tokenizer.encode("ки")[-1]``, taking ``+``'s share.
That share is sigmoid((W[+] - W[-]) . h) of the final hidden state h: a linear head with weight
``lm_head[+] - lm_head[-]`` and no bias.
"""

from __future__ import annotations

from pathlib import Path

from prm.families.common import Conversion, ImportConfig, lm_head_name, read_tensors

GOOD, BAD, TAG = "+", "-", "ки"


def convert(src: Path, tok, cfg: ImportConfig) -> Conversion:
    candidates = tok(f"{GOOD} {BAD}")["input_ids"]
    if len(candidates) != 3 or candidates[0] != tok.bos_token_id:
        raise ValueError(f"{src}'s tokenizer encodes {GOOD + ' ' + BAD!r} as {candidates}, not BOS, '+', '-' as "
                         "Math-Shepherd's card expects: is this a Math-Shepherd (Mistral/Llama tokenizer) folder?")
    good, bad = candidates[1:]
    tag = tok(TAG)["input_ids"][-1]
    name = lm_head_name(src)
    rows = read_tensors(src, [name], rows={name: [good, bad]})[name]  # [2, H]
    state = {"weight": (rows[0] - rows[1]).unsqueeze(0), "bias": rows.new_zeros(1)}
    rendering = {"family": "math-shepherd", "layout": "text", "prompt_template": "{prompt} ", "separator": " " + TAG,
                 "joiner": "\n", "add_special_tokens": True, "check_id": True}
    return Conversion("linear", state, rendering, tok.convert_ids_to_tokens(tag), tag,
                      notes={"head": f"{name}[{good}] - {name}[{bad}] ('+' against '-')"})
