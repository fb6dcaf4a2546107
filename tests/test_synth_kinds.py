"""Error kinds that imitate real errors: on hand-made GSM8K solutions, each kind changes the step it
says, carries the new value through every later calculation, changes the final answer, and labels
right before its first wrong step and wrong from it on; what would be a negative count is refused."""

import json
import random
from collections import Counter
from fractions import Fraction
from pathlib import Path

import pytest

from data_tools.answers import answers_match, extract_answer
from data_tools.formats.gsm8k import CALCULATION
from data_tools.schema import StepwiseExample, read_jsonl
from data_tools.synth.calculations import evaluate, parse_step, quantize
from data_tools.synth.cues import asks_amount, conversions, quantities, relations
from data_tools.synth.inject import InjectConfig, inject_errors
from data_tools.synth.problems import ERROR_KINDS
from data_tools.synth.real_errors import REAL_ERROR_KINDS
from data_tools.synth.variants import ALL_KINDS, inject_variants

FIXTURES = Path(__file__).parent / "fixtures"


def solution(question, *steps):
    return StepwiseExample(question, list(steps), [True] * len(steps), {"answer": extract_answer(steps[-1])})


def variants(gold, kind, seeds=range(8), n=10):
    """Every distinct variant of ``kind`` that some seed draws, by its error_detail."""
    out = {}
    for seed in seeds:
        for v in inject_variants(gold, random.Random(seed), n=n, kinds=(kind,)):
            assert out.setdefault(v.meta["error_detail"], v).steps == v.steps, "one detail, one variant"
            check(gold, v, kind)
    return out


def check(gold, wrong, kind):
    """What every variant promises: a known first error, labels from it, the final answer changed,
    and each later calculation adding up."""
    k, meta = wrong.meta["first_error"], wrong.meta
    assert meta["error_kind"] == kind and meta["answer"] == gold.meta["answer"]
    assert wrong.labels == [True] * k + [False] * (len(wrong.steps) - k)
    final = extract_answer(wrong.steps[-1])
    assert final == meta["wrong_answer"] and not answers_match(final, gold.meta["answer"]).correct
    assert Fraction(final.replace(",", "")) >= 0
    for step in wrong.steps[k:]:
        for m in CALCULATION.finditer(step):
            expr, result = m.group(1).split("=")
            assert quantize(evaluate(expr)) == Fraction(result), step
    if kind != "dropped_step":
        assert len(wrong.steps) == len(gold.steps) and wrong.steps[:k] == gold.steps[:k]
        assert wrong.steps[k] != gold.steps[k]


def test_the_kinds_and_the_default():
    assert ALL_KINDS == ERROR_KINDS + REAL_ERROR_KINDS
    assert InjectConfig().kinds == ERROR_KINDS  # the new kinds are opt-in
    assert InjectConfig(kinds=("all",)).error_kinds() == ALL_KINDS
    assert InjectConfig(kinds=("slip", "real", "slip")).error_kinds() == ("slip",) + REAL_ERROR_KINDS
    problems = InjectConfig(kinds=("slips",)).problems("gsm8k")
    assert problems and "dropped_step" in problems[0] and "all" in problems[0]


def test_wrong_quantity_takes_another_number_of_the_problem():
    gold = solution("Lea buys 6 pens at $2 each and pays with a $20 bill. How much change does she get?",
                    "The pens cost 6 x $2 = $<<6*2=12>>12.", "Her change is 20 - 12 = $<<20-12=8>>8.", "#### 8")
    # 6 -> 2 is the one that stands: 6 -> 20 and $2 -> $20 make the change negative, $20 -> $2 too
    assert variants(gold, "wrong_quantity") == {"6 taken as 2, another number of the problem": StepwiseExample(
        gold.prompt, ["The pens cost 2 x $2 = $<<2*2=4>>4.", "Her change is 20 - 4 = $<<20-4=16>>16.", "#### 16"],
        [False] * 3, dict(gold.meta, first_error=0, error_kind="wrong_quantity", wrong_answer="16",
                          error_detail="6 taken as 2, another number of the problem"))}


def test_wrong_quantity_refuses_a_negative_or_empty_count_and_says_why():
    gold = solution("A baker bakes 12 rolls and sells 5. How many are left?", "12 - 5 = <<12-5=7>>7 are left.",
                    "#### 7")
    why = Counter()
    assert inject_variants(gold, random.Random(0), kinds=("wrong_quantity",), why=why) == []
    assert set(why) <= {"wrong_quantity: negative", "wrong_quantity: zero"} and sum(why.values()) == 1


@pytest.mark.parametrize("question, steps, expected", [
    ("Sam has 12 marbles. Ben has 5 more marbles than Sam. How many marbles do they have together?",
     ["Ben has 12 + 5 = <<12+5=17>>17 marbles.", "Together they have 12 + 17 = <<12+17=29>>29 marbles.", "#### 29"],
     {"'5 more marbles than' read as 5 times": ["Ben has 12 * 5 = <<12*5=60>>60 marbles.",
                                                "Together they have 12 + 60 = <<12+60=72>>72 marbles.", "#### 72"],
      "'5 more marbles than' read as 5 less": ["Ben has 12 - 5 = <<12-5=7>>7 marbles.",
                                               "Together they have 12 + 7 = <<12+7=19>>19 marbles.", "#### 19"]}),
    ("A baker makes 36 rolls in the morning and half as many in the afternoon. How many rolls does he make in total?",
     ["In the afternoon he makes 36/2 = <<36/2=18>>18 rolls.", "In total he makes 36+18 = <<36+18=54>>54 rolls.",
      "#### 54"],
     {"'half' read as 2 times": ["In the afternoon he makes 36*2 = <<36*2=72>>72 rolls.",
                                 "In total he makes 36+72 = <<36+72=108>>108 rolls.", "#### 108"]}),
    ("A shirt costs $40. It is sold at 25% off. How much does it cost now?",
     ["It costs 40 * 0.75 = $<<40*0.75=30>>30 now.", "#### 30"],
     {"75% (100% less 25%) taken as 25%": ["It costs 40 * 0.25 = $<<40*0.25=10>>10 now.", "#### 10"]}),
])
def test_misread_relation_applies_the_misread_operator_to_the_worded_amount(question, steps, expected):
    gold = solution(question, *steps)
    got = variants(gold, "misread_relation")
    assert {d: v.steps for d, v in got.items()} == expected
    assert all(v.meta["first_error"] == 0 for v in got.values())


def test_a_result_stated_ahead_of_its_calculation_changes_with_it():
    gold = solution("The first player eats 78 seeds. The second eats 53. The third eats 30 more seeds than the "
                    "second. How many do they eat in total?",
                    "The third player eats 83 seeds because 53 + 30 = <<53+30=83>>83",
                    "They eat 214 in total because 78 + 53 + 83 = <<78+53+83=214>>214", "#### 214")
    got = variants(gold, "misread_relation")
    assert got["'30 more seeds than' read as 30 times"].steps == [
        "The third player eats 1590 seeds because 53 * 30 = <<53*30=1590>>1590",
        "They eat 1721 in total because 78 + 53 + 1590 = <<78+53+1590=1721>>1721", "#### 1721"]


def test_dropped_step_uses_the_value_before_it_and_errs_where_that_value_is_used():
    gold = solution("Julie reads a 120-page book: 12 pages yesterday and twice as many today. If she reads half "
                    "of the remaining pages tomorrow, how many pages does she read tomorrow?",
                    "She read 12 x 2 = <<12*2=24>>24 pages today.",
                    "So she has read 12 + 24 = <<12+24=36>>36 pages.",
                    "There are 120 - 36 = <<120-36=84>>84 pages left.",
                    "She should read 84 / 2 = <<84/2=42>>42 pages tomorrow.",
                    "#### 42")
    got = variants(gold, "dropped_step")
    s = gold.steps
    assert {d: (v.meta["first_error"], v.steps) for d, v in got.items()} == {
        # no earlier result to fall back on: the largest number it used (it forgot to double)
        "step 1 (12 x 2 = 24) left out: 12 used instead of 24": (0, [
            "So she has read 12 + 12 = <<12+12=24>>24 pages.", "There are 120 - 24 = <<120-24=96>>96 pages left.",
            "She should read 96 / 2 = <<96/2=48>>48 pages tomorrow.", "#### 48"]),
        "step 2 (12 + 24 = 36) left out: 24 used instead of 36": (1, [
            s[0], "There are 120 - 24 = <<120-24=96>>96 pages left.",
            "She should read 96 / 2 = <<96/2=48>>48 pages tomorrow.", "#### 48"]),
        "step 3 (120 - 36 = 84) left out: 36 used instead of 84": (2, [
            s[0], s[1], "She should read 36 / 2 = <<36/2=18>>18 pages tomorrow.", "#### 18"]),
        # the last calculation left out: the answer line, the first to use its result, is the first error
        "step 4 (84 / 2 = 42) left out: 84 used instead of 42": (3, [s[0], s[1], s[2], "#### 84"]),
    }
    for v in got.values():
        k = v.meta["first_error"]
        assert len(v.steps) == len(s) - 1 and v.labels == [True] * k + [False] * (len(v.steps) - k)
        assert all(step in s for step in v.steps[:k])  # right before the first step that uses the stale value


def test_double_count_adds_a_term_again_or_subtracts_it_again():
    gold = solution("Mia has 8 red, 5 blue and 7 green beads. She uses 6 beads for a bracelet. How many are left?",
                    "She has 8 + 5 + 7 = <<8+5+7=20>>20 beads.", "She has 20 - 6 = <<20-6=14>>14 beads left.",
                    "#### 14")
    got = variants(gold, "double_count", seeds=range(20))
    expected = {"8 counted twice (added again)": (28, 22), "5 counted twice (added again)": (25, 19),
                "7 counted twice (added again)": (27, 21)}
    for detail, v in got.items():
        if detail == "6 counted twice (subtracted again)":  # in a difference, only what is taken away again
            assert v.steps == [gold.steps[0], "She has 20 - 6 - 6 = <<20-6-6=8>>8 beads left.", "#### 8"]
            continue
        total, left = expected[detail]
        term = detail.split()[0]
        assert v.steps == [f"She has 8 + 5 + 7 + {term} = <<8+5+7+{term}={total}>>{total} beads.",
                           f"She has {total} - 6 = <<{total}-6={left}>>{left} beads left.", f"#### {left}"]
    assert len(got) == 4


def test_unit_or_percent_uses_a_percentage_as_a_whole_number():
    gold = solution("A $80 jacket has 5% sales tax. How much does she pay in total?",
                    "The tax is 5/100 * 80 = $<<5/100*80=4>>4.", "She pays 80 + 4 = $<<80+4=84>>84.", "#### 84")
    got = variants(gold, "unit_or_percent")
    assert {d: v.steps for d, v in got.items()} == {"a percentage used as a whole number (the /100 left out)": [
        "The tax is 5 * 80 = $<<5*80=400>>400.", "She pays 80 + 400 = $<<80+400=480>>480.", "#### 480"]}


def test_unit_or_percent_forgets_a_conversion_the_units_imply():
    gold = solution("Tom buys 3 dozen eggs and 4 more eggs. How many eggs does he have?",
                    "He buys 3 x 12 = <<3*12=36>>36 eggs.", "He has 36 + 4 = <<36+4=40>>40 eggs.", "#### 40")
    got = variants(gold, "unit_or_percent")
    assert {d: v.steps for d, v in got.items()} == {"the conversion by 12 (a dozen) forgotten": [
        "He buys 3 eggs.", "He has 3 + 4 = <<3+4=7>>7 eggs.", "#### 7"]}
    gold = solution("A show runs 2 hours and 15 minutes. How many minutes is that?",
                    "That is 2 * 60 + 15 = <<2*60+15=135>>135 minutes.", "#### 135")
    (v,) = variants(gold, "unit_or_percent").values()
    assert v.steps == ["That is 2 + 15 = <<2+15=17>>17 minutes.", "#### 17"]


def test_wrong_role_uses_the_previous_result_where_another_was_meant():
    gold = solution("Jacob sells 10 ladders with 50 rungs and 20 ladders with 60 rungs at $2 a rung. "
                    "How much does the client pay?",
                    "10 ladders have 10 x 50 = <<10*50=500>>500 rungs.",
                    "20 ladders have 20 x 60 = <<20*60=1200>>1200 rungs.",
                    "In total there are 1200 + 500 = <<1200+500=1700>>1700 rungs.",
                    "The client pays 2 x 1700 = $<<2*1700=3400>>3400.", "#### 3400")
    got = variants(gold, "wrong_role", seeds=range(20))
    s = gold.steps
    assert {d: v.steps for d, v in got.items()} == {
        "the previous result 1200 used where 500 was meant": [
            s[0], s[1], "In total there are 1200 + 1200 = <<1200+1200=2400>>2400 rungs.",
            "The client pays 2 x 2400 = $<<2*2400=4800>>4800.", "#### 4800"],
        "the previous result 500 used where 20 (a number of the problem) was meant": [
            s[0], "20 ladders have 500 x 60 = <<500*60=30000>>30000 rungs.",
            "In total there are 30000 + 500 = <<30000+500=30500>>30500 rungs.",
            "The client pays 2 x 30500 = $<<2*30500=61000>>61000.", "#### 61000"],
        "the previous result 500 used where 60 (a number of the problem) was meant": [
            s[0], "20 ladders have 20 x 500 = <<20*500=10000>>10000 rungs.",
            "In total there are 10000 + 500 = <<10000+500=10500>>10500 rungs.",
            "The client pays 2 x 10500 = $<<2*10500=21000>>21000.", "#### 21000"],
    }


def test_wrong_role_turning_a_difference_around_is_refused_when_it_goes_negative():
    gold = solution("Ann had 50 stickers. She gave 8 to Bo and 12 to Cy. How many are left?",
                    "She gave away 8 + 12 = <<8+12=20>>20 stickers.", "She has 50 - 20 = <<50-20=30>>30 left.",
                    "#### 30")
    why = Counter()
    assert inject_variants(gold, random.Random(0), kinds=("wrong_role",), why=why) == []
    assert why == Counter({"wrong_role: negative": 1})


def test_a_number_that_may_stand_for_another_quantity_is_not_rewritten():
    # 4 (Monday's hours) equals the result that "twice" read as half would change: carrying 4 -> 1
    # would also rewrite Monday's 4, so the variant is refused
    gold = solution("Oliver worked out 4 hours on Monday and twice as long on Tuesday. How many hours in all?",
                    "On Tuesday he worked out 2 * 2 = <<2*2=4>>4 hours.", "In all 4 + 4 = <<4+4=8>>8 hours.", "#### 8")
    why = Counter()
    assert inject_variants(gold, random.Random(0), kinds=("misread_relation",), why=why) == []
    assert why == Counter({"misread_relation: a changed value that also stands for another number": 1})


def test_a_calculation_its_annotation_does_not_write_out_is_not_carried_into():
    # "1/2*140 = <<70=70>>70": the carry could change the 140 the text shows but not the annotation
    gold = solution("Ali had 180 seashells and gave 40 to friends. He sold half of the rest. How many are left?",
                    "Ali had 180-40 = <<180-40=140>>140 seashells.", "He sold 1/2*140 = <<70=70>>70 seashells.",
                    "He was left with 140-70 = <<140-70=70>>70 seashells.", "#### 70")
    why = Counter()
    assert inject_variants(gold, random.Random(0), n=5, kinds=("double_count",), why=why) == []
    assert set(why) <= {"double_count: a calculation its annotation does not write out", "double_count: zero"}


def test_old_kinds_draw_what_they_drew(tmp_path):
    """Naming only the old kinds takes the old path: same draws, no error_detail."""
    gold = solution("Mara buys 4 notebooks at $3 each and a pen for $2. How much does she spend?",
                    "The notebooks cost 4 x $3 = $<<4*3=12>>12.", "With the pen she spends 12 + 2 = $<<12+2=14>>14.",
                    "#### 14")
    for seed in range(5):
        old = inject_variants(gold, random.Random(seed), n=3)
        assert old == inject_variants(gold, random.Random(seed), n=3, kinds=ERROR_KINDS, why=Counter())
        assert all("error_detail" not in v.meta for v in old)


def test_inject_errors_with_every_kind(tmp_path):
    report = inject_errors(FIXTURES / "gsm8k.jsonl", tmp_path / "all.jsonl", "gsm8k",
                           InjectConfig(seed=1, variants=9, kinds=("all",)))
    rows = list(read_jsonl(tmp_path / "all.jsonl"))
    assert report.with_variant == 4 and len(rows) == report.variants
    assert set(report.by_kind) <= set(ALL_KINDS) and set(report.by_kind) & set(REAL_ERROR_KINDS)
    for row in rows:
        k = row.meta["first_error"]
        assert row.labels == [True] * k + [False] * (len(row.steps) - k)
        assert ("error_detail" in row.meta) == (row.meta["error_kind"] in REAL_ERROR_KINDS)
    again = inject_errors(FIXTURES / "gsm8k.jsonl", tmp_path / "again.jsonl", "gsm8k",
                          InjectConfig(seed=1, variants=9, kinds=("all",)))
    assert again.variants == report.variants
    assert (tmp_path / "all.jsonl").read_text() == (tmp_path / "again.jsonl").read_text()


def test_cli_kinds_all(tmp_path, capsys):
    from serving.cli import main

    out = tmp_path / "errors.jsonl"
    assert main(["inject-errors", str(FIXTURES / "gsm8k.jsonl"), str(out), "--kinds", "real", "--variants", "3"]) == 0
    assert "coverage 100.0%" in capsys.readouterr().out
    kinds = {json.loads(line)["meta"]["error_kind"] for line in out.read_text().splitlines()}
    assert kinds and kinds <= set(REAL_ERROR_KINDS)


def test_reading_the_problem():
    qs = quantities("Ann pays $12 for 3 books, 20% off, and two pens; 2/5 of them are red.")
    assert [(q.value, q.percent, q.money, q.fraction) for q in qs] == [
        (12, False, True, False), (3, False, False, False), (20, True, False, False), (2, False, False, False),
        (2, False, False, True), (5, False, False, True)]
    rels = relations("Ben has 5 more marbles than Sam, twice as many as Al, half as many as Cy, 3 times a week, "
                     "and 4 fewer cards than Di.")
    assert [(r.op, r.amount) for r in rels] == [("+", 5), ("-", 4), ("*", 2), ("/", 2)]
    assert conversions("He works 90 minutes a day. How many hours a week?") == {
        60: "minutes per hour", 24: "hours per day", 7: "days per week"}
    assert conversions("He runs 60 minutes. How many hours?") == {}  # the problem states 60 itself
    assert asks_amount("She buys 3 pens. How much does she pay?") and not asks_amount("How many pens are left?")
    assert parse_step("He buys 3 eggs.").calcs == []
