"""``rlhflow``: RLHFlow/Llama3.1-8B-PRM-Mistral-Data and -Deepseek-Data, as their ``prm_evaluate.py`` runs them.

A stock Llama-3.1 chat model. Each step is a user turn (the first one ``problem + " " + step``, every
step stripped) answered by the assistant with ``"+"``; for step k the conversation up to its ``"+"`` is
rendered with the chat template and tokenized (``apply_chat_template``), and the score is softmax over the
LM logits of ``tokenizer.encode("+")[-1]`` and ``tokenizer.encode("-")[-1]`` at position -3, i.e. the
position that predicts the assistant's ``"+"``; ``+``'s share. A causal model gives that position the
same logits inside the whole conversation, so one pass over the whole conversation scores every step:
the score is read at the token before each assistant ``"+"``. Linear head ``lm_head[+] - lm_head[-]``.
Their best-of-N averaged the step scores, so the default aggregation is ``mean``.
"""

from __future__ import annotations

from pathlib import Path

from prm.families.common import Conversion, ImportConfig, lm_head_name, read_tensors


def convert(src: Path, tok, cfg: ImportConfig) -> Conversion:
    if not getattr(tok, "chat_template", None):
        raise ValueError(f"{src}'s tokenizer has no chat template: RLHFlow's PRMs read the steps as chat turns")
    plus, minus = tok("+")["input_ids"][-1], tok("-")["input_ids"][-1]
    name = lm_head_name(src)
    rows = read_tensors(src, [name], rows={name: [plus, minus]})[name]  # [2, H]
    state = {"weight": (rows[0] - rows[1]).unsqueeze(0), "bias": rows.new_zeros(1)}
    rendering = {"family": "rlhflow", "layout": "chat-turns", "answer": "+", "first_joiner": " ", "strip_steps": True,
                 "add_special_tokens": False, "check_id": True, "read_offset": -1}
    return Conversion("linear", state, rendering, tok.convert_ids_to_tokens(plus), plus, aggregation="mean",
                      notes={"head": f"{name}[{plus}] - {name}[{minus}] ('+' against '-'), read before the '+'"})
