"""The ``prm`` command: every stage's subcommand, plus ``serve``, ``score`` and ``demo``.

The entry point lives in ``serving`` because it is the top of the import chain
(``data_tools`` <- ``prm`` <- ``serving``): it registers the subcommands of ``data_tools.cli`` and
``prm.cli`` and adds the ones that need the service or the client. Subcommands import their heavy
libraries only when they run, so ``prm --help`` is fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from data_tools import cli as data_cli
from prm import cli as prm_cli
from prm.scoring import BACKENDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prm", description="Process reward models: label, train, calibrate, "
                                     "export, serve.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    data_cli.register(sub)
    prm_cli.register(sub)

    p = sub.add_parser("serve", help="serve an artifact with BentoML (POST /score)")
    p.add_argument("model", help="artifact folder")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.set_defaults(func=_serve)

    p = sub.add_parser("score", help="score solutions in-process (or over HTTP with --url)")
    p.add_argument("model", nargs="?", help="artifact folder (not needed with --url)")
    p.add_argument("data", help="stepwise JSONL")
    p.add_argument("--backend", choices=list(BACKENDS), default="onnx")
    p.add_argument("--url", help="score through a running service instead, e.g. http://127.0.0.1:3000")
    p.add_argument("--aggregate", choices=["min", "last", "prod", "mean"], default="min")
    p.add_argument("--output", help="JSONL to write (default: print)")
    p.set_defaults(func=_score)

    from serving.demo import DemoConfig

    p = sub.add_parser("demo", help="run every stage on the embedded default and write summary.json",
                       description="Generate problems, label them by rollouts, train, calibrate, export to ONNX, "
                       "serve over HTTP and score; writes DIR/summary.json and leaves the artifact in DIR/model.")
    for name, default, doc in _fields(DemoConfig):
        flag = "--" + name.replace("_", "-")
        if isinstance(default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=f"{doc} (default {default})")
        else:
            p.add_argument(flag, type=type(default), default=default, help=f"{doc} (default {default})")
    p.set_defaults(func=_demo)
    return parser


def _fields(cls):
    """(name, default, one-line doc) of a config dataclass, docs read from its source."""
    import dataclasses
    import inspect

    src = inspect.getsource(cls).splitlines()
    docs = {}
    for i, line in enumerate(src):
        stripped = line.strip()
        if ":" in stripped and "=" in stripped and not stripped.startswith(("def", '"', "#")):
            name = stripped.split(":")[0]
            nxt = src[i + 1].strip() if i + 1 < len(src) else ""
            docs[name] = nxt.strip('"') if nxt.startswith('"""') else ""
    return [(f.name, f.default, docs.get(f.name, "")) for f in dataclasses.fields(cls)]


def _serve(args: argparse.Namespace) -> None:
    from serving.launch import serve_command

    cmd, env = serve_command(args.model, args.host, args.port)
    print(f"serving {args.model} on http://{args.host}:{args.port} (POST /score)", flush=True)
    os.execvpe(cmd[0], cmd, env)


def _score(args: argparse.Namespace) -> None:
    from data_tools.schema import read_jsonl

    examples = list(read_jsonl(args.data))
    if args.url:
        from serving.client import PRMClient

        with PRMClient(args.url) as client:
            results = client.score([{"prompt": e.prompt, "steps": e.steps} for e in examples], args.aggregate)
    else:
        if not args.model:
            raise SystemExit("prm score: give a MODEL folder, or --url of a running service")
        from prm.scoring import Scorer, aggregate

        steps = Scorer(args.model, backend=args.backend).score([(e.prompt, e.steps) for e in examples])
        results = [{"step_scores": s, "score": aggregate(s, args.aggregate)} for s in steps]
    lines = [json.dumps(r) for r in results]
    if args.output:
        with open(args.output, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        print(f"wrote {len(lines)} scores to {args.output}")
    else:
        print("\n".join(lines))


def _demo(args: argparse.Namespace) -> None:
    from serving.demo import DemoConfig, run_demo

    cfg = DemoConfig(**{name: getattr(args, name) for name, _, _ in _fields(DemoConfig)})
    run_demo(cfg)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"prm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
