"""``prm`` subcommands that own pure data: ``generate`` (demo problems), ``convert`` (between PRM data
formats) and ``inject-errors`` (wrong variants of correct solutions). Library code never parses argv:
each subcommand builds its config dataclass from the flags (``data_tools.flags``), calls one
function, reports the result.
"""

from __future__ import annotations

import argparse

from data_tools.flags import add_config_flags, config_from, field_docs  # noqa: F401 (field_docs: old import path)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="write seeded arithmetic word problems (gold + injected-error solutions)")
    p.add_argument("output", help="stepwise JSONL to write")
    p.add_argument("--problems", type=int, default=100, help="number of problems (default 100)")
    p.add_argument("--min-steps", type=int, default=2, help="steps per solution, at least (default 2)")
    p.add_argument("--max-steps", type=int, help="steps per solution, at most (default: --min-steps)")
    p.add_argument("--max-number", type=int, default=6, help="largest number in a problem (default 6)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_generate)

    from data_tools.formats import FORMATS, ConvertConfig
    from data_tools.synth.inject import INPUT_FORMATS, InjectConfig

    p = sub.add_parser(
        "convert", help="convert between PRM data formats (prm800k, math-shepherd, processbench, trl, gsm8k, stepwise)",
        description="Stream INPUT in one format into OUTPUT in another. The container follows the file name: "
        ".jsonl, .json, .parquet, or a folder (Hugging Face save_to_disk). Format options apply to the "
        "formats named in their help.")
    p.add_argument("input", help="file or dataset folder to read")
    p.add_argument("output", help="file or dataset folder to write")
    p.add_argument("--from", dest="source", required=True, choices=list(FORMATS), help="format of INPUT")
    p.add_argument("--to", dest="target", required=True, choices=list(FORMATS), help="format of OUTPUT")
    add_config_flags(p, ConvertConfig)
    p.set_defaults(func=_convert)

    p = sub.add_parser(
        "inject-errors", help="turn correct solutions into wrong ones with a known first wrong step",
        description="Write stepwise JSONL: for each correct solution in INPUT, wrong variants with one error "
        "(a slip, a wrong operator or a wrong operand by default; --kinds real for errors like real ones: a wrong "
        "quantity, a misread relation, a dropped step, ...) carried through the later steps; labels are right before "
        "the error and wrong from it on (meta.first_error, meta.error_kind).")
    p.add_argument("input", help="GSM8K JSONL (question, answer) or stepwise JSONL")
    p.add_argument("output", help="stepwise JSONL to write")
    p.add_argument("--format", dest="input_format", choices=list(INPUT_FORMATS), default="gsm8k",
                   help="format of INPUT (default gsm8k)")
    add_config_flags(p, InjectConfig)
    p.set_defaults(func=_inject)

    p = sub.add_parser(
        "consensus", help="keep the step labels two label sources agree on (e.g. Monte-Carlo and reference-guided)",
        description="Match FIRST's solutions to SECOND's (by meta.id, else prompt and steps) and write FIRST's "
        "solutions with each step's hard label kept where both sources agree and unlabelled where they differ "
        "(training skips unlabelled steps); prints how much was kept and how often the first errors agree.")
    p.add_argument("first", help="labelled solutions (the rows written out)")
    p.add_argument("second", help="the same solutions labelled by another source")
    p.add_argument("output", help="stepwise JSONL to write")
    p.add_argument("--format", default="stepwise", help="format of FIRST and SECOND, as prm convert reads them")
    p.add_argument("--first-error-only", action="store_true",
                   help="keep only the solutions whose first wrong step both sources agree on, with all their labels")
    p.set_defaults(func=_consensus)


def _generate(args: argparse.Namespace) -> None:
    from data_tools.schema import write_jsonl
    from data_tools.synth.problems import generate_dataset

    n = write_jsonl(args.output, generate_dataset(args.problems, seed=args.seed, min_steps=args.min_steps,
                                                  max_steps=args.max_steps or args.min_steps,
                                                  max_number=args.max_number))
    print(f"wrote {n} solutions to {args.output} (meta.first_error holds each injected error's step)")


def _convert(args: argparse.Namespace) -> None:
    from data_tools.formats import ConvertConfig, convert

    report = convert(args.source, args.target, args.input, args.output, config_from(args, ConvertConfig))
    print(f"{args.input} ({args.source}) -> {args.output} ({args.target}): {report.summary()}")


def _inject(args: argparse.Namespace) -> None:
    from data_tools.synth.inject import InjectConfig, inject_errors

    report = inject_errors(args.input, args.output, args.input_format, config_from(args, InjectConfig))
    print(f"wrote {args.output}: {report.summary()}")


def _consensus(args: argparse.Namespace) -> None:
    import json

    from data_tools.formats import read
    from data_tools.labelling.consensus import ConsensusReport, consensus
    from data_tools.schema import write_jsonl

    report = ConsensusReport()
    rows = consensus(read(args.format, args.first), read(args.format, args.second), args.first_error_only, report)
    write_jsonl(args.output, rows)
    print(json.dumps(report.to_json()))
    print(f"wrote {len(rows)} solutions to {args.output}: {report.steps_kept} of {report.steps} step labels kept, first "
          f"errors agree on {report.same_first_error} of {report.matched} solutions ({report.unmatched} unmatched)")
