"""``prm inject-errors``: wrong variants (stepwise JSONL, hard labels) of every correct solution in a file.

Reads GSM8K or stepwise JSONL through ``data_tools.formats``, leaves out solutions not known to be
correct, draws each problem's variants (``variants``) from a seed derived from (seed, problem id) so
a run can be resumed, and reports coverage (and, for problems without a variant, why).
``calculations`` reads the steps, ``variants`` corrupts them (``real_errors`` for the kinds like real
errors); ``data_tools.synth.problems`` owns the demo's synthetic problems and their own, simpler
injection.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from data_tools import formats
from data_tools.flags import opt, problems
from data_tools.formats.fields import RowLog
from data_tools.formats.gsm8k import CALCULATION
from data_tools.schema import StepwiseExample, is_right
from data_tools.synth.problems import ERROR_KINDS
from data_tools.synth.variants import ALL_KINDS, REAL_ERROR_KINDS, inject_variants

INPUT_FORMATS = {"gsm8k": "gsm8k", "jsonl": "stepwise"}
KIND_GROUPS = {"all": ALL_KINDS, "real": REAL_ERROR_KINDS}


@dataclass
class InjectConfig:
    """Options of ``prm inject-errors``."""

    seed: int = 0
    """base seed; each problem's draws derive from (seed, problem id), so a run can be resumed"""
    variants: int = opt(1, min=1)
    """wrong variants per problem, at most (distinct errors)"""
    kinds: tuple[str, ...] = ERROR_KINDS
    """error kinds to draw from: slip, operator, operand (arithmetic slips); wrong_quantity,
    misread_relation, dropped_step, double_count, unit_or_percent, wrong_role (like real model
    errors); 'real' names those six, 'all' every kind"""
    with_gold: bool = False
    """also write each problem's correct solution (all steps labelled right) before its variants"""
    strip_calculations: bool = False
    """remove <<expr=result>> annotations from the written steps"""
    skip_invalid: bool = False
    """count and skip malformed input rows instead of stopping"""

    def problems(self, input_format: str) -> list[str]:
        out = problems(self)
        if input_format not in INPUT_FORMATS:
            out.append(f"--format must be one of {', '.join(INPUT_FORMATS)}, got {input_format!r}")
        bad = [k for k in self.kinds if k not in ALL_KINDS and k not in KIND_GROUPS]
        if bad or not self.kinds:
            out.append(f"--kinds must name some of {', '.join(ALL_KINDS + tuple(KIND_GROUPS))}, "
                       f"got {','.join(self.kinds) or 'none'}")
        return out

    def error_kinds(self) -> tuple[str, ...]:
        """``kinds`` with 'all' and 'real' spelled out, each kind once, in the order given."""
        return tuple(dict.fromkeys(k for name in self.kinds for k in KIND_GROUPS.get(name, (name,))))


@dataclass
class InjectReport:
    problems: int = 0
    with_variant: int = 0
    variants: int = 0
    not_correct: int = 0
    log: RowLog = field(default_factory=RowLog)
    by_kind: Counter = field(default_factory=Counter)
    no_variant: Counter = field(default_factory=Counter)
    """problems without a variant, by the commonest reason ("kind: reason")"""
    seconds: float = 0.0

    @property
    def coverage(self) -> float:
        """Share of correct solutions that got a wrong variant (whose final answer differs from gold)."""
        return self.with_variant / max(self.problems, 1)

    def summary(self) -> str:
        text = (f"{self.problems} correct solutions, {self.with_variant} with a wrong variant "
                f"(coverage {self.coverage:.1%}), {self.variants} variants written "
                f"({', '.join(f'{k} {v}' for k, v in sorted(self.by_kind.items()))}) in {self.seconds:.1f} s")
        if self.not_correct:
            text += f"; {self.not_correct} solutions not known to be correct were left out"
        if self.no_variant:
            text += "; without a variant: " + ", ".join(f"{n} ({why})" for why, n in self.no_variant.most_common(3))
        return text + self.log.note()


def _strip(example: StepwiseExample) -> StepwiseExample:
    steps = [CALCULATION.sub("", s) for s in example.steps]
    return StepwiseExample(example.prompt, steps, example.labels, example.meta)


def inject_errors(input_path: str | Path, output_path: str | Path, input_format: str = "gsm8k",
                  config: InjectConfig | None = None) -> InjectReport:
    """Write wrong variants (stepwise JSONL, hard labels) of every correct solution in the input."""
    config = config or InjectConfig()
    problems = config.problems(input_format)
    problems += formats.path_problems(input_path, output_path)
    if problems:
        raise ValueError("; ".join(problems))
    start = time.perf_counter()
    report = InjectReport(log=RowLog(skip_invalid=config.skip_invalid))
    kinds = config.error_kinds()

    def examples() -> Iterator[StepwiseExample]:
        for n, example in enumerate(formats.read(INPUT_FORMATS[input_format], input_path, report.log)):
            labels = example.labels or []
            if example.meta.get("first_error", -1) >= 0 or any(is_right(lab) is False for lab in labels):
                report.not_correct += 1
                continue
            report.problems += 1
            pid = str(example.meta.get("id", f"{n:05d}"))
            base = dict(example.meta, id=pid, problem_id=pid)
            gold = StepwiseExample(example.prompt, example.steps, [True] * len(example.steps),
                                   dict(base, id=f"{pid}-gold", first_error=-1, error_kind=None))
            variants = inject_variants(gold, random.Random(f"{config.seed}:{pid}"), config.variants, kinds,
                                       why=report.no_variant)
            for k, variant in enumerate(variants):
                variant.meta["id"] = f"{pid}-err{k}"
            report.with_variant += bool(variants)
            report.variants += len(variants)
            report.by_kind.update(v.meta["error_kind"] for v in variants)
            for out in ([gold] if config.with_gold else []) + variants:
                yield _strip(out) if config.strip_calculations else out

    formats.write("stepwise", output_path, examples(), report.log)
    report.seconds = time.perf_counter() - start
    return report
