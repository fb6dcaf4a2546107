"""``prm distill``: search over a problem file with a generator and the PRM, and write SFT data from it.

For each problem (a JSONL row with a question and, optionally, its gold answer) it runs one search
strategy (``serving.search.run_search``) ``samples`` times (seeds ``seed``, ``seed + 1``, ...) and
writes, as TRL SFT datasets (a ``messages`` column of chat turns: the question as the user turn, then
the assistant turn), loadable with ``datasets.load_dataset("json", data_files=...)``:

- ``rejection_sampling.jsonl``: each search's chosen solution, one step a line, kept when its
  aggregated PRM score is at least ``min_score`` and, when the problem has a gold answer and
  ``check_answer`` is on, when it reaches that answer (PRM-filtered rejection sampling, the data of a
  STaR-style loop);
- ``search_traces.jsonl``: the whole search as one text (``serving.search.linearise``): every explored
  step, abandoned branches included, a ``[backtrack to step k]`` line wherever it went back, ending
  on the chosen solution (a "stream of search" fine-tune), for the same kept searches, or for every
  search with ``all_traces``;
- ``searches.jsonl``: every search's result and trace (the ledger), ``settings.json``: what the
  run was started with, and ``distill.json``: the last run's figures.

Problems run ``concurrency`` at a time in lockstep (``serving.search.lockstep``), so their generator
and PRM calls are batched together. A problem's rows are appended (and flushed) as soon as its
searches finish; a rerun of the same command skips the problems in the ledger, so a crash loses at
most the problems in flight. Rerunning with other settings into the same folder is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_tools.answers import answers_match, extract_answer
from data_tools.flags import opt, problems
from data_tools.jsonl import append_row, cut_torn_tail, read_rows, write_rows
from data_tools.progress import Progress
from serving.search import AGGREGATIONS, STRATEGIES, run_search
from serving.search.completer import CompleterProposer
from serving.search.linearise import backtracks, linearise
from serving.search.lockstep import Lockstep

FILES = {"rs": "rejection_sampling.jsonl", "traces": "search_traces.jsonl", "ledger": "searches.jsonl",
         "report": "distill.json"}
# Settings that decide what is drawn and kept; a resumed run must match them.
_NOT_COMPARED = ("concurrency",)


@dataclass
class DistillConfig:
    """What ``prm distill`` searches with and what it keeps (its flags)."""

    strategy: str = opt("beam", choices=STRATEGIES)
    """search strategy (serving.search.STRATEGIES)"""
    budget: int = opt(8, min=1)
    """the strategy's budget, about rollouts' worth of generator tokens (README: search strategies)"""
    samples: int = opt(1, min=1)
    """searches per problem, seeds seed, seed+1, ...: each kept one is a rejection-sampling row"""
    seed: int = 0
    """seed of the first search of every problem (the generator's samples and the strategy's draws)"""
    aggregate: str = opt("min", choices=AGGREGATIONS)
    """how step scores make a solution score"""
    max_steps: int = opt(12, min=1)
    """longest solution, in steps"""
    min_score: float = opt(0.5, min=0, max=1)
    """keep a solution whose aggregated PRM score is at least this"""
    check_answer: bool = True
    """when a problem has a gold answer, keep only solutions that reach it"""
    all_traces: bool = False
    """write the trace of every search, not only of the kept ones"""
    question_key: str = "question"
    """the problem's field (falls back to prompt, problem)"""
    answer_key: str = "answer"
    """the gold answer's field (falls back to meta.answer; a GSM8K solution gives its #### answer)"""
    concurrency: int = opt(16, min=1)
    """problems searched at once, their generator and PRM calls batched together"""

    def problems(self) -> list[str]:
        return problems(self)


@dataclass
class DistillProblem:
    id: str
    question: str
    gold: str | None


def read_problems(path: str | Path, question_key: str = "question", answer_key: str = "answer") -> list[DistillProblem]:
    """Problems of a JSONL file, first occurrence of each question (``prm generate``'s rows repeat it)."""
    out, seen = [], set()
    for lineno, row in read_rows(path):
        if not isinstance(row, dict):
            raise ValueError(f"{path}, line {lineno}: expected a JSON object with a {question_key!r} field")
        meta = row.get("meta") if isinstance(row.get("meta"), dict) else {}
        question = next((row[k] for k in (question_key, "prompt", "problem") if isinstance(row.get(k), str)), None)
        if question is None:
            raise ValueError(f"{path}, line {lineno}: no question: expected a string field {question_key!r} "
                             f"(or prompt, problem); got fields {sorted(row)}; set it with --question-key")
        if question in seen:
            continue
        seen.add(question)
        gold = row.get(answer_key, meta.get("answer"))
        if gold is not None:
            gold = str(gold)
            gold = extract_answer(gold, order=("hashes",)) or gold  # a GSM8K solution: its #### answer
        pid = row.get("id", meta.get("problem_id", meta.get("id", f"line{lineno}")))
        out.append(DistillProblem(str(pid), question, gold))
    return out


def settings_of(cfg: DistillConfig, extra: dict | None = None) -> dict:
    return {**{k: v for k, v in dataclasses.asdict(cfg).items() if k not in _NOT_COMPARED}, **(extra or {})}


def messages(question: str, answer: str) -> list[dict]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def judge(problem: DistillProblem, result, cfg: DistillConfig) -> tuple[bool | None, bool]:
    """(reaches the gold answer, or None without one; kept for rejection sampling)."""
    correct = None if problem.gold is None else answers_match(result.answer, problem.gold).correct
    good = result.finished and result.score is not None and result.score >= cfg.min_score
    return correct, good and (correct is not False or not cfg.check_answer)


def rows_for(problem: DistillProblem, results: Sequence, cfg: DistillConfig) -> tuple[list[dict], list[dict], dict]:
    """(rejection-sampling rows, trace rows, the ledger row) of one problem's searches."""
    rs, traces, ledger = [], [], []
    for n, r in enumerate(results):
        correct, kept = judge(problem, r, cfg)
        common = {"id": problem.id, "sample": n, "seed": cfg.seed + n, "strategy": cfg.strategy, "budget": cfg.budget,
                  "score": r.score, "answer": r.answer, "gold": problem.gold, "correct": correct}
        if kept:
            rs.append({"messages": messages(problem.question, "\n".join(r.steps)), **common})
        if kept or cfg.all_traces:
            traces.append({"messages": messages(problem.question, linearise(r)), **common, "kept": kept,
                           "backtracks": backtracks(r)})
        ledger.append({**r.to_json(), "correct": correct, "kept": kept})
    return rs, traces, {"id": problem.id, "question": problem.question, "gold": problem.gold, "searches": ledger}


def run_distill(problems_path: str | Path, out: str | Path, cfg: DistillConfig, completer: Any,
                score_items: Callable[[list[tuple[str, list[str]]]], list[list[float]]],
                count_tokens: Callable[[str], int] | None = None, few_shot: str | None = None,
                settings: dict | None = None, limit: int = 0) -> dict:
    """Search every problem not yet in ``out``'s ledger and append its rows (see the module docstring).

    ``completer``: a ``data_tools.completers`` completer (steps are the first lines of its
    continuations of ``render_prefix``); ``score_items``: (prompt, steps) pairs -> step scores (the
    service's client or an in-process scorer); ``settings``: what else decides the output (the
    generator's settings, the PRM), compared on resume; ``limit``: at most this many new problems."""
    bad = cfg.problems()
    if bad:
        raise ValueError("invalid prm distill settings:\n  " + "\n  ".join(bad))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    all_problems = read_problems(problems_path, cfg.question_key, cfg.answer_key)
    wanted = settings_of(cfg, {**(settings or {}), "few_shot_sha256": _sha(few_shot)})
    done = _resume(out, wanted)
    todo = [p for p in all_problems if p.id not in done]
    if limit:
        todo = todo[:limit]
    lock, write_lock = Lockstep(), threading.Lock()
    generate = lock.batched(completer.complete, "generate")
    score = lock.batched(score_items, "score")
    shared = _Batched(generate)
    cache: dict = {}
    totals = {"searches": 0, "kept": 0, "correct": 0, "with_gold": 0, "generator_tokens": 0, "prm_calls": 0,
              "prm_steps_scored": 0, "trace_rows": 0}
    t0 = time.monotonic()
    progress = Progress(len(todo), "prm distill", unit="problem")

    def job(problem: DistillProblem) -> Callable[[], None]:
        def run() -> None:
            results = []
            for n in range(cfg.samples):
                proposer = CompleterProposer(shared, seed=cfg.seed + n, few_shot=few_shot, count_tokens=count_tokens,
                                             cache=cache, meta={"answer": problem.gold or ""})
                results.append(run_search(cfg.strategy, problem.question, proposer,
                                          lambda prompt, cands: score([(prompt, c) for c in cands]), cfg.budget,
                                          seed=cfg.seed + n, aggregate=cfg.aggregate, max_steps=cfg.max_steps))
            rs, traces, ledger = rows_for(problem, results, cfg)
            with write_lock:
                for row in rs:
                    append_row(out / FILES["rs"], row)
                for row in traces:
                    append_row(out / FILES["traces"], row)
                append_row(out / FILES["ledger"], ledger, sync=True)  # last: a problem is done once this is down
                _count(totals, results, ledger)
                progress.update(1, kept=f"{totals['kept']}/{totals['searches']}")
        return run

    try:
        for start in range(0, len(todo), cfg.concurrency):
            for res in lock.run([job(p) for p in todo[start:start + cfg.concurrency]]):
                if isinstance(res, BaseException):
                    raise res
    finally:
        progress.close()
    report = {"problems": len(all_problems), "done_before": len(done), "searched": len(todo), **totals,
              "seconds": round(time.monotonic() - t0, 1), "generator_calls": lock.calls.get("generate", 0),
              "prm_requests": lock.calls.get("score", 0), "settings": wanted,
              "files": {k: str(out / v) for k, v in FILES.items()}}
    (out / FILES["report"]).write_text(json.dumps(report, indent=1) + "\n")
    return report


class _Batched:
    """A completer whose ``complete`` waits for the lockstep round."""

    def __init__(self, complete):
        self.complete = complete


def _count(totals: dict, results, ledger: dict) -> None:
    for r, row in zip(results, ledger["searches"], strict=True):
        totals["searches"] += 1
        totals["kept"] += bool(row["kept"])
        totals["with_gold"] += row["correct"] is not None
        totals["correct"] += bool(row["correct"])
        totals["generator_tokens"] += r.generator_tokens
        totals["prm_calls"] += r.prm_calls
        totals["prm_steps_scored"] += r.prm_steps_scored


def _sha(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode()).hexdigest()


def _resume(out: Path, wanted: dict) -> set[str]:
    """Ids already in the ledger (its settings must be these); the datasets rewritten from it, so rows a
    killed run appended for a problem it did not finish are dropped."""
    ledger, settings_file = out / FILES["ledger"], out / "settings.json"
    if settings_file.exists():
        before = json.loads(settings_file.read_text())
        diff = sorted(k for k in set(before) | set(wanted) if before.get(k) != wanted.get(k))
        if diff:
            raise ValueError(f"{out} holds a prm distill run with other settings ({', '.join(diff)}: "
                             f"{[before.get(k) for k in diff]} there, {[wanted.get(k) for k in diff]} now); "
                             "use another --out, or the same settings to resume it")
    else:
        settings_file.write_text(json.dumps(wanted, indent=1) + "\n")
    if not ledger.exists():
        for name in ("rs", "traces"):
            (out / FILES[name]).unlink(missing_ok=True)
        return set()
    cut_torn_tail(ledger)
    done = {row["id"] for _, row in read_rows(ledger, tolerant=True)}
    for name in ("rs", "traces"):
        path = out / FILES[name]
        rows = [row for _, row in read_rows(path, tolerant=True) if row.get("id") in done]
        write_rows(path, rows)
    return done


def register(sub) -> None:
    """``prm distill``'s parser (called by ``serving.cli``)."""
    from data_tools.flags import add_config_file, add_config_flags
    from prm.completers import add_completer_flags
    from prm.scoring import BACKENDS

    p = sub.add_parser("distill", help="search over problems with a generator and the PRM; write PRM-filtered "
                       "rejection-sampling data and search traces with backtracking, as TRL SFT datasets",
                       description="Run a search strategy over every problem of PROBLEMS (JSONL: a question per row, "
                       "optionally its gold answer) with the chosen generator and the PRM (--prm-url of a running "
                       "service, or --prm-model in-process) and write OUT/rejection_sampling.jsonl and "
                       "OUT/search_traces.jsonl (chat messages columns), OUT/searches.jsonl and OUT/distill.json. "
                       "Rerun the same command after a crash to finish: done problems are skipped.")
    p.add_argument("problems", help="JSONL problems: a question field (see --question-key) and optionally the answer")
    p.add_argument("out", help="output folder (a rerun with the same settings resumes it)")
    add_config_flags(p, DistillConfig)
    prm = p.add_argument_group("PRM")
    prm.add_argument("--prm-url", help="a running service, e.g. http://127.0.0.1:3000")
    prm.add_argument("--prm-model", help="an artifact folder, scored in-process instead")
    prm.add_argument("--prm-backend", choices=list(BACKENDS), default="torch", help="backend of --prm-model")
    p.add_argument("--few-shot", metavar="FILE", help="text opening every generator prompt instead of the built-in "
                   "worked examples (an empty file: none)")
    p.add_argument("--limit", type=int, default=0, help="search at most this many new problems (0: all)")
    add_completer_flags(p, "next steps (the first line of each continuation is one step)",
                        {"stop": ("\n", "Question:"), "temperature": 0.7, "max_new_tokens": 48})
    add_config_file(p)
    p.set_defaults(func=_distill)


def _distill(args) -> None:
    from data_tools.flags import config_from
    from prm.completers import build_completer, completer_problems

    cfg = config_from(args, DistillConfig)
    bad = cfg.problems() + completer_problems(args)
    if bool(args.prm_url) == bool(args.prm_model):
        bad.append("give the PRM as --prm-url URL (a running service) or --prm-model FOLDER (in-process), one of them")
    if args.limit < 0:
        bad.append(f"--limit must be at least 0, got {args.limit}")
    if bad:
        raise ValueError("invalid prm distill flags:\n  " + "\n  ".join(bad))
    if not Path(args.problems).is_file():
        raise FileNotFoundError(f"no problem file at {args.problems}")
    few_shot = Path(args.few_shot).read_text(encoding="utf-8") if args.few_shot else None
    if args.prm_url:
        from serving.client import PRMClient

        client = PRMClient(args.prm_url)
        score_items = lambda items: [r["step_scores"] for r in client.score(  # noqa: E731
            [{"prompt": p, "steps": s} for p, s in items], aggregate=cfg.aggregate)]
        prm_settings = {"prm": args.prm_url}
    else:
        from prm.scoring import Scorer

        scorer = Scorer(args.prm_model, backend=args.prm_backend)
        score_items, prm_settings = scorer.score, {"prm": str(Path(args.prm_model).resolve()), "backend": args.prm_backend}
    completer, settings = build_completer(args, "answer")
    tok = getattr(completer, "tokenizer", None)
    count = (lambda text: len(tok(text, add_special_tokens=False)["input_ids"]) + 1) if tok is not None else None
    report = run_distill(args.problems, args.out, cfg, completer, score_items, count, few_shot,
                         {**settings, **prm_settings}, args.limit)
    print(json.dumps({k: v for k, v in report.items() if k != "settings"}))
    print(f"searched {report['searched']} problems ({report['done_before']} done before): kept {report['kept']} of "
          f"{report['searches']} searches; wrote {report['files']['rs']} and {report['files']['traces']}")
