"""``prm`` subcommands that own pure data: ``generate`` (demo problems), ``convert`` (between PRM data
formats) and ``inject-errors`` (wrong variants of correct solutions). Library code never parses argv:
each subcommand builds its config dataclass from the flags, calls one function, reports the result.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import re
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="write seeded arithmetic word problems (gold + injected-error solutions)")
    p.add_argument("output", help="stepwise JSONL to write")
    p.add_argument("--problems", type=int, default=100, help="number of problems (default 100)")
    p.add_argument("--min-steps", type=int, default=2, help="steps per solution, at least (default 2)")
    p.add_argument("--max-steps", type=int, help="steps per solution, at most (default: --min-steps)")
    p.add_argument("--max-number", type=int, default=6, help="largest number in a problem (default 6)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_generate)

    from data_tools.formats import FORMATS, ConvertConfig, prm800k, processbench
    from data_tools.formats.labels import UNLABELLED_POLICIES
    from data_tools.inject import INPUT_FORMATS, InjectConfig

    p = sub.add_parser(
        "convert", help="convert between PRM data formats (prm800k, math-shepherd, processbench, trl, gsm8k, stepwise)",
        description="Stream INPUT in one format into OUTPUT in another. The container follows the file name: "
        ".jsonl, .json, .parquet, or a folder (Hugging Face save_to_disk). Format options apply to the "
        "formats named in their help.")
    p.add_argument("input", help="file or dataset folder to read")
    p.add_argument("output", help="file or dataset folder to write")
    p.add_argument("--from", dest="source", required=True, choices=list(FORMATS), help="format of INPUT")
    p.add_argument("--to", dest="target", required=True, choices=list(FORMATS), help="format of OUTPUT")
    add_config_flags(p, ConvertConfig, choices={"rating0": prm800k.RATING0, "after_error": processbench.AFTER_ERROR,
                                                "unlabelled": UNLABELLED_POLICIES})
    p.set_defaults(func=_convert)

    p = sub.add_parser(
        "inject-errors", help="turn correct solutions into wrong ones with a known first wrong step",
        description="Write stepwise JSONL: for each correct solution in INPUT, wrong variants with one "
        "calculation corrupted (a slip, a wrong operator or a wrong operand) and carried through the later "
        "steps; labels are right before the error and wrong from it on (meta.first_error, meta.error_kind).")
    p.add_argument("input", help="GSM8K JSONL (question, answer) or stepwise JSONL")
    p.add_argument("output", help="stepwise JSONL to write")
    p.add_argument("--format", dest="input_format", choices=list(INPUT_FORMATS), default="gsm8k",
                   help="format of INPUT (default gsm8k)")
    add_config_flags(p, InjectConfig)
    p.set_defaults(func=_inject)


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a config dataclass, read from its source."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
            docs[node.target.id] = nxt.value.value.strip()
    return docs


def _comma_list(text: str) -> tuple[str, ...]:
    r"""Comma-separated values; ``\n``, ``\t`` and ``\\`` in them stand for a newline, a tab, a backslash."""
    escapes = {"n": "\n", "t": "\t", "\\": "\\"}
    return tuple(re.sub(r"\\([nt\\])", lambda m: escapes[m.group(1)], part.strip())
                 for part in text.split(",") if part.strip())


def add_config_flags(parser: Any, cls: type, choices: Mapping[str, Sequence[str]] | None = None,
                     prefix: str = "") -> None:
    """One ``--flag`` per field of the config dataclass ``cls``, documented by the field's docstring.

    ``prefix`` goes before each flag and its destination (``prefix="sim-"``: ``--sim-p-correct``,
    ``args.sim_p_correct``); ``parser`` may be an argument group.
    """
    docs, choices = field_docs(cls), choices or {}
    for f in dataclasses.fields(cls):
        flag, default, doc = "--" + (prefix + f.name).replace("_", "-"), f.default, docs.get(f.name, "")
        if isinstance(default, bool):
            if default:  # on unless turned off: --no-FLAG
                parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=True, help=doc)
            else:
                parser.add_argument(flag, action="store_true", help=doc)
        elif isinstance(default, tuple):
            shown = ",".join(default).encode("unicode_escape").decode() or "none"
            parser.add_argument(flag, type=_comma_list, default=default,
                                help=f"{doc} (comma-separated, default {shown})")
        else:
            kind: Any = type(default) if default is not None else (float if "float" in str(f.type) else str)
            shown = "" if default is None else f" (default {default})"  # None: the doc says what happens
            parser.add_argument(flag, type=kind, default=default, choices=choices.get(f.name), help=doc + shown)


def config_from(args: argparse.Namespace, cls: type, prefix: str = "") -> Any:
    dest = prefix.replace("-", "_")
    return cls(**{f.name: getattr(args, dest + f.name) for f in dataclasses.fields(cls)})


def _generate(args: argparse.Namespace) -> None:
    from data_tools.problems import generate_dataset
    from data_tools.schema import write_jsonl

    n = write_jsonl(args.output, generate_dataset(args.problems, seed=args.seed, min_steps=args.min_steps,
                                                  max_steps=args.max_steps or args.min_steps,
                                                  max_number=args.max_number))
    print(f"wrote {n} solutions to {args.output} (meta.first_error holds each injected error's step)")


def _convert(args: argparse.Namespace) -> None:
    from data_tools.formats import ConvertConfig, convert

    report = convert(args.source, args.target, args.input, args.output, config_from(args, ConvertConfig))
    print(f"{args.input} ({args.source}) -> {args.output} ({args.target}): {report.summary()}")


def _inject(args: argparse.Namespace) -> None:
    from data_tools.inject import InjectConfig, inject_errors

    report = inject_errors(args.input, args.output, args.input_format, config_from(args, InjectConfig))
    print(f"wrote {args.output}: {report.summary()}")
