"""serving.search's strategies on a scripted generator and a scripted PRM: what each picks, determinism under a
seed, budget accounting, the trace, and client_scorer against the service's ASGI app."""

from __future__ import annotations

import json
import random

import pytest

from serving.search import PRM_GUIDED, STRATEGIES, Proposal, answer_key, beam_shape, client_scorer, run_search

PROMPT = "Tom has 5 apples. Tom buys 3 more apples. How many apples does Tom have now?"


class Scripted:
    """A seeded stand-in for a model: at each depth it samples a right step ("ok") or a wrong one ("bad"); the
    third step states the answer: 8 after right steps only, else a wrong number. Each step costs 3 tokens."""

    def __init__(self, p_bad: float = 0.5, depth: int = 2, seed: int = 0):
        self.p_bad, self.depth, self.seed, self.calls = p_bad, depth, seed, 0

    def __call__(self, prompt, steps, n):
        self.calls += 1
        out = []
        for k in range(n):
            rng = random.Random(f"{self.seed}|{'/'.join(steps)}|{self.calls}|{k}")
            if len(steps) >= self.depth:
                wrong = sum("bad" in s for s in steps)
                out.append(Proposal(f"The answer is {8 + wrong * rng.choice((1, 2))}.", 3))
            else:
                out.append(Proposal(f"{'bad' if rng.random() < self.p_bad else 'ok'} {len(steps)}.{rng.randrange(9)}", 3))
        return out


def prm_likes_ok(prompt, candidates):
    """A PRM that sees every wrong step: 0.9 for right steps and right answers, 0.1 after anything wrong."""
    out = []
    for steps in candidates:
        scores, wrong = [], False
        for s in steps:
            wrong = wrong or "bad" in s or ("answer" in s and "is 8." not in s)
            scores.append(0.1 if wrong else 0.9)
        out.append(scores)
    return out


def fixed_rollouts(paths):
    """A generator that replays whole solutions: the i-th first step asked for starts paths[i]."""
    drawn = {"first": 0}

    def propose(prompt, steps, n):
        if not steps:
            out = [Proposal(paths[drawn["first"] + k][0], 1) for k in range(n)]
            drawn["first"] += n
            return out
        return next(([Proposal(p[len(steps)], 1)] * n for p in paths if p[:len(steps)] == steps and len(p) > len(steps)),
                    [])
    return propose


def scores_by_answer(table):
    return lambda prompt, cands: [[table[c[-1]]] * len(c) for c in cands]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_returns_a_finished_solution_with_its_accounting(strategy):
    gen = Scripted(p_bad=0.3)
    calls = []

    def score(prompt, cands):
        calls.append(cands)
        return prm_likes_ok(prompt, cands)

    r = run_search(strategy, PROMPT, gen, score, budget=4, seed=3)
    assert r.finished and r.answer is not None and r.steps[-1].startswith("The answer is")
    proposed = sum(len(e["proposals"]) for e in r.trace if e["event"] == "propose")
    assert r.generator_tokens == 3 * proposed
    assert r.prm_calls == len(calls) == (0 if strategy not in PRM_GUIDED else r.prm_calls)
    assert r.prm_steps_scored == sum(len(c) for cands in calls for c in cands)
    assert (r.score is None) == (strategy not in PRM_GUIDED)
    json.dumps(r.to_json())  # the trace is JSON-able
    assert r.trace[-1]["event"] == "finish"


def test_greedy_draws_one_step_at_a_time():
    r = run_search("greedy", PROMPT, Scripted(), None, budget=8)
    proposes = [e for e in r.trace if e["event"] == "propose"]
    assert [len(e["proposals"]) for e in proposes] == [1, 1, 1] and len(r.steps) == 3


def test_majority_vote_goes_with_the_crowd_and_best_of_n_with_the_prm():
    paths = [["a", "The answer is 5."], ["b", "The answer is 5."], ["c", "The answer is 8."], ["d", "The answer is 9."]]
    table = {"The answer is 5.": 0.4, "The answer is 8.": 0.7, "The answer is 9.": 0.1}
    mv = run_search("majority_vote", PROMPT, fixed_rollouts(paths), None, budget=4)
    bon = run_search("best_of_n", PROMPT, fixed_rollouts(paths), scores_by_answer(table), budget=4)
    wv = run_search("weighted_vote", PROMPT, fixed_rollouts(paths), scores_by_answer(table), budget=4)
    assert mv.answer == "5" and bon.answer == "8" and bon.steps == ["c", "The answer is 8."]
    assert bon.score == pytest.approx(0.7)
    # weighted vote sums each answer's scores: 5 has 0.4 + 0.4 = 0.8 > 0.7
    assert wv.answer == "5" and wv.score == pytest.approx(0.4)
    select = next(e for e in wv.trace if e["event"] == "select")
    assert select["weights"] == {"5": pytest.approx(0.8), "8": pytest.approx(0.7), "9": pytest.approx(0.1)}
    table["The answer is 8."] = 0.9  # now 0.9 > 0.8
    assert run_search("weighted_vote", PROMPT, fixed_rollouts(paths), scores_by_answer(table), budget=4).answer == "8"


def test_votes_pool_equal_numbers_written_differently():
    paths = [["The answer is 6."], ["The answer is 6.0."], ["The answer is $6$."], ["The answer is 7."]]
    r = run_search("majority_vote", PROMPT, fixed_rollouts(paths), None, budget=4)
    assert answer_key(r.answer) == "6"
    assert next(e for e in r.trace if e["event"] == "select")["votes"] == {"6": 3, "7": 1}


@pytest.mark.parametrize("strategy", ["beam", "particle_filter", "mcts"])
def test_step_level_strategies_follow_the_prm(strategy):
    """With mostly wrong proposals, guided search still finds the all-right path; majority vote does not."""
    results = [run_search(strategy, PROMPT, Scripted(p_bad=0.6, seed=s), prm_likes_ok, budget=8, seed=s)
               for s in range(10)]
    assert sum(r.answer == "8" for r in results) >= 7
    assert all(r.score == pytest.approx(0.9) for r in results if r.answer == "8")
    mv = [run_search("majority_vote", PROMPT, Scripted(p_bad=0.6, seed=s), None, budget=8, seed=s) for s in range(10)]
    assert sum(r.answer == "8" for r in mv) <= 3


def test_beam_shape_and_the_work_per_depth():
    assert [beam_shape(b) for b in (1, 2, 4, 8, 9, 16)] == [(1, 1), (1, 2), (2, 2), (2, 4), (3, 3), (4, 4)]
    assert beam_shape(8, beam_width=4) == (4, 2)
    r = run_search("beam", PROMPT, Scripted(), prm_likes_ok, budget=8)
    widths = [len(e["proposals"]) for e in r.trace if e["event"] == "propose"]
    assert widths[0] == 8 and all(w == 4 for w in widths[1:])
    assert r.prm_calls == 3  # one PRM call per depth


@pytest.mark.parametrize("strategy", ["particle_filter", "mcts", "beam", "best_of_n"])
def test_deterministic_under_a_seed(strategy):
    runs = [run_search(strategy, PROMPT, Scripted(p_bad=0.5), prm_likes_ok, budget=6, seed=11) for _ in range(2)]
    assert runs[0].to_json() == runs[1].to_json()


def test_particle_filter_resamples_in_proportion_to_the_latest_step_score():
    r = run_search("particle_filter", PROMPT, Scripted(p_bad=0.5), prm_likes_ok, budget=8, seed=0, temperature=1.0)
    first = next(e for e in r.trace if e["event"] == "resample")
    ok = [w for w, s in zip(first["weights"], first["steps"], strict=True) if "ok" in s[-1]]
    bad = [w for w, s in zip(first["weights"], first["steps"], strict=True) if "bad" in s[-1]]
    assert ok and bad and min(ok) / max(bad) == pytest.approx(81, rel=1e-3)  # exp(logit .9 - logit .1) = 81
    drawn_steps = {tuple(s) for s, i in zip(first["steps"], first["ids"], strict=True) if i in first["drawn"]}
    assert all("ok" in s[-1] for s in drawn_steps)  # with odds of 81:1 the seeded draw keeps right steps only
    other_seed = [run_search("particle_filter", PROMPT, Scripted(p_bad=0.5), prm_likes_ok, budget=8, seed=s).trace
                  for s in (1, 2)]
    assert r.trace != other_seed[0] or r.trace != other_seed[1]


def test_particle_filter_keeps_finished_particles():
    r = run_search("particle_filter", PROMPT, Scripted(p_bad=0.2, depth=1), prm_likes_ok, budget=4, seed=0)
    rounds = [e for e in r.trace if e["event"] == "resample"]
    assert len(rounds) == 2 and all(s[-1].startswith("The answer") for s in rounds[-1]["steps"])


def test_mcts_backtracks_backs_up_and_returns_the_best_finished_path():
    r = run_search("mcts", PROMPT, Scripted(p_bad=0.6, seed=4), prm_likes_ok, budget=10, seed=0, expand=2, c=1.0)
    kinds = [e["event"] for e in r.trace]
    assert kinds.count("expand") + kinds.count("revisit") <= 10 and "backtrack" in kinds
    values = [e["value"] for e in r.trace if e["event"] == "expand" and e["final"]]
    assert r.score == pytest.approx(max(values)) and r.finished
    assert r.generator_tokens <= 10 * 3 * 3  # at most one rollout (3 steps of 3 tokens) per simulation


def test_bad_requests_say_what_to_fix():
    with pytest.raises(ValueError, match="unknown search strategy 'dfs'"):
        run_search("dfs", PROMPT, Scripted(), prm_likes_ok, budget=2)
    with pytest.raises(ValueError, match="budget must be an integer"):
        run_search("beam", PROMPT, Scripted(), prm_likes_ok, budget=0)
    with pytest.raises(ValueError, match="needs a PRM"):
        run_search("beam", PROMPT, Scripted(), None, budget=2)
    with pytest.raises(ValueError, match=r"takes no option\(s\) \['temperature'\]"):
        run_search("beam", PROMPT, Scripted(), prm_likes_ok, budget=2, temperature=2.0)
    with pytest.raises(ValueError, match="one score per step"):
        run_search("best_of_n", PROMPT, Scripted(), lambda p, c: [[0.5]] * len(c), budget=2)


def test_a_generator_with_a_batch_method_gets_one_call_per_round():
    inner = Scripted()
    seen = []

    class Batched:
        def __call__(self, prompt, steps, n):
            raise AssertionError("strategies should use batch")

        def batch(self, prompt, requests):
            seen.append(len(requests))
            return [inner(prompt, steps, n) for steps, n in requests]

    r = run_search("particle_filter", PROMPT, Batched(), prm_likes_ok, budget=5)
    assert r.finished and seen[0] == 5  # every particle's first step in one call


def test_plain_strings_are_proposals_of_unknown_cost():
    r = run_search("greedy", PROMPT, lambda p, s, n: ["The answer is 8."], None, budget=1)
    assert r.answer == "8" and r.generator_tokens == 0


@pytest.fixture(scope="module")
def service(tiny_artifact):
    import os

    from starlette.testclient import TestClient

    os.environ["PRM_MODEL_DIR"] = str(tiny_artifact)
    from serving.service import PRMService

    with TestClient(PRMService.to_asgi()) as c:
        yield c


def test_client_scorer_over_the_service(service, tiny_artifact):
    from prm.scoring import Scorer
    from serving.client import PRMClient

    score = client_scorer(PRMClient(http=service))
    cands = [["5 + 3 = 8", "The answer is 8."], ["5 + 3 = 9"]]
    got = score(PROMPT, cands)
    direct = Scorer(tiny_artifact, backend="onnx").score([(PROMPT, c) for c in cands])
    assert [len(s) for s in got] == [2, 1]
    assert got[0] == pytest.approx(list(direct[0]), abs=1e-5) and got[1] == pytest.approx(list(direct[1]), abs=1e-5)
    r = run_search("beam", PROMPT, Scripted(), score, budget=4, seed=0)
    assert r.prm_calls >= 2 and r.finished
