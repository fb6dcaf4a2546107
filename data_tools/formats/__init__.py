"""The PRM data formats, in and out: a plain dict from format name to its row reader and writer.

Each format module turns one row (a dict) into stepwise examples (``from_row``) and back
(``to_row``); ``containers`` stores rows as JSON lines, JSON, Parquet or a dataset folder, and
``read``/``write`` here stream between the two, one row at a time. ``convert`` is what
``prm convert`` runs. A malformed row raises a ``DataError`` naming the file, the line and the
field, or, with ``skip_invalid``, is counted and skipped; the same holds for an example that the
target format cannot represent. Whatever was written before an error stays written.

Options belong to one format each (``Format.read_options``/``write_options``); ``ConvertConfig``
refuses an option that the chosen formats would ignore, so nothing is silently not applied.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from data_tools.flags import opt, problems
from data_tools.formats import gsm8k, math_shepherd, mr_gsm8k, prm800k, processbench, stepwise, trl
from data_tools.formats.containers import read_rows, write_rows
from data_tools.formats.fields import RowLog
from data_tools.formats.labels import UNLABELLED_POLICIES
from data_tools.schema import DataError, StepwiseExample


@dataclass(frozen=True)
class Format:
    from_row: Callable[..., StepwiseExample | list[StepwiseExample]]
    to_row: Callable[..., dict[str, Any]] | None
    read_options: tuple[str, ...] = ()
    write_options: tuple[str, ...] = ()


FORMATS: dict[str, Format] = {
    "stepwise": Format(stepwise.from_row, stepwise.to_row),
    "trl": Format(trl.from_row, trl.to_row, (), ("soft_threshold", "unlabelled")),
    "processbench": Format(processbench.from_row, processbench.to_row, ("after_error",), ("soft_threshold",)),
    "math-shepherd": Format(math_shepherd.from_row, math_shepherd.to_row, ("step_tag",),
                            ("step_tag", "soft_threshold", "unlabelled")),
    "gsm8k": Format(gsm8k.from_row, gsm8k.to_row, ("strip_calculations",)),
    "prm800k": Format(prm800k.from_row, None, ("rating0", "drop_quality_control", "alternatives")),
    "mr-gsm8k": Format(mr_gsm8k.from_row, None),
}
NO_WRITER = {
    "prm800k": "reading keeps one path out of a tree of rated alternatives, so a written file would claim "
               "labels and choices no labeller made; convert to stepwise to keep everything that was read",
    "mr-gsm8k": "its rows are human annotators' judgements (first wrong step and their reason), so a written "
                "file would present other labels as theirs; convert to stepwise to keep everything that was read",
}


@dataclass
class ConvertConfig:
    """Options of ``prm convert``; each applies to the formats named in its doc."""

    skip_invalid: bool = False
    """count and skip malformed rows (and rows the target format cannot hold) instead of stopping"""
    rating0: str = opt("true", choices=prm800k.RATING0)
    """prm800k: label of a step rated 0 (neutral): true, false (as trl-lib/prm800k) or none (unlabelled)"""
    drop_quality_control: bool = False
    """prm800k: skip quality-control and initial-screening rows"""
    alternatives: bool = False
    """prm800k: also emit every rated, unchosen completion as its own example (the path before it, then it)"""
    after_error: str = opt("unlabelled", choices=processbench.AFTER_ERROR)
    """processbench: steps after the first wrong one are unlabelled, or wrong"""
    step_tag: str = math_shepherd.STEP_TAG
    """math-shepherd: the tag closing each step"""
    strip_calculations: bool = False
    """gsm8k: remove <<expr=result>> annotations from the steps (they cannot be written back then)"""
    soft_threshold: float | None = opt(None, min=0, below=1)
    """trl, math-shepherd, processbench output: a soft label counts as right when greater than this"""
    unlabelled: str = opt("truncate", choices=UNLABELLED_POLICIES)
    """trl, math-shepherd output: unlabelled trailing steps are cut off (kept in unlabelled_completions), marked false, or an error"""

    def problems(self, source: str, target: str) -> list[str]:
        """Everything wrong with this configuration for ``source -> target``, as messages naming flags."""
        out = problems(self)
        for flag, name in (("--from", source), ("--to", target)):
            if name not in FORMATS:
                out.append(f"{flag}: unknown format {name!r}; choose from {', '.join(FORMATS)}")
        if target in NO_WRITER:
            out.append(f"--to {target}: there is no {target} writer: {NO_WRITER[target]}")
        if not self.step_tag.strip():
            out.append("--step-tag must not be empty or whitespace")
        if source in FORMATS and target in FORMATS:
            used = set(FORMATS[source].read_options) | set(FORMATS[target].write_options)
            for f in dataclasses.fields(self):
                if f.name != "skip_invalid" and f.name not in used and getattr(self, f.name) != f.default:
                    users = [n for n, fmt in FORMATS.items() if f.name in fmt.read_options + fmt.write_options]
                    out.append(f"{_flag(f.name)} does not apply to --from {source} --to {target} "
                               f"(it is for {' and '.join(users)})")
        return out

    def options(self, names: Iterable[str]) -> dict[str, Any]:
        return {name: getattr(self, name) for name in names}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def path_problems(input_path: str | Path, output_path: str | Path) -> list[str]:
    """What is wrong with an INPUT/OUTPUT pair, checked before the output is opened."""
    if not Path(input_path).exists():
        return [f"INPUT {input_path}: no such file or folder"]
    if Path(input_path).resolve() == Path(output_path).resolve():
        return ["INPUT and OUTPUT are the same path; writing would destroy the input"]
    return []


def _format(name: str) -> Format:
    if name not in FORMATS:
        raise ValueError(f"unknown format {name!r}; choose from {', '.join(FORMATS)}")
    return FORMATS[name]


def read(fmt: str, path: str | Path, log: RowLog | None = None, **options: Any) -> Iterator[StepwiseExample]:
    """Stream the examples of a ``fmt`` file; a bad row raises, or is counted in ``log`` when it skips."""
    parse = partial(_format(fmt).from_row, **options) if options else _format(fmt).from_row
    log = log if log is not None else RowLog()
    for where, row in read_rows(path, log.bad_row):
        log.rows += 1
        try:
            out = parse(row)
        except DataError as exc:
            log.bad_row(f"{path}, {where}: {exc}")
            continue
        except (KeyError, TypeError, AttributeError, IndexError, ValueError) as exc:
            # A shape no check above foresaw: still located, still skippable.
            log.bad_row(f"{path}, {where}: unexpected row structure ({type(exc).__name__}: {exc})")
            continue
        origin = f"{path}, {where}"
        for example in (out,) if isinstance(out, StepwiseExample) else out:
            example.origin = origin
            yield example


def write(fmt: str, path: str | Path, examples: Iterable[StepwiseExample], log: RowLog | None = None,
          **options: Any) -> int:
    """Write examples as ``fmt`` rows; returns how many rows were written."""
    spec = _format(fmt)
    if spec.to_row is None:
        raise DataError(f"there is no {fmt} writer: {NO_WRITER[fmt]}")
    to_row = partial(spec.to_row, **options) if options else spec.to_row
    log = log if log is not None else RowLog()

    def rows() -> Iterator[dict[str, Any]]:
        for n, example in enumerate(examples, 1):
            try:
                row = to_row(example)
            except DataError as exc:
                log.bad_row(f"{example.origin or f'example {n}'}: cannot write as {fmt}: {exc}")
                continue
            yield row

    return write_rows(path, rows())


@dataclass
class ConvertReport:
    log: RowLog = field(default_factory=RowLog)
    examples_read: int = 0
    steps_read: int = 0
    rows_written: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        return (f"read {self.log.rows} rows ({self.examples_read} examples, {self.steps_read} steps), "
                f"wrote {self.rows_written} rows in {self.seconds:.1f} s{self.log.note()}")


def convert(source: str, target: str, input_path: str | Path, output_path: str | Path,
            config: ConvertConfig | None = None) -> ConvertReport:
    """Convert a ``source``-format file into a ``target``-format file, streaming."""
    config = config or ConvertConfig()
    problems = config.problems(source, target) + path_problems(input_path, output_path)
    if problems:
        raise ValueError("; ".join(problems))
    start = time.perf_counter()
    report = ConvertReport(log=RowLog(skip_invalid=config.skip_invalid))

    def counted() -> Iterator[StepwiseExample]:
        for example in read(source, input_path, report.log, **config.options(FORMATS[source].read_options)):
            report.examples_read += 1
            report.steps_read += len(example.steps)
            yield example

    report.rows_written = write(target, output_path, counted(), report.log,
                                **config.options(FORMATS[target].write_options))
    report.seconds = time.perf_counter() - start
    return report
