"""Binary search vs Monte-Carlo labels, early stopping, failed requests, and the simulated completer."""

import pytest

from data_tools.binary_search import binary_label
from data_tools.labelling import first_error, mc_label
from data_tools.problems import generate_dataset
from data_tools.rollouts import RolloutRequest
from data_tools.schema import StepwiseExample
from data_tools.simulated import SimulatedCompleter, SimulatedConfig


def sim(**kw) -> SimulatedCompleter:
    return SimulatedCompleter(SimulatedConfig(**kw))


def monotone(hard) -> bool:
    return all(a or not b for a, b in zip(hard, hard[1:], strict=False))  # never wrong, then right again


def test_binary_search_finds_mc_first_error_wherever_mc_labels_are_monotone():
    data = generate_dataset(150, seed=2, min_steps=3, max_steps=7)
    completer = sim(p_correct=0.5, p_wrong=0.05)
    mc, _ = mc_label(data, completer, rollouts=6)
    bs, _ = binary_label(data, completer, rollouts=6)
    by_problem = {}
    for a, b in zip(mc, bs, strict=True):
        by_problem.setdefault(a.meta["problem_id"], []).append((a, b))
    clean = [pair for pairs in by_problem.values() if all(monotone(a.meta["hard_labels"]) for a, _ in pairs)
             for pair in pairs]
    assert len(clean) > len(mc) // 2 and len(clean) < len(mc)  # both kinds occur: the test is not vacuous
    for a, b in clean:
        assert first_error(b.meta["hard_labels"]) == first_error(a.meta["hard_labels"]), a.meta["id"]


def test_a_probe_sees_exactly_the_mc_verdict_of_its_prefix():
    """Same seeds, sample for sample: what binary search rolled out agrees with MC's hard label there."""
    data = generate_dataset(60, seed=3, min_steps=2, max_steps=6)
    completer = sim(p_correct=0.4, p_wrong=0.1)
    mc, _ = mc_label(data, completer, rollouts=5)
    bs, _ = binary_label(data, completer, rollouts=5)
    probed = 0
    for a, b in zip(mc, bs, strict=True):
        for i, (drawn, ok) in enumerate(zip(b.meta["step_rollouts"], b.meta["step_successes"], strict=True)):
            if drawn:
                probed += 1
                assert (ok > 0) == a.meta["hard_labels"][i]
                assert ok > 0 or drawn == 5  # a prefix is judged wrong only after all its rollouts
    assert probed > len(data) // 2  # (solutions with a right final answer need no probe)


def test_binary_search_spends_far_fewer_rollouts_on_long_solutions():
    data = generate_dataset(100, seed=4, min_steps=6, max_steps=6)
    mc, mc_report = mc_label(data, sim(), rollouts=8)
    bs, bs_report = binary_label(data, sim(), rollouts=8)
    assert mc_report.rollouts >= 4 * bs_report.rollouts
    agree = sum(first_error(a.meta["hard_labels"]) == first_error(b.meta["hard_labels"]) for a, b in zip(mc, bs, strict=True))
    assert agree >= 0.95 * len(mc)


def test_binary_labels_are_first_error_labels():
    data = generate_dataset(40, seed=5, min_steps=2, max_steps=5)
    labelled, report = binary_label(data, sim(p_correct=1.0, p_wrong=0.0, p_unparseable=0.0), rollouts=4)
    assert report.solutions == len(data) and report.failed_solutions == 0
    for ex in labelled:
        k = ex.meta["first_error"]
        expected = [k < 0 or i < k for i in range(len(ex.steps))]
        assert ex.labels == ex.meta["hard_labels"] == expected
        assert ex.meta["label_method"] == "binary" and ex.meta["step_rollouts"][-1] == 0
    # the answer step alone needs no rollout
    lone = StepwiseExample("q", ["The answer is 3."], meta={"id": "x", "answer": "3"})
    labelled, report = binary_label([lone], sim(), rollouts=4)
    assert labelled[0].labels == [True] and report.rollouts == 0


def test_early_stopping_keeps_hard_labels_and_saves_rollouts():
    data = generate_dataset(40, seed=6, min_steps=2, max_steps=4)
    full, full_report = mc_label(data, sim(p_correct=0.7), rollouts=8)
    early, early_report = mc_label(data, sim(p_correct=0.7), rollouts=8, early_stop=True)
    assert [e.meta["hard_labels"] for e in early] == [f.meta["hard_labels"] for f in full]
    assert early_report.rollouts < 0.6 * full_report.rollouts
    for e in early:  # a prefix that stopped early did so at its first success
        for drawn, ok in zip(e.meta["step_rollouts"][:-1], e.meta["step_successes"][:-1], strict=True):
            assert drawn == 8 or ok >= 1


class FailingOn:
    """Simulated rollouts, except that every request for a prefix containing ``step`` fails for good."""

    def __init__(self, step: str):
        self.step, self.inner = step, sim()

    def complete(self, requests):
        return [None if self.step in r.steps else out for r, out in zip(requests, self.inner.complete(requests), strict=True)]


@pytest.mark.parametrize("label", [mc_label, binary_label], ids=["mc", "binary"])
def test_failed_requests_leave_their_examples_unlabelled(label):
    data = generate_dataset(10, seed=7, min_steps=3, max_steps=3)
    wrong = data[1]
    assert wrong.meta["id"] == "p00000-err"
    bad_step = wrong.steps[wrong.meta["first_error"]]  # its injected error: both methods must roll out after it
    labelled, report = label(data, FailingOn(bad_step), rollouts=4)
    failed = {ex.meta["id"] for ex in data if bad_step in ex.steps[:-1]}
    assert failed == {"p00000-err"}
    assert failed and {ex.meta["id"] for ex in labelled} == {ex.meta["id"] for ex in data} - failed
    assert report.failed_solutions == len(failed) and report.failed_requests >= 1


def test_simulated_rollouts_follow_the_data_and_their_seeds():
    meta = {"answer": "7", "first_error": 1}
    before = RolloutRequest("p", tuple(range(200)), "q", ("s0",), meta)
    after = RolloutRequest("p", tuple(range(200)), "q", ("s0", "s1"), meta)
    completer = sim(p_correct=0.9, p_wrong=0.1, p_unparseable=0.0)
    right_before, right_after = ([t == "The answer is 7." for t in texts] for texts in completer.complete([before, after]))
    assert 160 < sum(right_before) and sum(right_after) < 40
    alone = completer.complete([RolloutRequest("p", (5, 6), "q", ("s0",), meta)])
    assert alone[0] == completer.complete([after, before])[1][5:7]  # a rollout depends on its seed only
    assert SimulatedConfig(p_wrong=2).problems() == ["--sim-p-wrong must be at most 1, got 2"]


def test_a_solution_with_the_right_answer_needs_no_rollout():
    """Its own steps reach the gold answer from each prefix: all right, and its shared prefixes are too."""
    gold = [ex for ex in generate_dataset(20, seed=8, min_steps=4, max_steps=4) if ex.meta["first_error"] < 0]
    labelled, report = binary_label(gold, sim(p_correct=0.0, p_wrong=0.0), rollouts=4)  # no rollout could succeed
    assert report.rollouts == 0
    assert all(ex.labels == [True] * len(ex.steps) and sum(ex.meta["step_rollouts"]) == 0 for ex in labelled)
