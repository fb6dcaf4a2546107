"""``prm demo``: every stage on the embedded default, from generated problems to an HTTP score.

It sits in ``serving`` because it is the one place that uses every layer (data_tools -> prm ->
serving); each stage is a call into the library function the matching ``prm`` subcommand uses.

Stages: generate problems with gold and error-injected solutions (the injected step is ground
truth, kept apart from the labeller) -> Monte-Carlo rollout labels -> train -> temperature scaling
on a held-out split -> ONNX export with a parity check -> BentoML service on 127.0.0.1 queried with
``PRMClient`` -> ``summary.json``.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

GROUND_TRUTH_KEYS = ("first_error", "error_kind")


@dataclass
class DemoConfig:
    out: str = "demo_out"
    """Output folder: data/, model/ (the trained artifact) and summary.json."""
    problems: int = 120
    """Generated problems; each gives a gold solution and one with an injected error."""
    max_steps: int = 2
    """Steps per solution (2 is what SmolLM2-135M continues reliably)."""
    max_number: int = 6
    """Largest number in a problem (SmolLM2-135M's sums go wrong past ~20: labels lose signal)."""
    rollouts: int = 8
    """Monte-Carlo rollouts per step prefix."""
    max_new_tokens: int = 40
    """Longest rollout continuation, in tokens."""
    temperature: float = 0.5
    """Sampling temperature of rollouts."""
    backbone: str = "smollm2-135m"
    """Backbone for both the rollout completer and the PRM."""
    epochs: float = 8.0
    """Training epochs (after the linear-probe head init)."""
    learning_rate: float = 1e-4
    """Peak learning rate of the unfrozen layers and the head. Measured on the same labels: 3e-5 for 4
    epochs left the held-out step AUROC at ~0.72; 1e-4 for 8 epochs reached ~0.83 and leaves the
    model overconfident enough (T ~1.8) that temperature scaling has something to correct."""
    label_type: str = "hard"
    """Train on 'hard' (any rollout succeeded) or 'soft' (fraction of successful rollouts) labels."""
    layers: int = 21
    """Backbone layers kept (SmolLM2-135M has 30; its middle layers probe better than its last)."""
    freeze_layers: int = 10
    """Bottom layers (and embeddings) kept frozen during fine-tuning."""
    monotone: bool = True
    """Score each step as the running minimum of step scores (first-error semantics)."""
    heldout_fraction: float = 0.3
    """Share of labelled problems held out: half for calibration, half for the test split."""
    eval_problems: int = 200
    """Extra fresh problems (never labelled or trained on) scored over HTTP for the held-out AUROC."""
    seed: int = 0
    """Seed for problems, rollouts, splits and training."""
    port: int = 0
    """Port for the service on 127.0.0.1 (0: any free port)."""

    def check(self) -> None:
        problems = []
        if self.problems < 5:
            problems.append(f"--problems must be at least 5 (train, calibration and test splits), got {self.problems}")
        if self.rollouts < 1:
            problems.append(f"--rollouts must be at least 1, got {self.rollouts}")
        if self.max_steps < 2:
            problems.append(f"--max-steps must be at least 2, got {self.max_steps}")
        if not 0.1 <= self.heldout_fraction <= 0.8:
            problems.append(f"--heldout-fraction must be in [0.1, 0.8], got {self.heldout_fraction}")
        if problems:
            raise ValueError("invalid demo config:\n  " + "\n  ".join(problems))


def split_by_problem(examples, heldout_fraction: float, seed: int):
    """(train, calib, test): all solutions of one problem land in the same split."""
    pids = sorted({ex.meta["problem_id"] for ex in examples})
    random.Random(seed).shuffle(pids)
    n_held = max(2, round(len(pids) * heldout_fraction))
    calib_ids, test_ids = set(pids[: n_held // 2]), set(pids[n_held // 2: n_held])
    pick = lambda ids: [ex for ex in examples if ex.meta["problem_id"] in ids]  # noqa: E731
    train_ids = set(pids[n_held:])
    return pick(train_ids), pick(calib_ids), pick(test_ids)


def run_demo(cfg: DemoConfig) -> dict:
    import numpy as np

    from data_tools.labelling import first_error, mc_label
    from data_tools.problems import generate_dataset, ground_truth_labels
    from data_tools.schema import StepwiseExample, write_jsonl
    from prm.calibrate import TemperatureScaler, brier, ece, save_calibration
    from prm.eval.metrics import auroc
    from prm.export import export_onnx, parity
    from prm.rollout_model import load_completer
    from prm.scoring import Scorer
    from prm.train import TrainConfig, train

    cfg.check()
    t_start = time.monotonic()
    out = Path(cfg.out)
    (out / "data").mkdir(parents=True, exist_ok=True)
    summary: dict = {"config": asdict(cfg)}
    timings: dict[str, float] = {}

    def stage(name: str, t0: float) -> None:
        timings[name] = round(time.monotonic() - t0, 1)
        print(f"[{name}] done in {timings[name]:.1f} s", flush=True)

    # 1. problems, with ground truth kept apart from what the labeller sees
    t0 = time.monotonic()
    examples = generate_dataset(cfg.problems, seed=cfg.seed, max_steps=cfg.max_steps, max_number=cfg.max_number)
    truth = {ex.meta["id"]: {k: ex.meta[k] for k in GROUND_TRUTH_KEYS} for ex in examples}
    blind = [StepwiseExample(ex.prompt, ex.steps, None, {k: v for k, v in ex.meta.items()
                                                         if k not in GROUND_TRUTH_KEYS}) for ex in examples]
    write_jsonl(out / "data" / "solutions.jsonl", blind)
    (out / "data" / "ground_truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    stage("generate", t0)
    print(f"    {cfg.problems} problems -> {len(examples)} solutions "
          f"({sum(t['first_error'] >= 0 for t in truth.values())} with an injected error)")

    # 2. Monte-Carlo labels
    t0 = time.monotonic()
    completer = load_completer(cfg.backbone, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature)
    labelled, report = mc_label(blind, completer, rollouts=cfg.rollouts, base_seed=cfg.seed)
    del completer
    write_jsonl(out / "data" / "labelled.jsonl", labelled)
    for ex in labelled:  # re-attach ground truth for evaluation only, after labelling
        ex.meta.update(truth[ex.meta["id"]])
    agree = [first_error(ex.meta["hard_labels"]) == ex.meta["first_error"] for ex in labelled]
    summary.update(labelled_solutions=len(labelled), rollouts=report.rollouts,
                   rollout_success_rate=round(report.to_json()["success_rate"], 4),
                   unparseable_rollouts=report.unparseable,
                   label_first_error_agreement=round(float(np.mean(agree)), 4))
    stage("label", t0)
    print(f"    {report.rollouts} rollouts, {report.to_json()['success_rate']:.1%} reached the gold answer; "
          f"first-error agreement with injected errors {summary['label_first_error_agreement']:.1%}")

    # 3. train
    t0 = time.monotonic()
    train_set, calib_set, test_set = split_by_problem(labelled, cfg.heldout_fraction, cfg.seed)
    model_dir = out / "model"
    train(train_set, TrainConfig(backbone=cfg.backbone, output_dir=str(model_dir), epochs=cfg.epochs,
                                 learning_rate=cfg.learning_rate, label_type=cfg.label_type, seed=cfg.seed,
                                 num_layers=cfg.layers, freeze_layers=cfg.freeze_layers, monotone=cfg.monotone))
    summary.update(train_solutions=len(train_set), calib_solutions=len(calib_set), test_solutions=len(test_set))
    stage("train", t0)

    # 4. calibrate on the calibration split (against the MC hard labels the pipeline produced)
    t0 = time.monotonic()
    torch_scorer = Scorer(model_dir, backend="torch", calibrated=False)
    flat = lambda rows: np.concatenate([np.asarray(r, dtype=float) for r in rows])  # noqa: E731
    calib_logits = flat(torch_scorer.step_logits([(e.prompt, e.steps) for e in calib_set]))
    calib_y = flat([e.meta["hard_labels"] for e in calib_set])
    scaler = TemperatureScaler().fit(calib_logits, calib_y)
    save_calibration(model_dir, scaler.to_json())
    test_logits = flat(torch_scorer.step_logits([(e.prompt, e.steps) for e in test_set]))
    test_y = flat([e.meta["hard_labels"] for e in test_set])
    truth_y = flat([ground_truth_labels(e) for e in test_set])
    p_before, p_after = 1 / (1 + np.exp(-test_logits)), scaler.predict_proba(test_logits)
    torch_scorer.cfg.monotone = False  # the raw step scores too, to show what the running minimum adds
    raw_logits = flat(torch_scorer.step_logits([(e.prompt, e.steps) for e in test_set]))
    summary.update(temperature=round(scaler.temperature_, 4),
                   ece_before=round(ece(p_before, test_y), 4), ece_after=round(ece(p_after, test_y), 4),
                   brier_before=round(brier(p_before, test_y), 4), brier_after=round(brier(p_after, test_y), 4),
                   test_auroc=round(auroc(truth_y, p_after), 4),
                   test_auroc_raw_steps=round(auroc(truth_y, raw_logits), 4),
                   test_auroc_vs_mc_labels=round(auroc(test_y, p_after), 4))
    del torch_scorer
    stage("calibrate", t0)
    print(f"    temperature {scaler.temperature_:.3f}; ECE {summary['ece_before']:.4f} -> {summary['ece_after']:.4f}; "
          f"test-split step AUROC vs injected errors {summary['test_auroc']:.3f}")

    # 5. export
    t0 = time.monotonic()
    export_onnx(model_dir)
    summary["onnx_max_abs_diff"] = float(f"{parity(model_dir, [(e.prompt, e.steps) for e in test_set]):.3g}")
    stage("export", t0)
    print(f"    ONNX written; max |torch - onnx| step logit {summary['onnx_max_abs_diff']:.2e}")

    # 6. serve over HTTP; score the test split and fresh held-out problems with the client
    t0 = time.monotonic()
    from serving.launch import served

    seen = {ex.prompt for ex in labelled}
    fresh = [ex for ex in generate_dataset(cfg.eval_problems, seed=cfg.seed + 1_000_003, max_steps=cfg.max_steps,
                                           max_number=cfg.max_number) if ex.prompt not in seen]
    heldout = test_set + fresh
    with served(model_dir, port=cfg.port) as client:
        items = [{"prompt": e.prompt, "steps": e.steps} for e in heldout]
        results, batches = [], 0
        for i in range(0, len(items), 32):
            results.extend(client.score(items[i:i + 32], aggregate="min"))
            batches += 1
    http_test = flat([r["step_scores"] for r in results[: len(test_set)]])
    http_all = flat([r["step_scores"] for r in results])
    summary.update(http_scored_solutions=len(results), http_batches=batches,
                   http_vs_inprocess_max_abs_diff=float(f"{np.max(np.abs(http_test - p_after)):.3g}"),
                   heldout_solutions=len(heldout),
                   heldout_auroc=round(auroc(flat([ground_truth_labels(e) for e in heldout]), http_all), 4))
    stage("serve", t0)
    print(f"    {len(results)} held-out solutions scored over HTTP in {batches} batches; "
          f"step AUROC vs injected errors {summary['heldout_auroc']:.3f}")

    summary["stage_seconds"] = timings
    summary["seconds_total"] = round(time.monotonic() - t_start, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"[summary] {out / 'summary.json'}; trained artifact in {model_dir}; total {summary['seconds_total']} s")
    return summary
