"""Reading MR-GSM8K (real model solutions, human first-error labels): ``prm convert --from mr-gsm8k``."""

import json
from pathlib import Path

import pytest

from data_tools.formats import FORMATS, NO_WRITER, read
from data_tools.formats.fields import RowLog
from data_tools.formats.mr_gsm8k import from_row, strip_prefix
from data_tools.schema import DataError, read_jsonl
from serving.cli import main

FIXTURE = Path(__file__).parent / "fixtures" / "mr_gsm8k.jsonl"


def fixture_rows():
    return [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]


def test_first_error_is_made_0_based_and_later_steps_are_unlabelled():
    ex = from_row(fixture_rows()[0])
    assert ex.meta["first_error"] == 2 and ex.first_error() == 2  # labelled step 3, 1-based
    assert ex.labels == [True, True, False, None, None, None]
    assert ex.meta["id"] == "0a000000-0000-4000-8000-000000000001"
    assert ex.meta["answer"] == "7000" and ex.meta["question_type"] == "original"
    assert ex.meta["final_answer_correct"] is False
    assert ex.meta["first_error_reason"].startswith("the profit is subtracted")
    assert ex.meta["reference_solution"].endswith("#### 7000")
    assert ex.prompt == fixture_rows()[0]["question"]


def test_step_prefixes_are_stripped_and_steps_without_one_kept():
    two = from_row(fixture_rows()[1])
    assert two.steps[9] == "Dividing by 16 gives x = 12.5."  # "Step 10: ..."
    assert two.steps[-2:] == ["#### 12.5", "The answer is: 12.5"]
    assert not any(s.lower().startswith("step") for s in two.steps)
    five = from_row(fixture_rows()[4])
    assert five.steps[1] == "She earns 17 * 3 = $51 and then doubles it to $180."  # written without a prefix
    assert five.labels == [False, None, None] and five.meta["final_answer_correct"] is True
    assert five.meta["answer"] == "180"
    assert [strip_prefix(s) for s in ("Step 12:x", "step 3 :  y", "Steps are: z")] == ["x", "y", "Steps are: z"]


def test_the_answer_comes_from_the_reference_when_the_field_holds_its_first_line():
    ex = from_row(fixture_rows()[2])
    assert ex.meta["answer"] == "40" and ex.meta["ground_truth_answer"] == "Let's think step by step."
    assert "ground_truth_answer" not in from_row(fixture_rows()[0]).meta


def test_pot_rows_are_refused_clearly_and_skipped_with_skip_invalid():
    pot = fixture_rows()[3]
    with pytest.raises(DataError, match="POT.*Python program"):
        from_row(pot)
    with pytest.raises(DataError, match=r"line 4: .*POT.*--skip-invalid"):
        list(read("mr-gsm8k", FIXTURE))
    log = RowLog(skip_invalid=True)
    examples = list(read("mr-gsm8k", FIXTURE, log))
    assert len(examples) == 6 and log.skipped == 1 and "POT" in log.reasons[0]


@pytest.mark.parametrize(("value", "why"), [(0, "1-based"), (7, "from 1 to 6"), ("3", "1-based"), (True, "1-based"),
                                            (2.0, "1-based"), (None, "1-based")])
def test_a_bad_first_error_step_is_refused_naming_the_field(value, why):
    row = dict(fixture_rows()[0], model_output_solution_first_error_step=value)
    with pytest.raises(DataError, match=f"model_output_solution_first_error_step.*{why}"):
        from_row(row)


@pytest.mark.parametrize("field", ["uuid", "question", "model_output_steps", "ground_truth_solution",
                                   "ground_truth_answer", "model_output_solution_first_error_step",
                                   "model_output_answer_correctness", "question_type"])
def test_a_missing_field_is_named(field):
    row = fixture_rows()[0]
    del row[field]
    with pytest.raises(DataError, match=f"field '{field}'"):
        from_row(row)


def test_other_malformed_rows():
    row = fixture_rows()[0]
    with pytest.raises(DataError, match=r"model_output_steps\[1\]"):
        from_row(dict(row, model_output_steps=["Step 1: a", "Step 2: "]))
    with pytest.raises(DataError, match="model_output_answer_correctness.*'correct' or 'wrong'"):
        from_row(dict(row, model_output_answer_correctness="yes"))
    ok = from_row(dict(row, model_output_solution_correctness="correct", model_output_solution_first_error_step=None))
    assert ok.labels == [True] * 6 and ok.meta["first_error"] == -1
    with pytest.raises(DataError, match="null for a solution judged correct"):
        from_row(dict(row, model_output_solution_correctness="correct"))


def test_registered_read_only():
    assert FORMATS["mr-gsm8k"].to_row is None and "mr-gsm8k" in NO_WRITER


def test_cli_convert_to_stepwise_and_processbench(tmp_path, capsys):
    out = tmp_path / "mr.jsonl"
    assert main(["convert", "--from", "mr-gsm8k", "--to", "stepwise", str(FIXTURE), str(out)]) == 2
    err = capsys.readouterr().err
    assert "POT" in err and "--skip-invalid" in err
    assert main(["convert", "--from", "mr-gsm8k", "--to", "stepwise", "--skip-invalid", str(FIXTURE), str(out)]) == 0
    assert "skipped 1 invalid rows" in capsys.readouterr().out
    direct = list(read("mr-gsm8k", FIXTURE, RowLog(skip_invalid=True)))
    assert list(read_jsonl(out)) == direct  # stepwise keeps everything that was read

    pb = tmp_path / "mr_pb.json"
    assert main(["convert", "--from", "mr-gsm8k", "--to", "processbench", "--skip-invalid", str(FIXTURE),
                 str(pb)]) == 0
    rows = json.loads(pb.read_text())
    assert [r["label"] for r in rows] == [2, 9, 2, 0, 1, 0]  # 0-based, as ProcessBench counts
    assert [r["id"] for r in rows] == [e.meta["id"] for e in direct]
    assert rows[3]["final_answer_correct"] is True and rows[0]["steps"][0].startswith("He will sell")
    back = list(read("processbench", pb))
    assert [e.labels for e in back] == [e.labels for e in direct]
    assert [e.steps for e in back] == [e.steps for e in direct]
    assert all(b.meta["answer"] == d.meta["answer"] for b, d in zip(back, direct, strict=True))

    assert main(["convert", "--from", "stepwise", "--to", "mr-gsm8k", str(out), str(tmp_path / "x.jsonl")]) == 2
    assert "no mr-gsm8k writer" in capsys.readouterr().err
