"""Limits and hostile input against a real `bentoml serve` on 127.0.0.1: 400/401/413, never a 5xx."""

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def server_log(tmp_path_factory):
    return tmp_path_factory.mktemp("guard") / "server.log"


@pytest.fixture(scope="module")
def guarded(tiny_artifact, server_log):
    """The service with small limits and a token, as its environment would configure it."""
    from serving.launch import served

    mp = pytest.MonkeyPatch()  # the server process inherits this environment
    for key, value in {"PRM_MAX_ITEMS": "4", "PRM_MAX_STEPS": "6", "PRM_MAX_BODY_BYTES": "20000",
                       "PRM_API_TOKEN": TOKEN}.items():
        mp.setenv(key, value)
    try:
        with served(tiny_artifact, log_path=server_log) as prm, httpx.Client(base_url=prm.base_url, timeout=60) as http:
            yield http
    finally:
        mp.undo()


def ok_body(n_items=1, n_steps=2):
    return {"items": [{"prompt": "Tom has 5 apples.", "steps": [f"{i} + 1 = {i + 1}" for i in range(n_steps)]}] * n_items}


def test_token_is_required_when_configured(guarded):
    assert guarded.post("/score", json=ok_body()).status_code == 401
    assert guarded.post("/score", json=ok_body(), headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert guarded.post("/score", json=ok_body(), headers=AUTH).status_code == 200
    assert guarded.get("/livez").status_code == 200  # health checks need no token


@pytest.mark.parametrize("body,status,says", [
    (ok_body(n_items=5), 413, "limit is 4"),
    (ok_body(n_steps=7), 413, "limit is 6"),
    (ok_body(n_steps=1) | {"items": [{"prompt": "p", "steps": ["word " * 900]}]}, 413, "too long"),
])
def test_oversize_gets_413_saying_what_to_change(guarded, body, status, says):
    resp = guarded.post("/score", json=body, headers=AUTH)
    assert resp.status_code == status, resp.text
    assert says in resp.text


def test_body_size_limit(guarded):
    big = json.dumps(ok_body() | {"padding": "x" * 30000})
    resp = guarded.post("/score", content=big, headers=AUTH | {"content-type": "application/json"})
    assert resp.status_code == 413 and "PRM_MAX_BODY_BYTES" in resp.text


@pytest.mark.parametrize("raw", [b"\x00\xff\xfe garbage", b"{\"items\": [", b"[1, 2, 3]", b"null", b"[" * 9000 + b"]" * 9000])
def test_malformed_json_gets_400(guarded, raw):
    resp = guarded.post("/score", content=raw, headers=AUTH | {"content-type": "application/json"})
    assert resp.status_code == 400, resp.text
    assert "JSON" in resp.json()["error"]


def test_request_content_never_reaches_the_log(guarded, server_log):
    marker = "Secret-Prompt-Text-7f3a"
    bodies = [
        {"items": [{"prompt": marker, "steps": [marker]}]},  # accepted
        {"items": [{"prompt": marker, "steps": marker}]},  # 400: pydantic would quote the string it refused
        {"items": [{"prompt": 3, "steps": [marker]}], "aggregate": marker},  # 400
        {"items": [{"prompt": marker, "steps": [marker + " word" * 900]}]},  # 413, too long for the model
        {"items": [{"prompt": marker, "steps": [marker]}] * 5},  # 413, too many items
    ]
    statuses = [guarded.post("/score", json=b, headers=AUTH).status_code for b in bodies]
    assert statuses == [200, 400, 400, 413, 413]
    assert guarded.post("/openrlhf", json={"query": [marker], "prompts": [marker, marker]}, headers=AUTH).status_code == 400
    log = server_log.read_text(errors="replace")
    assert "path=/score" in log and "refused: 400" in log  # the access log and the refusals are there
    assert marker not in log


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
                           lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
                           max_leaves=20)
item = st.fixed_dictionaries({"prompt": json_values | st.text(max_size=60),
                              "steps": st.lists(json_values | st.text(max_size=40), max_size=8) | json_values})
bodies = st.one_of(
    st.binary(max_size=300),  # raw bytes
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"items": st.lists(item, max_size=6) | json_values},
                          optional={"aggregate": st.sampled_from(["min", "last", "prod", "mean", "median", 3, None])}
                          ).map(lambda v: json.dumps(v).encode()),
)
endpoints = st.sampled_from(["/score", "/rank", "/openrlhf"])
SEEN: list[int] = []


@settings(max_examples=2100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(path=endpoints, body=bodies)
def test_fuzz_never_5xx(guarded, path, body):
    resp = guarded.post(path, content=body, headers=AUTH | {"content-type": "application/json"})
    SEEN.append(resp.status_code)
    assert resp.status_code < 500, (path, body[:200], resp.status_code, resp.text[:300])


def test_fuzz_ran_and_service_is_still_healthy(guarded):
    assert len(SEEN) >= 2000
    assert guarded.get("/readyz").status_code == 200
    resp = guarded.post("/score", json=ok_body(), headers=AUTH)
    assert resp.status_code == 200 and len(resp.json()["results"][0]["step_scores"]) == 2
