"""MC labelling with a scripted completer (exact counts) and rollout sampling with a real tiny model."""

import pytest

from data_tools.labelling import first_error, mc_label, render_prefix
from data_tools.problems import generate_dataset
from data_tools.rollouts import RolloutRequest, rollout_seed, truncate_at_stop
from data_tools.schema import DataError


class ScriptedCompleter:
    """Answers right from any prefix whose steps match the gold solution, wrong otherwise."""

    def __init__(self, gold_by_prompt, right_fraction=0.5):
        self.gold = gold_by_prompt
        self.right_fraction = right_fraction
        self.requests = []

    def complete(self, requests):
        self.requests.extend(requests)
        out = []
        for r in requests:
            prompt = r.prefix.rsplit("Question: ", 1)[1].split("\nAnswer:\n")[0]
            on_track = all(s in self.gold[prompt]["steps"] for s in r.prefix.split("\nAnswer:\n")[-1].splitlines()
                           if s and not s.startswith("The answer"))
            n_right = int(len(r.seeds) * self.right_fraction) if on_track else 0
            out.append([f"The answer is {self.gold[prompt]['answer']}."] * n_right
                       + ["The answer is -1."] * (len(r.seeds) - n_right - 1) + ["no idea"])
        return out


def test_mc_labels_soft_hard_and_shared_prefixes():
    data = generate_dataset(10, seed=1)
    gold = {ex.prompt: {"steps": "\n".join(ex.steps), "answer": ex.meta["answer"]}
            for ex in data if ex.meta["first_error"] < 0}
    completer = ScriptedCompleter(gold)
    labelled, report = mc_label(data, completer, rollouts=4)
    for ex in labelled:
        k = ex.meta["first_error"]
        expected = [0.5 if (k < 0 or i < k) else 0.0 for i in range(len(ex.steps) - 1)]
        assert ex.labels[:-1] == expected
        assert ex.labels[-1] == (1.0 if k < 0 else 0.0)  # last step: the solution's own answer
        assert ex.meta["hard_labels"] == [lab > 0 for lab in ex.labels]
        assert first_error(ex.meta["hard_labels"]) == k
    # a wrong solution shares the gold prefix before its error: that prefix is rolled out once
    prefixes = [r.prefix for r in completer.requests]
    assert len(prefixes) == len(set(prefixes))
    assert report.rollouts == 4 * len(prefixes)
    assert report.unparseable == len(prefixes)  # "no idea" is counted, not fatal


def test_missing_gold_answer_is_a_clear_error():
    data = generate_dataset(2, seed=1)
    del data[1].meta["answer"]
    with pytest.raises(DataError, match=r"example 1 has no meta\['answer'\]"):
        mc_label(data, ScriptedCompleter({}), rollouts=2)


def test_seeds_are_stable_and_distinct():
    assert rollout_seed("p1", 0, 3) == rollout_seed("p1", 0, 3)
    assert len({rollout_seed("p1", s, i) for s in range(3) for i in range(8)}) == 24


def test_truncate_at_stop():
    assert truncate_at_stop("1 + 2 = 3\n\nQuestion: x", ["\n\n", "Question:"]) == ("1 + 2 = 3", True)
    assert truncate_at_stop("abc", ["\n\n"]) == ("abc", False)


def test_hf_completer_rollouts_do_not_depend_on_batch_company(tiny_completer):
    """Per-row seeds: a rollout is the same alone or batched with other prefixes."""
    ex = generate_dataset(2, seed=0)
    a = RolloutRequest(render_prefix(ex[0].prompt, ex[0].steps[:1]), (11, 12, 13))
    b = RolloutRequest(render_prefix(ex[2].prompt, []), (21, 22))
    together = tiny_completer.complete([a, b])
    alone = tiny_completer.complete([a])
    assert together[0] == alone[0]
    assert [len(x) for x in together] == [3, 2]
    assert all("\n\n" not in t for group in together for t in group)


def test_truncate_after_a_finished_answer_line():
    assert truncate_at_stop("x: 5 + 3 = 8\nThe answer is 8.\nQ", ["\n\n"]) == ("x: 5 + 3 = 8\nThe answer is 8.", True)
    assert truncate_at_stop("The answer is 1", ["\n\n"]) == ("The answer is 1", False)  # may still grow to 10


def test_hf_batches_take_more_prefixes_when_they_have_few_samples():
    """16 prefixes a batch as before; early-stopping rounds (1-2 samples each) fill up to 128 rows instead."""
    from prm.generation import HFCompleter

    completer = HFCompleter(model=None, tokenizer=None)
    sizes = {k: [len(b) for b in completer._batches([RolloutRequest("p", tuple(range(k)))] * 40)] for k in (1, 4, 8, 16)}
    assert sizes == {1: [40], 4: [32, 8], 8: [16, 16, 8], 16: [16, 16, 8]}
