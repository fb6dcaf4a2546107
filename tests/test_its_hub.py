"""The PRM service as its_hub's process reward model (its-hub installed from PyPI): the interface its step-wise
algorithms call, checked against the service's own scores, and its BeamSearch and ParticleFiltering run end to
end over a scripted language model and a real service (the PRM service's ASGI app under uvicorn)."""

from __future__ import annotations

import asyncio
import os
import random

import its_hub  # a dev dependency (pyproject.toml): installed wherever the tests run
import pytest
from asgi_thread import running

from serving.adapters import ItsHubPRM, its_hub_prm
from serving.client import AsyncPRMClient, PRMClient

PROMPT = "Tom has 5 apples. Tom buys 3 more apples. Tom gives away 2 apples. How many apples does Tom have now?"
RIGHT = ["Tom buys 3 more apples: 5 + 3 = 8", "Tom gives away 2 apples: 8 - 2 = 6", "The answer is 6."]
WRONG = ["Tom buys 3 more apples: 5 + 3 = 9", "Tom gives away 2 apples: 9 - 2 = 4", "The answer is 4."]


@pytest.fixture(scope="module")
def url(tiny_artifact):
    before = os.environ.get("PRM_MODEL_DIR")
    os.environ["PRM_MODEL_DIR"] = str(tiny_artifact)
    from serving.service import PRMService

    try:
        with running(PRMService.to_asgi()) as base:
            yield base
    finally:
        if before is None:
            os.environ.pop("PRM_MODEL_DIR", None)
        else:
            os.environ["PRM_MODEL_DIR"] = before


@pytest.fixture(scope="module")
def client(url):
    with PRMClient(url) as c:
        yield c


def test_it_is_its_hubs_process_reward_model_and_scores_as_the_service_does(client):
    from its_hub import AbstractProcessRewardModel
    from its_hub.api.types import ChatMessage, ChatMessages

    prm = its_hub_prm(client, aggregate="min")
    assert isinstance(prm, AbstractProcessRewardModel) and isinstance(prm, ItsHubPRM)
    expected = [r["score"] for r in client.score([{"prompt": PROMPT, "steps": RIGHT}, {"prompt": PROMPT, "steps": WRONG}])]
    responses = ["\n".join(RIGHT), "\n\n".join(WRONG)]  # StepGeneration joins steps with its step_token
    assert prm.score(PROMPT, responses) == pytest.approx(expected, abs=1e-6)
    assert prm.score(PROMPT, responses[0]) == pytest.approx(expected[0], abs=1e-6)  # one response: one float
    messages = [ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content=PROMPT)]
    for prompt in (messages, ChatMessages(messages), [m.to_dict() for m in messages]):
        assert prm.score(prompt, responses) == pytest.approx(expected, abs=1e-6)
    assert prm.score(PROMPT, ["", responses[0]])[0] == 0.0 and prm.stats["empty_responses"] == 1
    assert asyncio.run(prm.ascore(PROMPT, responses)) == pytest.approx(expected, abs=1e-6)


def test_the_async_client_serves_score_and_ascore(client, url):
    expected = client.score([{"prompt": PROMPT, "steps": RIGHT}])[0]["score"]

    async def both():
        async with AsyncPRMClient(url) as aclient:
            return await its_hub_prm(aclient, aggregate="min").ascore(PROMPT, ["\n".join(RIGHT)])

    assert asyncio.run(both()) == pytest.approx([expected], abs=1e-6)
    sync_over_async = its_hub_prm(AsyncPRMClient(url), aggregate="min").score(PROMPT, "\n".join(RIGHT))
    assert sync_over_async == pytest.approx(expected, abs=1e-6)


class ScriptedLM(its_hub.AbstractLanguageModel):
    """Next step i of the right or the wrong solution, drawn at random (seeded)."""

    def __init__(self, seed: int = 0):
        self.rng, self.calls = random.Random(seed), 0

    async def agenerate(self, messages, stop=None, **kwargs):
        if messages and isinstance(messages[0], list):
            return [await self.agenerate(m, stop) for m in messages]
        self.calls += 1
        done = messages[-1].content.count("\n") + 1 if messages[-1].role == "assistant" else 0
        source = RIGHT if self.rng.random() < 0.5 else WRONG
        return {"role": "assistant", "content": source[min(done, len(source) - 1)]}


@pytest.mark.parametrize("algorithm", ["beam", "particles"])
def test_its_hubs_step_wise_algorithms_run_on_the_service(client, algorithm):
    from its_hub.core.algorithms.beam_search import BeamSearch
    from its_hub.core.algorithms.particle_gibbs import ParticleFiltering
    from its_hub.core.lms.step_generation import StepGeneration

    prm = its_hub_prm(client, aggregate="min")
    sg = StepGeneration(max_steps=3, step_token="\n", stop_token="answer is")
    search = BeamSearch(sg, prm, beam_width=2) if algorithm == "beam" else ParticleFiltering(sg, prm)
    lm = ScriptedLM()
    result = search.infer(lm, PROMPT, budget=4, return_response_only=False)
    chosen = result.the_one["content"]
    assert lm.calls > 0 and prm.stats["scored"] > 0 and chosen.endswith(("The answer is 6.", "The answer is 4."))
    if algorithm == "beam":  # its score is the service's score of the chosen steps
        steps = chosen.split("\n")
        assert max(result.scores) == pytest.approx(client.score([{"prompt": PROMPT, "steps": steps}])[0]["score"],
                                                   abs=1e-6)
