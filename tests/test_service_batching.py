"""Adaptive batching under a real `bentoml serve`: concurrent requests share model calls and score as in-process."""

import asyncio
import re

import httpx
import pytest


def batch_histogram(metrics: str) -> tuple[float, float, float]:
    """(observations, observations of size 1, sum) of the inference API's adaptive batch size."""
    def value(kind: str, extra: str = "") -> float:
        pattern = rf'^bentoml_service_adaptive_batch_size_{kind}\{{{extra}[^}}]*method_name="score_steps"[^}}]*\}} (\S+)$'
        return sum(float(m.group(1)) for m in re.finditer(pattern, metrics, re.M))

    return value("count"), value("bucket", 'le="1.0",'), value("sum")


@pytest.mark.slow
def test_concurrent_requests_are_batched_and_score_as_in_process(tiny_artifact):
    from data_tools.problems import generate_dataset
    from prm.scoring import Scorer
    from serving.launch import served

    items = [(e.prompt, e.steps) for e in generate_dataset(40, seed=3, min_steps=2, max_steps=6)][:64]
    expected = Scorer(tiny_artifact, backend="onnx").score(items)

    async def fire(url: str) -> list[list[list[float]]]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            rounds = []
            for _ in range(3):  # the batcher fits its latency model on its first calls, then merges
                resps = await asyncio.gather(*(http.post("/score", json={"items": [{"prompt": p, "steps": s}]})
                                               for p, s in items))
                assert [r.status_code for r in resps] == [200] * len(items), [r.text[:200] for r in resps]
                rounds.append([r.json()["results"][0]["step_scores"] for r in resps])
            return rounds

    with served(tiny_artifact) as prm:
        rounds = asyncio.run(fire(prm.base_url))
        metrics = httpx.get(prm.base_url + "/metrics").text
    for got in rounds:
        for g, e in zip(got, expected, strict=True):
            assert g == pytest.approx(e, abs=1e-5)
    count, singles, total = batch_histogram(metrics)
    assert total == 3 * len(items)  # every request went through the batcher
    assert count - singles > 0, "no model call merged two requests"
    assert total / count > 1.5
