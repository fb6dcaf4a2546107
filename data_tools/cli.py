"""``prm`` subcommands that own pure data: ``generate`` (demo problems). Library code never parses argv."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="write seeded arithmetic word problems (gold + injected-error solutions)")
    p.add_argument("output", help="stepwise JSONL to write")
    p.add_argument("--problems", type=int, default=100, help="number of problems (default 100)")
    p.add_argument("--max-steps", type=int, default=2, help="steps per solution, at most (default 2)")
    p.add_argument("--max-number", type=int, default=6, help="largest number in a problem (default 6)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_generate)


def _generate(args: argparse.Namespace) -> None:
    from data_tools.problems import generate_dataset
    from data_tools.schema import write_jsonl

    n = write_jsonl(args.output, generate_dataset(args.problems, seed=args.seed, max_steps=args.max_steps,
                                                  max_number=args.max_number))
    print(f"wrote {n} solutions to {args.output} (meta.first_error holds each injected error's step)")
