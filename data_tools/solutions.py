"""Model-written solutions: sample whole solutions to problems from any completer and keep the wrong ones.

Real model errors (misread quantities, wrong relations, dropped steps) are what a PRM must catch, and
the cheapest source of them is a model solving problems it gets wrong. ``sample_solutions`` asks a
completer (in-process transformers, an OpenAI-compatible or vLLM server, or the simulated one) for
``samples`` solutions per problem, each from its own seed (problem id, sample index, ``seed``), after
a few worked examples in GSM8K's format (``SOLVE_FEW_SHOT``, or your own), splits each continuation
into one step per line, reads its final answer and checks it against the gold one. Output rows are
stepwise JSONL, unlabelled, with ``meta``: ``problem_id``, ``sample``, ``answer`` (gold),
``final_answer``, ``final_answer_correct``, ``reference_solution`` (the input's own steps, e.g. the
GSM8K reference with its ``<<expr=result>>`` results, which ``prm label --method reference`` reads)
and ``generator`` (what drew it). Label them with ``prm label`` afterwards.

Bad model output never raises: a continuation with no readable final answer is counted
(``no_answer``) and left out. A killed run is resumed by rerunning it: each finished problem is
recorded in ``OUTPUT.problems.jsonl`` (with what it drew and kept) and skipped on the rerun, and a row
whose ``meta.id`` OUTPUT already holds is not written twice; samples are seeded, so a redone chunk
draws what it drew before.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from data_tools import formats, jsonl
from data_tools.answers import answers_match, extract_answer
from data_tools.completers.protocol import Completer, RolloutRequest, rollout_seed
from data_tools.flags import opt, problems
from data_tools.formats.containers import batched
from data_tools.progress import Progress
from data_tools.schema import StepwiseExample
from data_tools.splitting import split_steps

# Two worked examples of our own (not GSM8K test problems) in GSM8K's answer format: one step a line,
# the final answer on a "#### N" line.
SOLVE_FEW_SHOT = (
    "Question: A baker makes 12 muffins in the morning and 8 more in the afternoon. She sells 15 of them. "
    "How many muffins are left?\nAnswer:\nShe makes 12 + 8 = 20 muffins.\nAfter selling, 20 - 15 = 5 muffins are "
    "left.\n#### 5\n\n"
    "Question: Tom reads 6 pages a day for 5 days, then twice as many pages on the sixth day. How many pages "
    "does he read in total?\nAnswer:\nIn 5 days he reads 6 * 5 = 30 pages.\nOn the sixth day he reads 6 * 2 = 12 "
    "pages.\nIn total he reads 30 + 12 = 42 pages.\n#### 42\n\n"
)


@dataclass
class SampleConfig:
    """What ``prm sample`` draws and keeps (flags of the same names)."""

    samples: int = opt(4, min=1)
    """solutions sampled per problem"""
    keep: str = opt("wrong", choices=("wrong", "all"))
    """which solutions to write: the wrong ones (real errors) or all of them (meta.final_answer_correct says which)"""
    seed: int = 0
    """base seed of every sample's seed (with the problem id and the sample index)"""
    answer_key: str = "answer"
    """meta key holding the gold final answer"""
    chunk_size: int = opt(16, min=1)
    """problems whose samples go to the completer in one call (and are written together)"""

    def problems(self) -> list[str]:
        return problems(self)


@dataclass
class SampleReport:
    problems: int = 0
    sampled: int = 0
    right: int = 0
    wrong: int = 0
    no_answer: int = 0
    """continuations without a readable final answer (left out)"""
    written: int = 0
    already_done: int = 0
    failed_requests: int = 0
    seconds: float = 0.0
    reasons: dict = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["right_rate"] = round(self.right / max(self.right + self.wrong, 1), 4)
        return out


def render_question(prompt: str, few_shot: str | None = None) -> str:
    """The text a solution continues: worked examples, then the question."""
    return f"{SOLVE_FEW_SHOT if few_shot is None else few_shot}Question: {prompt}\nAnswer:\n"


def solution_steps(text: str) -> list[str]:
    """A continuation as steps, one a line, ending at its ``#### N`` line (what follows is not the solution)."""
    steps = split_steps(text, "lines") if text.strip() else []
    for i, step in enumerate(steps):
        if step.lstrip().startswith("####"):
            return steps[: i + 1]
    return steps


def sample_solutions(input_path: str | Path, output_path: str | Path, completer: Completer,
                     cfg: SampleConfig | None = None, input_format: str = "gsm8k", few_shot: str | None = None,
                     completer_settings: dict | None = None, progress: bool = True) -> SampleReport:
    """Sample ``cfg.samples`` solutions to each problem of INPUT and append the kept ones to OUTPUT (JSONL)."""
    cfg = cfg or SampleConfig()
    bad = cfg.problems() + formats.path_problems(input_path, output_path)
    if input_format not in formats.FORMATS:
        bad.append(f"--format must be one of {', '.join(formats.FORMATS)}, got {input_format!r}")
    if bad:
        raise ValueError("; ".join(bad))
    out, report = Path(output_path), SampleReport()
    log = out.with_name(out.name + ".problems.jsonl")
    done = {str(row.get("problem_id")) for _, row in jsonl.read_rows(log, tolerant=True)}
    written = {str(row.get("meta", {}).get("id")) for _, row in jsonl.read_rows(out, tolerant=True)}
    todo = [ex for ex in formats.read(input_format, input_path) if _problem_id(ex) not in done]
    report.already_done = len(done)
    start = time.monotonic()
    with Progress(len(todo), "prm sample", "problems", enabled=progress) as bar, open(out, "a", encoding="utf-8") as fh:
        for chunk in batched(iter(todo), cfg.chunk_size):
            requests = [RolloutRequest(render_question(ex.prompt, few_shot),
                                       tuple(rollout_seed(_problem_id(ex), -1, k, cfg.seed) for k in range(cfg.samples)),
                                       ex.prompt, (), ex.meta) for ex in chunk]
            for ex, texts in zip(chunk, completer.complete(requests), strict=True):
                rows = _rows(ex, texts, cfg, report, completer_settings or {})
                for row in rows:
                    if row.meta["id"] not in written:
                        jsonl.append_row(fh, row.to_json(), sync=True)
                        report.written += 1
                if texts is not None:
                    jsonl.append_row(log, {"problem_id": _problem_id(ex), "sampled": len(texts), "kept": len(rows)},
                                     sync=True)
            bar.update(len(chunk), wrong=f"{report.wrong / max(report.right + report.wrong, 1):.1%}",
                       no_answer=report.no_answer)
    report.seconds = round(time.monotonic() - start, 2)
    return report


def _problem_id(ex: StepwiseExample) -> str:
    return str(ex.meta.get("problem_id", ex.meta.get("id", ex.prompt)))


def _rows(ex: StepwiseExample, texts: list[str] | None, cfg: SampleConfig, report: SampleReport,
          settings: dict) -> list[StepwiseExample]:
    """The kept solutions of one problem; what was drawn is counted in ``report``."""
    report.problems += 1
    if texts is None:  # the completer gave up on this problem's request: a rerun retries it
        report.failed_requests += 1
        return []
    gold = ex.meta.get(cfg.answer_key)
    kept = []
    for k, text in enumerate(texts):
        report.sampled += 1
        steps = solution_steps(text)
        answer = extract_answer("\n".join(steps)) if steps else None
        if gold is None or answer is None:
            report.no_answer += 1
            why = f"no meta.{cfg.answer_key} (gold answer)" if gold is None else "no readable final answer"
            report.reasons[why] = report.reasons.get(why, 0) + 1
            continue
        right = answers_match(answer, str(gold)).correct
        report.right += right
        report.wrong += not right
        if right and cfg.keep == "wrong":
            continue
        meta = {"id": f"{_problem_id(ex)}#s{k}", "problem_id": _problem_id(ex), "sample": k, "answer": str(gold),
                "final_answer": answer, "final_answer_correct": right,
                "reference_solution": "\n".join(ex.steps), "generator": settings}
        kept.append(StepwiseExample(ex.prompt, steps, None, meta))
    return kept
