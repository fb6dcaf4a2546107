"""Step checks: steps wrong by their own numbers, found without a model or a reference, and applied by the Scorer."""

import json

import numpy as np
import pytest

from data_tools.checks import check_steps, first_checked_error
from prm.scoring import Scorer
from prm.scoring.checks import CEILING, apply_checks

PROBLEM = "Tom has 48 apples. He gives half of them to Ann and then buys 3 bags of 12 apples. How many apples does he have?"


def test_a_right_solution_passes_every_check():
    steps = ["He gives 48 / 2 = 24 apples to Ann, so he keeps 24.", "He buys 3 * 12 = 36 apples.",
             "He has 24 + 36 = 60 apples.", "The answer is: 60"]
    assert check_steps(PROBLEM, steps) == [None] * 4


def test_a_false_calculation_is_flagged_at_its_step_only():
    steps = ["He keeps 48 / 2 = 24 apples.", "He buys 3 * 12 = 38 apples.", "He has 24 + 38 = 62 apples.",
             "The answer is: 62"]
    why = check_steps(PROBLEM, steps)
    assert why[0] is None and why[1].startswith("arithmetic: 3 * 12 = 38") and why[2] is None
    assert first_checked_error(PROBLEM, steps) == 1


def test_a_number_from_nowhere_is_flagged_but_a_restated_or_derived_one_is_not():
    steps = ["He keeps 24 apples.", "He buys 3 bags of 83 apples, 3 * 83 = 249 apples.", "The answer is: 273"]
    why = check_steps(PROBLEM, steps)
    assert why[0] is None  # half of 48: follows by one operation
    assert why[1] is not None and "83" in why[1] and "follows from no number" in why[1]


def test_a_negative_quantity_is_flagged():
    steps = ["He has 12 - 48 = -36 apples left.", "The answer is: -36"]
    assert "negative quantity" in check_steps(PROBLEM, steps)[0]


def test_an_equation_in_x_is_checked_against_the_solutions_own_answer_only_when_it_has_one():
    problem = "Sam has x marbles and buys 5 more. Now he has 12 marbles. What is the value of x?"
    wrong = ["x + 5 = 12", "x = 12 + 5 = 17", "The answer is: 17"]
    assert check_steps(problem, wrong)[0] is not None  # 17 + 5 is not 12
    assert check_steps(problem, ["x + 5 = 12", "x = 12 - 5 = 7", "The answer is: 7"]) == [None] * 3
    assert check_steps(problem, wrong[:1]) == [None]  # a prefix without an answer: the rule does not fire


def test_model_output_never_raises():
    for steps in ([], [""], ["= = 3 * * 4 ="], ["(((1/0)"], ["1/0 = 5"], ["The answer is: ??"]):
        assert len(check_steps("x? 1/0", steps)) == len(steps)


def test_apply_checks_caps_flagged_steps_and_carries_the_cap_when_monotone():
    steps = ["He keeps 48 / 2 = 24 apples.", "He buys 3 * 12 = 38 apples.", "He has 62 apples."]
    out = apply_checks([0.9, 0.8, 0.7], PROBLEM, steps)
    assert out.tolist() == [0.9, CEILING, 0.7]
    assert apply_checks([0.9, 0.8, 0.7], PROBLEM, steps, monotone=True).tolist() == [0.9, CEILING, CEILING]
    assert apply_checks([0.005, 0.8, 0.7], PROBLEM, steps)[0] == 0.005  # a cap never raises a score


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_scorer_applies_the_artifacts_step_checks_on_every_backend(tiny_artifact, tmp_path, backend):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_artifact, folder)
    steps = ["He keeps 48 / 2 = 24 apples.", "He buys 3 * 12 = 38 apples.", "He has 62 apples."]
    plain = np.array(Scorer(folder, backend=backend).score([(PROBLEM, steps)])[0])
    cfg = json.loads((folder / "prm_config.json").read_text())
    (folder / "prm_config.json").write_text(json.dumps(dict(cfg, step_checks=True)))
    checked = Scorer(folder, backend=backend)
    assert checked.checks
    got = np.array(checked.score([(PROBLEM, steps)])[0])
    assert got[1] == pytest.approx(min(plain[1], CEILING)) and np.allclose(got[[0, 2]], plain[[0, 2]])
    each = checked.score_each([(PROBLEM, steps), (PROBLEM, steps[:1])])
    assert np.allclose(each[0], got) and np.allclose(each[1], plain[:1], atol=1e-5)
    assert np.allclose(Scorer(folder, backend=backend, checks=False).score([(PROBLEM, steps)])[0], plain)
