"""One scorer API over backends: PyTorch or ONNX Runtime, same inputs, same calibrated outputs.

``Scorer(source, backend=...)`` builds the backend from ``prm.scoring.backends.BACKENDS`` over an
artifact folder (or ``Artifact``), or over a ``PRM`` already in memory (torch only).
``Scorer.score(items)`` takes (prompt, steps) pairs and returns one probability per step. It encodes
with ``prm.tokenization.encode`` (a PRM imported with ``prm import``: its family's rendering,
``prm.rendering.encode_rendered``), sorts by length so each batch pads only to its own longest row,
runs the backend to get step logits ``[B, T]``, reads them at the separator positions, takes their
running minimum when the artifact is ``monotone``, and applies the artifact's calibration with
``prm.calibrate.apply_calibration`` (the same function for every backend), then, when the artifact's
``step_checks`` is on, caps the steps that are verifiably wrong by their own numbers
(``prm.scoring.checks``). ``Scorer.device`` says where it runs.

Inputs longer than the model's ``max_length`` follow an explicit ``overflow`` policy; no policy
ever drops a step:

    truncate_prompt  (default) keep every step and as much of the END of the prompt as fits;
                     raise ``TooLongError`` when the steps alone do not fit
    error            raise ``TooLongError`` as soon as prompt + steps do not fit

``max_length`` may raise the limit past the length the model was trained at (``prm_config.json``),
up to the backbone's positions (``max_position_embeddings`` of its ``config.json``: for RoPE models
the length its position encoding was pretrained for). Past the trained length the step head reads
states it never saw in training: the scores are extrapolation, and a WARNING says so. Past the
backbone's positions it is refused (``ValueError``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from data_tools.progress import Progress
from prm.artifacts import Artifact
from prm.config import AGGREGATIONS
from prm.rendering import encode_rendered
from prm.scoring.backends import BACKENDS, Build
from prm.scoring.calibration import apply_calibration
from prm.scoring.checks import apply_checks
from prm.scoring.incremental import incremental
from prm.tokenization import TooLongError, encode

OVERFLOW = ("truncate_prompt", "error")

log = logging.getLogger(__name__)


def aggregate(step_scores: Sequence[float], how: str) -> float:
    """A solution score from its step scores: min, last, prod or mean."""
    if how not in AGGREGATIONS:
        raise ValueError(f"aggregate must be one of {AGGREGATIONS}, got {how!r}")
    s = np.asarray(step_scores, dtype=np.float64)
    if s.size == 0:
        raise ValueError("cannot aggregate an empty list of step scores")
    return float({"min": s.min, "last": lambda: s[-1], "prod": s.prod, "mean": s.mean}[how]())


class Scorer:
    def __init__(self, source, backend: str = "onnx", batch_size: int = 16, threads: int | None = None,
                 calibrated: bool = True, overflow: str = "truncate_prompt", max_length: int | None = None,
                 compile: bool | None = None, checks: bool | None = None, device: str | None = None,
                 prefix_cache_mb: float = 0):
        """``source``: an artifact folder, an ``Artifact``, or a ``prm.PRM`` in memory (backend 'torch').

        ``threads``: CPU threads (default all cores); ``max_length``: the longest input in tokens
        (default: the length the model was trained at); longer than that logs a WARNING (the scores are
        extrapolation), longer than the backbone's positions is a ``ValueError``; ``compile``:
        torch-bf16-gptq compiles unless False; ``checks``: apply the step checks (default: the artifact's
        ``step_checks``); ``device``: "cuda" or "cpu" for the torch backends (default: CUDA when torch sees a
        GPU; the ONNX backends take CUDA when ONNX Runtime can, see ``prm.scoring.backends``);
        ``prefix_cache_mb``: MiB of keys/values of recently scored token prefixes kept so that an input
        extending one computes only its new tokens (``prm.scoring.incremental``; torch backends; 0: off).
        """
        in_memory = hasattr(source, "scorer") and hasattr(source, "tokenizer")
        problems = []
        if backend not in BACKENDS:
            problems.append(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        elif in_memory and backend != "torch":
            problems.append(f"a PRM in memory is scored with backend 'torch'; {backend!r} needs its artifact folder")
        if overflow not in OVERFLOW:
            problems.append(f"overflow must be one of {OVERFLOW}, got {overflow!r}")
        if batch_size < 1:
            problems.append(f"batch_size must be at least 1, got {batch_size}")
        if problems:
            raise ValueError("; ".join(problems))
        if max_length is not None and max_length < 1:
            raise ValueError(f"max_length must be at least 1 (or None for the model's own), got {max_length}")
        if in_memory:
            # a copy: a raised limit is this scorer's, not the in-memory model's
            self.artifact, self.cfg, self.tokenizer = None, dataclasses.replace(source.config), source.tokenizer
            self.calibration = source.calibration if calibrated else None
        else:
            self.artifact = source if isinstance(source, Artifact) else Artifact(source)
            self.cfg = self.artifact.config()
            self.tokenizer = self.artifact.tokenizer(self.cfg)
            self.calibration = self.artifact.calibration() if calibrated else None
        self.trained_length = self.cfg.max_length
        """The input length the model was trained at (``prm_config.json``'s ``max_length``)."""
        self.position_limit = _position_limit(source.scorer.backbone.config if in_memory else self.artifact.folder)
        """The backbone's ``max_position_embeddings`` (None when its config does not say)."""
        if max_length:
            self.cfg.max_length = self._checked_length(max_length)
        self.backend, self.batch_size, self.overflow = backend, batch_size, overflow
        self.checks = self.cfg.step_checks if checks is None else checks
        runner = BACKENDS[backend](Build(self.artifact, source.scorer if in_memory else None,
                                         threads or max(1, os.cpu_count() or 1), compile, device))
        self._run, self.device, self.model = runner.run, runner.device, runner.model
        self.pad_id = self.tokenizer.pad_token_id
        self.prefix_cache, self._incremental = incremental(runner, backend, prefix_cache_mb)
        self._tokens_full = 0

    @property
    def cache_stats(self) -> dict:
        """``tokens_computed`` by the model; with a prefix cache also its lookups, hits, misses, tokens_reused,
        evictions, bytes, max_bytes and nodes (``prm.scoring.prefix_cache``)."""
        out = {"tokens_computed": 0} if self.prefix_cache is None else self.prefix_cache.snapshot()
        out["tokens_computed"] += self._tokens_full
        return out

    @property
    def folder(self) -> Path | None:
        return None if self.artifact is None else self.artifact.folder

    @property
    def max_length(self) -> int:
        """The longest input this scorer takes, in tokens (prompt + steps + separators)."""
        return self.cfg.max_length

    def _checked_length(self, max_length: int) -> int:
        """``max_length`` when the backbone's positions allow it (a WARNING past the trained length)."""
        where = self.folder or "this model"
        if self.position_limit is not None and max_length > self.position_limit:
            raise ValueError(f"max_length {max_length} is past the {self.position_limit} positions of the backbone "
                             f"of {where} (max_position_embeddings in its config.json; it was trained at "
                             f"{self.trained_length} tokens): use at most {self.position_limit}")
        if max_length > self.trained_length:
            room = (f"within the backbone's {self.position_limit} positions" if self.position_limit is not None
                    else "the backbone's config names no position limit, so it was not checked")
            log.warning("scoring inputs of up to %d tokens, but %s was trained at %d tokens: scores of solutions "
                        "longer than %d tokens are extrapolation (%s); check them on long labelled solutions "
                        "before trusting them", max_length, where, self.trained_length, self.trained_length, room)
        return max_length

    def encode(self, prompt: str, steps: Sequence[str]):
        """One solution as model input under the ``overflow`` policy (``TooLongError`` when it cannot fit)."""
        if self.cfg.rendering:  # an imported PRM: its family's own rendering (prm.rendering)
            return encode_rendered(self.tokenizer, self.cfg, prompt, steps, self.cfg.max_length, self.overflow)
        if self.overflow == "error":
            full = encode(self.tokenizer, self.cfg.step_token_id, prompt, steps, None, 1 << 30)
            if len(full.input_ids) > self.cfg.max_length:
                raise TooLongError(
                    f"prompt + {len(steps)} steps take {len(full.input_ids)} tokens but the model's limit is "
                    f"{self.cfg.max_length}; shorten the input, or use overflow='truncate_prompt' to keep the "
                    "end of the prompt", tokens=len(full.input_ids), limit=self.cfg.max_length)
            return full
        return encode(self.tokenizer, self.cfg.step_token_id, prompt, steps, None, self.cfg.max_length)

    def batches(self, items: Sequence[tuple[str, Sequence[str]]]):
        """(encoded items, [(indices, ids [b, n], mask [b, n])]): sorted by length, padded to each batch's longest."""
        return self._pad([self.encode(p, s) for p, s in items])

    def _pad(self, encoded: list):
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].input_ids))
        out = []
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            n = max(len(encoded[i].input_ids) for i in chunk)
            ids = np.full((len(chunk), n), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(chunk), n), dtype=np.int64)
            for row, i in enumerate(chunk):
                k = len(encoded[i].input_ids)
                ids[row, :k], mask[row, :k] = encoded[i].input_ids, 1
            out.append((chunk, ids, mask))
        return encoded, out

    def step_logits(self, items: Sequence[tuple[str, Sequence[str]]], progress: str | None = None) -> list[np.ndarray]:
        """Raw step logits per solution; ``progress`` names a progress display (solutions scored, rate, ETA)."""
        return self._step_logits(*self.batches(items), progress=progress)

    def _step_logits(self, encoded: list, batches: list, progress: str | None = None) -> list[np.ndarray]:
        out: list[np.ndarray] = [np.empty(0)] * len(encoded)
        with Progress(len(encoded), progress or "", "solutions", enabled=progress is not None) as bar:
            for chunk, ids, mask in batches:
                if self._incremental is not None:  # step logits at every token of each row
                    logits = self._incremental.run([encoded[i].input_ids for i in chunk])
                else:
                    logits = self._run(ids, mask)  # [b, n]
                    self._tokens_full += int(mask.sum())
                for row, i in enumerate(chunk):
                    out[i] = np.asarray(logits[row])[encoded[i].step_positions].astype(np.float64)
                    if self.cfg.monotone:
                        out[i] = np.minimum.accumulate(out[i])
                bar.update(len(chunk), tokens=int(mask.sum()) + bar.extra.get("tokens", 0))
        return out

    def score(self, items: Sequence[tuple[str, Sequence[str]]], progress: str | None = None) -> list[list[float]]:
        """Calibrated step scores per solution (see ``step_logits`` for ``progress``)."""
        return [self._finish(z, item) for z, item in zip(self.step_logits(items, progress), items, strict=True)]

    def _finish(self, logits: np.ndarray, item: tuple[str, Sequence[str]]) -> list[float]:
        """Step logits -> calibrated probabilities, with the step checks when they are on."""
        scores = apply_calibration(logits, self.calibration)
        if self.checks:
            scores = apply_checks(scores, item[0], item[1], self.cfg.monotone)
        return scores.tolist()

    def score_each(self, items: Sequence[tuple[str, Sequence[str]]],
                   progress: str | None = None) -> list[list[float] | TooLongError]:
        """Like ``score``, but a solution that cannot fit gets its ``TooLongError`` in its place and the
        others are still scored (the service's batches mix solutions of several requests; an evaluation
        counts the refused ones instead of stopping at the first)."""
        return self.score_encoded(items, self.encode_each(items), progress)

    def encode_each(self, items: Sequence[tuple[str, Sequence[str]]]) -> list:
        """Each solution as model input (its ``input_ids`` are what the model reads), or its ``TooLongError``."""
        out = []
        for prompt, steps in items:
            try:
                out.append(self.encode(prompt, steps))
            except TooLongError as exc:
                out.append(exc)
        return out

    def score_encoded(self, items: Sequence[tuple[str, Sequence[str]]], encoded: list,
                      progress: str | None = None) -> list[list[float] | TooLongError]:
        """``score_each`` over ``encode_each(items)``, for callers that also count the tokens read."""
        fitting = [n for n, e in enumerate(encoded) if not isinstance(e, TooLongError)]
        logits = self._step_logits(*self._pad([encoded[n] for n in fitting]), progress=progress)
        out: list = list(encoded)
        for n, z in zip(fitting, logits, strict=True):
            out[n] = self._finish(z, items[n])
        return out


def _position_limit(source) -> int | None:
    """``max_position_embeddings`` of a backbone config, or of the ``config.json`` in an artifact folder."""
    if isinstance(source, (str, Path)):
        from transformers import AutoConfig

        source = AutoConfig.from_pretrained(str(source), trust_remote_code=False)
    for key in ("max_position_embeddings", "n_positions"):  # n_positions: GPT-2 style configs
        value = getattr(source, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
