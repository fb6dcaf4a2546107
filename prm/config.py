"""``PRMConfig``: what every stage needs to know about a trained PRM, with no guessing.

It is plain data; ``prm.artifacts.Artifact`` reads and writes it as ``prm_config.json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

DEFAULT_STEP_TOKEN = "<|prm_step|>"
AGGREGATIONS = ("min", "last", "prod", "mean")
HEADS = ("linear", "mlp")


@dataclass
class PRMConfig:
    step_token: str = DEFAULT_STEP_TOKEN
    """The step separator, a dedicated special token; its score is the step's score."""
    step_token_id: int = -1
    """Its id in the tokenizer, checked at load time against the tokenizer."""
    max_length: int = 512
    """Longest input in tokens (prompt + steps + separators)."""
    aggregation: str = "min"
    """Default way to turn step scores into a solution score: min, last, prod or mean."""
    label_type: str = "soft"
    """What the model was trained on: 'soft' (MC fraction) or 'hard' (any rollout succeeded)."""
    monotone: bool = False
    """Score step i as the minimum of the raw step logits up to i: once a solution has gone wrong it
    stays wrong (first-error semantics). Applied by every scoring backend before calibration."""
    step_checks: bool = False
    """Cap the score of a step that is verifiably wrong by its own numbers (false arithmetic, a number from
    nowhere: ``data_tools.checks``) at ``prm.scoring.checks.CEILING``, after calibration, on every backend."""
    backbone: str = ""
    """Where the backbone came from, for the record."""
    head: str = "linear"
    """The step head on the final hidden states: 'linear' (one logit) or 'mlp' (Linear(h, h), ReLU, Linear(h, 1):
    Qwen2.5-Math-PRM's two-class head folded into one logit by ``prm import``)."""
    rendering: dict | None = None
    """How a (prompt, steps) pair becomes input ids for a PRM imported with ``prm import`` (its family's own
    prompt, chat turns and step separator; ``prm.rendering``). None: this toolkit's own layout
    (``prm.tokenization.encode``: prompt, newline, each step followed by the separator id)."""

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> PRMConfig:
        """From ``prm_config.json``'s content; ValueError naming any key this version does not know."""
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown keys {unknown}: it was written by a newer prm-toolkit")
        if data.get("head", "linear") not in HEADS:
            raise ValueError(f"unknown step head {data['head']!r} (this version knows {HEADS}): written by a newer prm-toolkit")
        if data.get("rendering") is not None:
            from prm.rendering import check_recipe

            check_recipe(data["rendering"])
        return cls(**data)
