"""Limits and hostile input against a real `bentoml serve` on 127.0.0.1: 400/401/413/415, never a 5xx,
never a traceback in the server log."""

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


MULTIPART_OK = (b'--XyZ\r\nContent-Disposition: form-data; name="items"\r\n\r\n'
                + json.dumps(ok_body()["items"]).encode() + b"\r\n--XyZ--\r\n")  # BentoML 1.4.40 would score it
OK = json.dumps(ok_body()).encode()


def post(http, path, body, content_types):
    """POST with exactly these Content-Type headers (none, one, or several)."""
    return http.post(path, content=body, headers=[("authorization", AUTH["Authorization"])]
                     + [("content-type", ct) for ct in content_types])


def assert_one_line_error(resp):
    """A 4xx answer is one line of JSON carrying a one-line reason (BentoML's own 4xx from an exception
    comes as a one-element list, ``[{"error": ...}]``, in 1.4.40)."""
    assert "\n" not in resp.text.strip(), resp.text
    body = resp.json()
    error = (body[0] if isinstance(body, list) and len(body) == 1 else body)["error"]
    assert isinstance(error, str) and error and "\n" not in error, resp.text


# What BentoML 1.4.40 alone did with each (on /score, a valid JSON body unless said): 200 for a missing
# type, any application/json, text/plain, octet-stream, garbage and an empty type (all parsed as JSON);
# x-www-form-urlencoded and a multipart body without our fields: 200 scoring the schema's example (curl -d);
# a valid multipart form: 200; a JSON body sent as multipart (broken multipart): 500 and a traceback.
@pytest.mark.parametrize("content_types,body,status", [
    ([], OK, 200),  # clients that send raw bytes without the header: taken as JSON
    (["application/json"], OK, 200),
    (["application/json; charset=utf-8"], OK, 200),
    (["Application/JSON;charset=\"UTF-8\""], OK, 200),
    (["application/json; charset=latin-1"], OK, 415),
    (["text/plain"], OK, 415),
    (["application/x-www-form-urlencoded"], OK, 415),  # curl -d
    (["application/x-www-form-urlencoded"], b"items=%5B%5D", 415),
    (["multipart/form-data; boundary=XyZ"], MULTIPART_OK, 415),
    (["multipart/form-data; boundary=XyZ"], OK, 415),  # the broken multipart that got a 500
    (["multipart/form-data"], OK, 415),
    (["multipart/form-data; boundary=XyZ"], b"--XyZ\r\ngarbage", 415),
    (["application/octet-stream"], OK, 415),
    (["application/vnd.bentoml+pickle"], OK, 415),
    (["application/vnd.api+json"], OK, 415),
    (["garbage"], OK, 415),
    (["%;;=;"], OK, 415),
    ([""], OK, 415),
    (["application/json", "multipart/form-data; boundary=XyZ"], OK, 400),
    (["multipart/form-data; boundary=XyZ", "application/json"], OK, 400),
    (["application/json"], b"items=%5B%5D", 400),
])
@pytest.mark.parametrize("path", ["/score", "/rank", "/openrlhf"])
def test_content_types(guarded, path, content_types, body, status):
    if body is OK and path != "/score":
        body = json.dumps({"/rank": {"prompt": "p", "candidates": [["1 + 1 = 2"]]},
                           "/openrlhf": {"query": ["p 1 + 1 = 2"]}}[path]).encode()
    resp = post(guarded, path, body, content_types)
    assert resp.status_code == status, (content_types, resp.text)
    if status >= 400:
        assert_one_line_error(resp)
    if status == 415:
        assert "Content-Type: application/json" in resp.json()["error"]
    if "x-www-form-urlencoded" in "".join(content_types):
        assert "curl" in resp.json()["error"]


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
JSON_TYPES = ["application/json", "application/json; charset=utf-8", "application/json;charset=UTF-8",
              "APPLICATION/JSON", 'application/json; charset="utf8"; foo=bar']
OTHER_TYPES = ["application/json; charset=latin-1", "application/json; charset=utf-16", "text/plain", "text/json",
               "application/x-www-form-urlencoded", "multipart/form-data", "multipart/form-data; boundary=XyZ",
               "multipart/mixed; boundary=XyZ", "application/octet-stream", "application/vnd.bentoml+pickle",
               "application/vnd.api+json", "application/xml", "image/png", "*/*", "", "json"]
header_text = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40)  # what h11 lets through
content_type = st.one_of(
    st.sampled_from(JSON_TYPES), st.sampled_from(OTHER_TYPES), header_text,
    st.builds(lambda a, b: f"{a};{b}", st.sampled_from(JSON_TYPES + OTHER_TYPES), header_text),
    header_text.map(lambda b: f"multipart/form-data; boundary={b}"))
one_json, one_any = st.sampled_from(JSON_TYPES).map(lambda t: [t]), content_type.map(lambda t: [t])
content_types = st.one_of(  # the header list: mostly one (half of them JSON), sometimes none or several
    st.just([]), one_json, one_json, one_any, one_any, st.lists(content_type, min_size=2, max_size=3))
multipart = st.builds(  # well-formed and broken multipart (a JSON body is broken multipart)
    lambda name, value, end: (b'--XyZ\r\nContent-Disposition: form-data; name="' + name.encode() + b'"\r\n\r\n'
                              + value + end),
    st.sampled_from(["items", "aggregate", "query", "x"]),
    json_values.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=60),
    st.sampled_from([b"\r\n--XyZ--\r\n", b"\r\n--XyZ", b"", b"--"]))
SEEN: list[int] = []


def expected_refusal(cts: list[str]) -> int | None:
    """The guard's contract: 400 for several Content-Type headers, 415 for one that is not UTF-8 JSON."""
    if len(cts) > 1:
        return 400
    if not cts:
        return None
    media_type, *params = (p.strip() for p in cts[0].split(";"))
    charsets = [p.partition("=")[2].strip().strip('"').lower() for p in params
                if p.partition("=")[0].strip().lower() == "charset"]
    ok = media_type.lower() == "application/json" and all(c in ("utf-8", "utf8") for c in charsets)
    return None if ok else 415


@settings(max_examples=2100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(path=endpoints, body=bodies | multipart, cts=content_types)
def test_fuzz_never_5xx(guarded, path, body, cts):
    resp = post(guarded, path, body, cts)
    SEEN.append(resp.status_code)
    assert resp.status_code < 500, (path, cts, body[:200], resp.status_code, resp.text[:300])
    if resp.status_code >= 400:
        assert_one_line_error(resp)
    refusal = expected_refusal(cts)
    if refusal is not None:
        assert resp.status_code == refusal, (path, cts, resp.status_code, resp.text[:300])
        assert "Content-Type: application/json" in resp.json()["error"]
    else:
        try:
            is_object = isinstance(json.loads(body), dict)
        except (ValueError, RecursionError):
            is_object = False
        assert is_object or resp.status_code == 400, (path, cts, body[:200], resp.status_code, resp.text[:300])


def test_fuzz_ran_and_service_is_still_healthy(guarded, server_log):
    assert len(SEEN) >= 2000
    assert {200, 400, 415} <= set(SEEN), sorted(set(SEEN))
    assert guarded.get("/readyz").status_code == 200
    resp = guarded.post("/score", json=ok_body(), headers=AUTH)
    assert resp.status_code == 200 and len(resp.json()["results"][0]["step_scores"]) == 2
    log = server_log.read_text(errors="replace")
    assert "Traceback" not in log, log[log.index("Traceback") - 300:][:3000]
