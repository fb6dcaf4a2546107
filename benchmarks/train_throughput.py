"""Training throughput: our trainer against the plain recipe, same model, data and number of steps.

The plain recipe is what TRL's PRMTrainer did (TRL 0.13-0.19) and what most PRM training scripts
still do: ``AutoModelForTokenClassification`` with ``num_labels=2`` on the backbone, each step
followed by a newline separator whose token carries the step's label (cross-entropy, -100
elsewhere), a BOS before the prompt, ``DataCollatorForTokenClassification`` (pads each random batch
to its longest row) and the stock ``Trainer``, in its default fp32 and with bf16 autocast.

Ours is ``prm.train``'s own loop (``build_trainer``, exactly what ``prm train`` runs): the backbone
without its LM head plus the step head, read at a dedicated separator token, batches grouped by
length, bf16 autocast. For comparable losses both sides start from a zero head with one learning
rate (no probe init, no faster head LR): binary cross-entropy on one logit and 2-class cross-entropy
on two then start at the same loss, ln 2.

Data: the first ``--problems`` GSM8K training problems (``../shared/data/gsm8k/train.jsonl``), each
gold solution (every step right) and one error-injected variant (right before the injected error,
wrong from it on), shuffled once. Every run does ``--steps`` optimizer steps of ``--batch-size``
solutions; the first ``--warmup`` steps are not timed. Real tokens are non-padding tokens (the
attention mask's sum); padded tokens are what the model computed on. Runs alternate within each of
``--rounds`` rounds, so a change in the machine's load falls on every side.

    .venv/bin/python benchmarks/train_throughput.py [--steps 8 --batch-size 8 --threads 1 --rounds 1]

The last line printed is JSON with ``speedup_same_precision`` (ours bf16 over plain bf16) and
``speedup_vs_default_fp32`` (ours bf16 over plain fp32), real tokens/s and mean losses of each run.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from itertools import chain
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from transformers import TrainerCallback  # noqa: E402

from data_tools.formats import read  # noqa: E402
from data_tools.schema import StepwiseExample  # noqa: E402
from data_tools.synth.variants import inject_variants  # noqa: E402

GSM8K = ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl"


def load_data(path: Path, problems: int, seed: int) -> list[StepwiseExample]:
    out = []
    for i, gold in enumerate(read("gsm8k", path)):
        if i >= problems:
            break
        gold.meta.update(id=f"gsm8k-{i}", problem_id=f"gsm8k-{i}")
        out.append(StepwiseExample(gold.prompt, gold.steps, [True] * len(gold.steps), gold.meta))
        out.extend(inject_variants(out[-1], random.Random(f"{seed}:{i}")))
    random.Random(seed).shuffle(out)
    return out


class Meter(TrainerCallback):
    """Times the steps after the warm-up and reads the losses."""

    def __init__(self, warmup: int):
        self.warmup, self.t0, self.tokens0, self.t1, self.tokens1 = warmup, None, 0, None, 0
        self.padded, self.real = [], []  # tokens computed on and real tokens, per collated batch

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            self.t0, self.tokens0 = time.perf_counter(), state.num_input_tokens_seen
        self.t1, self.tokens1 = time.perf_counter(), state.num_input_tokens_seen

    def result(self, state) -> dict:
        seconds = self.t1 - self.t0
        real = self.tokens1 - self.tokens0
        losses = [e["loss"] for e in state.log_history if "loss" in e]
        return {"real_tokens_per_s": real / seconds, "seconds": seconds, "real_tokens": real,
                "padding_share": 1 - sum(self.real) / sum(self.padded), "mean_loss": sum(losses) / len(losses),
                "first_loss": losses[0], "last_loss": losses[-1], "steps": state.global_step}


def zero_head(linear) -> None:
    """Both sides start from a zero head: the same loss (ln 2) at step 1, so losses compare."""
    import torch

    with torch.no_grad():
        linear.weight.zero_()
        if linear.bias is not None:
            linear.bias.zero_()


def counting(collate, meter: Meter):
    def wrapped(rows):
        batch = collate(rows)
        meter.padded.append(batch["input_ids"].numel())
        meter.real.append(int(batch["attention_mask"].sum()))
        return batch
    return wrapped


def trl_row(tok, ex: StepwiseExample, max_length: int = 1024) -> dict:
    """TRL PRMTrainer.tokenize_row with its defaults: newline separator, BOS, labels at each step's end."""
    sep = tok.encode("\n", add_special_tokens=False)
    prompt = tok(ex.prompt, add_special_tokens=False)["input_ids"]
    if tok.bos_token_id is not None:
        prompt = [tok.bos_token_id] + prompt
    steps = [tok(s, add_special_tokens=False)["input_ids"] + sep for s in ex.steps]
    labels = [[-100] * (len(s) - 1) + [int(bool(lab))] for s, lab in zip(steps, ex.labels, strict=True)]
    ids = prompt + list(chain(*steps))
    labels = [-100] * len(prompt) + list(chain(*labels))
    return {"input_ids": ids[:max_length], "labels": labels[:max_length]}


def run_plain(data, args, bf16: bool, out: str) -> dict:
    import torch
    from transformers import (
        AutoModelForTokenClassification,
        DataCollatorForTokenClassification,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    from prm.artifacts import load_tokenizer
    from prm.backbone import resolve_backbone

    set_seed(args.seed)
    path = resolve_backbone(args.backbone)
    tok = load_tokenizer(path)
    model = AutoModelForTokenClassification.from_pretrained(path, num_labels=2, dtype=torch.float32)
    model.config.pad_token_id = tok.pad_token_id
    zero_head(model.score)
    rows = [trl_row(tok, ex) for ex in data]
    meter = Meter(args.warmup)
    targs = TrainingArguments(output_dir=out, max_steps=args.steps, per_device_train_batch_size=args.batch_size,
                              learning_rate=args.lr, lr_scheduler_type="linear", warmup_steps=1, weight_decay=0.0,
                              bf16=bf16, use_cpu=True, logging_steps=1, save_strategy="no", report_to=[],
                              seed=args.seed, dataloader_num_workers=0, disable_tqdm=True,
                              include_num_input_tokens_seen="non_padding")
    trainer = Trainer(model=model, args=targs, train_dataset=rows,
                      data_collator=counting(DataCollatorForTokenClassification(tok), meter), callbacks=[meter])
    trainer.train()
    return meter.result(trainer.state)


def run_ours(data, args, bf16: bool, out: str) -> dict:
    from prm.train import TrainConfig, build_trainer

    meter = Meter(args.warmup)
    cfg = TrainConfig(backbone=args.backbone, output_dir=out, max_steps=args.steps, batch_size=args.batch_size,
                      learning_rate=args.lr, bf16=bf16, probe_init=False, head_lr_multiplier=1.0, logging_steps=1,
                      label_type="hard", seed=args.seed, extra_args={"warmup_steps": 1})
    trainer, _, _, _ = build_trainer(data, cfg, callbacks=[meter])
    zero_head(trainer.model.head)
    trainer.data_collator = counting(trainer.data_collator, meter)
    trainer.train()
    return meter.result(trainer.state)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(GSM8K), help="GSM8K JSONL (default: ../shared/data/gsm8k/train.jsonl)")
    parser.add_argument("--problems", type=int, default=400)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=1, help="first steps left out of the timing")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads for every run (0: torch's default)")
    parser.add_argument("--backbone", default="smollm2-135m")
    parser.add_argument("--ours-fp32", action="store_true", help="also time ours in fp32 (where the gain comes from)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not 1 <= args.warmup < args.steps:
        parser.error("need 1 <= --warmup < --steps")

    import logging

    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    logging.getLogger("prm").setLevel(logging.ERROR)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_data(Path(args.data), args.problems, args.seed)
    runs = [("plain_fp32", run_plain, False), ("plain_bf16", run_plain, True), ("ours_bf16", run_ours, True)]
    if args.ours_fp32:
        runs.append(("ours_fp32", run_ours, False))
    results: dict[str, list[dict]] = {name: [] for name, _, _ in runs}
    for r in range(args.rounds):
        for name, fn, bf16 in runs:
            with tempfile.TemporaryDirectory() as tmp:
                res = fn(data, args, bf16, tmp)
            results[name].append(res)
            print(f"round {r + 1} {name}: {res['real_tokens_per_s']:.1f} real tokens/s, padding "
                  f"{res['padding_share']:.1%}, mean loss {res['mean_loss']:.4f} over {res['steps']} steps", flush=True)

    def total(name: str) -> float:  # real tokens over seconds, all rounds together
        return sum(r["real_tokens"] for r in results[name]) / sum(r["seconds"] for r in results[name])

    summary = {name: {"real_tokens_per_s": round(total(name), 1),
                      "padding_share": round(sum(r["padding_share"] for r in rs) / len(rs), 4),
                      **{k: round(sum(r[k] for r in rs) / len(rs), 4) for k in ("mean_loss", "first_loss", "last_loss")}}
               for name, rs in results.items()}
    print(json.dumps({
        "speedup_same_precision": round(total("ours_bf16") / total("plain_bf16"), 3),
        "speedup_vs_default_fp32": round(total("ours_bf16") / total("plain_fp32"), 3),
        "runs": summary, "solutions": len(data), "steps": args.steps, "timed_steps": args.steps - args.warmup,
        "batch_size": args.batch_size, "threads": args.threads or torch.get_num_threads(), "rounds": args.rounds,
    }))


if __name__ == "__main__":
    main()
