"""The scoring service: the class called directly, the ASGI app, and the /score contract."""

import pytest
from starlette.testclient import TestClient


@pytest.fixture(scope="module")
def artifact(tiny_backbone, tmp_path_factory):
    from data_tools.problems import generate_dataset
    from prm.export import export_onnx
    from prm.train import TrainConfig, train

    data = generate_dataset(4, seed=0)
    for ex in data:
        ex.labels = [1.0] * len(ex.steps)
    out = tmp_path_factory.mktemp("svc") / "model"
    train(data, TrainConfig(backbone=str(tiny_backbone), output_dir=str(out), epochs=1, bf16=False))
    export_onnx(out)
    return out


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
