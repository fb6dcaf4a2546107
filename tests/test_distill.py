"""prm distill: PRM-filtered rejection sampling and linearised search traces as TRL SFT datasets, resumable."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from serving.distill import DistillConfig, read_problems, run_distill
from serving.search import Proposal, run_search
from serving.search.linearise import BACKTRACK, branches, exploration

ROOT = Path(__file__).resolve().parent.parent


class StepCompleter:
    """Seeded continuations: at depth < 2 a right step ("ok") or a wrong one ("bad"), then the answer, 8 after right
    steps only. The continuation runs on past the step, as a model's would."""

    def complete(self, requests):
        out = []
        for r in requests:
            texts = []
            for seed in r.seeds:
                if len(r.steps) >= 2:
                    texts.append(f"The answer is {8 + 2 * sum('bad' in s for s in r.steps)}.\n\nQuestion: ...")
                else:
                    texts.append(f"{'bad' if seed % 2 else 'ok'} {len(r.steps)}.{seed % 1000}\nnext line")
            out.append(texts)
        return out


def score_items(items):
    return [[0.1 if "bad" in s or ("answer" in s and "is 8." not in s) else 0.9 for s in steps] for _, steps in items]


def write_problems(path: Path, n: int = 5) -> Path:
    rows = [{"id": f"q{i}", "question": f"Tom has 5 apples and buys 3 more ({i}). How many?", "answer": "8"}
            for i in range(n)]
    rows.append({"id": "nogold", "question": "What is left?"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_read_problems_takes_gsm8k_answers_and_stepwise_rows(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"question": "Q1", "answer": "2 + 2 = 4\n#### 4"}) + "\n"
                 + json.dumps({"prompt": "Q2", "completions": ["a"], "meta": {"answer": "7", "problem_id": "p7"}}) + "\n"
                 + json.dumps({"prompt": "Q2", "completions": ["b"], "meta": {"answer": "7", "problem_id": "p7"}}) + "\n")
    got = read_problems(f)
    assert [(p.id, p.question, p.gold) for p in got] == [("line1", "Q1", "4"), ("p7", "Q2", "7")]
    f.write_text(json.dumps({"text": "Q"}) + "\n")
    with pytest.raises(ValueError, match="line 1: no question.*--question-key"):
        read_problems(f)


def test_the_linearised_trace_keeps_abandoned_branches_and_ends_on_the_answer():
    def propose(prompt, steps, n):
        if not steps:
            return [Proposal("bad 0"), Proposal("ok 0")][:n]
        if steps == ["ok 0"]:
            return [Proposal("bad 1"), Proposal("ok 1")][:n]
        return [Proposal("The answer is 8." if "bad" not in "".join(steps) else "The answer is 10.")] * n

    r = run_search("beam", "Q", propose, lambda p, cands: score_items([(p, c) for c in cands]), budget=2,
                   beam_width=1, expand=2)
    assert r.steps == ["ok 0", "ok 1", "The answer is 8."]
    assert branches(r) == [["bad 0"], ["ok 0", "bad 1"], ["ok 0", "ok 1", "The answer is 8."]]
    assert exploration(r) == ["bad 0", BACKTRACK.format(k=0), "ok 0", "bad 1", BACKTRACK.format(k=1), "ok 1",
                              "The answer is 8."]


def test_distill_writes_sft_datasets_and_resumes(tmp_path):
    datasets = pytest.importorskip("datasets")
    problems, out = write_problems(tmp_path / "problems.jsonl"), tmp_path / "out"
    cfg = DistillConfig(strategy="mcts", budget=6, samples=2, concurrency=4, min_score=0.5)
    report = run_distill(problems, out, cfg, StepCompleter(), score_items)
    assert report["searched"] == 6 and report["searches"] == 12 and report["generator_calls"] < 12 * 6
    rs = datasets.load_dataset("json", data_files=str(out / "rejection_sampling.jsonl"), split="train")
    traces = datasets.load_dataset("json", data_files=str(out / "search_traces.jsonl"), split="train")
    assert len(rs) == report["kept"] > 0 and len(traces) == len(rs)
    for row in rs:
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
        assert row["score"] >= 0.5 and row["correct"] in (True, None)
        assert row["messages"][1]["content"].endswith("The answer is 8.") or row["gold"] is None
    assert any("[backtrack to step" in row["messages"][1]["content"] for row in traces)
    assert any(row["backtracks"] > 0 for row in traces)
    from trl.data_utils import is_conversational

    assert is_conversational(rs[0]) and is_conversational(traces[0])
    ledger = [json.loads(line) for line in (out / "searches.jsonl").read_text().splitlines()]
    assert len(ledger) == 6 and all(len(p["searches"]) == 2 and p["searches"][0]["trace"] for p in ledger)

    # a killed run: rows appended for a problem whose ledger line never came, and a torn line
    with open(out / "rejection_sampling.jsonl", "a") as fh:
        fh.write(json.dumps({"id": "unfinished", "messages": []}) + "\n")
    with open(out / "searches.jsonl", "a") as fh:
        fh.write('{"id": "torn", "sea')
    rows_before = (out / "search_traces.jsonl").read_text()
    again = run_distill(problems, out, cfg, StepCompleter(), score_items)
    assert again["searched"] == 0 and again["done_before"] == 6
    assert "unfinished" not in (out / "rejection_sampling.jsonl").read_text()
    assert (out / "search_traces.jsonl").read_text() == rows_before
    with pytest.raises(ValueError, match="other settings \\(budget"):
        run_distill(problems, out, DistillConfig(strategy="mcts", budget=4, samples=2), StepCompleter(), score_items)


def test_distill_keeps_only_what_the_prm_and_the_gold_answer_pass(tmp_path):
    problems, out = write_problems(tmp_path / "problems.jsonl", 3), tmp_path / "o"
    report = run_distill(problems, out, DistillConfig(strategy="majority_vote", budget=3, all_traces=True),
                         StepCompleter(), score_items)
    assert report["kept"] == 0  # no PRM score: nothing passes the PRM filter
    assert len((out / "search_traces.jsonl").read_text().splitlines()) == 4  # --all-traces: every search
    out2 = tmp_path / "o2"
    r2 = run_distill(problems, out2, DistillConfig(strategy="best_of_n", budget=4, check_answer=False, min_score=0.0),
                     StepCompleter(), score_items)
    assert r2["kept"] == r2["searches"] == 4


def test_prm_distill_command_with_the_simulated_generator(tiny_artifact, tmp_path):
    problems, out = write_problems(tmp_path / "problems.jsonl", 3), tmp_path / "cli"
    cmd = [sys.executable, "-m", "serving.cli", "distill", str(problems), str(out), "--strategy", "best_of_n",
           "--budget", "3", "--min-score", "0", "--completer", "simulated", "--prm-model", str(tiny_artifact),
           "--prm-backend", "onnx", "-q"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads(res.stdout.splitlines()[0])
    assert report["searched"] == 4 and report["with_gold"] == 3
    rows = [json.loads(line) for line in (out / "rejection_sampling.jsonl").read_text().splitlines()]
    gold = [r for r in rows if r["gold"] is not None]
    assert gold and all(r["correct"] and r["messages"][1]["content"] == "The answer is 8." for r in gold)
    bad = subprocess.run(cmd[:-5] + ["-q"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert bad.returncode == 2 and "--prm-url URL" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_the_readme_prm_distill_commands_parse():
    from test_data_cli import readme_commands

    from serving.cli import build_parser

    commands = readme_commands("distill")
    assert commands
    for argv in commands:
        args = build_parser().parse_args(argv)
        assert args.command == "distill" and bool(args.prm_url) != bool(args.prm_model)
