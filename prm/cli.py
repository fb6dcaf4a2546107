"""``prm`` subcommands for model stages: label, train, calibrate, export.

Each parses its flags, builds a config, calls one library function and says where the output went.
"""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("label", help="Monte-Carlo step labels by rollouts from each step's prefix")
    p.add_argument("input", help="stepwise JSONL; each row needs meta.answer (the gold final answer)")
    p.add_argument("output", help="labelled stepwise JSONL (soft labels; meta.hard_labels)")
    p.add_argument("--backbone", default="smollm2-135m", help="completer model (default: embedded SmolLM2-135M)")
    p.add_argument("--rollouts", type=int, default=8, help="rollouts per step prefix (default 8)")
    p.add_argument("--max-new-tokens", type=int, default=40)
    p.add_argument("--temperature", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_label)

    p = sub.add_parser("train", help="train a PRM on labelled stepwise JSONL")
    p.add_argument("data", help="labelled stepwise JSONL")
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
    p.set_defaults(func=_train)

    p = sub.add_parser("calibrate", help="fit temperature scaling on held-out labelled steps")
    p.add_argument("model", help="artifact folder")
    p.add_argument("data", help="held-out labelled stepwise JSONL (hard labels are used)")
    p.add_argument("--method", choices=["temperature"], default="temperature")
    p.set_defaults(func=_calibrate)

    p = sub.add_parser("export", help="export an artifact to ONNX (onnx/model.onnx) and check parity")
    p.add_argument("model", help="artifact folder")
    p.add_argument("--check", metavar="DATA", help="stepwise JSONL to check torch/ONNX parity on")
    p.set_defaults(func=_export)


def _label(args: argparse.Namespace) -> None:
    from data_tools.labelling import mc_label
    from data_tools.schema import read_jsonl, write_jsonl
    from prm.rollout_model import load_completer

    examples = list(read_jsonl(args.input))
    completer = load_completer(args.backbone, args.max_new_tokens, args.temperature)
    labelled, report = mc_label(examples, completer, rollouts=args.rollouts, base_seed=args.seed)
    write_jsonl(args.output, labelled)
    print(json.dumps(report.to_json()))
    print(f"wrote {len(labelled)} labelled solutions to {args.output}")


def _train(args: argparse.Namespace) -> None:
    from data_tools.schema import read_jsonl
    from prm.train import TrainConfig, train

    cfg = TrainConfig(backbone=args.backbone, output_dir=args.out, epochs=args.epochs, learning_rate=args.lr,
                      batch_size=args.batch_size, max_length=args.max_length, label_type=args.label_type,
                      bf16=not args.no_bf16, seed=args.seed, num_layers=args.layers,
                      freeze_layers=args.freeze_layers, monotone=args.monotone)
    cfg.check()  # before reading data or loading a model
    out = train(list(read_jsonl(args.data)), cfg)
    print(f"trained PRM written to {out}")


def _calibrate(args: argparse.Namespace) -> None:
    import numpy as np

    from data_tools.schema import read_jsonl
    from prm.calibrate import TemperatureScaler, ece, save_calibration
    from prm.scoring import Scorer
    from prm.train import training_labels

    examples = list(read_jsonl(args.data))
    labels = [training_labels(ex, "hard") for ex in examples]  # unlabelled steps are None
    logits = Scorer(args.model, backend="torch", calibrated=False).step_logits([(e.prompt, e.steps) for e in examples])
    pairs = [(z, y) for zs, ys in zip(logits, labels, strict=True) for z, y in zip(zs, ys, strict=True) if y is not None]
    if not pairs:
        raise ValueError(f"{args.data} has no labelled steps to calibrate on")
    z, y = (np.asarray(v, dtype=float) for v in zip(*pairs, strict=True))
    scaler = TemperatureScaler().fit(z, y)
    save_calibration(args.model, scaler.to_json())
    before, after = ece(1 / (1 + np.exp(-z)), y), ece(scaler.predict_proba(z), y)
    print(json.dumps({"temperature": scaler.temperature_, "ece_before": before, "ece_after": after, "steps": len(y)}))
    print(f"calibration written to {args.model}/calibration.json")


def _export(args: argparse.Namespace) -> None:
    from data_tools.schema import read_jsonl
    from prm.export import export_onnx, parity

    out = export_onnx(args.model)
    print(f"ONNX model written to {out}")
    if args.check:
        diff = parity(args.model, [(e.prompt, e.steps) for e in read_jsonl(args.check)])
        print(json.dumps({"onnx_max_abs_diff": diff}))

