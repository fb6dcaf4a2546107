"""Training a PRM on stepwise examples with transformers' Trainer.

The model is ``prm.model.StepScorer``; the data are stepwise examples encoded by
``prm.tokenization.encode`` (label on each step's separator). Because the loop is the stock
``Trainer``, ``accelerate launch`` and DeepSpeed configs apply unchanged.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from data_tools.schema import StepwiseExample
from prm.config import DEFAULT_STEP_TOKEN
from prm.tokenization import IGNORE, encode

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    backbone: str = "smollm2-135m"
    """Backbone folder or hub name; 'smollm2-135m' is the embedded default."""
    output_dir: str = "prm_model"
    """Where the trained artifact is written."""
    epochs: float = 3.0
    """Passes over the training data."""
    learning_rate: float = 5e-5
    """Peak learning rate of the backbone (linear decay, short warm-up)."""
    head_lr_multiplier: float = 20.0
    """A randomly initialised head learns this many times faster than the backbone (1x after probe init)."""
    batch_size: int = 8
    """Examples per optimizer step."""
    num_layers: int = 0
    """Keep only the first N backbone layers (0: all); the head reads the last kept one."""
    freeze_layers: int = 0
    """Freeze the embeddings and the first N layers (0: train everything): faster, less overfitting."""
    probe_init: bool = True
    """Fit the head first as a logistic-regression probe on frozen features, then fine-tune (LP-FT):
    with a few hundred labelled solutions this learns what plain fine-tuning from a random head misses."""
    monotone: bool = False
    """Mark the artifact to score steps by running minimum (see PRMConfig.monotone); training is unchanged."""
    max_length: int = 512
    """Longest input in tokens; longer prompts are cut from the left, steps are never cut."""
    label_type: str = "soft"
    """'soft' trains toward the MC fraction, 'hard' toward whether any rollout succeeded."""
    bf16: bool = True
    """bf16 autocast (about 3x faster than fp32 on CPUs with AVX-512 BF16)."""
    seed: int = 0
    """Seed for head init and data order."""
    step_token: str = DEFAULT_STEP_TOKEN
    """The step separator token added to the tokenizer."""
    extra_args: dict = field(default_factory=dict)
    """Further ``TrainingArguments`` fields, passed through."""

    def check(self) -> None:
        problems = []
        if self.label_type not in ("soft", "hard"):
            problems.append(f"--label-type must be 'soft' or 'hard', got {self.label_type!r}")
        if self.epochs <= 0:
            problems.append(f"--epochs must be positive, got {self.epochs}")
        if self.batch_size < 1:
            problems.append(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.num_layers < 0:
            problems.append(f"--layers must be 0 (all) or positive, got {self.num_layers}")
        if self.freeze_layers < 0:
            problems.append(f"--freeze-layers must be 0 or positive, got {self.freeze_layers}")
        if self.learning_rate <= 0:
            problems.append(f"--lr must be positive, got {self.learning_rate}")
        if problems:
            raise ValueError("invalid training config:\n  " + "\n  ".join(problems))


def training_labels(ex: StepwiseExample, label_type: str) -> list[float | None]:
    """Soft labels as given; hard labels from ``meta['hard_labels']`` or by thresholding at > 0."""
    if label_type == "hard":
        hard = ex.meta.get("hard_labels")
        if hard is not None:
            return [None if h is None else float(bool(h)) for h in hard]
        return [None if lab is None else float(lab > 0) for lab in ex.float_labels()]
    return ex.float_labels()


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


def encode_dataset(examples: Sequence[StepwiseExample], tokenizer, sep_id: int, cfg: TrainConfig) -> list[dict]:
    rows, dropped, skipped = [], 0, 0
    for ex in examples:
        if ex.labels is None:
            skipped += 1
            continue
        enc = encode(tokenizer, sep_id, ex.prompt, ex.steps, training_labels(ex, cfg.label_type),
                     cfg.max_length, drop_overflow=True)
        dropped += enc.dropped_steps
        if enc.step_positions:
            rows.append({"input_ids": enc.input_ids, "labels": enc.labels})
    if dropped or skipped:
        log.warning("training data: %d steps beyond max_length=%d dropped, %d unlabelled examples skipped",
                    dropped, cfg.max_length, skipped)
    if not rows:
        raise ValueError("no labelled steps to train on: every example is unlabelled or too long")
    return rows


def train(examples: Sequence[StepwiseExample], cfg: TrainConfig) -> Path:
    """Train and save an artifact in ``cfg.output_dir``; returns its path."""
    import torch
    from transformers import TrainingArguments, set_seed

    from prm.artifacts import new_scorer, save_artifact

    cfg.check()
    set_seed(cfg.seed)
    scorer, tok, prm_cfg = new_scorer(cfg.backbone, cfg.step_token, cfg.max_length, num_layers=cfg.num_layers)
    prm_cfg.label_type = cfg.label_type
    prm_cfg.monotone = cfg.monotone
    if cfg.freeze_layers:
        freeze_bottom(scorer.backbone, cfg.freeze_layers)
    rows = encode_dataset(examples, tok, prm_cfg.step_token_id, cfg)
    collate = PadCollator(tok.pad_token_id)
    if cfg.probe_init:
        fit_probe_head(scorer, rows, collate, bf16=cfg.bf16)
    steps_per_epoch = math.ceil(len(rows) / cfg.batch_size)
    args = TrainingArguments(
        output_dir=str(Path(cfg.output_dir) / "checkpoints"),
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=max(1, int(0.05 * steps_per_epoch * cfg.epochs)),
        weight_decay=0.0,
        bf16=cfg.bf16,
        use_cpu=not torch.cuda.is_available(),
        logging_steps=max(1, steps_per_epoch // 2),
        save_strategy="no",
        report_to=[],
        seed=cfg.seed,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=True,
        train_sampling_strategy="group_by_length",
        **cfg.extra_args,
    )
    trainer = _prm_trainer_class()(model=scorer, args=args, train_dataset=_ListDataset(rows),
                          data_collator=collate)
    # A probe-fitted head is already where it should be: a faster head LR only knocks it off.
    trainer.head_lr_multiplier = 1.0 if cfg.probe_init else cfg.head_lr_multiplier
    result = trainer.train()
    log.info("training done: %s", result.metrics)
    out = save_artifact(scorer.float().eval(), tok, prm_cfg, cfg.output_dir)
    return out


def fit_probe_head(scorer, rows: list[dict], collate, bf16: bool = True, l2: float = 1e-1,
                   batch_size: int = 16) -> None:
    """Set the head to the L2-regularised logistic regression of the labels on frozen features.

    One forward pass over the training rows collects the hidden state at every labelled separator;
    L-BFGS then solves the convex problem exactly. Labels may be soft (BCE with fractional targets).
    """
    import torch

    feats, targets = [], []
    scorer.eval()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for i in range(0, len(rows), batch_size):
            batch = collate(rows[i:i + batch_size])
            hidden = scorer.backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                     use_cache=False).last_hidden_state  # [B, T, H]
            mask = batch["labels"] != IGNORE
            feats.append(hidden[mask].float())
            targets.append(batch["labels"][mask].float())
    x, y = torch.cat(feats), torch.cat(targets)  # [N, H], [N]
    mean, std = x.mean(0), x.std(0) + 1e-6
    xs = (x - mean) / std
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xs @ w + b, y) + l2 * (w @ w) / 2
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():  # fold the standardisation into the head: w.(x - m)/s + b
        scorer.head.weight.copy_((w / std)[None, :])
        scorer.head.bias.copy_(b - (w * mean / std).sum())
    scorer.train()
    log.info("probe-initialised head on %d labelled steps", len(y))


def freeze_bottom(backbone, n_layers: int) -> None:
    """No gradients for the input embeddings and the first ``n_layers`` layers."""
    backbone.get_input_embeddings().weight.requires_grad_(False)
    for layer in backbone.layers[:n_layers]:
        layer.requires_grad_(False)


def _prm_trainer_class():
    from transformers import Trainer

    class PRMTrainer(Trainer):
        """Trainer with a faster learning rate for the new head than for the pretrained backbone."""

        head_lr_multiplier = 1.0

        def create_optimizer(self, model=None):
            import torch

            if self.optimizer is None:
                model = model or self.model
                head = [p for n, p in model.named_parameters() if n.startswith("head.") and p.requires_grad]
                body = [p for n, p in model.named_parameters() if not n.startswith("head.") and p.requires_grad]
                lr = self.args.learning_rate
                self.optimizer = torch.optim.AdamW(
                    [{"params": body, "lr": lr}, {"params": head, "lr": lr * self.head_lr_multiplier}],
                    lr=lr, weight_decay=self.args.weight_decay, betas=(0.9, 0.999), eps=1e-8)
            return self.optimizer

    return PRMTrainer


class _ListDataset:
    """A list of encoded rows with the ``lengths`` that length-grouped sampling reads."""

    def __init__(self, rows: list[dict]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]
