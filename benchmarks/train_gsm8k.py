"""Train a PRM on GSM8K with error-injection labels within a time budget; report injected-error F1, AUROC, ECE.

Data: ``../shared/data/gsm8k/train.jsonl``. Each problem's reference solution is labelled right at
every step; ``data_tools.inject`` corrupts one calculation of it (a slip, a wrong operator or a wrong
operand, carried through the later steps) into ``--variants`` wrong solutions, right before the
injected step and wrong from it on. Problems are split by problem (seeded): ``--heldout`` problems
for the report, ``--calib`` problems for temperature scaling and for choosing the ProcessBench
threshold, the rest for training. SmolLM2-135M cannot finish GSM8K rollouts (see DESIGN.md), so no
rollout labels are made here; ``--extra FILE`` adds labelled stepwise JSONL (``prm label`` output)
to the training rows.

Budget: ``--minutes`` bounds the training phase (probe fit and fine-tuning). A short pass measures
forward throughput, the number of training solutions is chosen so that one epoch fits the budget
(training costs ~``--cost-ratio`` forward passes per token, counting the probe's), and a callback
stops training at the budget if the estimate was optimistic. Evaluation comes after and is timed
apart.

Report (on the held-out problems, never trained or calibrated on; every key says ``injected_error``, since
the errors are injected ones, not real model errors): ProcessBench's ``f1`` (with the
threshold chosen on the calibration split, as papers do for PRMs without a natural threshold) and
``f1_at_0.5``, ``acc_erroneous``, ``acc_correct``, step ``auroc`` (scores as served, running
minimum; every step, those after the first error being wrong), ``auroc_raw`` (raw step scores),
``auroc_to_first_error`` (steps up to the first error, as ``prm eval processbench`` reads the
ProcessBench-format file), ``ece`` after temperature scaling (``ece_before``), the last-step share,
and best-of-N over each problem's solutions. The artifact is left in ``OUT/model`` (calibrated),
with ``OUT/heldout_processbench.json`` and ``OUT/calib_processbench.json``, so that

    prm eval processbench OUT/model OUT/heldout_processbench.json --threshold-split OUT/calib_processbench.json --checks off
    prm serve OUT/model

reproduce the injected-error figures and serve it.

Step checks (``--step-checks``, on by default): the artifact is marked to cap the score of a step that is
wrong by its own numbers (false arithmetic, a number from nowhere: ``data_tools.checks``), which the
Scorer, ``prm eval`` and ``prm serve`` then apply. The injected-error figures are the model's alone
(calibrated, without the checks, at the threshold that maximises its injected-error F1 on the
calibration split: ``model_only_threshold``), so they compare across runs;
``injected_error_f1_with_checks`` adds the checks. The artifact's ``threshold`` is chosen the same way on
the checked scores, as the Scorer gives them.

    .venv/bin/python benchmarks/train_gsm8k.py [--minutes 45 --out gsm8k_prm --threads 0]

Then, unless ``--no-real``, the model is measured on REAL errors: MR-GSM8K's model-written wrong
solutions with human first-error labels, against their problems' reference solutions
(``benchmarks/real_errors.py``, at the threshold chosen on the calibration split); those figures come
first in ``summary.json`` as ``real_error_*`` (as served: with the step checks when they are on), then
``real_error_model_only_*`` (``--checks off``, at ``model_only_threshold``): what the network catches;
with ``--no-step-checks``, ``real_error_*`` is the network's and ``real_error_with_checks_*`` what the
checks would add (at ``checks_threshold``, chosen on the checked calibration scores). Both come from one
scoring pass (``real_errors.py --checks-threshold``).

Data sources (the issue's ablation): ``--kinds`` picks the injected error kinds (classic slips,
operators and operands; or kinds that imitate real errors), ``--style model`` renders every solution
the way model-written ones look, and ``--sampled FILE`` adds model-written solutions labelled by
``prm label --method reference``.

The last line printed is JSON with ``real_error_f1`` (with ``--real``), ``injected_error_f1``,
``injected_error_auroc``, ``injected_error_ece`` and the ``threshold`` (which ``benchmarks/real_errors.py``
reads from ``OUT/summary.json``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from data_tools.formats import read, write  # noqa: E402
from data_tools.schema import StepwiseExample, read_jsonl  # noqa: E402
from data_tools.synth.variants import inject_variants  # noqa: E402

GSM8K = ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl"


KIND_SETS = {"classic": None, "real": "real", "all": "all"}  # None: inject_variants' default kinds
CALCULATION = re.compile(r"<<[^<>]*>>")
FINAL = re.compile(r"^####\s*(.+?)\s*$")


def model_style(ex: StepwiseExample) -> StepwiseExample:
    """A solution as model-written ones look: no ``<<...>>`` calculator annotations, and a closing
    ``The answer is: N`` step after ``#### N``, so that neither side of the data gives itself away by format."""
    steps = [CALCULATION.sub("", step) for step in ex.steps]
    labels = list(ex.labels) if ex.labels is not None else None
    final = FINAL.match(steps[-1]) if steps else None
    if final:
        steps.append(f"The answer is: {final.group(1)}")
        if labels is not None:
            labels.append(labels[-1])
    return StepwiseExample(ex.prompt, steps, labels, dict(ex.meta))


def reference_consensus(gold: StepwiseExample, wrong: list[StepwiseExample]) -> list[StepwiseExample]:
    """Each injected variant with the labels that the injection and the reference labeller (``prm label
    --method reference``, the gold solution as its reference) agree on; variants with none left are dropped."""
    from data_tools.labelling.consensus import agree
    from data_tools.labelling.reference import judge

    reference, answer = "\n".join(gold.steps), str(gold.meta["answer"])
    out = []
    for w in wrong:
        first = judge(w.prompt, w.steps, reference, answer).first_error
        judged = StepwiseExample(w.prompt, w.steps, [first < 0 or i < first for i in range(len(w.steps))])
        both = agree(w, judged)
        if any(lab is not None for lab in both.labels):
            out.append(StepwiseExample(w.prompt, w.steps, both.labels, w.meta))
    return out


def problems_with_variants(path: Path, variants: int, seed: int, limit: int = 0, kinds: str = "classic",
                           style: str = "gsm8k", consensus: bool = False) -> list[list[StepwiseExample]]:
    """Per problem: its gold solution (all right) then its wrong variants; problems without any left out.

    ``kinds``: classic (slips, operators, operands), real (the error kinds that imitate real ones:
    wrong quantity, misread relation, dropped step, ...) or all; ``style``: gsm8k (as written) or model
    (see ``model_style``); ``consensus``: keep only the variant steps the reference labeller agrees on."""
    from data_tools.synth.inject import KIND_GROUPS

    kind_list = KIND_GROUPS[KIND_SETS[kinds]] if KIND_SETS[kinds] else None
    out = []
    for i, gold in enumerate(read("gsm8k", path)):
        if limit and i >= limit:
            break
        pid = f"gsm8k-{i}"
        gold = StepwiseExample(gold.prompt, gold.steps, [True] * len(gold.steps),
                               dict(gold.meta, problem_id=pid, first_error=-1, correct=True))
        rng = random.Random(f"{seed}:{pid}")
        wrong = inject_variants(gold, rng, variants) if kind_list is None else inject_variants(gold, rng, variants,
                                                                                               kinds=kind_list)
        for w in wrong:
            w.meta["correct"] = False
        if consensus:
            wrong = reference_consensus(gold, wrong)
        if wrong:
            group = [gold, *wrong]
            out.append([model_style(ex) for ex in group] if style == "model" else group)
    return out


def attach_sampled(problems: list[list[StepwiseExample]], path: Path, style: str) -> int:
    """Add labelled model-written solutions (``prm sample`` + ``prm label --method reference``) to their
    problem's group, matched by the problem text, so that they land in that problem's split; returns
    how many were attached."""
    by_prompt = {group[0].prompt: group for group in problems}
    n = 0
    for ex in read_jsonl(path):
        group = by_prompt.get(ex.prompt)
        if group is None or ex.labels is None:
            continue
        hard = ex.hard_labels()
        row = StepwiseExample(ex.prompt, ex.steps, hard, dict(ex.meta, problem_id=group[0].meta["problem_id"],
                                                               first_error=ex.first_error(), correct=ex.first_error() == -1,
                                                               source="sampled"))
        group.append(model_style(row) if style == "model" else row)
        n += 1
    return n


def split(problems: list, heldout: int, calib: int, seed: int) -> tuple[list, list, list]:
    order = list(range(len(problems)))
    random.Random(seed).shuffle(order)
    pick = lambda idx: [problems[i] for i in idx]  # noqa: E731
    return pick(order[heldout + calib:]), pick(order[heldout:heldout + calib]), pick(order[:heldout])


def numbered(problems: list[list[StepwiseExample]]) -> list[StepwiseExample]:
    """Solutions with ProcessBench-style ids (gsm8k-0, gsm8k-1, ...)."""
    out = []
    for group in problems:
        for ex in group:
            out.append(StepwiseExample(ex.prompt, ex.steps, ex.labels, dict(ex.meta, id=f"gsm8k-{len(out)}")))
    return out


def forward_tokens_per_s(backbone: str, rows: list[list[int]], bf16: bool, num_layers: int) -> float:
    """Tokens/s of one bf16 forward pass over a few encoded rows (the budget's yardstick)."""
    import torch

    from prm.artifacts import new_scorer
    from prm.config import DEFAULT_STEP_TOKEN

    scorer, tok, _ = new_scorer(backbone, DEFAULT_STEP_TOKEN, 512, num_layers=num_layers)
    scorer.eval()
    pad = tok.pad_token_id
    n = max(len(r) for r in rows)
    ids = torch.tensor([r + [pad] * (n - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (n - len(r)) for r in rows])
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        scorer.step_logits(ids[:2], mask[:2])  # warm-up
        t0 = time.perf_counter()
        scorer.step_logits(ids, mask)
    return int(mask.sum()) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(GSM8K), help="GSM8K JSONL (default: ../shared/data/gsm8k/train.jsonl)")
    parser.add_argument("--out", default="gsm8k_prm", help="output folder: model/, held-out files, summary.json")
    parser.add_argument("--minutes", type=float, default=45.0, help="training budget (probe fit + fine-tuning)")
    parser.add_argument("--heldout", type=int, default=300, help="held-out problems for the report")
    parser.add_argument("--calib", type=int, default=150, help="problems for temperature scaling and the threshold")
    parser.add_argument("--variants", type=int, default=1, help="wrong variants per problem")
    parser.add_argument("--limit", type=int, default=0, help="read only the first N GSM8K problems (0: all)")
    parser.add_argument("--extra", help="labelled stepwise JSONL added to the training rows (e.g. prm label output)")
    parser.add_argument("--kinds", choices=list(KIND_SETS), default="all",
                        help="injected error kinds: classic (slips, operators, operands), real (kinds that imitate real "
                        "errors: wrong quantity, misread relation, dropped step, double count, unit or percent, wrong "
                        "role) or all")
    parser.add_argument("--style", choices=("gsm8k", "model"), default="model",
                        help="render solutions as GSM8K writes them, or as models do (no <<...>> annotations, a closing "
                        "'The answer is: N' step)")
    parser.add_argument("--sampled", help="labelled model-written solutions to GSM8K train problems (prm sample, then "
                        "prm label --method reference), joined to their problems' splits")
    parser.add_argument("--consensus", action="store_true",
                        help="keep only the injected variants' step labels that the reference labeller agrees with")
    parser.add_argument("--real", action=argparse.BooleanOptionalAction, default=True,
                        help="measure on MR-GSM8K's real errors at the end (benchmarks/real_errors.py)")
    parser.add_argument("--real-limit", type=int, default=0, help="MR-GSM8K rows to measure on (0: all)")
    parser.add_argument("--max-length", type=int, default=1024, help="training max length in tokens")
    parser.add_argument("--step-checks", action=argparse.BooleanOptionalAction, default=True,
                        help="mark the artifact to cap steps wrong by their own numbers (data_tools.checks); the "
                             "threshold is then chosen on the checked scores")
    parser.add_argument("--train-solutions", type=int, default=0,
                        help="train on this many solutions (one epoch, whole problems) with no time budget, so that runs "
                        "on a loaded machine compare (0: as many as --minutes allows)")
    parser.add_argument("--backbone", default="smollm2-135m")
    parser.add_argument("--layers", type=int, default=21, help="backbone layers kept (SmolLM2-135M has 30)")
    parser.add_argument("--freeze-layers", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lora-r", type=int, default=0)
    parser.add_argument("--cost-ratio", type=float, default=2.2,
                        help="training cost per token in forward passes, the probe's included (for the budget)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import numpy as np
    import torch
    import transformers
    from transformers import TrainerCallback

    from prm.artifacts import load_tokenizer, write_manifest
    from prm.backbone import resolve_backbone
    from prm.calibrate import TemperatureScaler, apply_calibration, ece, save_calibration
    from prm.config import DEFAULT_STEP_TOKEN
    from prm.eval.metrics import (
        Candidate,
        best_of_n,
        choose_threshold,
        first_error,
        last_step_share,
        processbench,
        step_auroc,
    )
    from prm.eval.run import candidate_facts
    from prm.scoring import Scorer, aggregate
    from prm.scoring.checks import apply_checks
    from prm.tokenization import encode
    from prm.train import TrainConfig, train

    transformers.logging.set_verbosity_error()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    t_start = time.monotonic()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    # 1. data, split by problem
    problems = problems_with_variants(Path(args.data), args.variants, args.seed, args.limit, args.kinds, args.style,
                                      args.consensus)
    n_sampled = attach_sampled(problems, Path(args.sampled), args.style) if args.sampled else 0
    if len(problems) <= args.heldout + args.calib:
        raise SystemExit(f"{len(problems)} problems with variants: not enough for --heldout {args.heldout} "
                         f"and --calib {args.calib} plus training")
    train_p, calib_p, held_p = split(problems, args.heldout, args.calib, args.seed)
    # The held-out report stays on gold + injected solutions (comparable across data sources); the
    # calibration split holds every source, so the threshold is chosen on the data the model learns from.
    held_p = [[ex for ex in group if ex.meta.get("source") != "sampled"] for group in held_p]
    calib, held = numbered(calib_p), numbered(held_p)
    write("processbench", out / "heldout_processbench.json", held)
    write("processbench", out / "calib_processbench.json", calib)
    pool = [ex for group in train_p for ex in group]
    extra = list(read_jsonl(args.extra)) if args.extra else []
    print(f"[data] {len(problems)} problems with variants ({args.kinds} kinds, {args.style} style, {n_sampled} "
          f"model-written solutions attached): {len(train_p)} train ({len(pool)} solutions), {len(calib_p)} "
          f"calibration, {len(held_p)} held out; {len(extra)} extra labelled rows", flush=True)

    # 2. budget: how many training solutions one epoch can take
    tok = load_tokenizer(resolve_backbone(args.backbone), DEFAULT_STEP_TOKEN)
    sep = tok.convert_tokens_to_ids(DEFAULT_STEP_TOKEN)
    sample = random.Random(args.seed).sample(pool, min(16, len(pool)))
    encoded = [encode(tok, sep, e.prompt, e.steps, None, args.max_length, drop_overflow=True).input_ids for e in sample]
    lengths = [len(ids) for ids in encoded]
    fwd = forward_tokens_per_s(args.backbone, encoded, True, args.layers)
    budget_s = args.minutes * 60 if not args.train_solutions else float("inf")
    n_rows = args.train_solutions or int(budget_s * fwd / args.cost_ratio / float(np.mean(lengths)))
    groups = list(train_p)
    random.Random(args.seed + 1).shuffle(groups)
    # the problems with model-written solutions first: the budget must not drop the real errors one brought
    groups.sort(key=lambda g: not any(ex.meta.get("source") == "sampled" for ex in g))
    chosen, taken = [], 0
    for g in groups:  # whole problems, so that gold and wrong solutions come together
        if taken + len(g) > max(n_rows - len(extra), args.batch_size):
            break
        chosen.extend(g)
        taken += len(g)
    chosen += extra
    n_real = sum(ex.meta.get("source") == "sampled" for ex in chosen)
    print(f"[budget] forward {fwd:.0f} tokens/s, {np.mean(lengths):.0f} tokens a solution: "
          f"{len(chosen)} training solutions for {args.minutes:g} min ({n_real} of them model-written)", flush=True)

    class Budget(TrainerCallback):
        def __init__(self):
            self.t0, self.stopped_at = time.monotonic(), None

        def on_step_end(self, targs, state, control, **kwargs):
            if time.monotonic() - self.t0 > budget_s:
                control.should_training_stop = True
                self.stopped_at = state.global_step

    # 3. train (probe-initialised head, then fine-tuning of the upper layers)
    t0 = time.monotonic()
    budget = Budget()
    model_dir = out / "model"
    cfg = TrainConfig(backbone=args.backbone, output_dir=str(model_dir), epochs=1.0, learning_rate=args.lr,
                      batch_size=args.batch_size, num_layers=args.layers, freeze_layers=args.freeze_layers,
                      label_type="hard", monotone=True, lora_r=args.lora_r, seed=args.seed, max_length=args.max_length,
                      step_checks=args.step_checks,
                      logging_steps=max(1, math.ceil(len(chosen) / args.batch_size) // 10))
    train(chosen, cfg, callbacks=[budget])
    train_s = time.monotonic() - t0
    record = json.loads((model_dir / "training.json").read_text())
    print(f"[train] {record['global_step']} steps, {record['real_tokens_seen']} real tokens in {train_s:.0f} s "
          f"(last logged loss {record['last_logged_loss']}); stopped by the budget: {budget.stopped_at is not None}",
          flush=True)

    # 4. calibrate on the calibration split; report on the held-out split
    t0 = time.monotonic()
    scorer = Scorer(model_dir, backend="torch", calibrated=False)
    hard = lambda exs: [[None if y is None else float(bool(y)) for y in e.labels] for e in exs]  # noqa: E731
    z_cal, z_held = (scorer.step_logits([(e.prompt, e.steps) for e in exs]) for exs in (calib, held))
    y_cal, y_held = hard(calib), hard(held)
    to_first = lambda ys: [[y if f < 0 or k <= f else None for k, y in enumerate(row)]  # noqa: E731
                           for row, f in ((r, first_error(r)) for r in ys)]
    flat = lambda rows: np.concatenate([np.asarray(r, dtype=float) for r in rows])  # noqa: E731
    scaler = TemperatureScaler().fit(flat(z_cal), flat(y_cal))
    save_calibration(model_dir, scaler.to_json())
    write_manifest(model_dir)

    # The injected-error figures are the MODEL's (calibrated, no step checks), at its own threshold, so that
    # they compare across runs; the artifact's `threshold` (which real_errors.py reads) is chosen on the
    # scores the Scorer gives: calibrated, then the step checks when the artifact has them.
    p_cal, p_held = ([apply_calibration(z, scaler.to_json()).tolist() for z in zs] for zs in (z_cal, z_held))
    fe_cal, fe_held = [first_error(y) for y in y_cal], [first_error(y) for y in y_held]
    model_threshold, model_calib_f1 = choose_threshold(fe_cal, p_cal)
    checked = lambda ps, exs: [apply_checks(p, e.prompt, e.steps, monotone=True).tolist()  # noqa: E731
                               for p, e in zip(ps, exs, strict=True)]
    checks_threshold, checks_calib_f1 = choose_threshold(fe_cal, checked(p_cal, calib))
    with_checks = processbench(fe_held, checked(p_held, held), checks_threshold)
    threshold, calib_f1 = (checks_threshold, checks_calib_f1) if args.step_checks else (model_threshold, model_calib_f1)
    pb, pb05 = processbench(fe_held, p_held, model_threshold), processbench(fe_held, p_held, 0.5)
    scorer.cfg.monotone = False
    raw = scorer.step_logits([(e.prompt, e.steps) for e in held])
    cands, i = [], 0
    for group in held_p:
        cands.append([Candidate(aggregate(p_held[i + k], "min"), *candidate_facts(ex, "answer"))
                      for k, ex in enumerate(group)])
        i += len(group)
    bon = best_of_n(cands)
    eval_s = time.monotonic() - t0

    # Every figure here is measured on held-out GSM8K problems with INJECTED errors (arithmetic slips,
    # operators, operands): the keys say so. Real-error figures come from benchmarks/real_errors.py.
    summary = {
        "injected_error_f1": round(pb["f1"], 4), "injected_error_auroc": round(step_auroc(y_held, p_held), 4),
        "injected_error_ece": round(ece(flat(p_held), flat(y_held)), 4),
        "injected_error_acc_erroneous": round(pb["acc_erroneous"], 4),
        "injected_error_acc_correct": round(pb["acc_correct"], 4),
        "threshold": round(threshold, 4), "threshold_source": "max injected-error F1 on the calibration split"
        + (" (scores with the step checks)" if args.step_checks else ""),
        "threshold_calib_f1": round(calib_f1, 4), "step_checks": args.step_checks,
        "model_only_threshold": round(model_threshold, 4), "checks_threshold": round(checks_threshold, 4),
        "injected_error_f1_with_checks": round(with_checks["f1"], 4),
        "injected_error_f1_at_0.5": round(pb05["f1"], 4),
        "injected_error_acc_erroneous_at_0.5": round(pb05["acc_erroneous"], 4),
        "injected_error_acc_correct_at_0.5": round(pb05["acc_correct"], 4),
        "injected_error_auroc_raw": round(step_auroc(y_held, raw), 4),
        # as `prm eval processbench` computes it on OUT/heldout_processbench.json, where steps after
        # the first error are unlabelled: the steps up to and including the first error only
        "injected_error_auroc_to_first_error": round(step_auroc(to_first(y_held), p_held), 4),
        "injected_error_ece_before": round(ece(1 / (1 + np.exp(-flat(z_held))), flat(y_held)), 4),
        "temperature": round(scaler.temperature_, 4),
        **{f"injected_error_{k}": (round(v, 4) if isinstance(v, float) else v)
           for k, v in last_step_share(fe_held, p_held).items()},
        "injected_error_bon_min": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in bon.items()},
        "heldout_solutions": len(held), "heldout_problems": len(held_p), "train_solutions": len(chosen),
        "train_steps": record["global_step"], "train_real_tokens": record["real_tokens_seen"],
        "train_seconds": round(train_s, 1), "eval_seconds": round(eval_s, 1),
        "budget_minutes": args.minutes, "stopped_by_budget": budget.stopped_at is not None,
        "seconds_total": round(time.monotonic() - t_start, 1), "model": str(model_dir),
        "config": {k: v for k, v in vars(args).items()},
    }
    if args.real:  # the measure that matters, reported first: real model errors (MR-GSM8K), never trained on
        sys.path.insert(0, str(ROOT / "benchmarks"))
        import real_errors

        t0 = time.monotonic()
        # one scoring pass: the network's scores (no checks), at its threshold, and with the checks applied at theirs
        real = real_errors.main([str(model_dir), "--threshold", str(model_threshold), "--checks-threshold",
                                 str(checks_threshold), "--limit", str(args.real_limit), "--max-length",
                                 str(args.max_length), "--checks", "off"])
        keys = ("f1", "acc_erroneous", "acc_correct", "f1_at_0.5", "acc_erroneous_at_0.5", "acc_correct_at_0.5",
                "step_auroc_to_first_error", "share_right_step", "share_too_early", "share_too_late", "share_never",
                "n_erroneous", "n_correct")
        served, other, name = ((real["with_checks"], real, "model_only") if args.step_checks
                               else (real, real["with_checks"], "with_checks"))
        summary = {**{f"real_error_{k}": served[k] for k in keys},
                   "real_error_refused_erroneous": real["refused_erroneous"],
                   "real_error_refused_correct": real["refused_correct"],
                   **{f"real_error_{name}_{k}": other[k] for k in keys[:7]},
                   "real_error_seconds": round(time.monotonic() - t0, 1), **summary}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"[report] held-out GSM8K with injected errors: injected-error F1 {summary['injected_error_f1']:.3f} "
          f"(ProcessBench's metric, the model without step checks; threshold {model_threshold:.3f} from the calibration split; "
          f"{summary['injected_error_f1_at_0.5']:.3f} at 0.5), step AUROC {summary['injected_error_auroc']:.3f}, "
          f"ECE {summary['injected_error_ece_before']:.3f} -> {summary['injected_error_ece']:.3f}; artifact in {model_dir}",
          flush=True)
    if args.real:
        print(f"[report] REAL errors (MR-GSM8K, {summary['real_error_n_erroneous']} wrong + "
              f"{summary['real_error_n_correct']} reference solutions): real-error F1 {summary['real_error_f1']}, "
              f"first errors found {summary['real_error_acc_erroneous']}, correct passed {summary['real_error_acc_correct']}"
              f" (threshold {threshold:.3f} from the calibration split)", flush=True)
        name, what, at = (("model_only", "without the step checks (the network alone)", model_threshold) if args.step_checks
                          else ("with_checks", "with the step checks (not in this artifact)", checks_threshold))
        print(f"[report] the same {what}: real-error F1 {summary[f'real_error_{name}_f1']}, first errors found "
              f"{summary[f'real_error_{name}_acc_erroneous']}, correct passed "
              f"{summary[f'real_error_{name}_acc_correct']} (threshold {at:.3f})", flush=True)
    print(f"[reuse] prm eval processbench {model_dir} {out / 'heldout_processbench.json'} --threshold-split "
          f"{out / 'calib_processbench.json'} --checks off   |   prm serve {model_dir}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
