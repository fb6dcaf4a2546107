"""``PRM``: a whole trained PRM in memory, as one artifact folder holds it.

``PRM.from_pretrained(folder)`` loads an artifact (checking the separator id against the
tokenizer) from a folder or a Hugging Face Hub id (``prm.hub``); ``save_pretrained(folder)`` writes
one, LoRA adapters merged into plain weights; ``score`` returns calibrated step probabilities exactly as ``prm score`` and the service do.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from prm.artifacts import Artifact
from prm.model import StepScorer, unwrap_peft


class PRM:
    """Step scorer, tokenizer (with the separator), ``prm_config.json`` and calibration."""

    def __init__(self, scorer: StepScorer, tokenizer, config, calibration: dict | None = None):
        self.scorer, self.tokenizer, self.config, self.calibration = scorer, tokenizer, config, calibration

    @classmethod
    def from_pretrained(cls, folder: str | Path, dtype=None, revision: str | None = None,
                        token: str | None = None) -> PRM:
        """From an artifact folder, or a Hugging Face Hub id (``org/name``: downloaded once into the
        Hugging Face cache; ``revision`` a branch, tag or commit; ``prm.hub.resolve``)."""
        from prm.hub import resolve

        art = Artifact(resolve(folder, revision=revision, token=token))
        scorer, tok, cfg = art.load(dtype)
        return cls(scorer, tok, cfg, art.calibration())

    def save_pretrained(self, folder: str | Path) -> Path:
        self.scorer.backbone = unwrap_peft(self.scorer.backbone)
        return Artifact.save(folder, self.scorer, self.tokenizer, self.config, calibration=self.calibration).folder

    def score(self, items: Sequence[tuple[str, Sequence[str]]], batch_size: int = 16) -> list[list[float]]:
        """Step probabilities for (prompt, steps) pairs."""
        from prm.scoring import Scorer

        was_training = self.scorer.training
        self.scorer.eval()
        try:
            return Scorer(self, backend="torch", batch_size=batch_size).score(items)
        finally:
            self.scorer.train(was_training)
