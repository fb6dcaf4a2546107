"""Error injection: the first wrong step is known, the error is carried through, the answer changes."""

import json
import random
from fractions import Fraction
from pathlib import Path

import pytest

from data_tools import formats
from data_tools.answers import answers_match, extract_answer
from data_tools.formats.gsm8k import CALCULATION
from data_tools.inject import InjectConfig, evaluate, inject_errors, inject_variants, parse_step, quantize
from data_tools.problems import ERROR_KINDS, generate_dataset
from data_tools.schema import StepwiseExample, read_jsonl, write_jsonl

FIXTURES = Path(__file__).parent / "fixtures"


def gold_examples():
    return list(formats.read("gsm8k", FIXTURES / "gsm8k.jsonl"))


def assert_valid_variant(gold: StepwiseExample, wrong: StepwiseExample):
    k = wrong.meta["first_error"]
    assert wrong.steps[:k] == gold.steps[:k] and wrong.steps[k] != gold.steps[k]
    assert len(wrong.steps) == len(gold.steps)
    assert wrong.labels == [True] * k + [False] * (len(gold.steps) - k)
    assert wrong.meta["error_kind"] in ERROR_KINDS
    assert not answers_match(extract_answer(wrong.steps[-1]), gold.meta["answer"]).correct
    assert wrong.meta["wrong_answer"] == extract_answer(wrong.steps[-1])
    # later calculations were recomputed from the wrong value: each one still adds up
    for step in wrong.steps[k + 1:]:
        for m in CALCULATION.finditer(step):
            expr, result = m.group(1).split("=")
            assert quantize(evaluate(expr)) == Fraction(result)


def test_every_fixture_problem_gets_valid_distinct_variants():
    for gold in gold_examples():
        variants = inject_variants(gold, random.Random(0), n=3)
        assert len(variants) == 3 and len({tuple(v.steps) for v in variants}) == 3
        for wrong in variants:
            assert_valid_variant(gold, wrong)


@pytest.mark.parametrize("kind", ERROR_KINDS)
def test_each_kind_of_error(kind):
    gold = gold_examples()[1]  # notebooks 4 x $3, pen 12 + 2, change 20 - 14
    for seed in range(5):
        (wrong,) = inject_variants(gold, random.Random(seed), kinds=(kind,))
        assert_valid_variant(gold, wrong)
        k = wrong.meta["first_error"]
        before, after = gold.steps[k], wrong.steps[k]
        m_before, m_after = CALCULATION.search(before), CALCULATION.search(after)
        expr_before, result_before = m_before.group(1).split("=")
        expr_after, result_after = m_after.group(1).split("=")
        visible_before, visible_after = before[:m_before.start()], after[:m_after.start()]
        if kind == "slip":  # the expression is right, the result is not
            assert expr_after == expr_before and visible_after == visible_before
            assert quantize(evaluate(expr_after)) != Fraction(result_after)
        else:  # the text restates the corrupted expression, and its result is computed from it
            assert expr_after != expr_before and visible_after != visible_before
            assert quantize(evaluate(expr_after)) == Fraction(result_after)
            ops = [c for c in expr_after if c in "+-*/"] != [c for c in expr_before if c in "+-*/"]
            assert ops == (kind == "operator")
        assert after.endswith(f"{result_after}.")  # the repeated visible result follows the annotation


def test_a_slip_is_carried_through_later_steps():
    gold = StepwiseExample("q", ["Half of 48 is 48/2 = <<48/2=24>>24.", "Then 24 + 10 = <<24+10=34>>34 in all, "
                                 "so 34 it is.", "#### 34"], [True] * 3, {"answer": "34"})
    variants = inject_variants(gold, random.Random(3), n=2, kinds=("slip",))
    (wrong,) = [v for v in variants if v.meta["first_error"] == 0]
    new = int(CALCULATION.search(wrong.steps[0]).group(1).split("=")[1])
    assert wrong.steps[0] == f"Half of 48 is 48/2 = <<48/2={new}>>{new}."
    assert wrong.steps[1] == f"Then {new} + 10 = <<{new}+10={new + 10}>>{new + 10} in all, so {new + 10} it is."
    assert wrong.steps[2] == f"#### {new + 10}"


def test_plain_equations_of_the_demo_format():
    solutions = [e for e in generate_dataset(20, seed=4, max_steps=3) if e.meta["first_error"] < 0]
    for gold in solutions:
        (wrong,) = inject_variants(gold, random.Random(1))
        assert_valid_variant(gold, wrong)
        for step in wrong.steps[wrong.meta["first_error"] + 1:-1]:
            equation = step.rsplit(": ", 1)[-1]
            lhs, rhs = equation.split(" = ")
            assert evaluate(lhs) == int(rhs)


def test_no_calculation_means_no_variant():
    gold = StepwiseExample("q", ["We think hard.", "#### 5"], [True, True], {"answer": "5"})
    assert inject_variants(gold, random.Random(0)) == []


def test_parse_step_pairs_the_visible_expression():
    (calc,) = parse_step("The notebooks cost 4 x $3 = $<<4*3=12>>12.").calcs
    assert calc.visible_operands == [0, 1] and calc.visible_ops == [(21, "x")] and calc.visible_result == 5
    (calc,) = parse_step("She sold half as many: <<48/2=24>>24 clips.").calcs
    assert calc.visible_operands is None and calc.visible_result == 3
    assert parse_step("It costs 2 + 2 = <<2+2=5>>5.").calcs == []  # a stated result that is not the value


def test_evaluate_is_exact_and_safe():
    assert evaluate("2 + 3 * (4 - 1) / 2") == Fraction(13, 2)
    assert evaluate("0.1 + 0.2") == Fraction(3, 10)
    assert evaluate("-(2 - 5)") == 3
    for bad in ["1/0", "2 +", "(1", "__import__('os')", "1 2"]:
        with pytest.raises(ValueError):
            evaluate(bad)


def test_inject_errors_on_gsm8k_is_reproducible(tmp_path):
    report = inject_errors(FIXTURES / "gsm8k.jsonl", tmp_path / "a.jsonl", "gsm8k",
                           InjectConfig(seed=7, variants=2, with_gold=True))
    assert (report.problems, report.with_variant, report.variants) == (4, 4, 8)
    assert report.coverage == 1.0 and sum(report.by_kind.values()) == 8
    rows = list(read_jsonl(tmp_path / "a.jsonl"))
    assert len(rows) == 12 and [r.meta["id"] for r in rows[:3]] == ["00000-gold", "00000-err0", "00000-err1"]
    assert rows[0].labels == [True] * 3 and rows[0].meta["first_error"] == -1
    golds = {g.prompt: g for g in gold_examples()}
    for row in rows[1:3] + rows[4:6]:
        assert_valid_variant(golds[row.prompt], row)
    inject_errors(FIXTURES / "gsm8k.jsonl", tmp_path / "b.jsonl", "gsm8k", InjectConfig(seed=7, variants=2,
                                                                                       with_gold=True))
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()
    inject_errors(FIXTURES / "gsm8k.jsonl", tmp_path / "c.jsonl", "gsm8k", InjectConfig(seed=8))
    assert (tmp_path / "c.jsonl").read_text() != (tmp_path / "a.jsonl").read_text()


def test_inject_errors_on_stepwise_jsonl_skips_wrong_solutions(tmp_path):
    write_jsonl(tmp_path / "demo.jsonl", generate_dataset(10, seed=2))
    report = inject_errors(tmp_path / "demo.jsonl", tmp_path / "out.jsonl", "jsonl",
                           InjectConfig(strip_calculations=True))
    assert report.problems == 10 and report.not_correct == sum(
        1 for e in generate_dataset(10, seed=2) if e.meta["first_error"] >= 0)
    assert report.with_variant == 10
    assert "left out" in report.summary()


def test_bad_rows_and_bad_options(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q", "answer": "1 + 1 = <<1+1=2>>2\n#### 2"}) + "\n"
                   + json.dumps({"question": "q"}) + "\n")
    with pytest.raises(ValueError, match="line 2: field 'answer': missing"):
        inject_errors(bad, tmp_path / "out.jsonl")
    report = inject_errors(bad, tmp_path / "out.jsonl", config=InjectConfig(skip_invalid=True))
    assert report.log.skipped == 1 and report.problems == 1
    with pytest.raises(ValueError) as err:
        inject_errors(bad, tmp_path / "out.jsonl", "csv", InjectConfig(variants=0, kinds=("typo",)))
    assert "--format" in str(err.value) and "--variants" in str(err.value) and "--kinds" in str(err.value)
