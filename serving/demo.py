"""``prm demo``: every stage on the embedded default, from generated problems to an HTTP score.

It sits in ``serving`` because it is the one place that uses every layer (data_tools -> prm ->
serving); each stage is a call into the library function the matching ``prm`` subcommand uses.

Stages: generate problems with gold and error-injected solutions (the injected step is ground
truth, kept apart from the labeller) -> Monte-Carlo rollout labels -> train -> temperature scaling
on a held-out split -> ONNX export with a parity check -> BentoML service on 127.0.0.1 queried with
``PRMClient`` -> ``summary.json``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from data_tools.flags import opt, problems

log = logging.getLogger(__name__)

GROUND_TRUTH_KEYS = ("first_error", "error_kind")


@dataclass
class DemoConfig:
    out: str = "demo_out"
    """Output folder: data/, model/ (the trained artifact) and summary.json."""
    problems: int = opt(120, min=5)
    """Generated problems; each gives a gold solution and one with an injected error."""
    max_steps: int = opt(2, min=2)
    """Steps per solution (2 is what SmolLM2-135M continues reliably)."""
    max_number: int = opt(6, min=1)
    """Largest number in a problem (SmolLM2-135M's sums go wrong past ~20: labels lose signal)."""
    rollouts: int = opt(8, min=1)
    """Monte-Carlo rollouts per step prefix."""
    max_new_tokens: int = opt(40, min=1)
    """Longest rollout continuation, in tokens."""
    temperature: float = opt(0.5, min=0)
    """Sampling temperature of rollouts."""
    backbone: str = "smollm2-135m"
    """Backbone for both the rollout completer and the PRM."""
    epochs: float = opt(8.0, above=0)
    """Training epochs (after the linear-probe head init)."""
    learning_rate: float = opt(1e-4, above=0)
    """Peak learning rate of the unfrozen layers and the head. Measured on the same labels: 3e-5 for 4
    epochs left the held-out step AUROC at ~0.72; 1e-4 for 8 epochs reached ~0.83 and leaves the
    model overconfident enough (T ~1.8) that temperature scaling has something to correct."""
    label_type: str = opt("hard", choices=("hard", "soft"))
    """Train on 'hard' (any rollout succeeded) or 'soft' (fraction of successful rollouts) labels."""
    layers: int = opt(21, min=0)
    """Backbone layers kept (SmolLM2-135M has 30; its middle layers probe better than its last)."""
    freeze_layers: int = opt(10, min=0)
    """Bottom layers (and embeddings) kept frozen during fine-tuning."""
    monotone: bool = True
    """Score each step as the running minimum of step scores (first-error semantics)."""
    heldout_fraction: float = opt(0.3, min=0.1, max=0.8)
    """Share of labelled problems held out: half for calibration, half for the test split."""
    eval_problems: int = opt(200, min=0)
    """Extra fresh problems (never labelled or trained on) scored over HTTP for the held-out AUROC."""
    seed: int = 0
    """Seed for problems, rollouts, splits and training."""
    port: int = opt(0, min=0, max=65535)
    """Port for the service on 127.0.0.1 (0: any free port)."""

    def check(self) -> None:
        out = problems(self)
        if out:
            raise ValueError("invalid demo config:\n  " + "\n  ".join(out))


def split_by_problem(examples, heldout_fraction: float, seed: int):
    """(train, calib, test): all solutions of one problem land in the same split."""
    pids = sorted({ex.meta["problem_id"] for ex in examples})
    random.Random(seed).shuffle(pids)
    n_held = max(2, round(len(pids) * heldout_fraction))
    calib_ids, test_ids = set(pids[: n_held // 2]), set(pids[n_held // 2: n_held])
    pick = lambda ids: [ex for ex in examples if ex.meta["problem_id"] in ids]  # noqa: E731
    train_ids = set(pids[n_held:])
    return pick(train_ids), pick(calib_ids), pick(test_ids)


def train_config(cfg: DemoConfig, output_dir: str | Path):
    """The ``TrainConfig`` the demo trains with (``configs/train_demo.yaml`` holds the same recipe)."""
    from prm.train import TrainConfig

    return TrainConfig(backbone=cfg.backbone, output_dir=str(output_dir), epochs=cfg.epochs,
                       learning_rate=cfg.learning_rate, label_type=cfg.label_type, seed=cfg.seed,
                       num_layers=cfg.layers, freeze_layers=cfg.freeze_layers, monotone=cfg.monotone)


@dataclass
class DemoRun:
    """What the stages share: the settings, the output folder and the summary they fill in."""

    cfg: DemoConfig
    out: Path
    summary: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    test_scores: object = None
    """the calibrated in-process step scores of the test split, which the HTTP ones must equal"""

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.monotonic()
        yield
        self.timings[name] = round(time.monotonic() - t0, 1)
        print(f"[{name}] done in {self.timings[name]:.1f} s", flush=True)

    @property
    def model_dir(self) -> Path:
        return self.out / "model"


def run_demo(cfg: DemoConfig) -> dict:
    """Every stage in turn (each below is one short function calling what its ``prm`` subcommand calls)."""
    cfg.check()
    t_start = time.monotonic()
    run = DemoRun(cfg, Path(cfg.out), {"config": asdict(cfg)})
    (run.out / "data").mkdir(parents=True, exist_ok=True)
    blind, truth = generate(run)
    labelled = label(run, blind, truth)
    train_set, calib_set, test_set = train_model(run, labelled)
    calibrate(run, calib_set, test_set)
    export(run, test_set)
    serve(run, labelled, test_set)
    run.summary["stage_seconds"] = run.timings
    run.summary["seconds_total"] = round(time.monotonic() - t_start, 1)
    (run.out / "summary.json").write_text(json.dumps(run.summary, indent=2) + "\n")
    print(f"[summary] {run.out / 'summary.json'}; trained artifact in {run.model_dir}; "
          f"total {run.summary['seconds_total']} s")
    return run.summary


def generate(run: DemoRun):
    """Problems with gold and injected-error solutions (``prm generate``); ground truth kept apart."""
    from data_tools.schema import StepwiseExample, write_jsonl
    from data_tools.synth.problems import generate_dataset

    cfg = run.cfg
    with run.stage("generate"):
        examples = generate_dataset(cfg.problems, seed=cfg.seed, max_steps=cfg.max_steps, max_number=cfg.max_number)
        truth = {ex.meta["id"]: {k: ex.meta[k] for k in GROUND_TRUTH_KEYS} for ex in examples}
        blind = [StepwiseExample(ex.prompt, ex.steps, None, {k: v for k, v in ex.meta.items()
                                                             if k not in GROUND_TRUTH_KEYS}) for ex in examples]
        write_jsonl(run.out / "data" / "solutions.jsonl", blind)
        (run.out / "data" / "ground_truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    print(f"    {cfg.problems} problems -> {len(examples)} solutions "
          f"({sum(t['first_error'] >= 0 for t in truth.values())} with an injected error)")
    return blind, truth


def label(run: DemoRun, blind, truth: dict):
    """Monte-Carlo rollout labels by the in-process model (``prm label``'s job, from scratch)."""
    import numpy as np

    from data_tools.completers import Sampling
    from data_tools.labelling import LabelConfig
    from data_tools.labelling.job import LabelJobConfig, run_label_job, runs_path
    from data_tools.schema import first_error, read_jsonl
    from prm.generation import hf_completer

    cfg, data = run.cfg, run.out / "data"
    with run.stage("label"):
        sampling = Sampling(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature)
        completer, settings = hf_completer(cfg.backbone, sampling)
        out = data / "labelled.jsonl"
        out.unlink(missing_ok=True)  # the demo starts afresh; `prm label` would resume it
        runs_path(out).unlink(missing_ok=True)
        result = run_label_job(data / "solutions.jsonl", out, completer,
                               LabelConfig(rollouts=cfg.rollouts, seed=cfg.seed), LabelJobConfig(), settings)
        del completer
        order = {ex.meta["id"]: n for n, ex in enumerate(blind)}
        labelled = sorted(read_jsonl(out), key=lambda ex: order[ex.meta["id"]])
        for ex in labelled:  # re-attach ground truth for evaluation only, after labelling
            ex.meta.update(truth[ex.meta["id"]])
        report = result.report.to_json()
        agree = [first_error(ex.meta["hard_labels"]) == ex.meta["first_error"] for ex in labelled]
        run.summary.update(labelled_solutions=len(labelled), rollouts=report["rollouts"],
                           rollout_success_rate=round(report["success_rate"], 4),
                           unparseable_rollouts=report["unparseable"],
                           label_injected_error_agreement=round(float(np.mean(agree)), 4))
    print(f"    {report['rollouts']} rollouts, {report['success_rate']:.1%} reached the gold answer; "
          f"first-error agreement with injected errors {run.summary['label_injected_error_agreement']:.1%}")
    return labelled


def train_model(run: DemoRun, labelled):
    """Split by problem, train on the train split (``prm train``)."""
    from prm.train import train

    with run.stage("train"):
        train_set, calib_set, test_set = split_by_problem(labelled, run.cfg.heldout_fraction, run.cfg.seed)
        train(train_set, train_config(run.cfg, run.model_dir))
        run.summary.update(train_solutions=len(train_set), calib_solutions=len(calib_set),
                           test_solutions=len(test_set))
    return train_set, calib_set, test_set


def _flat(rows):
    import numpy as np

    return np.concatenate([np.asarray(r, dtype=float) for r in rows])


def calibrate(run: DemoRun, calib_set, test_set) -> None:
    """Temperature scaling on the calibration split (``prm calibrate``), measured on the test split."""
    from data_tools.synth.problems import ground_truth_labels
    from prm.calibrate import calibrate_artifact
    from prm.eval.metrics import auroc
    from prm.scoring import Scorer

    with run.stage("calibrate"):
        report = calibrate_artifact(run.model_dir, calib_set, "temperature", labels="hard", evaluate=test_set)
        scorer = Scorer(run.model_dir, backend="torch")
        items = [(e.prompt, e.steps) for e in test_set]
        calibrated = run.test_scores = _flat(scorer.score(items))
        scorer.cfg.monotone = False  # the raw step scores too, to show what the running minimum adds
        raw = _flat(scorer.step_logits(items))
        truth_y = _flat([ground_truth_labels(e) for e in test_set])
        run.summary.update(temperature=round(report["state"]["temperature"], 4),
                           **{k: round(report[k], 4) for k in ("ece_before", "ece_after", "brier_before",
                                                               "brier_after")},
                           injected_error_test_auroc=round(auroc(truth_y, calibrated), 4),
                           injected_error_test_auroc_raw_steps=round(auroc(truth_y, raw), 4),
                           test_auroc_vs_mc_labels=round(auroc(_flat([e.hard_labels() for e in test_set]),
                                                               calibrated), 4))
    s = run.summary
    print(f"    temperature {s['temperature']:.3f}; ECE {s['ece_before']:.4f} -> {s['ece_after']:.4f}; "
          f"test-split step AUROC vs injected errors {s['injected_error_test_auroc']:.3f}")


def export(run: DemoRun, test_set) -> None:
    """ONNX with a parity check on the test split (``prm export --check``)."""
    from prm.export import export_artifact

    with run.stage("export"):
        report = export_artifact(run.model_dir, check=test_set)
        run.summary["onnx_max_abs_diff"] = float(f"{report['onnx_max_abs_diff']:.3g}")
    print(f"    ONNX written; max |torch - onnx| step logit {run.summary['onnx_max_abs_diff']:.2e}")


def serve(run: DemoRun, labelled, test_set) -> None:
    """``bentoml serve`` on 127.0.0.1 (``prm serve``); the test split and fresh problems scored over HTTP."""
    import numpy as np

    from data_tools.synth.problems import generate_dataset, ground_truth_labels
    from prm.eval.metrics import auroc
    from serving.launch import served

    cfg = run.cfg
    with run.stage("serve"):
        seen = {ex.prompt for ex in labelled}
        fresh = [ex for ex in generate_dataset(cfg.eval_problems, seed=cfg.seed + 1_000_003, max_steps=cfg.max_steps,
                                               max_number=cfg.max_number) if ex.prompt not in seen]
        heldout = test_set + fresh
        with served(run.model_dir, port=cfg.port) as client:
            items = [{"prompt": e.prompt, "steps": e.steps} for e in heldout]
            results, batches = [], 0
            for i in range(0, len(items), 32):
                results.extend(client.score(items[i:i + 32], aggregate="min"))
                batches += 1
        http_test = _flat([r["step_scores"] for r in results[: len(test_set)]])
        run.summary.update(http_scored_solutions=len(results), http_batches=batches,
                           http_vs_inprocess_max_abs_diff=float(f"{np.max(np.abs(http_test - run.test_scores)):.3g}"),
                           heldout_solutions=len(heldout),
                           injected_error_heldout_auroc=round(auroc(_flat([ground_truth_labels(e) for e in heldout]),
                                                     _flat([r["step_scores"] for r in results])), 4))
    print(f"    {len(results)} held-out solutions scored over HTTP in {batches} batches; "
          f"step AUROC vs injected errors {run.summary['injected_error_heldout_auroc']:.3f}")
