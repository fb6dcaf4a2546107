"""prm sample: model-written solutions, the wrong ones kept as real errors, resumable."""

import json

from data_tools.jsonl import read_rows
from data_tools.solutions import SampleConfig, sample_solutions, solution_steps
from serving.cli import main


def gsm8k(tmp_path, n=6):
    path = tmp_path / "gsm8k.jsonl"
    rows = [{"question": f"Ann has {k} apples and buys 2 more. How many does she have?",
             "answer": f"She has {k} + 2 = <<{k}+2={k + 2}>>{k + 2} apples.\n#### {k + 2}"} for k in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_continuation_becomes_steps_up_to_its_final_answer():
    text = "She has 3 + 2 = 5 apples.\n\nThen 5 * 2 = 10.\n#### 10\nQuestion: next one"
    assert solution_steps(text) == ["She has 3 + 2 = 5 apples.", "Then 5 * 2 = 10.", "#### 10"]
    assert solution_steps("") == []


def test_sample_keeps_the_wrong_ones_with_what_labelling_needs(tmp_path, tiny_completer):
    out = tmp_path / "sampled.jsonl"
    report = sample_solutions(gsm8k(tmp_path), out, tiny_completer, SampleConfig(samples=3, keep="all"), progress=False)
    rows = [row for _, row in read_rows(out)]
    assert report.problems == 6 and report.sampled == 18
    assert report.right + report.wrong + report.no_answer == 18 and len(rows) == report.written == report.right + report.wrong
    for row in rows:
        meta = row["meta"]
        assert meta["answer"] == str(int(row["prompt"].split()[2]) + 2)
        assert meta["reference_solution"].endswith(f"#### {meta['answer']}") and "<<" in meta["reference_solution"]
        assert meta["final_answer_correct"] == (meta["final_answer"] == meta["answer"])
        assert row["labels"] is None and row["completions"]


def test_cli_sample_is_resumable_and_refuses_foreign_flags(tmp_path, capsys):
    data, out = gsm8k(tmp_path, 8), tmp_path / "wrong.jsonl"
    argv = ["sample", str(data), str(out), "--completer", "simulated", "--samples", "4", "--sim-p-correct", "0.5",
            "--chunk-size", "3"]
    assert main(argv) == 0
    first = out.read_text()
    rows = [json.loads(line) for line in first.splitlines()]
    assert rows and all(not r["meta"]["final_answer_correct"] for r in rows)  # --keep wrong (the default)
    report = json.loads(capsys.readouterr().out.splitlines()[0])
    assert report["wrong"] == len(rows) and report["problems"] == 8
    assert main(argv) == 0  # a rerun: everything was done, nothing sampled or written again
    assert out.read_text() == first and json.loads(capsys.readouterr().out.splitlines()[0])["problems"] == 0
    assert main([*argv[:-2], "--openai-model", "m"]) == 2
    assert "--openai-model is for --completer openai" in capsys.readouterr().err
