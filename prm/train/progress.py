"""Training progress: optimizer steps done, last logged loss, real (non-padding) tokens/s and ETA.

Replaces transformers' ``PrinterCallback``, which prints each log as a raw dict when its tqdm bar is
off. Shown by the first process only; ``-q`` (``data_tools.progress.set_quiet``) silences it.
"""

from __future__ import annotations

import time

from transformers import TrainerCallback

from data_tools.progress import Progress


class TrainProgress(TrainerCallback):
    def __init__(self) -> None:
        self.bar: Progress | None = None
        self.loss: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.start_step, self.start_tokens, self.t0 = state.global_step, state.num_input_tokens_seen, time.monotonic()
        self.bar = Progress(max(state.max_steps - state.global_step, 0), "prm train", "steps",
                            enabled=state.is_world_process_zero)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.loss = float(logs["loss"])

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is None:
            return
        extra = {}
        if self.loss is not None:
            extra["loss"] = f"{self.loss:.4f}"
        elapsed = time.monotonic() - self.t0
        if elapsed > 0 and state.num_input_tokens_seen:
            extra["tokens/s"] = f"{(state.num_input_tokens_seen - self.start_tokens) / elapsed:.0f}"
        self.bar.update(state.global_step - self.start_step - self.bar.n, **extra)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
