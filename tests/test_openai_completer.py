"""The OpenAI-compatible backend against a real HTTP server on 127.0.0.1 serving the tiny model.

The server (tests/openai_server.py) fails or delays requests on demand and logs every request, so
retries and timeouts are counted from both sides; labels from a misbehaving server must equal labels
from a healthy one, byte for byte.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from openai_server import Behaviour, serving

from data_tools.label_job import run_label_job
from data_tools.labelling import LabelConfig, render_prefix
from data_tools.openai_completer import OpenAICompleter, OpenAIConfig, ServerSettingsError
from data_tools.problems import generate_dataset
from data_tools.rollouts import RolloutRequest, Sampling, rollout_seed
from data_tools.schema import write_jsonl

SAMPLING = Sampling(max_new_tokens=12, temperature=1.0)


def client(urls, **kw) -> OpenAICompleter:
    return OpenAICompleter(OpenAIConfig(base_urls=tuple(urls), model="tiny", backoff_s=0.01, **kw), SAMPLING)


def requests_for(n_examples=2):
    data = generate_dataset(n_examples, seed=4)
    return [RolloutRequest(render_prefix(ex.prompt, ex.steps[:k]), tuple(rollout_seed(ex.meta["id"], k, s) for s in range(3)),
                           ex.prompt, tuple(ex.steps[:k]), ex.meta)
            for ex in data[:n_examples] for k in (1, 2)]


def test_rollouts_over_http_are_the_in_process_rollouts(tiny_completer):
    """Completions and chat both draw, per rollout, what the model draws in-process with that (31-bit) seed."""
    requests = requests_for(1)
    expected = [[tiny_completer.complete([RolloutRequest(r.prefix, (s & 0x7FFFFFFF,))])[0][0] for s in r.seeds]
                for r in requests]
    with serving(tiny_completer) as (url, log):
        assert client([url]).complete(requests) == expected
        assert client([url], chat=True).complete(requests) == expected
        batched = client([url], batch_samples=True)
        assert [len(t) for t in batched.complete(requests)] == [3] * len(requests)
    assert sum(len(t) for group in expected for t in group) > 0
    assert {e["path"] for e in log.entries} == {"/v1/completions", "/v1/chat/completions"}
    assert sum(e["n"] == 3 for e in log.entries) == len(requests)  # batch_samples: one request per prefix


def label(tmp_path, name, completer, data_file):
    out = tmp_path / name
    result = run_label_job(data_file, out, completer, LabelConfig(rollouts=3))
    return out, result


def test_failing_and_slow_servers_are_retried_and_labels_complete(tiny_completer, tmp_path):
    data_file = tmp_path / "data.jsonl"
    write_jsonl(data_file, generate_dataset(3, seed=5))
    with serving(tiny_completer) as (url, _):
        healthy, _ = label(tmp_path, "healthy.jsonl", client([url]), data_file)
    flaky_behaviour = Behaviour(fail_every=3)
    slow_behaviour = Behaviour(slow_every=4, delay_s=4.0)
    with serving(tiny_completer, flaky_behaviour) as (flaky_url, flaky_log), \
            serving(tiny_completer, slow_behaviour) as (slow_url, slow_log):
        # Few requests in flight, so that only the held ones (not those queued for the model) time out.
        completer = client([flaky_url, slow_url], timeout_s=1.5, max_retries=8, concurrency=3)
        out, result = label(tmp_path, "flaky.jsonl", completer, data_file)
    assert out.read_bytes() == healthy.read_bytes()  # same rows, same order
    assert result.written == 6 and result.report.failed_solutions == 0
    stats = completer.stats
    failures = flaky_log.count("fail 500") + flaky_log.count("fail 429")
    assert flaky_log.count("fail 500") >= 1 and flaky_log.count("fail 429") >= 1
    assert slow_log.count("slow") >= 1 and stats.timeouts == slow_log.count("slow")
    assert stats.retries == failures + stats.timeouts
    assert stats.attempts == len(flaky_log.entries) + len(slow_log.entries)
    assert stats.status[500] + stats.status[429] == failures
    assert result.report.completer["retries"] == stats.retries  # the run report carries the client's counts


def test_a_request_that_keeps_failing_leaves_its_example_to_the_rerun(tiny_completer, tmp_path):
    data_file = tmp_path / "data.jsonl"
    write_jsonl(data_file, generate_dataset(2, seed=6))
    out = tmp_path / "out.jsonl"
    argv = [sys.executable, "-m", "serving.cli", "label", str(data_file), str(out), "--completer", "openai",
            "--openai-model", "tiny", "--openai-max-retries", "2", "--openai-backoff-s", "0", "--rollouts", "2",
            "--max-new-tokens", "12", "--temperature", "1.0", "--no-progress"]
    with serving(tiny_completer, Behaviour(fail_every=1)) as (url, log):
        failed = subprocess.run(argv + ["--openai-base-urls", url], capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1, failed.stderr
    assert "rerun the same command" in failed.stderr and out.read_text() == ""
    report = json.loads(failed.stdout.splitlines()[0])
    assert report["failed_solutions"] == 4 and report["completer"]["failed_requests"] >= 1
    assert report["completer"]["retries"] == 2 * report["completer"]["failed_requests"]
    with serving(tiny_completer) as (url, _):
        rerun = subprocess.run(argv + ["--openai-base-urls", url], capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert len(out.read_text().splitlines()) == 4


def test_client_errors_are_not_retried_and_bad_settings_stop_the_run(tiny_completer):
    requests = requests_for(1)[:1]
    with serving(tiny_completer, Behaviour(status_every=1, status=400)) as (url, log):
        completer = client([url])
        assert completer.complete(requests) == [None]
        assert completer.stats.retries == 0 and len(log.entries) == 3  # one per sample, none retried
    with serving(tiny_completer, Behaviour(status_every=1, status=404)) as (url, _):
        with pytest.raises(ServerSettingsError, match="404.*--openai-model"):
            client([url]).complete(requests)


def test_connection_errors_are_retried_on_the_next_server(tiny_completer):
    """A dead URL in the round-robin costs retries, not rollouts."""
    requests = requests_for(1)
    with serving(tiny_completer) as (url, log):
        dead = "http://127.0.0.1:9/v1"  # discard port: nothing listens there
        completer = client([dead, url], max_retries=3)
        texts = completer.complete(requests)
    assert all(t is not None and len(t) == 3 for t in texts)
    assert completer.stats.connect_errors >= 1 and completer.stats.retries == completer.stats.connect_errors
    assert len(log.entries) == 3 * len(requests)


def test_request_bodies():
    c = OpenAICompleter(OpenAIConfig(base_urls=("http://h/v1",), model="m"), Sampling(top_k=0, stop=("\n\n",)))
    r = RolloutRequest("FEW\nQuestion: q\nAnswer:\ns1\n", (2**40 + 7,), "q", ("s1",))
    path, body = c.body(r, r.seeds)
    assert path == "/completions"
    assert body == {"model": "m", "max_tokens": 40, "temperature": 0.5, "n": 1, "seed": 7, "stop": ["\n\n"],
                    "prompt": r.prefix}  # 31-bit seed; no top_k when 0
    c.config.chat = True
    path, body = c.body(r, (1, 2))
    assert path == "/chat/completions" and body["n"] == 2 and body["seed"] == 1
    assert body["messages"] == [{"role": "user", "content": "q"}, {"role": "assistant", "content": "s1\n"}]
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False


def test_openai_config_problems_name_the_flags():
    problems = " ".join(OpenAIConfig(base_urls=("ftp://x",), concurrency=0).problems())
    for flag in ("--openai-base-urls", "--openai-model", "--openai-concurrency"):
        assert flag in problems
    assert OpenAIConfig().problems()[0].startswith("--openai-base-urls is required")


def test_labels_need_no_torch_with_http_or_simulated_completers(tmp_path):
    """openai and simulated runs must work where torch is not installed."""
    data_file = tmp_path / "data.jsonl"
    write_jsonl(data_file, generate_dataset(2, seed=1))
    code = ("import sys; sys.modules['torch'] = None; sys.modules['transformers'] = None\n"
            "from serving.cli import main\n"
            f"sys.exit(main(['label', {str(data_file)!r}, {str(tmp_path / 'o.jsonl')!r}, '--completer', 'simulated',"
            " '--no-progress']))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    assert res.returncode == 0, res.stderr
    assert len((tmp_path / "o.jsonl").read_text().splitlines()) == 4
