"""``prm`` subcommands for model stages: label, train, calibrate, export.

``prm label`` sits here, not in ``data_tools.cli``, because its ``hf`` backend loads a model through
``prm.rollout_model``; the ``openai``, ``vllm`` and ``simulated`` backends never import torch.

Each parses its flags, builds a config, calls one library function and says where the output went.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from data_tools.cli import add_config_flags, config_from
from data_tools.label_job import LabelJobConfig
from data_tools.labelling import METHODS, LabelConfig
from data_tools.openai_completer import OpenAIConfig
from data_tools.rollouts import Sampling
from data_tools.simulated import SimulatedConfig
from data_tools.vllm_completer import VLLMConfig
from prm.calibrate import METHODS as CALIBRATION_METHODS
from prm.config import AGGREGATIONS

COMPLETERS = ("hf", "openai", "vllm", "simulated")
# Each backend's own flags: (its config class, the flag prefix); flags of the others must stay unset.
BACKEND_FLAGS = {"openai": (OpenAIConfig, "openai-"), "vllm": (VLLMConfig, "vllm-"), "simulated": (SimulatedConfig, "sim-")}


def register(sub: argparse._SubParsersAction) -> None:
    _register_label(sub)

    p = sub.add_parser("train", help="train a PRM on labelled stepwise JSONL")
    p.add_argument("data", help="labelled solutions (stepwise JSONL by default, see --format)")
    p.add_argument("--format", default="stepwise", help="format of DATA, as prm convert reads it: stepwise, trl, "
                   "math-shepherd, processbench, prm800k, gsm8k")
    p.add_argument("--out", required=True, help="artifact folder to write")
    p.add_argument("--backbone", default="smollm2-135m")
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--label-type", choices=["soft", "hard"], default="soft")
    p.add_argument("--no-bf16", action="store_true", help="train in fp32 instead of bf16 autocast")
    p.add_argument("--layers", type=int, default=0, help="keep only the first N backbone layers (0: all)")
    p.add_argument("--freeze-layers", type=int, default=0, help="freeze embeddings and the first N layers")
    p.add_argument("--monotone", action="store_true", help="score steps by running minimum (first-error semantics)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=0, help="stop after N optimizer steps (0: run the epochs)")
    p.add_argument("--grad-accum", type=int, default=1, help="forward passes per optimizer step")
    p.add_argument("--last-step-only", action="store_true", help="train on each solution's last labelled step only")
    p.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations: less memory, slower")
    p.add_argument("--attention", choices=("auto", "eager", "sdpa"), default="auto",
                   help="attention kernel (auto: eager under bf16 on CPU, where bf16 SDPA is slow; the backbone's own otherwise)")
    p.add_argument("--lora-r", type=int, default=0, help="LoRA rank (0: full fine-tuning); merged on save")
    p.add_argument("--lora-alpha", type=float, default=16.0, help="LoRA alpha (update scaled by alpha / r)")
    p.add_argument("--lora-dropout", type=float, default=0.0)
    p.add_argument("--no-probe-init", action="store_true", help="start the head at random instead of a linear probe")
    p.add_argument("--no-group-by-length", action="store_true", help="random batches instead of length-grouped ones")
    p.add_argument("--save-steps", type=int, default=0, help="checkpoint every N steps into OUT/checkpoints (0: none)")
    p.add_argument("--save-total-limit", type=int, default=2, help="checkpoints kept")
    p.add_argument("--resume", nargs="?", const="latest", default="",
                   help="resume from OUT/checkpoints' newest checkpoint (or the folder given); same data and settings")
    p.add_argument("--logging-steps", type=int, default=0, help="log the loss every N steps (0: twice per epoch)")
    p.set_defaults(func=_train)

    p = sub.add_parser("calibrate", help="fit a step-score calibrator on held-out labelled steps",
                       description="Fit a calibrator on MODEL's step logits for DATA's labelled steps (solutions the "
                       "model was not trained on), write it to MODEL/calibration.json (every backend applies it) "
                       "and print ECE and Brier before and after as JSON.")
    p.add_argument("model", help="artifact folder")
    p.add_argument("data", help="held-out labelled stepwise JSONL")
    p.add_argument("--method", choices=list(CALIBRATION_METHODS), default="temperature",
                   help="temperature (1 parameter), platt (2) or isotonic (monotone step function; needs most data)")
    p.add_argument("--labels", choices=["hard", "soft"], default="hard",
                   help="fit against meta.hard_labels / labels > 0 (hard) or the soft MC fractions (soft)")
    p.add_argument("--per-position", action="store_true",
                   help="one calibrator per step position; positions past the last fitted one reuse the last")
    p.add_argument("--eval", metavar="DATA", help="labelled JSONL to report ECE/Brier on (default: DATA itself)")
    p.add_argument("--plot", metavar="PNG", help="write a reliability diagram (before and after) to this file")
    p.set_defaults(func=_calibrate)

    p = sub.add_parser("export", help="export an artifact to ONNX (onnx/model.onnx) and check parity")
    p.add_argument("model", help="artifact folder")
    p.add_argument("--check", metavar="DATA", action="append",
                   help="stepwise JSONL to check torch/ONNX parity (and the int8 gate) on; repeat it to pool files; "
                   "rows without labels but with meta.first_error (prm generate) are labelled by it")
    p.add_argument("--int8", action="store_true", help="also write onnx/model.int8.onnx (int8 weights and "
                   "activations), kept only if it passes the quality gate against fp32 on --check's labelled steps")
    p.add_argument("--bf16", action="store_true", help="also write bf16/model.safetensors for the torch-bf16-gptq "
                   "backend: backbone weights rounded to bf16 by GPTQ on --calib's solutions (prefer ones not in --check)")
    p.add_argument("--calib", metavar="DATA", action="append",
                   help="stepwise JSONL of calibration solutions for --bf16 (labels not needed); repeatable")
    p.set_defaults(func=_export)

    _register_eval(sub)


def _register_eval(sub: argparse._SubParsersAction) -> None:
    from data_tools.formats import FORMATS
    from prm.eval.run import BACKENDS, BestOfNConfig, ProcessBenchConfig, ScoreConfig

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
    add_config_flags(q, ProcessBenchConfig, choices={"format": list(FORMATS)})
    add_config_flags(q.add_argument_group("scoring"), ScoreConfig, choices={"backend": BACKENDS})
    q.set_defaults(func=_eval_processbench)

    b = evals.add_parser(
        "bon", help="best-of-N: pick the top-scored candidate per problem; vs majority vote, random and oracle",
        description="DATA holds one candidate solution per row, grouped into problems by meta.problem_id (or "
        "the prompt). Prints the selection accuracy of the PRM (--agg), of majority and PRM-weighted voting "
        "over final answers, of a random pick and of the oracle, overall and at smaller N (by_n).")
    b.add_argument("model", help="artifact folder")
    b.add_argument("data", help="candidate solutions (stepwise JSONL by default, see --format)")
    add_config_flags(b, BestOfNConfig, choices={"agg": AGGREGATIONS, "format": list(FORMATS)})
    add_config_flags(b.add_argument_group("scoring"), ScoreConfig, choices={"backend": BACKENDS})
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
    from data_tools.formats import read
    from prm.train import TrainConfig, train

    cfg = TrainConfig(backbone=args.backbone, output_dir=args.out, epochs=args.epochs, learning_rate=args.lr,
                      batch_size=args.batch_size, max_length=args.max_length, label_type=args.label_type,
                      bf16=not args.no_bf16, seed=args.seed, num_layers=args.layers,
                      freeze_layers=args.freeze_layers, monotone=args.monotone, max_steps=args.max_steps,
                      grad_accum=args.grad_accum, last_step_only=args.last_step_only,
                      gradient_checkpointing=args.gradient_checkpointing, attention=args.attention, lora_r=args.lora_r,
                      lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout, probe_init=not args.no_probe_init,
                      group_by_length=not args.no_group_by_length, save_steps=args.save_steps,
                      save_total_limit=args.save_total_limit, resume=args.resume, logging_steps=args.logging_steps)
    cfg.check()  # before reading data or loading a model
    out = train(list(read(args.format, args.data)), cfg)
    if int(os.environ.get("RANK", "0")) == 0:  # under accelerate launch, one report
        print(f"trained PRM written to {out}")


def _calibrate(args: argparse.Namespace) -> None:
    from data_tools.schema import read_jsonl
    from prm.calibrate import (
        calibration_report,
        fit_calibration,
        labelled_steps,
        reliability_diagram,
        save_calibration,
    )
    from prm.scoring import Scorer
    from prm.train import training_labels

    scorer = Scorer(args.model, backend="torch", calibrated=False)

    def steps(path: str):
        examples = list(read_jsonl(path))
        logits = scorer.step_logits([(e.prompt, e.steps) for e in examples])
        return labelled_steps(logits, [training_labels(e, args.labels) for e in examples])

    z, y, pos = steps(args.data)
    state = fit_calibration(z, y, pos, args.method, args.per_position)
    save_calibration(args.model, state)
    ez, ey, epos = steps(args.eval) if args.eval else (z, y, pos)
    report = {"method": args.method, "per_position": args.per_position, "fit_steps": int(len(y)),
              "evaluated_on": args.eval or args.data, **calibration_report(ez, ey, epos, state)}
    if args.plot:
        from prm.calibrate import apply_calibration

        reliability_diagram({"uncalibrated": (apply_calibration(ez, None), ey),
                             args.method: (apply_calibration(ez, state, epos), ey)}, args.plot)
        report["plot"] = args.plot
    print(json.dumps(report))
    print(f"calibration written to {args.model}/calibration.json")


def _export(args: argparse.Namespace) -> None:
    from data_tools.schema import read_jsonl
    from prm.export import export_onnx, gate_labels, parity, quantize_int8

    if args.int8 and not args.check:
        raise ValueError("--int8 needs --check DATA: held-out labelled steps to run the int8 quality gate on")
    if args.bf16 and not args.calib:
        raise ValueError("--bf16 needs --calib DATA: solutions whose layer inputs GPTQ rounds the weights against")
    out = export_onnx(args.model)
    print(f"ONNX model written to {out}")
    if args.bf16:
        from prm.bf16_weights import write_bf16_weights

        calib = [(e.prompt, e.steps) for path in args.calib for e in read_jsonl(path)]
        print(f"bf16 weights written to {write_bf16_weights(args.model, calib)} (backend torch-bf16-gptq)")
    if args.check:
        examples = [e for path in args.check for e in read_jsonl(path)]
        items = [(e.prompt, e.steps) for e in examples]
        report = {"onnx_max_abs_diff": parity(args.model, items)}
        if args.int8:
            # Raises Int8GateError with the figures when int8 does not keep fp32 quality.
            report["int8"] = quantize_int8(args.model, items, [gate_labels(e) for e in examples])
        print(json.dumps(report))
        if args.int8:
            print(f"int8 model written to {args.model}/onnx/model.int8.onnx")


def _register_label(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "label", help="label steps by rollouts (Monte-Carlo or binary search), as a resumable, shardable job",
        description="Label every step of INPUT's solutions by rolling out from its prefix and checking final answers "
        "against meta.answer, and append each labelled solution to OUTPUT (stepwise JSONL) as soon as it is done. "
        "Rerun the same command after a crash to finish: done solutions are skipped.")
    p.add_argument("input", help="solutions, in any --format prm convert reads; each needs its gold answer in meta")
    p.add_argument("output", help="labelled stepwise JSONL, appended to (soft labels for mc; meta.hard_labels)")
    p.add_argument("--completer", choices=COMPLETERS, default="hf",
                   help="what draws rollouts: hf (a transformers model in-process), openai (OpenAI-compatible "
                   "servers), vllm (vLLM in-process, GPU), simulated (no model; for tests and benchmarks)")
    add_config_flags(p, LabelConfig, choices={"method": METHODS})
    p.add_argument("--few-shot", metavar="FILE", help="text opening every rollout prefix instead of the built-in "
                   "worked examples (an empty file: none)")
    job = p.add_argument_group("job")
    add_config_flags(job, LabelJobConfig)
    sampling = p.add_argument_group("sampling (hf, openai, vllm)")
    add_config_flags(sampling, Sampling)
    hf = p.add_argument_group("hf")
    hf.add_argument("--backbone", default="smollm2-135m", help="model name or folder (default: embedded SmolLM2-135M)")
    hf.add_argument("--fp32", action="store_true", help="run in fp32 instead of bf16 (slower; rollouts then do not "
                    "depend on batching at all)")
    for name, (cls, prefix) in BACKEND_FLAGS.items():
        add_config_flags(p.add_argument_group(name), cls, prefix=prefix)
    p.set_defaults(func=_label)


def _label(args: argparse.Namespace) -> None:
    from data_tools.label_job import run_label_job

    label, job, sampling = (config_from(args, cls) for cls in (LabelConfig, LabelJobConfig, Sampling))
    backend = {name: config_from(args, cls, prefix) for name, (cls, prefix) in BACKEND_FLAGS.items()}
    problems = label.problems() + job.problems()
    if args.completer != "simulated":
        problems += sampling.problems()
    for name, config in backend.items():
        if name == args.completer:
            problems += config.problems()
            continue
        for f in dataclasses.fields(config):
            if getattr(config, f.name) != f.default:
                flag = "--" + (BACKEND_FLAGS[name][1] + f.name).replace("_", "-")
                problems.append(f"{flag} is for --completer {name}, not {args.completer}")
    if problems:
        raise ValueError("invalid prm label flags:\n  " + "\n  ".join(problems))
    few_shot = Path(args.few_shot).read_text(encoding="utf-8") if args.few_shot else None
    completer, settings = _completer(args, sampling, backend[args.completer] if args.completer in backend else None)
    result = run_label_job(args.input, args.output, completer, label, job, settings, few_shot)
    print(json.dumps(result.to_json()))
    report = result.report
    print(f"wrote {result.written} labelled solutions to {args.output} ({result.already_done} done before, "
          f"{report.rollouts} rollouts in {report.seconds:.1f} s){result.invalid.note()}")
    if report.failed_solutions:
        raise SystemExit(f"prm label: {report.failed_solutions} solutions were not labelled: completer requests failed "
                         f"after retries ({report.failed_requests}); rerun the same command to label them")


def _completer(args: argparse.Namespace, sampling: Sampling, backend: Any) -> tuple[Any, dict[str, Any]]:
    """The completer, and the settings that decide what it draws (compared when a run is resumed)."""
    drawn = dataclasses.asdict(sampling)
    if args.completer == "simulated":
        from data_tools.simulated import SimulatedCompleter

        settings = {k: v for k, v in dataclasses.asdict(backend).items() if k != "latency_s"}
        return SimulatedCompleter(backend, args.answer_key), {"completer": "simulated", **settings}
    if args.completer == "openai":
        from data_tools.openai_completer import OpenAICompleter

        return OpenAICompleter(backend, sampling), {"completer": "openai", "model": backend.model, "chat": backend.chat,
                                                    "batch_samples": backend.batch_samples, **drawn}
    if args.completer == "vllm":
        from data_tools.vllm_completer import VLLMCompleter

        try:
            completer = VLLMCompleter(backend, sampling)
        except ImportError as exc:
            raise ValueError(str(exc)) from None
        return completer, {"completer": "vllm", "model": backend.model, "dtype": backend.dtype, **drawn}
    from prm.rollout_model import load_completer

    completer = load_completer(args.backbone, sampling.max_new_tokens, sampling.temperature, bf16=not args.fp32,
                               top_k=sampling.top_k)
    completer.stop = sampling.stop
    return completer, {"completer": "hf", "backbone": args.backbone, "dtype": "fp32" if args.fp32 else "bf16", **drawn}
