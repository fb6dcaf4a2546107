"""prm proxy against real backends: prm generate-server over the tiny model and a real `bentoml serve` of the
tiny artifact, both started here. Every strategy answers a chat request; streaming, the model-name prefix,
the openai client; a generator or PRM service that is down, fails, stalls or talks nonsense gives an
OpenAI-style error body within the deadline."""

from __future__ import annotations

import contextlib
import json
import threading
import time

import httpx
import pytest
from asgi_thread import free_port, running
from openai_server import Behaviour, serving

from serving.proxy import ProxyConfig
from serving.proxy.app import make_app
from serving.proxy.protocol import ProxyError, parse_model
from serving.search import PRM_GUIDED, STRATEGIES

PROMPT = "Tom has 5 apples. Tom buys 3 more apples. How many apples does Tom have now?"


@pytest.fixture(scope="module")
def prm_url(tiny_artifact):
    from serving.launch import served

    with served(tiny_artifact) as client:
        yield client.base_url


@pytest.fixture(scope="module")
def completer(tiny_backbone):
    from prm.generation import load_completer

    return load_completer(str(tiny_backbone), bf16=False)  # its own: the generator server sets its sampling


@pytest.fixture(scope="module")
def generator_url(completer):
    from serving.generate_server import GenerateServerConfig
    from serving.generate_server import make_app as generator_app

    with running(generator_app(completer, GenerateServerConfig(max_tokens=16), "tiny")) as url:
        yield url + "/v1"


@contextlib.contextmanager
def proxy(generator: str, prm: str, **settings):
    config = ProxyConfig(generator_url=generator, prm_url=prm, max_step_tokens=6, max_steps=3,
                         **{"timeout_s": 60.0, "retries": 1, **settings})
    with running(make_app(config)) as url, httpx.Client(base_url=url, timeout=120) as http:
        yield http


@pytest.fixture(scope="module")
def http(generator_url, prm_url):
    with proxy(generator_url, prm_url) as client:
        yield client


def ask(http, **fields):
    body = {"model": "tiny", "messages": [{"role": "user", "content": PROMPT}], "budget": 2, "seed": 1, **fields}
    return http.post("/v1/chat/completions", json=body)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_strategy_answers_a_chat_request(http, strategy):
    resp = ask(http, strategy=strategy, return_trace=True)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["object"] == "chat.completion" and body["model"] == "tiny"
    message = body["choices"][0]["message"]
    assert message["role"] == "assistant" and body["choices"][0]["finish_reason"] == "stop"
    assert body["search"]["strategy"] == strategy and body["search"]["budget"] == 2
    assert len(message["content"].split("\n")) == body["search"]["steps"] >= 1
    usage, trace = body["usage"], body["search_trace"]
    proposed = [e for e in trace if e["event"] == "propose"]
    assert proposed and usage["prompt_tokens"] > 0
    assert usage["completion_tokens"] == sum(sum(e["tokens"]) for e in proposed) > 0  # every generator token
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    if strategy in PRM_GUIDED:
        assert usage["prm_calls"] > 0 and usage["prm_steps_scored"] > 0 and body["search"]["score"] is not None
        assert usage["prm_tokens"] > usage["prm_steps_scored"]  # the prompt and every step scored, as the PRM read them
    else:
        assert usage["prm_calls"] == 0 and usage["prm_tokens"] == 0


def test_a_seeded_request_is_reproducible_and_the_trace_only_comes_when_asked(http):
    first, second = ask(http, strategy="beam").json(), ask(http, strategy="beam").json()
    assert first["choices"][0]["message"]["content"] == second["choices"][0]["message"]["content"]
    assert first["usage"] == second["usage"] and "search_trace" not in first


def test_streaming_gives_the_same_answer_as_chunks_ending_with_done(http):
    plain = ask(http, strategy="best_of_n").json()
    with http.stream("POST", "/v1/chat/completions", json={
            "model": "tiny", "messages": [{"role": "user", "content": PROMPT}], "budget": 2, "seed": 1,
            "strategy": "best_of_n", "stream": True, "stream_options": {"include_usage": True}}) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in resp.iter_lines() if line]
    assert lines[-1] == "data: [DONE]" and all(line.startswith("data: ") for line in lines)
    events = [json.loads(line[6:]) for line in lines[:-1]]
    assert {e["object"] for e in events} == {"chat.completion.chunk"}
    text = "".join(c["delta"].get("content", "") for e in events for c in e["choices"])
    assert text == plain["choices"][0]["message"]["content"]
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert [e for e in events if e["choices"] and e["choices"][0]["finish_reason"] == "stop"]
    assert events[-1]["choices"] == [] and events[-1]["usage"] == plain["usage"]


def test_the_model_name_prefix_names_strategy_and_budget(http):
    body = {"model": "mcts-3-tiny", "messages": [{"role": "user", "content": PROMPT}], "seed": 1}
    answer = http.post("/v1/chat/completions", json=body).json()
    assert answer["search"]["strategy"] == "mcts" and answer["search"]["budget"] == 3 and answer["model"] == "tiny"
    answer = http.post("/v1/chat/completions", json={**body, "model": "beam-tiny"}).json()
    assert (answer["search"]["strategy"], answer["search"]["budget"]) == ("beam", 4)  # --budget's default
    names = [m["id"] for m in http.get("/v1/models").json()["data"]]
    assert "tiny" in names and "beam-tiny" in names


def test_chat_generators_and_an_assistant_prefix_to_continue(generator_url, prm_url):
    with proxy(generator_url, prm_url, generator_api="chat") as http:
        answer = ask(http, strategy="beam", return_trace=True).json()
        assert answer["choices"][0]["message"]["content"] and answer["usage"]["completion_tokens"] > 0
    given = ["Tom buys 3 more apples: 5 + 3 = 8"]
    messages = [{"role": "user", "content": PROMPT}, {"role": "assistant", "content": given[0]}]
    with proxy(generator_url, prm_url) as http:
        answer = http.post("/v1/chat/completions", json={"model": "tiny", "messages": messages, "budget": 2,
                                                         "strategy": "best_of_n", "return_trace": True}).json()
    proposed = [e for e in answer["search_trace"] if e["event"] == "propose"]
    assert proposed and proposed[0]["depth"] == 0  # the search continues after the given step
    assert answer["search"]["steps"] == len(answer["choices"][0]["message"]["content"].split("\n"))


def test_the_openai_client_works_unchanged(http):
    from openai import OpenAI

    client = OpenAI(base_url=str(http.base_url) + "/v1", api_key="unused", max_retries=0)
    answer = client.chat.completions.create(model="weighted_vote-2-tiny", seed=1,
                                            messages=[{"role": "user", "content": PROMPT}])
    assert answer.choices[0].message.content and answer.usage.completion_tokens > 0
    answer = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": PROMPT}],
                                            extra_body={"strategy": "beam", "budget": 2, "return_trace": True})
    assert answer.model_extra["search"]["strategy"] == "beam" and answer.model_extra["search_trace"]
    stream = client.chat.completions.create(model="greedy-tiny", messages=[{"role": "user", "content": PROMPT}],
                                            stream=True)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)


@pytest.mark.parametrize("fields,param", [
    ({"strategy": "simulated_annealing"}, "strategy"), ({"budget": 0}, "budget"), ({"budget": 1000}, "budget"),
    ({"model": "beam&mcts-tiny"}, "model"), ({"options": {"no_such_option": 1}}, "options"), ({"n": 2}, "n"),
    ({"messages": []}, "messages"),
])
def test_a_bad_request_gets_a_400_naming_the_field(http, fields, param):
    resp = ask(http, **{"strategy": "beam", **fields})
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and error["message"]


def test_a_body_that_is_not_json_gets_a_400(http):
    resp = http.post("/v1/chat/completions", content=b"\x00not json", headers={"content-type": "application/json"})
    assert resp.status_code == 400 and resp.json()["error"]["type"] == "invalid_request_error"


def test_parse_model_follows_optillm():
    assert parse_model("beam-8-SmolLM2-135M", STRATEGIES) == ("beam", 8, "SmolLM2-135M")
    assert parse_model("mcts-gpt-4o-mini", STRATEGIES) == ("mcts", None, "gpt-4o-mini")
    assert parse_model("best_of_n-16", STRATEGIES) == ("best_of_n", 16, "")
    assert parse_model("Qwen2.5-7B", STRATEGIES) == (None, None, "Qwen2.5-7B")
    for combined in ("beam&mcts-x", "beam|greedy-x", "beam-mcts-x"):
        with pytest.raises(ProxyError):
            parse_model(combined, STRATEGIES)


# --- failing backends: an OpenAI-style error within the deadline, never a hang ------------------------------

def error_of(resp: httpx.Response, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["code"] == code and error["message"] and error["type"], error
    return error


def test_a_generator_that_is_down_fails_or_talks_nonsense_gets_a_502(prm_url, completer):
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    with proxy(f"http://127.0.0.1:{free_port()}/v1", prm_url) as http:
        error_of(ask(http, strategy="beam"), 502, "generator_unavailable")
    with serving(completer, Behaviour(status_every=1, status=500)) as (url, log), proxy(url, prm_url) as http:
        error_of(ask(http, strategy="beam"), 502, "generator_error")
        assert log.count("status 500") == 2  # the first try and its one retry
    with serving(completer, Behaviour(status_every=1, status=404)) as (url, _), proxy(url, prm_url) as http:
        error_of(ask(http, strategy="greedy"), 404, "model_not_found")

    async def nonsense(request):
        return PlainTextResponse("<html>upstream hiccup</html>")

    app = Starlette(routes=[Route("/v1/completions", nonsense, methods=["POST"])])
    with running(app) as url, proxy(url + "/v1", prm_url) as http:
        error_of(ask(http, strategy="greedy"), 502, "generator_bad_response")


def stalling(path: str, seconds: float = 30):
    """A server whose ``path`` answers nothing for ``seconds``."""
    import asyncio

    from starlette.applications import Starlette
    from starlette.routing import Route

    async def stall(request):
        await asyncio.sleep(seconds)

    return running(Starlette(routes=[Route(path, stall, methods=["POST"])]))


def test_a_stalled_generator_gets_a_504_within_the_deadline_and_a_busy_proxy_a_429(prm_url):
    with stalling("/v1/completions") as url, proxy(url + "/v1", prm_url, timeout_s=2.0, max_concurrency=1) as http:
        answers = {}
        first = threading.Thread(target=lambda: answers.update(first=ask(http, strategy="beam")))
        start = time.monotonic()
        first.start()
        time.sleep(0.5)
        error_of(ask(http, strategy="beam"), 429, "proxy_busy")
        first.join()
        assert time.monotonic() - start < 5
        error_of(answers["first"], 504, "deadline_exceeded")
    with stalling("/v1/completions") as url, proxy(url + "/v1", prm_url, timeout_s=30.0, backend_timeout_s=1.0,
                                                   retries=0) as http:
        start = time.monotonic()
        error_of(ask(http, strategy="greedy"), 504, "generator_timeout")
        assert time.monotonic() - start < 5


def test_a_dead_or_stalled_prm_service_gets_an_error_and_searches_without_it_still_work(generator_url):
    with proxy(generator_url, f"http://127.0.0.1:{free_port()}") as http:
        error_of(ask(http, strategy="beam"), 502, "prm_unavailable")
        assert ask(http, strategy="majority_vote").status_code == 200  # needs no PRM

    with stalling("/score") as url, proxy(generator_url, url, timeout_s=2.0) as http:
        start = time.monotonic()
        error_of(ask(http, strategy="best_of_n"), 504, "deadline_exceeded")
        assert time.monotonic() - start < 5


def test_the_proxy_token_is_required_when_set(generator_url, prm_url, monkeypatch):
    monkeypatch.setenv("PROXY_API_TOKEN", "s3cret")
    with proxy(generator_url, prm_url) as http:
        error_of(ask(http, strategy="greedy"), 401, "invalid_api_key")
        resp = http.post("/v1/chat/completions", headers={"Authorization": "Bearer s3cret"},
                         json={"model": "greedy-tiny", "messages": [{"role": "user", "content": PROMPT}]})
        assert resp.status_code == 200


def test_the_generator_server_speaks_openai(generator_url):
    with httpx.Client(base_url=generator_url, timeout=60) as gen:
        body = {"model": "tiny", "prompt": "Question: Tom has 5 apples.\nAnswer:\n", "n": 3, "seed": 7,
                "max_tokens": 5, "stop": ["\n"]}
        first, again = gen.post("/completions", json=body).json(), gen.post("/completions", json=body).json()
        texts = [c["text"] for c in first["choices"]]
        assert len(texts) == 3 and texts == [c["text"] for c in again["choices"]] and not any("\n" in t for t in texts)
        one = gen.post("/completions", json={**body, "n": 1, "seed": 8}).json()
        assert one["choices"][0]["text"] == texts[1]  # sample j is seeded seed + j, as vLLM does
        assert first["usage"]["prompt_tokens"] > 0 and 3 <= first["usage"]["completion_tokens"] <= 15
        chat = gen.post("/chat/completions", json={"model": "tiny", "seed": 7, "max_tokens": 5, "messages": [
            {"role": "user", "content": "Tom has 5 apples."}]}).json()
        assert chat["choices"][0]["message"]["role"] == "assistant" and chat["object"] == "chat.completion"
        bad = gen.post("/completions", json={**body, "max_tokens": 10**6})
        assert bad.status_code == 400 and "max_tokens" in bad.json()["error"]["message"]
        assert gen.get("/models").json()["data"][0]["id"] == "tiny"


def test_prm_proxy_and_generate_server_refuse_bad_settings_in_one_line(capsys):
    from serving.cli import main

    assert main(["proxy", "--budget", "100", "--prm-url", "localhost:3000"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--budget 100 is above --max-budget 64" in err and "--prm-url" in err
    assert main(["generate-server", "--max-tokens", "0"]) == 2  # before loading any model
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--max-tokens must be at least 1" in err


# --- the README's section, run as written (the generator's model renamed to the tiny one's) ----------------

def readme_blocks() -> list[tuple[str, str]]:
    import re
    from pathlib import Path

    text = (Path(__file__).parent.parent / "README.md").read_text()
    section = text[text.index("### Reasoning at inference time: `prm proxy`"):]
    section = section[:section.index("\n## ")]
    return re.findall(r"```(\w+)\n(.*?)```", section, re.S)


def test_the_readme_commands_and_examples_run(http, prm_url, capsys):
    import subprocess

    from serving.cli import build_parser

    blocks = readme_blocks()
    commands = [line.split("#")[0].strip().rstrip("&").strip() for kind, code in blocks if kind == "bash"
                for line in code.splitlines() if line.startswith("prm ")]
    assert [c.split()[1] for c in commands] == ["serve", "generate-server", "proxy"]
    for command in commands:
        build_parser().parse_args(command.split()[1:])  # every flag exists and parses
    proxy_url = str(http.base_url).rstrip("/")
    curl = next(code for kind, code in blocks if kind == "bash" and code.startswith("curl"))
    curl = curl.replace("http://127.0.0.1:8080", proxy_url).replace("smollm2-135m", "tiny")
    answer = json.loads(subprocess.run(["bash", "-c", curl], capture_output=True, text=True, check=True,
                                       timeout=300).stdout)
    assert answer["choices"][0]["message"]["content"] and answer["search"]["strategy"] == "beam"
    assert answer["search_trace"] and answer["usage"]["prm_steps_scored"] > 0
    python = [code for kind, code in blocks if kind == "python"]
    assert len(python) == 2
    exec(python[0].replace("http://127.0.0.1:8080", proxy_url).replace("smollm2-135m", "tiny"), {})
    out = capsys.readouterr().out
    assert "'strategy': 'mcts'" in out
    exec(python[1].replace("http://127.0.0.1:3000", prm_url), {})  # builds its_hub's BeamSearch on our PRM
