"""``--method reference``: first errors from a reference solution's numbers, on hand-made solutions, and the job
through ``prm label`` (no completer)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from data_tools.arithmetic import read_step
from data_tools.formats.gsm8k import CALCULATION
from data_tools.labelling import LabelConfig
from data_tools.labelling.job import LabelJobConfig, run_label_job
from data_tools.labelling.reference import judge, reference_label
from data_tools.schema import StepwiseExample
from serving.cli import main

CHICKENS = ("Isaias has 300 chickens on his farm and plans to sell 3/5 of them at $50 per chicken. He wants to make "
            "a profit of $2000. For how much money did Isaias buy the chickens he took to the market?")
CHICKENS_REF = ("Isaias plans to sell 3/5*300 = <<3/5*300=180>>180 chickens from his farm.\n"
                "He sells them for $50*180 = $<<50*180=9000>>9000\n"
                "He bought them for $9000-$2000 = $<<9000-2000=7000>>7000.\n#### 7000")
APPLES = "Tom has 4 apples. Ann has 3 more apples than Tom. How many apples do they have together?"
APPLES_REF = "Ann has 4+3=<<4+3=7>>7 apples.\nTogether they have 4+7=<<4+7=11>>11 apples.\n#### 11"
JACKET = "A jacket costs $80. It is on sale for 25% off. How much does it cost on sale?"
JACKET_REF = "The discount is 80*.25=$<<80*.25=20>>20.\nThe sale price is 80-20=$<<80-20=60>>60.\n#### 60"


def test_a_right_solution_restating_the_problem_with_commas_and_dollars_is_right_throughout():
    steps = ["Isaias has 300 chickens on his farm.",  # a bare restatement of the problem's 300
             "He sells 300 * 3/5 = 180 chickens.",
             "He makes 180 * $50 = $9,000 from them.",  # thousands comma and $
             "So he bought them for $9,000 - $2,000 = $7,000.",
             "The answer is 7000."]
    verdict = judge(CHICKENS, steps, CHICKENS_REF, "7000")
    assert verdict.first_error == -1, verdict.reasons
    assert verdict.reasons[0] == "right" and "final answer 7000 matches" in verdict.reasons[-1]


def test_a_wrong_relation_with_right_arithmetic_is_caught_where_it_leaves_the_reference():
    # "3 more than 4" done as 3 times: 4 * 3 = 12 is right arithmetic, but 12 is in neither the problem nor
    # the reference (which has 4 + 3 = 7), and the wrong answer 16 is built on it.
    steps = ["Tom has 4 apples.", "Ann has 3 more, so she has 4 * 3 = 12 apples.",
             "Together they have 4 + 12 = 16 apples.", "The answer is 16."]
    verdict = judge(APPLES, steps, APPLES_REF, "11")
    assert verdict.first_error == 1
    assert verdict.reasons[1].startswith("12 is in neither the problem nor the reference")
    assert all(r.startswith("after the first error") for r in verdict.reasons[2:])


def test_a_derived_number_no_wrong_answer_rests_on_is_a_harmless_detour():
    steps = ["Tom and Ann have 4 * 3 = 12 letters in their names, which does not matter.",
             "Ann has 4 + 3 = 7 apples.", "Together they have 4 + 7 = 11 apples.", "The answer is 11."]
    assert judge(APPLES, steps, APPLES_REF, "11").first_error == -1


def test_a_dropped_step_is_no_error_when_the_number_it_skips_is_the_references():
    # 9000 is never computed by the solution, but the reference computed it: the value is right, only its
    # calculation went unwritten (see the module docstring).
    steps = ["He sells 3/5 of 300 chickens, which is 180 chickens.", "He bought them for $9000 - $2000 = $7000.",
             "The answer is 7000."]
    assert judge(CHICKENS, steps, CHICKENS_REF, "7000").first_error == -1
    # ... and a wrong value in its place is caught at the step that uses it
    wrong = ["He sells 3/5 of 300 chickens, which is 180 chickens.", "He bought them for $9500 - $2000 = $7500.",
             "The answer is 7500."]
    assert judge(CHICKENS, wrong, CHICKENS_REF, "7000").first_error == 1


def test_an_arithmetic_slip_is_caught_at_its_step():
    steps = ["He sells 300 * 3/5 = 180 chickens.", "He makes 180 * $50 = $8,000.",
             "So he bought them for $8,000 - $2,000 = $6,000.", "The answer is 6000."]
    verdict = judge(CHICKENS, steps, CHICKENS_REF, "7000")
    assert verdict.first_error == 1 and verdict.reasons[1] == "arithmetic: 180 * $50 = $8,000 (it is 9000)"


@pytest.mark.parametrize("steps, wrong_at", [
    (["The discount is 25% of $80 = $20.", "So it costs $80 - $20 = $60.", "The answer is 60."], -1),
    (["She pays 100% - 25% = 75% of the price.", "75% of $80 = $60.", "The answer is 60."], -1),  # 75% derived
    (["The discount is 25/100 * $80 = $20.", "It costs $60.", "The answer is 60."], -1),
    (["The discount is 25% of $80 = $25.", "So it costs $80 - $25 = $55.", "The answer is 55."], 0),  # slip
    (["The discount is 25% of $80 = $20.", "So it costs $80 + $20 = $100.", "The answer is 100."], 1),
])
def test_percentages(steps, wrong_at):
    assert judge(JACKET, steps, JACKET_REF, "60").first_error == wrong_at


def test_the_final_answer_step_is_right_iff_it_matches_the_gold_answer():
    right = ["He sells 300 * 3/5 = 180 chickens.", "He makes 180 * 50 = 9000.", "He bought them for 9000 - 2000 = 7000.",
             "#### 7000"]
    assert judge(CHICKENS, right, CHICKENS_REF, "7000").first_error == -1
    # every number is the reference's, but the answer given is an intermediate one: the closing step is wrong
    stopped = right[:2] + ["The answer is 9000."]
    verdict = judge(CHICKENS, stopped, CHICKENS_REF, "7000")
    assert verdict.first_error == 2 and verdict.reasons[2] == "final answer 9000, gold 7000"
    # ... and when a step before it already gave that answer, that step is
    verdict = judge(CHICKENS, right[:2] + ["So he bought them for $9000.", "#### 9000"], CHICKENS_REF, "7000")
    assert verdict.first_error == 2 and "as the final answer" in verdict.reasons[2]


def test_steps_without_numbers_are_right_and_counted_and_odd_output_never_raises():
    steps = ["Let's think step by step.", "He sells 300 * 3/5 = 180 chickens.", "He makes 180 * 50 = 9000.",
             "He bought them for 9000 - 2000 = 7000.", "That is the answer."]
    verdict = judge(CHICKENS, steps, CHICKENS_REF, "7000")
    assert verdict.first_error == -1 and verdict.reasons[0] == "right: no numbers"
    assert verdict.odd == ["step without numbers", "step without numbers", "final answer before the last step"]
    for junk in (["???"], ["= = ) ( 3 +"], ["1/0 = 5", "5 x x = 2"], ["(((", "3 = = 4"], [""]):
        judge(CHICKENS, junk, CHICKENS_REF, "7000")  # never raises
    assert judge(CHICKENS, ["No idea."], CHICKENS_REF, "7000").odd == ["step without numbers", "no final answer"]


def test_a_misread_quantity_a_number_from_nowhere_and_a_negative_quantity_are_errors():
    # 40 follows from numbers at hand (52 - 12), so it is derived; the wrong answer is built on it
    misread = ["Tom has 40 apples.", "Ann has 40 + 3 = 43 apples.", "Together they have 40 + 43 = 83.", "#### 83"]
    verdict = judge(APPLES, misread, APPLES_REF, "11")
    assert verdict.first_error == 0 and verdict.reasons[0].startswith("40 is in neither")
    nowhere = ["Tom has 4 apples and 98765.4321 pears.", "Ann has 4 + 3 = 7.", "Together 4 + 7 = 11.", "#### 11"]
    verdict = judge(APPLES, nowhere, APPLES_REF, "11")
    assert verdict.first_error == 0 and "follows from no number before it" in verdict.reasons[0]
    negative = ["She has 4 apples and Ann has 3 + 4 = 7.", "They have 4 + 7 - 19 = -8 apples.", "The answer is 8."]
    verdict = judge(APPLES, negative, APPLES_REF, "11")
    assert verdict.first_error == 1 and "negative" in verdict.reasons[1]


def test_equations_in_the_unknown_x_are_checked_against_the_answer():
    problem = ("Dolly has x books. Pandora has one. If both read each others' books as well as their own, they will "
               "collectively read six books. What is the value of unknown variable x?")
    reference = "They read x + 1 + x + 1 = 2x + 2 books.\n2x + 2 = 6.\n2x = 4.\nx = 2.\n#### 2"
    wrong = ["They will read x + 1 + 1 = x + 2 books.", "So, x + 2 = 6.", "x = 6 - 2 = 4.", "The answer is 4."]
    verdict = judge(problem, wrong, reference, "2")
    assert verdict.first_error == 1 and verdict.reasons[1] == "x + 2 = 6 is false for x = 2 (the answer)"
    right = ["They will read x + 1 + x + 1 = 2x + 2 books.", "So, 2x + 2 = 6.", "2x = 6 - 2 = 4.", "x = 4 / 2 = 2.",
             "The answer is 2."]
    assert judge(problem, right, reference, "2").first_error == -1


def test_read_step_reads_annotations_units_chains_and_times_signs():
    _, calcs, _ = read_step("He sells 15 boxes x 20 fireworks = 300 fireworks, and 20/100 * ($400 + $800) = $240.")
    assert [(c.text, c.ok()) for c in calcs] == [("15 boxes x 20 fireworks = 300 fireworks", True),
                                                 ("20/100 * ($400 + $800) = $240", True)]
    _, calcs, _ = read_step("$50*180 = $<<50*180=9000>>9000 and 400 + 800 = 1200 - 240 = 960")
    assert [c.text for c in calcs] == ["50*180=9000", "400 + 800 = 1200 - 240", "1200 - 240 = 960"]  # the annotation
    assert all(c.ok() for c in calcs)
    # percentage points, "of" only right after a number, and a name before "=" are no slips
    for text in ("there will be 100 - 50 = 50% left", "a croissant for $3.50 for a total of $3.50 + $5.50 = $9.00",
                 "60 kW would cost = $0.10*60 = $6", "(75/100)*100=75% of the flowers"):
        assert all(c.ok() for c in read_step(text)[1]), text


GSM8K = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "gsm8k" / "train.jsonl"


@pytest.mark.skipif(not GSM8K.is_file(), reason="../shared/data/gsm8k/train.jsonl not present")
def test_gsm8k_reference_solutions_checked_against_themselves_are_almost_all_right():
    """What is flagged here is a reading mistake (or a slip in GSM8K itself): the visible text of each reference,
    annotations removed, judged against the annotated reference."""
    rows = [json.loads(line) for line in GSM8K.read_text().splitlines()[:500]]
    flagged = 0
    for row in rows:
        lines = [line for line in row["answer"].splitlines() if line.strip()]
        steps = [CALCULATION.sub("", line) for line in lines]
        flagged += judge(row["question"], steps, row["answer"], lines[-1].removeprefix("####").strip()).first_error >= 0
    assert flagged <= 0.01 * len(rows)


def test_reference_label_writes_hard_labels_method_and_reasons():
    ex = StepwiseExample(APPLES, ["Ann has 4 * 3 = 12.", "They have 4 + 12 = 16.", "The answer is 16."], None,
                         {"answer": "11", "reference_solution": APPLES_REF.splitlines()})  # a list of steps works too
    (out,), report = reference_label([ex])
    assert out.labels == out.meta["hard_labels"] == [False, False, False] and out.first_error() == 0
    assert out.meta["label_method"] == "reference" and len(out.meta["step_reasons"]) == 3
    assert report.solutions == 1 and report.rollouts == 0


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _rows():
    return [
        {"prompt": APPLES, "completions": ["Ann has 4 * 3 = 12.", "They have 4 + 12 = 16.", "The answer is 16."],
         "meta": {"answer": "11", "reference_solution": APPLES_REF, "first_error": 0}},
        {"prompt": APPLES, "completions": ["Ann has 4 + 3 = 7.", "They have 4 + 7 = 11.", "The answer is 11."],
         "meta": {"answer": "11", "reference_solution": APPLES_REF, "first_error": -1}},
        {"prompt": JACKET, "completions": ["Think.", "The discount is 25% of $80 = $25.", "It costs $55.", "#### 55"],
         "meta": {"answer": "60", "reference_solution": JACKET_REF, "first_error": 1}},
    ]


def test_prm_label_method_reference_needs_no_completer_and_resumes(tmp_path, capsys):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write(src, _rows())
    assert main(["label", str(src), str(out), "--method", "reference", "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out.splitlines()[0])
    assert report["written"] == 3 and report["rollouts"] == 0 and report["first_error_agreement"] == 1.0
    assert report["odd_cases"] == {"step without numbers": 1}
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["labels"] for r in rows] == [[False] * 3, [True] * 3, [True, False, False, False]]
    assert all(r["meta"]["label_method"] == "reference" and len(r["meta"]["step_reasons"]) == len(r["labels"])
               for r in rows)
    # a rerun finds everything done; a torn last line is relabelled, and the rows come out the same
    assert main(["label", str(src), str(out), "--method", "reference", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["already_done"] == 3
    whole = out.read_text()
    out.write_text(whole[: whole.rindex("\n", 0, len(whole) - 1) + 20])
    assert main(["label", str(src), str(out), "--method", "reference", "--no-progress"]) == 0
    assert out.read_text() == whole
    # other settings are refused on resume, flags only rollouts use are refused outright
    assert main(["label", str(src), str(out), "--method", "reference", "--reference-key", "ref", "--no-progress"]) == 2
    assert "label.reference_key" in capsys.readouterr().err
    assert main(["label", str(src), str(tmp_path / "o2.jsonl"), "--method", "reference", "--completer",
                 "simulated"]) == 2
    assert "--completer is for the rollout methods" in capsys.readouterr().err


def test_the_reference_key_is_a_flag_and_a_missing_reference_is_reported(tmp_path, capsys):
    rows = _rows()
    for r in rows:
        r["meta"]["ref"] = r["meta"].pop("reference_solution")
    src = tmp_path / "in.jsonl"
    _write(src, rows)
    assert main(["label", str(src), str(tmp_path / "a.jsonl"), "--method", "reference", "--no-progress"]) == 2
    assert "--reference-key" in capsys.readouterr().err
    assert main(["label", str(src), str(tmp_path / "b.jsonl"), "--method", "reference", "--reference-key", "ref",
                 "--no-progress"]) == 0
    del rows[1]["meta"]["ref"]
    _write(src, rows)
    assert main(["label", str(src), str(tmp_path / "c.jsonl"), "--method", "reference", "--reference-key", "ref",
                 "--skip-invalid", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-2])["written"] == 2


def test_the_rollout_methods_still_need_a_completer(tmp_path):
    src = tmp_path / "in.jsonl"
    _write(src, _rows())
    with pytest.raises(ValueError, match="needs a completer"):
        run_label_job(src, tmp_path / "o.jsonl", None, LabelConfig(method="mc"), LabelJobConfig(progress=False))
    with pytest.raises(ValueError, match="--early-stop is for --method mc"):
        run_label_job(src, tmp_path / "o.jsonl", None, LabelConfig(method="reference", early_stop=True))


def test_the_agreement_benchmark_runs_on_mr_gsm8k_rows(tmp_path):
    def row(uid, kind, steps, human, reference=APPLES_REF, answer="11"):
        return {"uuid": uid, "question": APPLES, "question_type": kind, "ground_truth_solution": reference,
                "ground_truth_answer": answer, "model_output_steps": [f"Step {i + 1}: {s}" for i, s in enumerate(steps)],
                "model_output_answer_correctness": "wrong", "model_output_solution_correctness": "wrong",
                "model_output_solution_first_error_step": human, "model_output_solution_first_error_reason": "r"}

    wrong = ["Ann has 4 * 3 = 12.", "They have 4 + 12 = 16.", "The answer is 16."]
    data = tmp_path / "mr.jsonl"
    _write(data, [row("a", "original", wrong, 1), row("b", "original", wrong, 2), row("c", "reversed", wrong, 1),
                  row("d", "reversed", ["Ann has 4 + 3 = 7.", "They have 4 + 7 = 11.", "#### 11"], 2,
                      reference=APPLES_REF.replace("#### 11", "The answer is 11."), answer="Let's think step by step."),
                  row("e", "POT", ["print(11)"], 1), row("f", "original", wrong, 1, reference="")])
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "reference_agreement.py"
    res = subprocess.run([sys.executable, str(script), "--data", str(data), "--show", "1"], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["solutions"] == 4 and out["pot_rows_left_out"] == 1 and out["no_reference_left_out"] == ["f"]
    assert (out["exact"], out["too_early"], out["too_late"], out["never"], out["within_one"]) == (0.5, 0.25, 0, 0.25,
                                                                                                  0.75)
    assert out["by_type"]["original"] == {"n": 2, "exact": 0.5, "too_early": 0.5, "too_late": 0.0, "never": 0.0,
                                          "within_one": 1.0}
    assert out["by_type"]["reversed"]["never"] == 0.5  # its answer is read from the reference's last line
