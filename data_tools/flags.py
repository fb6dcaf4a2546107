"""Config dataclasses as command-line flags, config files and bound checks: one mechanism for every command.

A config is a dataclass whose fields have defaults and a docstring under each field; that docstring
is the flag's help. ``opt(default, ...)`` adds what a field needs beyond that: its flag name when it
is not ``--field-name`` (``flag="--lr"``) and other names it keeps (``aliases``), bounds (``min``, ``max``, ``above``, ``below``) and
``choices`` that ``problems(cfg)`` checks and reports naming the flag, ``cli=False`` for a setting
that only a config file sets, and argparse extras (``nargs``, ``const``).

    add_config_flags(parser, TrainConfig)       one --flag per field (booleans: --x / --no-x)
    config_from(args, TrainConfig)              the dataclass back from parsed flags
    problems(cfg)                               every bound a value breaks, as one line each
    add_config_file(parser); read_config_file   ``--config run.yaml``: a YAML or JSON mapping of
                                                flag names (``lr`` or ``--lr``) or field names to values

Precedence: a flag on the command line, then the config file, then the default (for ``prm serve``,
a ``PRM_*`` environment variable before the default).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import json
import re
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

_BOUNDS = ("min", "max", "above", "below", "choices")


def opt(default: Any, *, flag: str | None = None, aliases: Sequence[str] = (), min: float | None = None, max: float | None = None,
        above: float | None = None, below: float | None = None, choices: Sequence | None = None,
        cli: bool = True, **argparse_extra: Any) -> Any:
    """A dataclass field with flag metadata (see the module docstring)."""
    meta = {"flag": flag, "aliases": tuple(aliases), "min": min, "max": max, "above": above, "below": below, "choices": choices, "cli": cli,
            "argparse": argparse_extra}
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a config dataclass, read from its source (bases first)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__[:-1]):
        if not dataclasses.is_dataclass(klass):
            continue
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:], strict=False):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr)
                    and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def flag_name(f: dataclasses.Field, prefix: str = "") -> str:
    return f.metadata.get("flag") or "--" + (prefix + f.name).replace("_", "-")


def comma_list(text: str) -> tuple[str, ...]:
    r"""Comma-separated values; ``\n``, ``\t`` and ``\\`` in them stand for a newline, a tab, a backslash."""
    escapes = {"n": "\n", "t": "\t", "\\": "\\"}
    return tuple(re.sub(r"\\([nt\\])", lambda m: escapes[m.group(1)], part.strip())
                 for part in text.split(",") if part.strip())


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]


def add_config_flags(parser: Any, cls: type, choices: Mapping[str, Sequence[str]] | None = None,
                     prefix: str = "", defaults: Mapping[str, Any] | None = None) -> None:
    """One flag per field of ``cls``, documented by its docstring, with its default in the help.

    ``prefix`` goes before each flag and its destination (``prefix="sim-"``: ``--sim-p-correct``,
    ``args.sim_p_correct``); ``parser`` may be an argument group; ``defaults`` overrides field defaults
    (e.g. from the environment).
    """
    docs, choices, defaults = field_docs(cls), dict(choices or {}), defaults or {}
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if meta.get("cli") is False:
            continue
        flags, doc = (flag_name(f, prefix), *meta.get("aliases", ())), docs.get(f.name, "").replace("%", "%%")
        default = defaults.get(f.name, _default(f))
        dest = (prefix.replace("-", "_") + f.name)
        extra = dict(meta.get("argparse") or {})
        field_choices = choices.get(f.name, meta.get("choices"))
        if not isinstance(default, bool) and field_choices is None:
            extra.setdefault("metavar", flags[0].lstrip("-").upper().replace("-", "_"))
        if isinstance(default, bool):
            parser.add_argument(*flags, dest=dest, action=argparse.BooleanOptionalAction, default=default,
                                help=f"{doc} (default: {'on' if default else 'off'})")
        elif isinstance(default, tuple):
            shown = ",".join(default).encode("unicode_escape").decode() or "none"
            parser.add_argument(*flags, dest=dest, type=comma_list, default=default,
                                help=f"{doc} (comma-separated; default {shown})")
        else:
            kind: Any = type(default) if default is not None else (float if "float" in str(f.type) else str)
            shown = "" if default in (None, "") else f" (default {default})"  # None/"": the doc says what happens
            parser.add_argument(*flags, dest=dest, type=kind, default=default,
                                choices=field_choices, help=doc + shown, **extra)


def config_from(args: argparse.Namespace, cls: type, prefix: str = "", **fixed: Any) -> Any:
    """The dataclass from parsed flags; ``fixed`` gives fields that have no flag."""
    dest = prefix.replace("-", "_")
    values = {f.name: getattr(args, dest + f.name) for f in dataclasses.fields(cls)
              if f.metadata.get("cli") is not False and f.name not in fixed}
    return cls(**values, **fixed)


def problems(cfg: Any, prefix: str = "") -> list[str]:
    """Each bound or choice (field metadata) that a value of ``cfg`` breaks, naming the flag."""
    out = []
    for f in dataclasses.fields(cfg):
        meta, value, flag = f.metadata, getattr(cfg, f.name), flag_name(f, prefix)
        if value is None or not any(meta.get(k) is not None for k in _BOUNDS):
            continue
        if meta.get("choices") is not None and value not in meta["choices"]:
            out.append(f"{flag} must be one of {', '.join(map(str, meta['choices']))}, got {value!r}")
        if meta.get("min") is not None and value < meta["min"]:
            out.append(f"{flag} must be at least {meta['min']}, got {value}")
        if meta.get("max") is not None and value > meta["max"]:
            out.append(f"{flag} must be at most {meta['max']}, got {value}")
        if meta.get("above") is not None and not value > meta["above"]:
            out.append(f"{flag} must be above {meta['above']}, got {value}")
        if meta.get("below") is not None and not value < meta["below"]:
            out.append(f"{flag} must be below {meta['below']}, got {value}")
    return out


# --- config files --------------------------------------------------------------------------------

def add_config_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="read settings from a YAML or JSON file: a mapping of "
                        "option names (as flags, without dashes: lr, max-steps or max_steps) to values; flags given "
                        "on the command line win")
    parser.set_defaults(_config_parser=parser)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML (``.yaml``/``.yml``) or JSON file; ValueError saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--config {path}: no such file")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # yaml.YAMLError or json.JSONDecodeError: say where
        raise ValueError(f"--config {path}: not valid {'YAML' if path.suffix.lower() in ('.yaml', '.yml') else 'JSON'}"
                         f" ({str(exc).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: expected a mapping of option names to values, got {type(data).__name__}")
    return data


def config_defaults(parser: argparse.ArgumentParser, values: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Map a config file's keys onto ``parser``'s options: {dest: value}; every problem reported at once."""
    by_name: dict[str, argparse.Action] = {}
    for action in parser._actions:  # argparse keeps no public list of a parser's actions
        if action.option_strings and action.dest not in ("help", "config"):
            by_name[action.dest] = action
            for s in action.option_strings:
                by_name[s.lstrip("-").replace("-", "_")] = action
    out, bad = {}, []
    for key, value in values.items():
        action = by_name.get(str(key).lstrip("-").replace("-", "_"))
        if action is None:
            bad.append(f"{key!r} is not an option of this command")
            continue
        try:
            out[action.dest] = _coerce(action, value)
        except (TypeError, ValueError) as exc:
            bad.append(f"{key}: {exc}")
    if bad:
        known = sorted({a.dest for a in by_name.values()})
        raise ValueError(f"--config {source}: " + "; ".join(bad) + f" (options: {', '.join(known)})")
    return out


def _coerce(action: argparse.Action, value: Any) -> Any:
    if isinstance(action, (argparse.BooleanOptionalAction, argparse._StoreTrueAction)):
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value
    if isinstance(value, list) and action.type is comma_list:
        return tuple(str(v) for v in value)
    if isinstance(value, (dict, list)):
        raise ValueError(f"expected a single value, got {type(value).__name__}")
    kind = action.type
    if kind is not None and value is not None:
        already = isinstance(kind, type) and isinstance(value, kind) and not isinstance(value, bool)
        value = value if already else kind(str(value))
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"expected one of {', '.join(map(str, action.choices))}, got {value!r}")
    return value


def parse_with_config(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``parser.parse_args``, with the chosen subcommand's ``--config FILE`` as its defaults."""
    args = parser.parse_args(argv)
    path = getattr(args, "config", None)
    if not path:
        return args
    sub = args._config_parser
    sub.set_defaults(**config_defaults(sub, read_config_file(path), path))
    return parser.parse_args(argv)
