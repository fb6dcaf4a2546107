"""Incremental scoring: a prefix cache of keys/values (prm.scoring.prefix_cache) and the torch path that
computes only new tokens (prm.scoring.incremental), against full scoring on real tiny models."""

import random
import threading

import numpy as np
import pytest
import torch

from prm.scoring import Scorer
from prm.scoring.prefix_cache import PrefixCache

CALIBRATION = {"method": "temperature", "temperature": 1.7}


def kv(n: int, start: float = 0.0) -> torch.Tensor:
    """A stand-in key/value tensor [L=2, 2, Hkv=1, n, D=4] whose entries name their token position."""
    pos = torch.arange(n, dtype=torch.float32) + start
    return pos.view(1, 1, 1, n, 1).expand(2, 2, 1, n, 4).contiguous()


def store(cache: PrefixCache, ids: list[int]) -> None:
    full = kv(len(ids))
    cache.insert(ids, lambda a, b: full[..., a:b, :], np.arange(len(ids), dtype=np.float32))


# --- the cache alone ----------------------------------------------------------------------------------------


def test_match_returns_the_longest_prefix_at_any_token_and_splits_keep_the_states():
    cache = PrefixCache(1 << 20)
    store(cache, [1, 2, 3, 4, 5])
    store(cache, [1, 2, 3, 9])  # parts after token 3: the node splits
    m = cache.match([1, 2, 3, 4, 7, 7])
    assert m.length == 4
    assert torch.equal(torch.cat(m.segments, dim=-2), kv(4))
    assert m.logits.tolist() == [0, 1, 2, 3]
    assert cache.match([1, 2, 3, 9, 9]).length == 4
    assert cache.match([2, 1]).length == 0
    per_token = kv(1).nbytes + 4
    assert cache.bytes == 6 * per_token  # 1 2 3 | 4 5 | 9: nothing stored twice
    snap = cache.snapshot()
    assert (snap["lookups"], snap["hits"], snap["misses"], snap["tokens_reused"]) == (3, 2, 1, 8)


def test_the_cache_stays_within_its_budget_and_evicts_least_recently_used():
    per_token = kv(1).nbytes + 4
    cache = PrefixCache(12 * per_token)
    store(cache, [1, 1, 1, 1])
    store(cache, [2, 2, 2, 2])
    store(cache, [3, 3, 3, 3])
    cache.match([1, 1, 1, 1])  # 1 is now the most recently used; 2 the least
    store(cache, [4, 4, 4, 4])
    assert cache.bytes <= cache.max_bytes
    assert cache.match([2, 2, 2, 2]).length == 0
    assert cache.match([1, 1, 1, 1]).length == 4 and cache.match([4, 4, 4, 4]).length == 4
    assert cache.snapshot()["evictions"] == 1
    store(cache, list(range(10, 30)))  # bigger than the whole budget: not kept, nothing evicted for it
    assert cache.match(list(range(10, 30))).length == 0 and cache.match([4, 4, 4, 4]).length == 4
    rng = random.Random(0)
    for _ in range(200):  # random inserts: never over budget, parents dropped only after their children
        store(cache, [rng.randrange(3) for _ in range(rng.randrange(1, 9))])
        assert cache.bytes <= cache.max_bytes
        assert cache.bytes == sum(n.nbytes for n in cache._lru)
        assert all(n.parent is cache._root or n.parent in cache._lru for n in cache._lru)


# --- scores against full scoring -------------------------------------------------------------------------------


def extensions(seed: int, n: int = 4):
    """Random prefix extensions, as a search makes them: solutions grown one random step at a time."""
    from data_tools.problems import generate_dataset

    rng = random.Random(seed)
    pool = generate_dataset(12, seed=seed)
    steps = [s for e in pool for s in e.steps]
    rounds, live = [], [(e.prompt, []) for e in pool[:n]]
    for _ in range(4):
        live = [(p, s + [rng.choice(steps)]) for p, s in live for _ in range(rng.randrange(1, 4))]
        rng.shuffle(live)
        rounds.append(live[:8])
        live = live[:3]
    return rounds


def pair(artifact, **kw):
    full, cached = Scorer(artifact, backend="torch", **kw), Scorer(artifact, backend="torch", prefix_cache_mb=64, **kw)
    for s in (full, cached):  # the whole-solution steps after the logits: running minimum, calibration, checks
        s.cfg.monotone, s.calibration, s.checks = True, CALIBRATION, True
    return full, cached


def assert_close(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert np.abs(np.asarray(g) - np.asarray(w)).max() <= 1e-4, (g, w)


@pytest.mark.parametrize("batch_size", [1, 5])
def test_cached_scores_equal_full_scoring_over_random_prefix_extensions(tiny_artifact, batch_size):
    full, cached = pair(tiny_artifact, batch_size=batch_size)
    for seed in (0, 1):
        for items in extensions(seed):
            assert_close(cached.score(items), full.score(items))
    stats = cached.cache_stats
    assert stats["hits"] > 0 and stats["tokens_reused"] > 0
    assert stats["tokens_computed"] < full.cache_stats["tokens_computed"] / 2
    again = cached.cache_stats["tokens_computed"]
    assert_close(cached.score(items), full.score(items))  # scored before: nothing left to compute
    assert cached.cache_stats["tokens_computed"] == again


def test_rows_of_one_batch_compute_a_shared_prompt_once(tiny_artifact):
    full, cached = pair(tiny_artifact, batch_size=8)
    prompt = "Tom has 5 apples. He buys 3 more apples and then gives away 2. How many apples does he have now?"
    items = [(prompt, [f"He buys {k} more: 5 + {k} = {5 + k}"]) for k in range(1, 7)]
    assert_close(cached.score(items), full.score(items))
    prompt_tokens = len(cached.encode(prompt, []).input_ids)
    assert cached.cache_stats["tokens_computed"] < full.cache_stats["tokens_computed"] - 4 * prompt_tokens


def test_a_truncated_prompt_still_matches_right(tiny_artifact):
    """Past max_length the prompt is cut from the left, so a longer solution starts with other tokens."""
    full, cached = pair(tiny_artifact, max_length=60)
    prompt = " ".join(f"Tom has {k} apples." for k in range(12))
    steps = ["5 + 3 = 8", "8 - 2 = 6", "6 + 1 = 7", "The answer is 7."]
    for k in range(1, 5):
        assert_close(cached.score([(prompt, steps[:k])]), full.score([(prompt, steps[:k])]))


def in_threads(fn, work: list, threads: int = 4) -> list:
    """``fn`` over ``work`` from several threads at once (item j on thread j % threads), results in order;
    an exception in any thread fails the test."""
    got, errors = [None] * len(work), []

    def worker(k: int) -> None:
        try:
            for j in range(k, len(work), threads):
                got[j] = fn(work[j])
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    running = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in running:
        t.start()
    for t in running:
        t.join()
    assert not errors, errors
    return got


def test_concurrent_requests_share_a_bounded_cache_and_get_correct_scores(tiny_artifact):
    full, cached = pair(tiny_artifact, batch_size=3)
    per_token = 2 * 2 * 2 * 8 * 4 + 4  # tiny backbone: 2 layers, k and v, 2 KV heads of 8, fp32; + a logit
    cached.prefix_cache.max_bytes = 400 * per_token  # a few solutions: evictions while threads read
    work = [items for seed in range(4) for items in extensions(seed)]
    want = [full.score(items) for items in work]
    for g, w in zip(in_threads(cached.score, work), want, strict=True):
        assert_close(g, w)
    stats = cached.cache_stats
    assert stats["bytes"] <= stats["max_bytes"] and stats["evictions"] > 0 and stats["hits"] > 0


def test_onnx_falls_back_to_full_scoring_with_identical_results(tiny_artifact):
    items = [it for items in extensions(2) for it in items]
    plain = Scorer(tiny_artifact, backend="onnx").score(items)
    scorer = Scorer(tiny_artifact, backend="onnx", prefix_cache_mb=64)
    assert scorer.prefix_cache is None
    assert scorer.score(items) == plain
    assert scorer.cache_stats["tokens_computed"] > 0


def test_a_whole_text_rendering_keys_by_its_own_tokens(tmp_path):
    """An imported PRM renders the whole text (here a chat template) and tokenizes it once; the cache still
    gives the full scores."""
    from tiny_families import build_qwen_prm

    from serving.cli import main

    out = tmp_path / "qwen"
    assert main(["-q", "import", "qwen-prm", str(build_qwen_prm(tmp_path / "src")), str(out)]) == 0
    full, cached = Scorer(out, backend="torch"), Scorer(out, backend="torch", prefix_cache_mb=64)
    assert cached.cfg.rendering
    for items in extensions(3):
        assert_close(cached.score(items), full.score(items))
    assert cached.cache_stats["tokens_reused"] > 0


def prometheus(name: str) -> float:
    """A metric of this process's default Prometheus registry (what /metrics shows under ``bentoml serve``)."""
    import re

    from prometheus_client import REGISTRY, generate_latest

    text = generate_latest(REGISTRY).decode()
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def test_the_service_shares_one_cache_across_concurrent_requests_and_reports_it(tiny_artifact, monkeypatch):
    from starlette.testclient import TestClient

    monkeypatch.setenv("PRM_MODEL_DIR", str(tiny_artifact))
    monkeypatch.setenv("PRM_BACKEND", "torch")
    monkeypatch.setenv("PRM_PREFIX_CACHE_MB", "1")  # small: evictions while requests run
    from serving.service import PRMService

    work = [items for seed in range(3) for items in extensions(seed)]
    want = [Scorer(tiny_artifact, backend="torch").score(items) for items in work]
    with TestClient(PRMService.to_asgi()) as client:
        before = {k: prometheus(f"prm_prefix_cache_{k}_total") for k in ("lookups", "hits", "tokens_reused")}

        def score(items):
            resp = client.post("/score", json={"items": [{"prompt": p, "steps": s} for p, s in items]})
            assert resp.status_code == 200, resp.text
            return [r["step_scores"] for r in resp.json()["results"]]

        got = in_threads(score, work)
    for g, w in zip(got, want, strict=True):
        assert_close(g, w)
    gained = {k: prometheus(f"prm_prefix_cache_{k}_total") - v for k, v in before.items()}
    assert gained["lookups"] == sum(len(items) for items in work)
    assert gained["hits"] > 0 and gained["tokens_reused"] > 0
    assert 0 < prometheus("prm_prefix_cache_bytes") <= 1 << 20


def test_the_benchmark_runs_and_its_last_line_is_the_json_it_promises(tiny_artifact):
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "incremental_scoring.py"
    res = subprocess.run([sys.executable, str(script), "--model", str(tiny_artifact), "--problems", "1",
                          "--beam-width", "2", "--expand", "2"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["scoring_calls"] == 5 and out["max_abs_diff"] <= 1e-4
    assert out["tokens_ratio"] > 2 and out["tokens_full"] > out["tokens_cached"] > 0 and out["time_ratio"] > 0


def test_the_bf16_backends_score_incrementally_within_bf16_noise(tiny_artifact, tmp_path):
    """bf16 activations round differently as the shapes of a pass change, so cached and full bf16 scores differ
    by bf16 noise (not 1e-4): checked here against that noise, and that both backends take the cache at all
    (torch-bf16-gptq's attention once got no mask with past keys, which its self-check refused)."""
    import shutil

    from prm.export.gptq import write_bf16_weights

    folder = tmp_path / "model"
    shutil.copytree(tiny_artifact, folder)
    rounds = extensions(4)
    write_bf16_weights(folder, [it for items in rounds for it in items])
    for backend in ("torch-bf16", "torch-bf16-gptq"):
        full = Scorer(folder, backend=backend, compile=False)
        cached = Scorer(folder, backend=backend, compile=False, prefix_cache_mb=64)
        assert cached.prefix_cache is not None, backend
        for items in rounds:
            for g, w in zip(cached.score(items), full.score(items), strict=True):
                assert np.abs(np.asarray(g) - np.asarray(w)).max() <= 2e-2, backend
        assert cached.cache_stats["hits"] > 0


def test_a_model_that_would_score_wrong_incrementally_is_refused(tiny_artifact, caplog):
    """An attention implementation with no mask builder gets no mask; with past keys SDPA's is_causal then
    aligns queries with the first key (the bug torch-bf16-gptq had): the self-check refuses it."""
    import logging

    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from prm.scoring.incremental import Incremental

    AttentionInterface.register("sdpa_without_mask", sdpa_attention_forward)
    scorer = Scorer(tiny_artifact, backend="torch")
    scorer.model.backbone.config._attn_implementation = "sdpa_without_mask"
    with pytest.raises(ValueError, match="scored in pieces differ"):
        Incremental(scorer.model, PrefixCache(1 << 20))
    scorer.model.backbone.config._attn_implementation = "sdpa"
    Incremental(scorer.model, PrefixCache(1 << 20))
    with caplog.at_level(logging.INFO, logger="prm.scoring.incremental"):
        assert Scorer(tiny_artifact, backend="onnx", prefix_cache_mb=8).prefix_cache is None
    assert "exported without past key/value inputs" in caplog.text


def test_the_readme_benchmark_commands_parse():
    import sys
    from pathlib import Path

    from test_data_cli import readme_argv

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import incremental_scoring

    commands = readme_argv(".venv/bin/python benchmarks/incremental_scoring.py")
    assert len(commands) == 4
    for argv in commands:
        args = incremental_scoring.build_parser().parse_args(argv[2:])
        assert args.backend.startswith("torch") and args.depth == 5
