"""Training data: stepwise examples as token rows, batched by length in an order fixed by (seed, epoch).

``encode_dataset`` turns examples into rows (``prm.tokenization.encode``: each step's label on its
separator), ``PadCollator`` right-pads a batch, ``LengthGroupedSampler`` orders examples so that a
batch holds similar lengths (no compute on padding that a smarter batch would avoid) and, unlike
transformers' own length grouping, depends only on the seed and the epoch, so a resumed run and
every DDP rank see the same batches.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence

from data_tools.schema import StepwiseExample
from prm.tokenization import IGNORE, encode

log = logging.getLogger(__name__)


def training_labels(ex: StepwiseExample, label_type: str) -> list[float | None]:
    """Soft labels as given; hard labels by the schema's one rule (``meta.hard_labels``, else label > 0)."""
    if label_type == "hard":
        return [None if h is None else float(h) for h in ex.hard_labels()]
    return ex.float_labels()


def last_step_labels(labels: Sequence[float | None]) -> list[float | None]:
    """Only the last labelled step keeps its label."""
    out: list[float | None] = [None] * len(labels)
    for i in range(len(labels) - 1, -1, -1):
        if labels[i] is not None:
            out[i] = labels[i]
            break
    return out


class PadCollator:
    """Right-pads a batch to its longest row: ids with pad, mask with 0, labels with IGNORE."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        n = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), n), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), n), dtype=torch.long)
        labels = torch.full((len(rows), n), float(IGNORE))
        for i, r in enumerate(rows):
            k = len(r["input_ids"])
            ids[i, :k] = torch.tensor(r["input_ids"])
            mask[i, :k] = 1
            labels[i, :k] = torch.tensor(r["labels"])
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def length_grouped_indices(lengths: Sequence[int], batch_size: int, seed: int, mega: int = 50) -> list[int]:
    """A permutation of ``range(len(lengths))`` whose consecutive ``batch_size`` slices hold examples of
    similar length: shuffle, sort within mega-batches of ``mega`` batches, cut into batches, shuffle
    the full batches (a short one goes last). Depends on nothing but its arguments."""
    import torch

    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(lengths), generator=g).tolist()
    size = mega * batch_size
    batches = []
    for start in range(0, len(perm), size):
        chunk = sorted(perm[start:start + size], key=lambda i: lengths[i])
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    # Only the last mega-batch can end in a short batch; it stays last, or every batch after it
    # would straddle two length groups once the loader cuts the stream into batch_size slices.
    full = [b for b in batches if len(b) == batch_size]
    short = [b for b in batches if len(b) < batch_size]
    order = torch.randperm(len(full), generator=g).tolist()
    return [i for b in [full[k] for k in order] + short for i in b]


class LengthGroupedSampler:
    """Length-grouped order for the Trainer, reproducible from (seed, epoch) alone.

    ``batch_size`` is the global batch (per-process batch x processes): under DDP, accelerate hands
    consecutive per-process batches to consecutive ranks, so each global batch is one length group
    and no rank waits at the all-reduce for a longer one.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int):
        self.lengths, self.batch_size, self.seed, self.epoch = list(lengths), batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        return iter(length_grouped_indices(self.lengths, self.batch_size, self.seed * 1_000_003 + self.epoch))


def encode_dataset(examples: Sequence[StepwiseExample], tokenizer, sep_id: int, cfg) -> list[dict]:
    """Token rows of the labelled examples under ``cfg`` (a ``TrainConfig``: label type, last step only, max length)."""
    rows, dropped, skipped = [], 0, 0
    for ex in examples:
        if ex.labels is None:
            skipped += 1
            continue
        labels = training_labels(ex, cfg.label_type)
        if cfg.last_step_only:
            labels = last_step_labels(labels)
        enc = encode(tokenizer, sep_id, ex.prompt, ex.steps, labels, cfg.max_length, drop_overflow=True)
        dropped += enc.dropped_steps
        if any(lab != IGNORE for lab in enc.labels):
            rows.append({"input_ids": enc.input_ids, "labels": enc.labels})
    if dropped or skipped:
        log.warning("training data: %d steps beyond max_length=%d dropped, %d unlabelled examples skipped",
                    dropped, cfg.max_length, skipped)
    if not rows:
        raise ValueError("no labelled steps to train on: every example is unlabelled or too long")
    return rows


def rows_digest(rows: Sequence[dict]) -> str:
    h = hashlib.sha256()
    for r in rows:
        h.update(json.dumps([r["input_ids"], r["labels"]]).encode())
    return h.hexdigest()


class ListDataset:
    """A list of encoded rows with their ``lengths``, which length-grouped sampling reads."""

    def __init__(self, rows: list[dict]):
        self.rows = rows
        self.lengths = [len(r["input_ids"]) for r in rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]
