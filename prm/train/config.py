"""``TrainConfig``: every training setting, with a one-line doc each; ``prm train`` builds its flags from it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from data_tools.flags import opt, problems
from prm.config import DEFAULT_STEP_TOKEN


@dataclass
class TrainConfig:
    backbone: str = "smollm2-135m"
    """Backbone folder or hub name; 'smollm2-135m' is the embedded default."""
    output_dir: str = opt("prm_model", flag="--out")
    """Where the trained artifact is written (checkpoints go to its checkpoints/ folder)."""
    epochs: float = opt(3.0, above=0)
    """Passes over the training data."""
    max_steps: int = opt(0, min=0)
    """Stop after this many optimizer steps (0: run the epochs)."""
    learning_rate: float = opt(5e-5, flag="--lr", above=0)
    """Peak learning rate of the backbone (linear decay, short warm-up)."""
    head_lr_multiplier: float = opt(20.0, above=0)
    """A randomly initialised head learns this many times faster than the backbone (1x after probe init)."""
    batch_size: int = opt(8, min=1)
    """Examples per forward pass (per process under accelerate launch)."""
    grad_accum: int = opt(1, min=1)
    """Forward passes per optimizer step."""
    num_layers: int = opt(0, flag="--layers", min=0)
    """Keep only the first N backbone layers (0: all); the head reads the last kept one."""
    freeze_layers: int = opt(0, min=0)
    """Freeze the embeddings and the first N layers (0: train everything): faster, less overfitting."""
    probe_init: bool = True
    """Fit the head first as a logistic-regression probe on frozen features, then fine-tune (LP-FT):
    with a few hundred labelled solutions this learns what plain fine-tuning from a random head misses."""
    probe_rows: int = opt(4000, min=0)
    """Fit the probe on at most this many training rows (a seeded random subset; 0: all)."""
    monotone: bool = False
    """Mark the artifact to score steps by running minimum (see PRMConfig.monotone); training is unchanged."""
    step_checks: bool = False
    """Mark the artifact to cap the score of a step wrong by its own numbers (false arithmetic, a number from
    nowhere; see PRMConfig.step_checks); training is unchanged."""
    max_length: int = opt(1024, min=8)
    """Longest input in tokens (real GSM8K-level solutions need ~1024); longer prompts are cut from the
    left, and steps past it are dropped whole (never cut), with a warning."""
    label_type: str = opt("soft", choices=("soft", "hard"))
    """'soft' trains toward the label as given (an MC fraction of 0.25 toward 0.25), 'hard' toward
    whether any rollout succeeded (meta.hard_labels, or label > 0)."""
    last_step_only: bool = False
    """Train on each solution's last labelled step only (an outcome-style target on the same model)."""
    bf16: bool = True
    """bf16 autocast (about 3x faster than fp32 on CPUs with AVX-512 BF16)."""
    attention: str = opt("auto", choices=("auto", "eager", "sdpa"))
    """Attention kernel: 'auto' picks 'eager' (plain matmuls) under bf16 autocast without a GPU, where
    PyTorch's bf16 SDPA CPU kernel is slow (its backward took 20% of a SmolLM2 training step; eager
    attention 5%), and the backbone's own ('sdpa') otherwise; or 'eager' / 'sdpa' to choose."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory for longer inputs, ~30% slower."""
    lora_r: int = opt(0, min=0)
    """LoRA rank (0: fine-tune the weights themselves). Adapters go on the attention and MLP
    projections of the unfrozen layers; the head and the separator embedding train fully."""
    lora_alpha: float = 16.0
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    lora_dropout: float = opt(0.0, min=0, below=1)
    """Dropout on the LoRA path."""
    group_by_length: bool = True
    """Batch examples of similar length together (less padding); off: plain random batches."""
    save_steps: int = opt(0, min=0)
    """Write a checkpoint every N optimizer steps to OUT/checkpoints (0: none)."""
    save_total_limit: int = opt(2, min=1)
    """Checkpoints kept (the oldest are deleted)."""
    resume: str = opt("", nargs="?", const="latest")
    """Resume from a checkpoint folder, or 'latest' (the flag alone) for the newest in OUT/checkpoints."""
    logging_steps: int = opt(0, min=0)
    """Log the loss every N steps (0: twice per epoch)."""
    seed: int = 0
    """Seed for head init and data order."""
    step_token: str = DEFAULT_STEP_TOKEN
    """The step separator token added to the tokenizer."""
    extra_args: dict = opt({}, cli=False)
    """Further ``TrainingArguments`` fields, passed through."""

    def check(self) -> None:
        """Every problem at once, each naming its flag (before any data is read or model loaded)."""
        out = problems(self)
        if self.num_layers and self.freeze_layers >= self.num_layers:
            out.append(f"--freeze-layers {self.freeze_layers} leaves nothing to train of --layers {self.num_layers}")
        if self.resume and self.resume != "latest" and not Path(self.resume).is_dir():
            out.append(f"--resume {self.resume}: no such checkpoint folder (or 'latest')")
        if out:
            raise ValueError("invalid training config:\n  " + "\n  ".join(out))

    def run_settings(self) -> dict:
        """The settings that decide the result: a resume must match them."""
        out = asdict(self)
        for key in ("resume", "save_steps", "save_total_limit", "logging_steps", "output_dir"):
            out.pop(key)
        return out
