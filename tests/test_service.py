"""The scoring service: the class called directly, the ASGI app, and the /score contract."""

import pytest
from starlette.testclient import TestClient


@pytest.fixture(scope="module")
def artifact(tiny_artifact):
    return tiny_artifact


@pytest.fixture(scope="module")
def client(artifact):
    import os

    os.environ["PRM_MODEL_DIR"] = str(artifact)
    from serving.service import PRMService

    with TestClient(PRMService.to_asgi()) as c:
        yield c


def test_score_contract(client):
    body = {"items": [{"prompt": "Tom has 5 apples.", "steps": ["5 + 3 = 8", "The answer is 8."]},
                      {"prompt": "Q", "steps": ["only step"]}], "aggregate": "min"}
    resp = client.post("/score", json=body)
    assert resp.status_code == 200, resp.text
    results = resp.json()["results"]
    assert [len(r["step_scores"]) for r in results] == [2, 1]
    for r in results:
        assert all(0.0 <= s <= 1.0 for s in r["step_scores"])
        assert r["score"] == pytest.approx(min(r["step_scores"]))


def test_each_result_counts_the_tokens_the_model_read(client, artifact):
    from prm.scoring import Scorer

    items = [("Tom has 5 apples.", ["5 + 3 = 8", "The answer is 8."]), ("Q", ["only step"])]
    resp = client.post("/score", json={"items": [{"prompt": p, "steps": s} for p, s in items]})
    scorer = Scorer(artifact, backend="onnx")
    assert [r["tokens"] for r in resp.json()["results"]] == [len(scorer.encode(p, s).input_ids) for p, s in items]


@pytest.mark.parametrize("body", [
    {"items": [{"prompt": "x", "steps": []}]},  # empty steps
    {"items": [{"prompt": "x"}]},  # missing steps
    {"items": [{"prompt": 3, "steps": ["a"]}]},  # wrong type
    {"items": [{"prompt": "x", "steps": ["a"]}], "aggregate": "median"},  # unknown aggregation
])
def test_malformed_requests_get_400(client, body):
    assert client.post("/score", json=body).status_code == 400


def test_readiness_and_liveness(client):
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_monotone_scoring_is_the_running_minimum(artifact):
    import numpy as np

    from prm.scoring import Scorer

    items = [("Tom has 5 apples.", ["a: 5 + 3 = 8", "b: 8 - 2 = 6", "The answer is 6."]), ("Q", ["x", "y"])]
    scorer = Scorer(artifact, backend="onnx", calibrated=False)
    raw = scorer.step_logits(items)
    scorer.cfg.monotone = True
    mono = scorer.step_logits(items)
    for r, m in zip(raw, mono, strict=True):
        np.testing.assert_allclose(m, np.minimum.accumulate(r))
        assert all(np.diff(m) <= 0)


def test_rank_orders_candidates_by_solution_score(client):
    candidates = [["5 + 3 = 8", "The answer is 8."], ["5 + 3 = 9", "The answer is 9."], ["5 - 3 = 2"]]
    resp = client.post("/rank", json={"prompt": "Tom has 5 apples.", "candidates": candidates, "aggregate": "last"})
    assert resp.status_code == 200, resp.text
    ranked = resp.json()
    scored = client.post("/score", json={"items": [{"prompt": "Tom has 5 apples.", "steps": c} for c in candidates],
                                         "aggregate": "last"}).json()["results"]
    assert ranked["scores"] == pytest.approx([r["score"] for r in scored])
    assert ranked["order"] == sorted(range(3), key=lambda i: -ranked["scores"][i])
    assert ranked["best"] == ranked["order"][0]
    assert client.post("/rank", json={"prompt": "x", "candidates": [["a"], []]}).status_code == 400


def test_openrlhf_contract(client):
    prompts = ["Tom has 5 apples.\n", "Q\n", "Z\n"]
    query = [prompts[0] + "5 + 3 = 8\nThe answer is 8.", prompts[1] + "only step", prompts[2] + "  \n"]
    resp = client.post("/openrlhf", json={"query": query, "prompts": prompts, "labels": ["8", "1", "0"]})
    assert resp.status_code == 200, resp.text
    out = resp.json()
    expected = client.post("/score", json={"items": [{"prompt": prompts[0], "steps": ["5 + 3 = 8", "The answer is 8."]},
                                                     {"prompt": prompts[1], "steps": ["only step"]}]}).json()["results"]
    assert out["rewards"][:2] == pytest.approx([r["score"] for r in expected])
    assert out["rewards"][2] == 0.0 and out["extra_logs"]["prm_steps"] == [2.0, 1.0, 0.0]
    assert out["scores"] == out["rewards"]
    assert client.post("/openrlhf", json={"query": ["a"], "prompts": ["a", "b"]}).status_code == 400


def test_trl_and_verl_adapters_score_through_the_service(client):
    from serving.adapters import trl_reward_function, verl_compute_score
    from serving.client import PRMClient

    prm = PRMClient(http=client)
    reward = trl_reward_function(prm, name="prm_min")
    assert reward.__name__ == "prm_min"
    prompts = ["Tom has 5 apples.", [{"role": "user", "content": "Tom has 5 apples."}]]
    completions = ["5 + 3 = 8\nThe answer is 8.", [{"role": "assistant", "content": "5 + 3 = 8\nThe answer is 8."}]]
    got = reward(prompts=prompts + ["Q"], completions=completions + [""], completion_ids=None, answer=["8", "8", "1"])
    direct = prm.score([{"prompt": "Tom has 5 apples.", "steps": ["5 + 3 = 8", "The answer is 8."]}])[0]["score"]
    assert got == pytest.approx([direct, direct, 0.0])  # text and chat forms agree; an empty completion is 0
    assert reward.rewarder.stats["empty_completions"] == 1
    compute_score = verl_compute_score(prm)
    assert compute_score("demo", "5 + 3 = 8\nThe answer is 8.", "8",
                         extra_info={"question": "Tom has 5 apples."}) == pytest.approx(direct)
    with pytest.raises(ValueError, match="2 prompts but 1 completions"):
        reward(prompts=["a", "b"], completions=["x"])
    assert prm.rank("Tom has 5 apples.", [["5 + 3 = 8"], ["5 + 3 = 9"]])["best"] in (0, 1)


def test_beam_search_and_best_of_n_through_the_service(client):
    from serving.client import PRMClient
    from serving.search import beam_search, best_of_n

    prm = PRMClient(http=client)
    calls = []

    def propose(prompt, steps, n):  # a scripted generator: two next steps per depth, then an answer
        calls.append((prompt, tuple(steps)))
        if len(steps) == 2:
            return [f"The answer is {len(steps) + k}." for k in range(n)]
        return [f"{len(steps)} + {k} = {len(steps) + k}" for k in range(2)] + [""]  # an empty proposal is dropped

    beams = beam_search(prm, "Tom has 5 apples.", propose, beam_width=2, expand=3, max_steps=5)
    assert beams and all(b.final and len(b.steps) == 3 for b in beams)
    assert [b.score for b in beams] == sorted((b.score for b in beams), reverse=True)
    best = beams[0]
    rescored = prm.score([{"prompt": "Tom has 5 apples.", "steps": best.steps}])[0]
    assert best.score == pytest.approx(rescored["score"]) and best.step_scores == pytest.approx(rescored["step_scores"])
    assert calls[0] == ("Tom has 5 apples.", ())
    assert sum(1 for _, s in calls if len(s) == 1) <= 2  # only beam_width beams are expanded at depth 1
    index, scores = best_of_n(prm, "Tom has 5 apples.", [b.steps for b in beams])
    assert scores[index] == max(scores)


def test_a_solution_too_long_gets_a_413_naming_the_limit_and_the_flag(client, artifact):
    from prm.scoring import Scorer
    from prm.tokenization import TooLongError

    scorer = Scorer(artifact, backend="onnx")
    long = {"prompt": "Q", "steps": ["word " * 300]}
    with pytest.raises(TooLongError):
        scorer.encode(long["prompt"], long["steps"])
    body = {"items": [{"prompt": "Q", "steps": ["x"]}, long]}
    resp = client.post("/score", json=body)
    assert resp.status_code == 413
    for needle in ("solution 1 is too long", f"limit is {scorer.max_length}", f"up to {scorer.max_length} tokens",
                   "prm serve --max-length"):
        assert needle in resp.text, (needle, resp.text)
