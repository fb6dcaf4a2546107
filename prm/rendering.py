"""How an imported PRM's input is built: its family's own prompt, chat turns and step separator.

``prm import`` writes the recipe into ``prm_config.json`` (``PRMConfig.rendering``, plain JSON), and
``encode_rendered`` turns a (prompt, steps) pair into input ids and the positions the step scores are
read at, for every stage alike (``Scorer.encode`` calls it when the artifact has a recipe). Layouts:

    text        ``prompt_template`` ({prompt} replaced), then each step followed by ``separator``, the
                steps joined by ``joiner`` (Math-Shepherd: "{prompt} ", " ки", "\\n")
    chat        the tokenizer's chat template over [system, user: prompt, assistant: the steps each
                followed by ``separator``] (Qwen2.5-Math-PRM: ``<extra_0>``)
    chat-turns  the chat template over [user: prompt + ``first_joiner`` + step 1, assistant: ``answer``,
                user: step 2, assistant: ``answer``, ...] (RLHFlow: "+"); steps stripped when ``strip_steps``
    pieces      ``prompt_template`` tokenized alone, then each step tokenized alone and followed by the
                separator id (Skywork's ``prepare_input``: "<bos>{prompt}\\n", steps, "\\n" after each)

The first three render the WHOLE text and tokenize it once, as the families' own code does (tokenizing the
pieces apart can cut differently where they meet). The score positions are then found from character
offsets: the token that ends each separator the rendering placed (``read_offset`` 0), or the token before
the token of each assistant ``answer`` (-1: the logits that predict it). Text that merely spells a
separator inside a step is never read. When ``check_id`` is set, the token found must be the recipe's
separator id (``PRMConfig.step_token_id``); otherwise the tokenizer merged the separator with the text
around it and ``RenderError`` says so instead of reading the wrong place.

Too long: ``pieces`` keeps the end of the prompt like the toolkit's own layout (``overflow``
"truncate_prompt"); a whole rendered text is never cut (a template cut in the middle is no input the model
knows), so it raises ``TooLongError`` under either policy.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

from prm.tokenization import IGNORE, Encoded, TooLongError, place_labels

LAYOUTS = ("text", "chat", "chat-turns", "pieces")
KEYS = {"family", "layout", "add_special_tokens", "check_id", "read_offset", "prompt_template", "separator", "joiner",
        "system", "answer", "first_joiner", "strip_steps"}


class RenderError(ValueError):
    """A solution whose rendering does not put its step separators where the model reads them."""


def check_recipe(recipe: dict) -> None:
    """ValueError naming what is wrong with a ``rendering`` recipe (unknown layout or keys, missing fields)."""
    layout = recipe.get("layout")
    if layout not in LAYOUTS:
        raise ValueError(f"rendering layout must be one of {LAYOUTS}, got {layout!r}: written by a newer prm-toolkit?")
    unknown = sorted(set(recipe) - KEYS)
    if unknown:
        raise ValueError(f"unknown rendering keys {unknown}: written by a newer prm-toolkit")
    needs = {"text": ("prompt_template", "separator", "joiner"), "chat": ("separator",),
             "chat-turns": ("answer", "first_joiner"), "pieces": ("prompt_template",)}[layout]
    missing = [k for k in needs if not isinstance(recipe.get(k), str)]
    if missing:
        raise ValueError(f"rendering layout {layout!r} needs the text fields {missing}")


def render(tokenizer, recipe: dict, prompt: str, steps: Sequence[str]) -> tuple[str, list[int]]:
    """(text, mark ends) of the whole-text layouts: the rendered text and, per step, the character offset
    where the text whose token is read (the separator, or the assistant answer) ends."""
    layout = recipe["layout"]
    if recipe.get("strip_steps"):
        steps = [s.strip() for s in steps]
    if layout == "text":
        text, ends = recipe["prompt_template"].replace("{prompt}", prompt), []
        for i, step in enumerate(steps):
            text += (recipe["joiner"] if i else "") + step + recipe["separator"]
            ends.append(len(text))
        return text, ends
    if layout == "chat":
        return _chat(tokenizer, recipe, prompt, steps)
    if layout == "chat-turns":
        return _chat_turns(tokenizer, recipe, prompt, steps)
    raise ValueError(f"layout {layout!r} is not rendered as one text")


def _template(tokenizer, messages: list[dict], generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def _chat(tokenizer, recipe: dict, prompt: str, steps: Sequence[str]) -> tuple[str, list[int]]:
    sep = recipe["separator"]
    content = "".join(step + sep for step in steps)
    system = recipe.get("system")
    messages = ([{"role": "system", "content": system}] if system is not None else []) + [
        {"role": "user", "content": prompt}, {"role": "assistant", "content": content}]
    text = _template(tokenizer, messages)
    base = text.rfind(content)
    if base < 0:
        raise RenderError("the chat template changed the assistant's steps (trimmed or escaped them), so the step "
                          "separators cannot be located; this tokenizer's template does not fit the recipe")
    ends, at = [], base
    for step in steps:
        at += len(step) + len(sep)
        ends.append(at)
    return text, ends


def _chat_turns(tokenizer, recipe: dict, prompt: str, steps: Sequence[str]) -> tuple[str, list[int]]:
    answer = recipe["answer"]
    messages: list[dict] = []
    for k, step in enumerate(steps):
        text = prompt + recipe["first_joiner"] + step if k == 0 else step
        messages += [{"role": "user", "content": text}, {"role": "assistant", "content": answer}]
    full = _template(tokenizer, messages)
    ends = []
    for k in range(len(steps)):
        # The conversation up to the k-th user turn with the assistant header: the answer follows it.
        head = _template(tokenizer, messages[:2 * k + 1], generation_prompt=True)
        if not (full.startswith(head) and full.startswith(answer, len(head))):
            raise RenderError(f"turn {k + 1}: the chat template does not render the assistant's {answer!r} right after "
                              "its generation prompt; this tokenizer's template does not fit the recipe")
        ends.append(len(head) + len(answer))
    return full, ends


def encode_rendered(tokenizer, cfg, prompt: str, steps: Sequence[str], max_length: int,
                    overflow: str = "truncate_prompt") -> Encoded:
    """Input ids and score positions of one solution under ``cfg.rendering`` (see the module docstring)."""
    recipe = cfg.rendering
    special = recipe.get("add_special_tokens", True)
    if not steps:  # nothing to read (a chat of no turns may not even render): the prompt alone
        ids = list(tokenizer(prompt, add_special_tokens=special)["input_ids"])[-max_length:]
        return Encoded(ids, [float(IGNORE)] * len(ids), [])
    if recipe["layout"] == "pieces":
        return _pieces(tokenizer, cfg, prompt, steps, max_length, overflow)
    text, ends = render(tokenizer, recipe, prompt, steps)
    enc = tokenizer(text, add_special_tokens=special, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), enc["offset_mapping"]
    if len(ids) > max_length:
        raise TooLongError(f"prompt + {len(steps)} steps take {len(ids)} tokens as this model's family renders them, "
                           f"but the limit is {max_length}; shorten the input, or raise the limit (max_length) where "
                           "the backbone's positions allow", tokens=len(ids), limit=max_length)
    positions = locate(ids, offsets, ends, cfg.step_token_id if recipe.get("check_id") else None,
                       recipe.get("read_offset", 0))
    labels = [float(IGNORE)] * len(ids)
    return Encoded(ids, labels, positions)


def locate(ids: Sequence[int], offsets, ends: Sequence[int], expected: int | None, read_offset: int = 0) -> list[int]:
    """The index of the token that ends at each character offset in ``ends``, plus ``read_offset``.

    ``offsets`` are the tokenizer's (start, end) character spans; tokens with empty spans (special tokens a
    post-processor added) are skipped. ``expected``: the id that token must have (None: any)."""
    spans = [(s, e, j) for j, (s, e) in enumerate(offsets) if e > s]
    starts = [s for s, _, _ in spans]
    out = []
    for k, end in enumerate(ends):
        # The last token that starts before the end (of several byte-level tokens that share one character's
        # span, the last).
        i = bisect_left(starts, end) - 1
        if i < 0 or spans[i][1] != end or (expected is not None and ids[spans[i][2]] != expected):
            got = "no token" if i < 0 else f"token {ids[spans[i][2]]} spanning characters {spans[i][:2]}"
            raise RenderError(f"step {k + 1}: the tokenizer merged its separator with the text around it ({got}, "
                              f"expected one token ending at character {end}"
                              + ("" if expected is None else f" with id {expected}") + "); change the step's last "
                              "characters (e.g. strip trailing spaces) so the separator stays its own token")
        j = spans[i][2] + read_offset
        if not 0 <= j < len(ids):
            raise RenderError(f"step {k + 1}: the score position {j} falls outside the input")
        out.append(j)
    return out


def _pieces(tokenizer, cfg, prompt: str, steps: Sequence[str], max_length: int, overflow: str) -> Encoded:
    recipe = cfg.rendering
    special = recipe.get("add_special_tokens", True)

    def ids(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=special)["input_ids"]) if text else []

    prompt_ids = ids(recipe["prompt_template"].replace("{prompt}", prompt))
    step_ids = [ids(s.strip() if recipe.get("strip_steps") else s) for s in steps]
    total = len(prompt_ids) + sum(len(s) + 1 for s in step_ids)
    if overflow == "error" and total > max_length:
        raise TooLongError(f"prompt + {len(steps)} steps take {total} tokens but the model's limit is {max_length}; "
                           "shorten the input, or use overflow='truncate_prompt' to keep the end of the prompt",
                           tokens=total, limit=max_length)
    return place_labels(prompt_ids, step_ids, cfg.step_token_id, None, max_length)
