"""``prm_config.json``: what every stage needs to know about a trained PRM, with no guessing."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

DEFAULT_STEP_TOKEN = "<|prm_step|>"
AGGREGATIONS = ("min", "last", "prod", "mean")


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
    backbone: str = ""
    """Where the backbone came from, for the record."""

    def save(self, folder: str | Path) -> None:
        Path(folder, "prm_config.json").write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, folder: str | Path) -> PRMConfig:
        path = Path(folder, "prm_config.json")
        if not path.is_file():
            raise FileNotFoundError(f"{folder} is not a PRM artifact: no prm_config.json (train one with `prm train`)")
        return cls(**json.loads(path.read_text()))
