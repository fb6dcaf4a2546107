"""``prm`` subcommands for model stages: label, sample, train, calibrate, export, eval.

``prm label`` and ``prm sample`` sit here, not in ``data_tools.cli``, because their ``hf`` backend
loads a model through ``prm.generation`` (``prm.completers`` picks the backend); the ``openai``,
``vllm`` and ``simulated`` backends never import torch.

Each parses its flags, builds a config, calls one library function and says where the output went.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

from data_tools.flags import add_config_file, add_config_flags, config_from
from data_tools.labelling import LabelConfig
from data_tools.labelling.job import LabelJobConfig
from data_tools.solutions import SampleConfig
from prm.calibrate import METHODS as CALIBRATION_METHODS
from prm.completers import BACKEND_FLAGS, COMPLETERS, add_completer_flags, build_completer, completer_problems  # noqa: F401

FORMAT_HELP = "format of the data files, as prm convert reads them: stepwise, trl, math-shepherd, processbench, prm800k, gsm8k"


def _read(fmt: str, paths) -> list:
    """Every example of the files ``paths`` (one path or several), read in format ``fmt``."""
    from data_tools.formats import read

    return [e for path in ([paths] if isinstance(paths, str) else paths) for e in read(fmt, path)]


def register(sub: argparse._SubParsersAction) -> None:
    _register_label(sub)
    _register_sample(sub)

    from prm.train.config import TrainConfig

    p = sub.add_parser("train", help="train a PRM on labelled stepwise JSONL",
                       description="Train a PRM on DATA's labelled steps and write the artifact folder (--out). "
                       "configs/train_demo.yaml holds the recipe `prm demo` trains with.")
    p.add_argument("data", help="labelled solutions (stepwise JSONL by default, see --format)")
    p.add_argument("--format", default="stepwise", help=FORMAT_HELP)
    add_config_flags(p, TrainConfig, defaults={"output_dir": None})
    add_config_file(p)
    p.set_defaults(func=_train)

    p = sub.add_parser("calibrate", help="fit a step-score calibrator on held-out labelled steps",
                       description="Fit a calibrator on MODEL's step logits for DATA's labelled steps (solutions the "
                       "model was not trained on), write it to MODEL/calibration.json (every backend applies it) "
                       "and print ECE and Brier before and after as JSON.")
    p.add_argument("model", help="artifact folder")
    p.add_argument("data", help="held-out labelled solutions (stepwise JSONL by default, see --format)")
    p.add_argument("--method", choices=list(CALIBRATION_METHODS), default="temperature",
                   help="temperature (1 parameter), platt (2) or isotonic (monotone step function; needs most data)")
    p.add_argument("--labels", choices=["hard", "soft"], default="hard",
                   help="fit against meta.hard_labels / labels > 0 (hard) or the soft MC fractions (soft)")
    p.add_argument("--per-position", action="store_true",
                   help="one calibrator per step position; positions past the last fitted one reuse the last")
    p.add_argument("--eval", metavar="DATA", help="labelled data to report ECE/Brier on (default: DATA itself)")
    p.add_argument("--plot", metavar="PNG", help="write a reliability diagram (before and after) to this file")
    p.add_argument("--format", default="stepwise", help=FORMAT_HELP)
    p.set_defaults(func=_calibrate)

    p = sub.add_parser("export", help="export an artifact to ONNX (onnx/model.onnx) and check parity")
    p.add_argument("model", help="artifact folder")
    p.add_argument("--check", metavar="DATA", action="append",
                   help="stepwise JSONL to check torch/ONNX parity (and the int8 gate) on; repeat it to pool files; "
                   "rows without labels but with meta.first_error (prm generate) are labelled by it")
    p.add_argument("--int8", action="store_true", help="also write onnx/model.int8.onnx (int8 weights and "
                   "activations), kept only if it passes the quality gate against fp32 on --check's labelled steps")
    p.add_argument("--fp16", action="store_true", help="also write onnx/model.fp16.onnx (for GPUs), kept only if it "
                   "passes the same quality gate against fp32 on --check's labelled steps")
    p.add_argument("--bf16", action="store_true", help="also write bf16/model.safetensors for the torch-bf16-gptq "
                   "backend: backbone weights rounded to bf16 by GPTQ on --calib's solutions (prefer ones not in --check); "
                   "with --check, gated against PyTorch fp32 there (a passed gate makes it the service's default)")
    p.add_argument("--calib", metavar="DATA", action="append",
                   help="calibration solutions for --bf16 (labels not needed); repeatable")
    p.add_argument("--format", default="stepwise", help=FORMAT_HELP + " (--check and --calib)")
    p.set_defaults(func=_export)

    _register_eval(sub)
    _register_push(sub)
    _register_import(sub)


def _register_import(sub: argparse._SubParsersAction) -> None:
    from prm.families import FAMILIES, ImportConfig

    p = sub.add_parser("import", help="turn a public PRM's Hugging Face folder into an artifact (Qwen, Math-Shepherd, ...)",
                       description="Read the PRM in SOURCE (a local Hugging Face folder, safetensors weights) as FAMILY "
                       "renders and scores it, and write it to OUT as an artifact that prm calibrate, export, eval, score "
                       "and serve use as they are. The README lists each family's input rendering and score rule.")
    p.add_argument("family", choices=list(FAMILIES), help="how SOURCE renders its input and reads its step scores")
    p.add_argument("source", help="the model's local folder (config.json, tokenizer, *.safetensors)")
    p.add_argument("out", help="the artifact folder to write (new or empty)")
    add_config_flags(p, ImportConfig)
    p.set_defaults(func=_import)


def _import(args: argparse.Namespace) -> None:
    from prm.families import ImportConfig, import_prm

    report = import_prm(args.family, args.source, args.out, config_from(args, ImportConfig))
    print(json.dumps(report))
    print(f"imported {args.family} PRM written to {args.out}")


def _register_eval(sub: argparse._SubParsersAction) -> None:
    from prm.eval.run import BestOfNConfig, ProcessBenchConfig, ScoreConfig

    p = sub.add_parser("eval", help="evaluate an artifact: ProcessBench F1, best-of-N, step AUROC",
                       description="Score DATA with MODEL and print the metrics as one JSON line.")
    evals = p.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    q = evals.add_parser(
        "processbench", help="ProcessBench: first-error accuracy on erroneous and correct solutions, and their F1",
        description="A solution's predicted first error is its first step scored below the threshold (or -1); "
        "it counts when it equals the labelled one. Prints acc_erroneous, acc_correct, f1 (their harmonic "
        "mean), n, step_auroc, step_ece and last_step_min_share (wrong solutions whose lowest step score is "
        "on the last step) as JSON; per-subset metrics when the ids name ProcessBench subsets.")
    q.add_argument("model", help="artifact folder")
    q.add_argument("data", help="labelled solutions (ProcessBench JSON/JSONL/Parquet by default, see --format)")
    add_config_flags(q, ProcessBenchConfig)
    add_config_flags(q.add_argument_group("scoring"), ScoreConfig)
    q.set_defaults(func=_eval_processbench)

    b = evals.add_parser(
        "bon", help="best-of-N: pick the top-scored candidate per problem; vs majority vote, random and oracle",
        description="DATA holds one candidate solution per row, grouped into problems by meta.problem_id (or "
        "the prompt). Prints the selection accuracy of the PRM (--agg), of majority and PRM-weighted voting "
        "over final answers, of a random pick and of the oracle, overall and at smaller N (by_n).")
    b.add_argument("model", help="artifact folder")
    b.add_argument("data", help="candidate solutions (stepwise JSONL by default, see --format)")
    add_config_flags(b, BestOfNConfig)
    add_config_flags(b.add_argument_group("scoring"), ScoreConfig)
    b.set_defaults(func=_eval_bon)


def _eval_processbench(args: argparse.Namespace) -> None:
    from prm.eval.run import ProcessBenchConfig, ScoreConfig, run_processbench

    result = run_processbench(args.model, args.data, config_from(args, ScoreConfig),
                              config_from(args, ProcessBenchConfig))
    print(json.dumps(result))


def _eval_bon(args: argparse.Namespace) -> None:
    from prm.eval.run import BestOfNConfig, ScoreConfig, run_bon

    print(json.dumps(run_bon(args.model, args.data, config_from(args, ScoreConfig), config_from(args, BestOfNConfig))))


def _train(args: argparse.Namespace) -> None:
    from prm.train import TrainConfig, train

    if not args.output_dir:
        raise ValueError("--out is required: the artifact folder to write (or `out:` in --config)")
    cfg = config_from(args, TrainConfig)
    cfg.check()  # before reading data or loading a model
    main_process = int(os.environ.get("RANK", "0")) == 0  # under accelerate launch, one report
    if main_process:
        changed = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
                   if getattr(cfg, f.name) != TrainConfig.__dataclass_fields__[f.name].default
                   and f.name not in ("output_dir", "extra_args")}
        print(f"prm train: {cfg.backbone}; settings other than the defaults: {json.dumps(changed) if changed else 'none'}",
              flush=True)
    out = train(_read(args.format, args.data), cfg)
    if main_process:
        print(f"trained PRM written to {out}")


def _calibrate(args: argparse.Namespace) -> None:
    from prm.calibrate import calibrate_artifact

    report = calibrate_artifact(args.model, _read(args.format, args.data), args.method, args.labels, args.per_position,
                                _read(args.format, args.eval) if args.eval else None, args.plot)
    report.pop("state")
    print(json.dumps({**report, "evaluated_on": args.eval or args.data}))
    print(f"calibration written to {args.model}/calibration.json")


def _export(args: argparse.Namespace) -> None:
    from prm.export import export_artifact

    report = export_artifact(args.model, _read(args.format, args.check or []), args.int8, args.bf16,
                             _read(args.format, args.calib or []), say=print, fp16=args.fp16)
    if args.check:
        print(json.dumps({k: v for k, v in report.items() if k in ("onnx_max_abs_diff", "int8", "fp16", "bf16_gate")}))


def _register_label(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "label", help="label steps by rollouts (Monte-Carlo or binary search) or against a reference solution, as a "
        "resumable, shardable job",
        description="Label every step of INPUT's solutions by rolling out from its prefix and checking final answers "
        "against meta.answer (or, --method reference, by checking its numbers against the reference solution, with "
        "no completer), and append each labelled solution to OUTPUT (stepwise JSONL) as soon as it is done. "
        "Rerun the same command after a crash to finish: done solutions are skipped.")
    p.add_argument("input", help="solutions, in any --format prm convert reads; each needs its gold answer in meta")
    p.add_argument("output", help="labelled stepwise JSONL, appended to (soft labels for mc; meta.hard_labels)")
    add_config_flags(p, LabelConfig)
    p.add_argument("--few-shot", metavar="FILE", help="text opening every rollout prefix instead of the built-in "
                   "worked examples (an empty file: none)")
    job = p.add_argument_group("job")
    add_config_flags(job, LabelJobConfig)
    add_completer_flags(p, "rollouts")
    add_config_file(p)
    p.set_defaults(func=_label)


def _label(args: argparse.Namespace) -> None:
    from data_tools.labelling.job import run_label_job

    label, job = config_from(args, LabelConfig), config_from(args, LabelJobConfig)
    problems = label.problems() + job.problems() + completer_problems(args)
    if label.method == "reference":  # no rollouts: refuse what only rollouts use rather than ignore it
        problems += [f"{flag} is for the rollout methods (mc, binary); --method reference draws no rollouts"
                     for flag, given in (("--completer", args.completer != "hf"), ("--few-shot", args.few_shot)) if given]
    if problems:
        raise ValueError("invalid prm label flags:\n  " + "\n  ".join(problems))
    few_shot = Path(args.few_shot).read_text(encoding="utf-8") if args.few_shot else None
    # --method reference needs no completer: none is built (hf would load a model for nothing)
    completer, settings = (None, {}) if label.method == "reference" else build_completer(args, args.answer_key)
    result = run_label_job(args.input, args.output, completer, label, job, settings, few_shot)
    print(json.dumps(result.to_json()))
    report = result.report
    print(f"wrote {result.written} labelled solutions to {args.output} ({result.already_done} done before, "
          f"{report.rollouts} rollouts in {report.seconds:.1f} s){result.invalid.note()}")
    if report.failed_solutions:
        raise SystemExit(f"prm label: {report.failed_solutions} solutions were not labelled: completer requests failed "
                         f"after retries ({report.failed_requests}); rerun the same command to label them")


def _register_sample(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample", help="sample whole solutions to problems from a model and keep the wrong ones (real errors)",
        description="Sample --samples solutions to each problem of INPUT (GSM8K JSONL by default: any format prm "
        "convert reads, with the gold answer in meta) from the chosen completer, after worked examples in GSM8K's "
        "format, one step a line; check each final answer and append the kept solutions to OUTPUT (stepwise JSONL, "
        "unlabelled, meta.final_answer_correct, meta.reference_solution). Label them afterwards with prm label. "
        "Rerun the same command after a crash to finish.")
    p.add_argument("input", help="problems with their gold answers (and reference solutions), see --format")
    p.add_argument("output", help="stepwise JSONL of the kept solutions, appended to")
    p.add_argument("--format", default="gsm8k", help=FORMAT_HELP + " (default gsm8k)")
    add_config_flags(p, SampleConfig)
    p.add_argument("--few-shot", metavar="FILE", help="text opening every prompt instead of the built-in worked "
                   "examples (an empty file: none)")
    add_completer_flags(p, "solutions", {"max_new_tokens": 256})  # a whole GSM8K solution, not one step's rollout
    add_config_file(p)
    p.set_defaults(func=_sample)


def _sample(args: argparse.Namespace) -> None:
    from data_tools.solutions import sample_solutions

    cfg = config_from(args, SampleConfig)
    problems = cfg.problems() + completer_problems(args)
    if problems:
        raise ValueError("invalid prm sample flags:\n  " + "\n  ".join(problems))
    few_shot = Path(args.few_shot).read_text(encoding="utf-8") if args.few_shot else None
    completer, settings = build_completer(args, cfg.answer_key)
    report = sample_solutions(args.input, args.output, completer, cfg, args.format, few_shot, settings)
    print(json.dumps(report.to_json()))
    print(f"wrote {report.written} solutions to {args.output} ({report.wrong} wrong and {report.right} right of "
          f"{report.sampled} sampled for {report.problems} problems; {report.no_answer} without a final answer)")
    if report.failed_requests:
        raise SystemExit(f"prm sample: {report.failed_requests} problems were not sampled: completer requests failed "
                         "after retries; rerun the same command to sample them")


def _register_push(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("push", help="upload an artifact to the Hugging Face Hub (load it back with PRM.from_pretrained)",
                       description="Name MODEL's model card after REPO_ID, refresh its manifest, create the model "
                       "repository if needed and upload the folder in one commit (checkpoints/ stays behind). The "
                       "token is huggingface_hub's: HF_TOKEN, `hf auth login`, or --token.")
    p.add_argument("model", help="artifact folder")
    p.add_argument("repo_id", help="the Hub model repository, ORG/NAME")
    p.add_argument("--private", action="store_true", help="create the repository private (an existing one keeps its setting)")
    p.add_argument("--revision", help="branch to commit to (default: main)")
    p.add_argument("--token", help="a Hugging Face token (default: HF_TOKEN or the saved login)")
    p.add_argument("--message", help="commit message")
    p.set_defaults(func=_push)


def _push(args: argparse.Namespace) -> None:
    from prm.hub import push

    url = push(args.model, args.repo_id, token=args.token, private=args.private or None, revision=args.revision,
               message=args.message)
    print(f"pushed {args.model} to {args.repo_id}: {url}")
