"""Many searches in lockstep (one generator and one PRM call per round) and the completer-backed proposer."""

from __future__ import annotations

import pytest

from data_tools.completers.simulated import SimulatedCompleter, SimulatedConfig
from serving.search import run_search
from serving.search.completer import CompleterProposer, first_line
from serving.search.lockstep import Lockstep


class CountingCompleter:
    """Continuations that depend only on (prefix, seed): a right step, a wrong one, then the answer."""

    def __init__(self):
        self.calls, self.rows = 0, 0

    def complete(self, requests):
        self.calls += 1
        self.rows += sum(len(r.seeds) for r in requests)
        out = []
        for r in requests:
            texts = []
            for seed in r.seeds:
                if len(r.steps) >= 2:
                    texts.append(f"The answer is {8 + sum('bad' in s for s in r.steps)}.\n\nQuestion: next")
                else:
                    texts.append(f"{'bad' if seed % 3 == 0 else 'ok'} step {seed}\nmore text")
            out.append(texts)
        return out


def prm(items):
    return [[0.1 if "bad" in s else 0.9 for s in steps] for _, steps in items]


def test_first_line_is_one_step():
    assert first_line("\n  5 + 3 = 8\nThe answer is 8.") == "5 + 3 = 8" and first_line("\n\n") == ""


def test_the_proposer_is_seeded_counts_tokens_and_reuses_its_cache():
    completer = CountingCompleter()
    cache = {}
    a = CompleterProposer(completer, seed=1, count_tokens=lambda t: len(t.split()) + 1, cache=cache)
    first = a("Q", [], 3)
    assert len(first) == 3 and all(p.text.endswith(tuple("0123456789")) and "\n" not in p.text for p in first)
    assert [p.tokens for p in first] == [len(p.text.split()) + 1 for p in first]
    more = a("Q", [], 2)  # the same prefix asked again: new samples, not the same ones
    assert len({p.text for p in first + more}) == 5
    b = CompleterProposer(completer, seed=1, count_tokens=lambda t: len(t.split()) + 1, cache=cache)
    calls = completer.calls
    assert [p.text for p in b("Q", [], 5)] == [p.text for p in first + more] and completer.calls == calls  # cached
    assert a.generated_tokens == sum(p.tokens for p in first + more) and b.generated_tokens == 0
    a.reset()
    assert [p.text for p in a("Q", [], 3)] == [p.text for p in first]
    c = CompleterProposer(CountingCompleter(), seed=2)
    assert [p.text for p in c("Q", [], 5)] != [p.text for p in first + more]  # another seed, other samples


def test_the_proposer_over_the_simulated_completer_reads_meta():
    prop = CompleterProposer(SimulatedCompleter(SimulatedConfig(p_correct=1.0, p_unparseable=0.0)),
                             meta={"answer": "8"})
    r = run_search("greedy", "Tom has 5 apples and buys 3.", prop, None, budget=1)
    assert r.answer == "8"


def test_lockstep_batches_rounds_and_matches_one_at_a_time():
    def searches(proposer_for, score):
        return [lambda i=i: run_search("particle_filter", f"Q{i}", proposer_for(i), score, budget=4, seed=i)
                for i in range(6)]

    alone = CountingCompleter()
    expected = [job() for job in searches(lambda i: CompleterProposer(alone, seed=i),
                                          lambda prompt, cands: prm([(prompt, c) for c in cands]))]
    together = CountingCompleter()
    lock = Lockstep()
    complete = lock.batched(together.complete, "generate")
    score_items = lock.batched(prm, "score")

    class Shared:
        def complete(self, requests):
            return complete(requests)

    got = lock.run(searches(lambda i: CompleterProposer(Shared(), seed=i),
                            lambda prompt, cands: score_items([(prompt, c) for c in cands])))
    assert [g.to_json() for g in got] == [e.to_json() for e in expected]
    assert together.calls < alone.calls / 4 and together.rows == alone.rows
    assert lock.calls["generate"] == together.calls and lock.calls["score"] <= 4


def test_lockstep_hands_errors_back_per_search():
    lock = Lockstep()

    def boom(items):
        raise RuntimeError("generator down")

    call = lock.batched(boom)
    ok = lock.batched(lambda items: [x * 2 for x in items])
    results = lock.run([lambda: call([1]), lambda: ok([2, 3]), lambda: 1 / 0])
    assert isinstance(results[0], RuntimeError) and results[1] == [4, 6] and isinstance(results[2], ZeroDivisionError)
    assert ok([5]) == [10]  # outside run(): called at once


def test_lockstep_refuses_a_wrong_length():
    lock = Lockstep()
    bad = lock.batched(lambda items: items[:1], "short")
    (err,) = lock.run([lambda: bad([1, 2])])
    with pytest.raises(ValueError, match="short returned 1 results for 2 items"):
        raise err
