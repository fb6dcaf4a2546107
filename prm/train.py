"""Training a PRM on stepwise examples with transformers' Trainer.

The model is ``prm.model.StepScorer`` (any Hugging Face causal LM backbone, loaded without its LM
head, plus a linear step head read at the separator token); the data are stepwise examples encoded
by ``prm.tokenization.encode`` (each step's label on its separator; a 0.25 label trains toward 0.25
through binary cross-entropy). Because the loop is the stock ``Trainer``, ``accelerate launch``
(DDP, and the DeepSpeed and FSDP configs in ``configs/``) applies unchanged.

What this module adds to the stock loop:

- batches of similar length (``LengthGroupedSampler``): no compute on padding that a smarter batch
  would avoid, and, unlike transformers' own length grouping, an order that depends only on the
  seed and the epoch, so a resumed run and every DDP rank see the same batches;
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
from dataclasses import asdict, dataclass, field
from pathlib import Path

from data_tools.schema import StepwiseExample
from prm.config import DEFAULT_STEP_TOKEN
from prm.tokenization import IGNORE, encode

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
RUN_FILE = "train_run.json"  # in the checkpoints folder: what a resume must match
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class TrainConfig:
    backbone: str = "smollm2-135m"
    """Backbone folder or hub name; 'smollm2-135m' is the embedded default."""
    output_dir: str = "prm_model"
    """Where the trained artifact is written (checkpoints go to its checkpoints/ folder)."""
    epochs: float = 3.0
    """Passes over the training data."""
    max_steps: int = 0
    """Stop after this many optimizer steps (0: run the epochs)."""
    learning_rate: float = 5e-5
    """Peak learning rate of the backbone (linear decay, short warm-up)."""
    head_lr_multiplier: float = 20.0
    """A randomly initialised head learns this many times faster than the backbone (1x after probe init)."""
    batch_size: int = 8
    """Examples per forward pass (per process under accelerate launch)."""
    grad_accum: int = 1
    """Forward passes per optimizer step."""
    num_layers: int = 0
    """Keep only the first N backbone layers (0: all); the head reads the last kept one."""
    freeze_layers: int = 0
    """Freeze the embeddings and the first N layers (0: train everything): faster, less overfitting."""
    probe_init: bool = True
    """Fit the head first as a logistic-regression probe on frozen features, then fine-tune (LP-FT):
    with a few hundred labelled solutions this learns what plain fine-tuning from a random head misses."""
    probe_rows: int = 4000
    """Fit the probe on at most this many training rows (a seeded random subset; 0: all)."""
    monotone: bool = False
    """Mark the artifact to score steps by running minimum (see PRMConfig.monotone); training is unchanged."""
    max_length: int = 512
    """Longest input in tokens; longer prompts are cut from the left, steps are never cut."""
    label_type: str = "soft"
    """'soft' trains toward the label as given (an MC fraction of 0.25 toward 0.25), 'hard' toward
    whether any rollout succeeded (meta.hard_labels, or label > 0)."""
    last_step_only: bool = False
    """Train on each solution's last labelled step only (an outcome-style target on the same model)."""
    bf16: bool = True
    """bf16 autocast (about 3x faster than fp32 on CPUs with AVX-512 BF16)."""
    attention: str = "auto"
    """Attention kernel: 'auto' picks 'eager' (plain matmuls) under bf16 autocast without a GPU, where
    PyTorch's bf16 SDPA CPU kernel is slow (its backward took 20% of a SmolLM2 training step; eager
    attention 5%), and the backbone's own ('sdpa') otherwise; or 'eager' / 'sdpa' to choose."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory for longer inputs, ~30% slower."""
    lora_r: int = 0
    """LoRA rank (0: fine-tune the weights themselves). Adapters go on the attention and MLP
    projections of the unfrozen layers; the head and the separator embedding train fully."""
    lora_alpha: float = 16.0
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    lora_dropout: float = 0.0
    """Dropout on the LoRA path."""
    group_by_length: bool = True
    """Batch examples of similar length together (less padding); off: plain random batches."""
    save_steps: int = 0
    """Write a checkpoint every N optimizer steps to OUT/checkpoints (0: none)."""
    save_total_limit: int = 2
    """Checkpoints kept (the oldest are deleted)."""
    resume: str = ""
    """Resume from a checkpoint folder, or 'latest' for the newest in OUT/checkpoints."""
    logging_steps: int = 0
    """Log the loss every N steps (0: twice per epoch)."""
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
        for flag, value, low in (("--batch-size", self.batch_size, 1), ("--grad-accum", self.grad_accum, 1),
                                 ("--max-steps", self.max_steps, 0), ("--layers", self.num_layers, 0),
                                 ("--freeze-layers", self.freeze_layers, 0), ("--lora-r", self.lora_r, 0),
                                 ("--save-steps", self.save_steps, 0), ("--save-total-limit", self.save_total_limit, 1),
                                 ("--logging-steps", self.logging_steps, 0), ("--max-length", self.max_length, 8),
                                 ("probe_rows", self.probe_rows, 0)):
            if value < low:
                problems.append(f"{flag} must be at least {low}, got {value}")
        if self.learning_rate <= 0:
            problems.append(f"--lr must be positive, got {self.learning_rate}")
        if not 0 <= self.lora_dropout < 1:
            problems.append(f"--lora-dropout must be in [0, 1), got {self.lora_dropout}")
        if self.num_layers and self.freeze_layers >= self.num_layers:
            problems.append(f"--freeze-layers {self.freeze_layers} leaves nothing to train of --layers {self.num_layers}")
        if self.resume and self.resume != "latest" and not Path(self.resume).is_dir():
            problems.append(f"--resume {self.resume}: no such checkpoint folder (or 'latest')")
        if problems:
            raise ValueError("invalid training config:\n  " + "\n  ".join(problems))

    def run_settings(self) -> dict:
        """The settings that decide the result: a resume must match them."""
        out = asdict(self)
        for key in ("resume", "save_steps", "save_total_limit", "logging_steps", "output_dir"):
            out.pop(key)
        return out


def training_labels(ex: StepwiseExample, label_type: str) -> list[float | None]:
    """Soft labels as given; hard labels from ``meta['hard_labels']`` or by thresholding at > 0."""
    if label_type == "hard":
        hard = ex.meta.get("hard_labels")
        if hard is not None:
            return [None if h is None else float(bool(h)) for h in hard]
        return [None if lab is None else float(lab > 0) for lab in ex.float_labels()]
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


def encode_dataset(examples: Sequence[StepwiseExample], tokenizer, sep_id: int, cfg: TrainConfig) -> list[dict]:
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


def build_scorer(cfg: TrainConfig):
    """(scorer, tokenizer, prm config): the backbone with the separator added, layers kept, frozen,
    LoRA-wrapped and checkpointed as ``cfg`` says."""
    from prm.artifacts import new_scorer

    scorer, tok, prm_cfg = new_scorer(cfg.backbone, cfg.step_token, cfg.max_length, num_layers=cfg.num_layers)
    prm_cfg.label_type = cfg.label_type
    prm_cfg.monotone = cfg.monotone
    scorer.backbone.config._attn_implementation = attention_kernel(cfg, scorer.backbone.config._attn_implementation)
    if cfg.lora_r:
        add_lora(scorer, cfg, prm_cfg.step_token_id)
    elif cfg.freeze_layers:
        freeze_bottom(scorer.backbone, cfg.freeze_layers)
    if cfg.gradient_checkpointing:
        # Non-reentrant: works with frozen embeddings (no input that requires grad) and with LoRA.
        kwargs = {"use_reentrant": False}
        if hasattr(scorer.backbone, "activation_checkpointing_enable"):
            scorer.backbone.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:  # the older name
            scorer.backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        scorer.backbone.config.use_cache = False
    return scorer, tok, prm_cfg


def attention_kernel(cfg: TrainConfig, default: str) -> str:
    """The attention implementation to train with (see ``TrainConfig.attention``)."""
    import torch

    if cfg.attention not in ("auto", "eager", "sdpa"):
        raise ValueError(f"--attention must be auto, eager or sdpa, got {cfg.attention!r}")
    if cfg.attention != "auto":
        return cfg.attention
    return "eager" if cfg.bf16 and not torch.cuda.is_available() else default


def add_lora(scorer, cfg: TrainConfig, sep_id: int) -> None:
    """Wrap the backbone in peft LoRA adapters on the layers above ``freeze_layers``; the separator's
    embedding row trains too (peft's trainable tokens), since it is a new token."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise RuntimeError("--lora-r needs the 'peft' package: pip install peft (or train without --lora-r)") from None

    n_layers = len(scorer.backbone.layers)
    # A regex over module names ("layers.3.self_attn.q_proj"): peft's layers_to_transform expects a
    # prefix before "layers", which a base model loaded with AutoModel does not have.
    layers = "|".join(str(i) for i in range(cfg.freeze_layers, n_layers))
    targets = rf"(.*\.)?layers\.({layers})\..*\.({'|'.join(LORA_TARGETS)})"
    config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                        target_modules=targets, trainable_token_indices={"embed_tokens": [sep_id]})
    scorer.backbone = get_peft_model(scorer.backbone, config)


def merged_backbone(backbone):
    """The plain backbone with LoRA adapters folded into its weights (itself when there are none)."""
    from prm.model import unwrap_peft

    return unwrap_peft(backbone)


def build_trainer(examples: Sequence[StepwiseExample], cfg: TrainConfig, callbacks: Sequence | None = None):
    """Everything ``train`` sets up before it calls ``trainer.train``: (trainer, tokenizer, prm config,
    checkpoint to resume from or None). Benchmarks use it to time the very loop ``train`` runs."""
    import torch
    from transformers import TrainingArguments, set_seed

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
    trainer = _prm_trainer_class()(model=scorer, args=args, train_dataset=_ListDataset(rows), data_collator=collate,
                                   callbacks=list(callbacks or []))
    trainer.group_by_length = cfg.group_by_length
    # A probe-fitted head is already where it should be: a faster head LR only knocks it off.
    trainer.head_lr_multiplier = 1.0 if cfg.probe_init else cfg.head_lr_multiplier
    return trainer, tok, prm_cfg, checkpoint


def train(examples: Sequence[StepwiseExample], cfg: TrainConfig, callbacks: Sequence | None = None) -> Path:
    """Train and save an artifact in ``cfg.output_dir``; returns its path.

    ``callbacks`` are transformers ``TrainerCallback`` objects added to the Trainer. Under
    ``accelerate launch`` every process trains and the first one writes the artifact.
    """
    from prm.artifacts import save_artifact

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
        save_artifact(scorer.float().eval(), tok, prm_cfg, out, training=record)
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
            hidden = scorer.hidden_states(batch["input_ids"], batch["attention_mask"])  # [B, T, H]
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


class _ListDataset:
    """A list of encoded rows with their ``lengths``, which length-grouped sampling reads."""

    def __init__(self, rows: list[dict]):
        self.rows = rows
        self.lengths = [len(r["input_ids"]) for r in rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]
