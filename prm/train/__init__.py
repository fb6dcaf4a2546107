"""Training a PRM with transformers' Trainer: ``train(examples, TrainConfig(...))`` writes an artifact.

``config`` (TrainConfig), ``data`` (encoding, collator, length-grouped sampler), ``build`` (the model
as training wants it), ``probe`` (the head as a linear probe), ``trainer`` (the loop, checkpoints,
the run record), ``progress`` (step, loss, tokens/s, ETA).
"""

from prm.train.build import (
    LORA_TARGETS,
    add_lora,
    attention_kernel,
    build_scorer,
    freeze_bottom,
    merged_backbone,
)
from prm.train.config import TrainConfig
from prm.train.data import (
    LengthGroupedSampler,
    ListDataset,
    PadCollator,
    encode_dataset,
    last_step_labels,
    length_grouped_indices,
    rows_digest,
    training_labels,
)
from prm.train.probe import fit_probe_head
from prm.train.trainer import CHECKPOINTS, RUN_FILE, build_trainer, find_checkpoint, replica_digests, train

__all__ = ["CHECKPOINTS", "LORA_TARGETS", "LengthGroupedSampler", "ListDataset", "PadCollator", "RUN_FILE",
           "TrainConfig", "add_lora", "attention_kernel", "build_scorer", "build_trainer", "encode_dataset",
           "find_checkpoint", "fit_probe_head", "freeze_bottom", "last_step_labels", "length_grouped_indices",
           "merged_backbone", "replica_digests", "rows_digest", "train", "training_labels"]
