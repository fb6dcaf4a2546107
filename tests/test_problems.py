import random

import pytest

from data_tools.answers import answers_match, extract_answer
from data_tools.problems import generate_dataset, generate_problem, ground_truth_labels, inject_error, run_ops


def test_dataset_is_seeded_and_has_gold_and_wrong_solutions():
    a, b = generate_dataset(20, seed=3), generate_dataset(20, seed=3)
    assert [x.to_json() for x in a] == [x.to_json() for x in b]
    assert generate_dataset(20, seed=4)[0].to_json() != a[0].to_json()
    gold = [x for x in a if x.meta["first_error"] < 0]
    wrong = [x for x in a if x.meta["first_error"] >= 0]
    assert len(gold) == 20 and len(wrong) >= 18
    for ex in gold:
        assert extract_answer(ex.steps[-1]) == ex.meta["answer"]


@pytest.mark.parametrize("seed", range(30))
def test_injected_error_is_exact_and_carried_through(seed):
    rng = random.Random(seed)
    problem = generate_problem(rng, "p", n_steps=3)
    wrong = inject_error(problem, rng)
    assert wrong is not None
    k = wrong.meta["first_error"]
    values = run_ops(problem.start, problem.ops)
    equations, answer_step = wrong.steps[:-1], wrong.steps[-1]
    assert len(equations) == 3 and answer_step.startswith("The answer is")
    # steps before the error are the gold steps; the error step's equation result differs from gold
    for i, step in enumerate(equations):
        result = int(step.split("=")[1].split()[0])
        assert (result == values[i]) == (i < k)
        # each later step starts from the previous (wrong) result: self-consistent
        if i > 0:
            left = int(step.split(": ")[1].split()[0])
            assert left == int(wrong.steps[i - 1].split("=")[1].split()[0])
    assert extract_answer(answer_step) == equations[-1].split("= ")[1]
    assert not answers_match(extract_answer(answer_step), str(problem.answer)).correct
    assert ground_truth_labels(wrong) == [i < k for i in range(len(wrong.steps))]


def test_bad_step_range_is_reported_with_the_flag():
    with pytest.raises(ValueError, match="--max-steps"):
        generate_dataset(3, min_steps=3, max_steps=2)


@pytest.mark.parametrize("text,answer", [
    ("5 + 3 = 8\nThe answer is 8.", "8"), ("#### 1,000", "1,000"), ("so 7 then 12", "12"), ("nothing", None),
])
def test_extract_answer(text, answer):
    assert extract_answer(text) == answer


def test_answers_match_traps():
    assert not answers_match("1", "12").correct
    assert answers_match("18.00", "18").correct
    assert answers_match("1,000", "1000").correct
    assert answers_match("$18", "18").correct
    verdict = answers_match(None, "3")
    assert not verdict.correct and "unparseable" in verdict.reason
