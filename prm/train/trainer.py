"""Training a PRM on stepwise examples with transformers' Trainer.

The model is ``prm.model.StepScorer`` (any Hugging Face causal LM backbone, loaded without its LM
head, plus a linear step head read at the separator token); the data are stepwise examples encoded
by ``prm.tokenization.encode`` (each step's label on its separator; a 0.25 label trains toward 0.25
through binary cross-entropy). Because the loop is the stock ``Trainer``, ``accelerate launch``
(DDP, and the DeepSpeed and FSDP configs in ``configs/``) applies unchanged.

What this module adds to the stock loop (the pieces live beside it in ``prm.train``: ``config``,
``data``, ``build``, ``probe``, ``progress``):

- batches of similar length (``prm.train.data.LengthGroupedSampler``), in an order fixed by the
  seed and the epoch, so a resumed run and every DDP rank see the same batches;
- progress as step, loss, real tokens/s and ETA (``prm.train.progress``) instead of raw dicts;
- checkpoints every ``save_steps`` and ``resume``: model, optimizer, scheduler, RNG and data
  position, so an interrupted run continues to the result of an uninterrupted one; a resume with
  other settings or other data is refused;
- LoRA through peft (merged into the backbone when the artifact is written, which stays plain
  safetensors), gradient checkpointing, bf16 autocast, training on the last step only, a head
  fitted as a linear probe before fine-tuning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from data_tools.schema import StepwiseExample
from prm.artifacts import Artifact
from prm.train.build import build_scorer, merged_backbone
from prm.train.config import TrainConfig
from prm.train.data import LengthGroupedSampler, ListDataset, PadCollator, encode_dataset, rows_digest
from prm.train.probe import fit_probe_head

log = logging.getLogger(__name__)

CHECKPOINTS = Artifact.CHECKPOINTS
RUN_FILE = "train_run.json"  # in the checkpoints folder: what a resume must match


def find_checkpoint(cfg: TrainConfig) -> str | None:
    """The checkpoint folder ``cfg.resume`` names ('latest': the newest under OUT/checkpoints)."""
    if not cfg.resume:
        return None
    if cfg.resume != "latest":
        return cfg.resume
    from transformers.trainer_utils import get_last_checkpoint

    folder = Path(cfg.output_dir) / CHECKPOINTS
    last = get_last_checkpoint(str(folder)) if folder.is_dir() else None
    if last is None:
        raise ValueError(f"--resume latest: no checkpoint under {folder} (train with --save-steps N to write some)")
    return last


def _check_run(cfg: TrainConfig, digest: str, resuming: bool, main_process: bool) -> None:
    """Record what this run is; refuse to resume a run that was something else."""
    path = Path(cfg.output_dir) / CHECKPOINTS / RUN_FILE
    settings = {**cfg.run_settings(), "data_sha256": digest}
    if resuming and path.is_file():
        before = json.loads(path.read_text())
        changed = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
        if changed:
            raise ValueError(f"cannot resume: the checkpoint was trained with other settings or data ({', '.join(changed)} "
                             f"differ; see {path}). Rerun with the same settings and data, or train afresh.")
    elif main_process:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings, indent=1) + "\n")


def build_trainer(examples: Sequence[StepwiseExample], cfg: TrainConfig, callbacks: Sequence | None = None):
    """Everything ``train`` sets up before it calls ``trainer.train``: (trainer, tokenizer, prm config,
    checkpoint to resume from or None). Benchmarks use it to time the very loop ``train`` runs."""
    import torch
    from transformers import PrinterCallback, TrainingArguments, set_seed

    from prm.train.progress import TrainProgress

    cfg.check()
    checkpoint = find_checkpoint(cfg)
    set_seed(cfg.seed)
    scorer, tok, prm_cfg = build_scorer(cfg)
    rows = encode_dataset(examples, tok, prm_cfg.step_token_id, cfg)
    collate = PadCollator(tok.pad_token_id)
    steps_per_epoch = math.ceil(len(rows) / (cfg.batch_size * cfg.grad_accum))
    total_steps = cfg.max_steps or math.ceil(steps_per_epoch * cfg.epochs)
    settings = dict(
        output_dir=str(Path(cfg.output_dir) / CHECKPOINTS),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=max(1, int(0.05 * total_steps)),
        weight_decay=0.0,
        bf16=cfg.bf16,
        use_cpu=not torch.cuda.is_available(),
        logging_steps=cfg.logging_steps or max(1, steps_per_epoch // 2),
        save_strategy="steps" if cfg.save_steps else "no",
        save_steps=cfg.save_steps or 500,
        save_total_limit=cfg.save_total_limit,
        report_to=[],
        seed=cfg.seed,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=True,
        include_num_input_tokens_seen="non_padding",
        ddp_find_unused_parameters=False,  # every trainable parameter is used in every forward
    )
    args = TrainingArguments(**{**settings, **cfg.extra_args})  # extra_args win
    _check_run(cfg, rows_digest(rows), checkpoint is not None, args.process_index == 0)
    if cfg.probe_init and checkpoint is None:  # a resumed run loads its head from the checkpoint
        probe = rows
        if cfg.probe_rows and len(rows) > cfg.probe_rows:
            import random

            probe = random.Random(cfg.seed).sample(rows, cfg.probe_rows)
        fit_probe_head(scorer, probe, collate, bf16=cfg.bf16)
    trainer = _prm_trainer_class()(model=scorer, args=args, train_dataset=ListDataset(rows), data_collator=collate,
                                   callbacks=[TrainProgress(), *(callbacks or [])])
    trainer.remove_callback(PrinterCallback)  # raw dicts; TrainProgress shows step, loss, tokens/s and ETA
    trainer.group_by_length = cfg.group_by_length
    # A probe-fitted head is already where it should be: a faster head LR only knocks it off.
    trainer.head_lr_multiplier = 1.0 if cfg.probe_init else cfg.head_lr_multiplier
    return trainer, tok, prm_cfg, checkpoint


def train(examples: Sequence[StepwiseExample], cfg: TrainConfig, callbacks: Sequence | None = None) -> Path:
    """Train and save an artifact in ``cfg.output_dir``; returns its path.

    ``callbacks`` are transformers ``TrainerCallback`` objects added to the Trainer. Under
    ``accelerate launch`` every process trains and the first one writes the artifact.
    """
    trainer, tok, prm_cfg, checkpoint = build_trainer(examples, cfg, callbacks)
    t0 = time.monotonic()
    result = trainer.train(resume_from_checkpoint=checkpoint)
    seconds = time.monotonic() - t0
    log.info("training done: %s", result.metrics)
    digests = replica_digests(trainer)  # every rank takes part
    scorer = _full_model(trainer, cfg)  # every rank takes part; None except on the first
    out = Path(cfg.output_dir)
    if scorer is not None:
        scorer.backbone = merged_backbone(scorer.backbone)
        record = _training_record(cfg, trainer, result, seconds, len(trainer.train_dataset))
        record["replica_digests"] = digests
        Artifact.save(out, scorer.float().eval(), tok, prm_cfg, training=record)
    trainer.accelerator.wait_for_everyone()
    return out


def _sharded(trainer) -> bool:
    """Whether no rank holds the whole model (FSDP, DeepSpeed): weights must be gathered to be saved."""
    return bool(getattr(trainer, "is_fsdp_enabled", False) or getattr(trainer, "is_deepspeed_enabled", False))


def replica_digests(trainer) -> list[str] | None:
    """Under DDP: each rank's sha256 of its weights, gathered on every rank; they must all be equal
    (DDP keeps replicas in sync by construction, so a difference is a bug worth stopping for).
    None for a single process or sharded engines."""
    if trainer.args.world_size <= 1 or _sharded(trainer):
        return None
    import torch.distributed as dist

    model = trainer.accelerator.unwrap_model(trainer.model)
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    digests: list = [None] * trainer.args.world_size
    dist.all_gather_object(digests, h.hexdigest())
    if len(set(digests)) != 1:
        raise RuntimeError(f"DDP replicas ended with different weights: {digests}")
    return digests


def _full_model(trainer, cfg: TrainConfig):
    """The trained PRM on the first process (None on the others), gathered from shards if need be."""
    main = trainer.args.process_index == 0
    if not _sharded(trainer):
        return trainer.accelerator.unwrap_model(trainer.model) if main else None
    state = trainer.accelerator.get_state_dict(trainer.model)  # a collective: full on the first rank
    if not main:
        return None
    scorer, _, _ = build_scorer(TrainConfig(**{**asdict(cfg), "gradient_checkpointing": False}))
    scorer.load_state_dict(state)
    return scorer


def _training_record(cfg: TrainConfig, trainer, result, seconds: float, n_rows: int) -> dict:
    """What ``training.json`` in the artifact says about the run."""
    state = trainer.state
    losses = [(e["step"], e["loss"]) for e in state.log_history if "loss" in e]
    return {"config": asdict(cfg), "examples": n_rows, "global_step": state.global_step,
            "world_size": trainer.args.world_size, "train_loss": result.metrics.get("train_loss"),
            "last_logged_loss": losses[-1][1] if losses else None, "loss_history": losses,
            "real_tokens_seen": state.num_input_tokens_seen, "seconds": round(seconds, 2)}


def _prm_trainer_class():
    from transformers import Trainer

    class PRMTrainer(Trainer):
        """Trainer with a faster learning rate for the new head, and length-grouped batches in an
        order fixed by (seed, epoch)."""

        head_lr_multiplier = 1.0
        group_by_length = True

        def create_optimizer(self, model=None):
            import torch

            if self.optimizer is None:
                model = model or self.model
                head = [p for n, p in model.named_parameters() if n.startswith("head.") and p.requires_grad]
                body = [p for n, p in model.named_parameters() if not n.startswith("head.") and p.requires_grad]
                lr = self.args.learning_rate
                groups = [{"params": body, "lr": lr}, {"params": head, "lr": lr * self.head_lr_multiplier}]
                kwargs = dict(lr=lr, weight_decay=self.args.weight_decay, betas=(0.9, 0.999), eps=1e-8)
                try:  # one pass over the parameters: ~6x faster than foreach on a CPU (0.09 s vs 0.5 s for 135M)
                    self.optimizer = torch.optim.AdamW(groups, fused=True, **kwargs)
                except (RuntimeError, TypeError):  # a device or dtype the fused kernel does not cover
                    self.optimizer = torch.optim.AdamW(groups, **kwargs)
            return self.optimizer

        def _get_train_sampler(self, train_dataset=None):
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            if not self.group_by_length:
                return super()._get_train_sampler(train_dataset)
            return LengthGroupedSampler(dataset.lengths, self.args.per_device_train_batch_size * self.args.world_size,
                                        self.args.seed)

    return PRMTrainer
