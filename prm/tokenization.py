"""Label placement: how a (prompt, steps, labels) example becomes token ids and per-token labels.

Layout (no text is ever re-tokenized across a boundary):

    prompt_ids + newline_ids + step_1_ids + [SEP] + step_2_ids + [SEP] + ... + step_n_ids + [SEP]

Each step is tokenized on its own and followed by the step separator, inserted **by id**. A step's
label sits on its separator token, and that is exactly where the model reads the step's score;
every other position carries -100 (ignored). Because the separator is an id and not text, it cannot
merge with neighbouring characters into a different token, the classic PRM bug; and text that
happens to spell the separator is tokenized as plain text, so it cannot fake a step boundary.

Inputs longer than ``max_length`` lose prompt tokens from the left first; steps are never cut in
the middle. If the steps alone do not fit, ``encode`` raises (scoring) or, with
``drop_overflow=True`` (training), keeps the leading steps that fit and reports how many it dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

IGNORE = -100


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[float]  # IGNORE except at separator positions
    step_positions: list[int]  # index of each kept step's separator in input_ids
    dropped_steps: int = 0


class TooLongError(ValueError):
    """An input that does not fit the limit; ``tokens`` it needs and the ``limit`` (when known)."""

    def __init__(self, message: str, tokens: int | None = None, limit: int | None = None):
        super().__init__(message)
        self.tokens, self.limit = tokens, limit

    def __reduce__(self):  # pickles with its numbers (a plain ValueError would lose them)
        return type(self), (str(self), self.tokens, self.limit)


def encode(tokenizer, sep_id: int, prompt: str, steps: Sequence[str], labels: Sequence | None = None,
           max_length: int = 512, drop_overflow: bool = False) -> Encoded:
    """Token ids with each step's label on its separator token (see module docstring)."""
    # split_special_tokens: user text that spells a special token (even the separator) stays text.
    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]

    prompt_ids = ids(prompt + "\n")
    step_ids = [ids(s) for s in steps]
    return place_labels(prompt_ids, step_ids, sep_id, labels, max_length, drop_overflow)


def place_labels(prompt_ids: list[int], step_ids: list[list[int]], sep_id: int, labels: Sequence | None,
                 max_length: int, drop_overflow: bool = False) -> Encoded:
    """The pure core of ``encode``, over already tokenized pieces; testable with literal ids."""
    if labels is not None and len(labels) != len(step_ids):
        raise ValueError(f"{len(labels)} labels for {len(step_ids)} steps")
    body_len = sum(len(s) + 1 for s in step_ids)
    kept = len(step_ids)
    if body_len > max_length:
        if not drop_overflow:
            raise TooLongError(
                f"the steps alone take {body_len} tokens but the model's limit is {max_length}; shorten the "
                "solution, split it, or raise the limit (max_length) where the backbone's positions allow",
                tokens=body_len, limit=max_length)
        while kept and sum(len(s) + 1 for s in step_ids[:kept]) > max_length:
            kept -= 1
        body_len = sum(len(s) + 1 for s in step_ids[:kept])
    room = max_length - body_len
    prompt_ids = prompt_ids[len(prompt_ids) - room:] if len(prompt_ids) > room else list(prompt_ids)
    ids = list(prompt_ids)
    out_labels = [float(IGNORE)] * len(ids)
    positions = []
    for i in range(kept):
        ids.extend(step_ids[i])
        out_labels.extend([float(IGNORE)] * len(step_ids[i]))
        positions.append(len(ids))
        ids.append(sep_id)
        lab = None if labels is None else labels[i]
        out_labels.append(float(IGNORE) if lab is None else float(lab))
    return Encoded(ids, out_labels, positions, len(step_ids) - kept)


def load_tokenizer(folder, step_token: str | None = None):
    """A folder's tokenizer (never remote code), with a pad token and, if given, the separator added."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    if step_token is not None and step_token not in tok.get_vocab():
        tok.add_special_tokens({"additional_special_tokens": [step_token]})
    return tok


def check_step_token(tok, cfg) -> None:
    """The separator is one dedicated id that this tokenizer knows, and that no text turns into.

    ``cfg`` is a ``prm.config.PRMConfig`` (its ``step_token`` and ``step_token_id``). An imported PRM
    (``cfg.rendering``) keeps its family's separator, which may be ordinary text (Math-Shepherd's ``ки``):
    only the id is checked, and ``prm.rendering`` finds the separators that the rendering itself placed.
    """
    got = tok.convert_tokens_to_ids(cfg.step_token)
    if got != cfg.step_token_id:
        raise ValueError(f"tokenizer maps step token {cfg.step_token!r} to id {got}, but prm_config.json "
                         f"says {cfg.step_token_id}: the tokenizer files do not belong to this model")
    if getattr(cfg, "rendering", None):
        return
    spelled = tok(cfg.step_token, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    if cfg.step_token_id in spelled:
        raise ValueError(f"the text {cfg.step_token!r} tokenizes to the separator id {cfg.step_token_id}: "
                         "a step could fake a step boundary; the separator must be an added special token")
