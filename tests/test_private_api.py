"""Guards for the private names of BentoML and transformers that this project relies on.

pyproject.toml caps both libraries below the next minor version that was not tested
(``bentoml>=1.4,<1.5``, ``transformers>=5.24,<5.25``). Each test here checks one private name that
no other test covers directly (plus the one public rename that sets transformers' lower bound):
that it exists and has the signature or attributes we use. A failure names the module that relies
on it and the cap to revisit; fix that module (or confirm nothing changed) before moving the cap.
Guarded elsewhere: BentoML's batcher internals (``tests/test_batcher.py``), the request-error log
line as seen from a real server (``tests/test_service_guard.py``), and shared-prefix attention plus
the pre-allocated KV cache against plain attention (``tests/test_shared_prefix.py``, numbers only).

Nothing of ours is imported, so that a moved module cannot hide a library change: the users are
named in the messages.
"""

from __future__ import annotations

import inspect
import logging

import pytest
import torch

BENTOML_CAP = "bentoml<1.5 in pyproject.toml"
TRANSFORMERS_CAP = "transformers>=5.24,<5.25 in pyproject.toml"


def revisit(what: str, user: str, cap: str) -> str:
    return f"{what}: {user} relies on it; fix it there, then revisit the cap {cap}"


# --- BentoML -------------------------------------------------------------------------------------


def test_bentoml_request_error_logger():
    """serving/guard.py's RefusalFilter sits on the logger that BentoML's API wrapper logs refusals to."""
    from _bentoml_impl.server import app
    from bentoml._internal.server import http_app

    user = "serving/guard.py (BENTOML_REQUEST_LOGGER, quiet_refusals)"
    assert http_app.logger.name == "bentoml._internal.server.http_app", revisit(
        "BentoML's request-error logger was renamed", user, BENTOML_CAP)
    assert app.log_exception is http_app.log_exception, revisit(
        "_bentoml_impl.server.app no longer logs request errors through http_app.log_exception", user, BENTOML_CAP)
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler, request = Keep(), type("Request", (), {"url": type("URL", (), {"path": "/score"})(), "method": "POST"})()
    http_app.logger.addHandler(handler)
    try:
        try:
            raise ValueError("probe")
        except ValueError:
            http_app.log_exception(request)
    finally:
        http_app.logger.removeHandler(handler)
    assert records and records[-1].exc_info and isinstance(records[-1].exc_info[1], ValueError), revisit(
        "http_app.log_exception no longer logs the exception (exc_info) that RefusalFilter turns into one line",
        user, BENTOML_CAP)


def test_bentoml_api_wrapper_maps_validation_errors_and_exception_status():
    """serving/guard.py's RefusalFilter reads the same things BentoML's API wrapper answers with."""
    from _bentoml_impl.server.app import ServiceAppFactory

    source = inspect.getsource(ServiceAppFactory.api_endpoint_wrapper)
    user = "serving/guard.py (RefusalFilter: ValidationError -> 400, BentoMLException.error_code)"
    for needed in ("except ValidationError", "except BentoMLException", "exc.error_code.value", "log_exception("):
        assert needed in source, revisit(f"ServiceAppFactory.api_endpoint_wrapper no longer has {needed!r}", user,
                                         BENTOML_CAP)


def test_bentoml_runner_connection_settings():
    """The front's client of the inference worker keeps its connection pool (max_requests, max_age)."""
    from _bentoml_impl.client import RemoteProxy
    from _bentoml_sdk.service.config import RunnerConnectionSchema, ServiceConfig

    user = "serving/service.py (PRMInference: runner_connection={'max_requests', 'max_age'})"
    assert "runner_connection" in ServiceConfig.__annotations__, revisit(
        "BentoML's service config has no 'runner_connection'", user, BENTOML_CAP)
    assert {"max_requests", "max_age"} <= set(RunnerConnectionSchema.__annotations__), revisit(
        "runner_connection lost 'max_requests' or 'max_age'", user, BENTOML_CAP)
    source = inspect.getsource(RemoteProxy.__init__)
    assert all(f'"{k}"' in source for k in ("runner_connection", "max_requests", "max_age")), revisit(
        "RemoteProxy no longer reads runner_connection's max_requests/max_age (the setting would be ignored)",
        user, BENTOML_CAP)


def test_bentoml_runner_probe_setting():
    """PRMService turns BentoML's own readiness probe of the worker off and probes it with a deadline."""
    from _bentoml_impl.server import app
    from _bentoml_sdk.service.config import RunnerProbeSchema, ServiceConfig

    user = "serving/service.py (PRMService: runner_probe={'enabled': False})"
    assert "runner_probe" in ServiceConfig.__annotations__ and "enabled" in RunnerProbeSchema.__annotations__, revisit(
        "BentoML's service config has no runner_probe.enabled", user, BENTOML_CAP)
    assert "runner_probe.enabled" in inspect.getsource(app), revisit(
        "_bentoml_impl.server.app no longer reads runner_probe.enabled (readyz could hang again)", user, BENTOML_CAP)


def test_bentoml_remote_proxy_is_ready_and_transport():
    """Under `bentoml serve` a dependency is a RemoteProxy: we call ``is_ready(timeout)`` on it (looked up with
    getattr, so a rename would silently report ready before the worker is) and retry aiohttp connection errors."""
    import aiohttp
    from _bentoml_impl.client import RemoteProxy
    from _bentoml_sdk.service import dependency

    proxy2 = inspect.getmodule(RemoteProxy)

    user = "serving/service.py (PRMService.__is_ready__, PRMService._infer's retry)"
    assert "RemoteProxy(" in inspect.getsource(dependency), revisit(
        "bentoml.depends no longer resolves to a RemoteProxy", user, BENTOML_CAP)
    is_ready = getattr(proxy2.RemoteProxy, "is_ready", None)
    assert inspect.iscoroutinefunction(is_ready), revisit("RemoteProxy.is_ready is gone or not async", user,
                                                          BENTOML_CAP)
    assert list(inspect.signature(is_ready).parameters)[:2] == ["self", "timeout"], revisit(
        f"RemoteProxy.is_ready{inspect.signature(is_ready)} no longer takes a timeout first", user, BENTOML_CAP)
    assert proxy2.aiohttp is aiohttp and "aiohttp.ClientSession(" in inspect.getsource(proxy2.SessionManager), revisit(
        "BentoML's client no longer talks aiohttp (the retry catches aiohttp.ClientConnectionError)", user,
        BENTOML_CAP)


# --- transformers --------------------------------------------------------------------------------


def _tiny_llama(attn: str = "sdpa"):
    from transformers import LlamaConfig, LlamaModel

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         attn_implementation=attn)
    return LlamaModel(config).eval()


@pytest.fixture
def recorder():
    """An attention implementation that records its calls and runs transformers' SDPA."""
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    calls = []

    def attention(module, query, key, value, attention_mask, **kwargs):
        calls.append(attention_mask)
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)

    AttentionInterface.register("prm_guard_probe", attention)
    yield "prm_guard_probe", calls
    AttentionInterface._global_mapping.pop("prm_guard_probe", None)


def test_config_attn_implementation_switches_attention_at_run_time(recorder):
    """Setting ``config._attn_implementation`` on a built model changes the attention its next forward runs."""
    name, calls = recorder
    users = ("prm/export/onnx.py, prm/scoring/backends.py, prm/train/build.py and "
             "prm/generation/shared_prefix.py (config._attn_implementation)")
    model = _tiny_llama("sdpa")
    assert model.config._attn_implementation == "sdpa", revisit(
        "config._attn_implementation does not hold the attention implementation", users, TRANSFORMERS_CAP)
    model.config._attn_implementation = name
    with torch.inference_mode():
        model(input_ids=torch.tensor([[1, 2, 3, 4]]))
    assert len(calls) == model.config.num_hidden_layers, revisit(
        "assigning config._attn_implementation no longer switches a built model's attention", users,
        TRANSFORMERS_CAP)


def test_sdpa_attention_forward_signature_and_causal_default():
    """``sdpa_attention_forward(module, q, k, v, mask, dropout=, scaling=, **kw) -> (out [B, Q, H, D], _)``,
    grouped-query heads repeated, and causal when there is no mask and several queries (bf16 SDPA with
    right padding counts on that)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    users = "prm/scoring/bf16.py (bf16_sdpa) and prm/generation/shared_prefix.py (shared_prefix_attention)"
    params = inspect.signature(sdpa_attention_forward).parameters
    assert list(params)[:5] == ["module", "query", "key", "value", "attention_mask"] and {"dropout", "scaling"} <= set(
        params) and any(p.kind is p.VAR_KEYWORD for p in params.values()), revisit(
        f"sdpa_attention_forward{inspect.signature(sdpa_attention_forward)} changed", users, TRANSFORMERS_CAP)
    module = torch.nn.Module()
    module.num_key_value_groups, module.is_causal, module.training = 2, True, False
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 4, 5, 8), torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 8)
    out, _ = sdpa_attention_forward(module, q, k, v, None, dropout=0.0, scaling=0.3)
    want = torch.nn.functional.scaled_dot_product_attention(q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1),
                                                            is_causal=True, scale=0.3).transpose(1, 2)
    assert out.shape == (2, 5, 4, 8), revisit(f"sdpa_attention_forward returns {tuple(out.shape)}, not [B, Q, H, D]",
                                              users, TRANSFORMERS_CAP)
    torch.testing.assert_close(out, want, msg=lambda m: revisit(
        f"sdpa_attention_forward without a mask is no longer causal GQA attention ({m})", users, TRANSFORMERS_CAP))


def test_mask_functions_registry(recorder):
    """An attention implementation with no mask function registered gets ``attention_mask=None`` (bf16 SDPA
    relies on that to run the causal kernel); registering ``sdpa_mask`` for it gives it SDPA's mask."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    name, calls = recorder
    model = _tiny_llama(name)
    ids, mask = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 0]]), torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    with torch.inference_mode():
        model(input_ids=ids, attention_mask=mask)
    assert calls and all(m is None for m in calls), revisit(
        "an attention implementation without a mask function now gets a mask", "prm/scoring/bf16.py (sdpa_bf16)",
        TRANSFORMERS_CAP)
    user = "prm/generation/shared_prefix.py (register: ALL_MASK_ATTENTION_FUNCTIONS.register(name, sdpa_mask))"
    assert callable(getattr(ALL_MASK_ATTENTION_FUNCTIONS, "register", None)), revisit(
        "transformers.masking_utils.ALL_MASK_ATTENTION_FUNCTIONS has no register()", user, TRANSFORMERS_CAP)
    ALL_MASK_ATTENTION_FUNCTIONS.register(name, sdpa_mask)
    try:
        calls.clear()
        with torch.inference_mode():
            model(input_ids=ids, attention_mask=mask)
        assert calls and all(isinstance(m, torch.Tensor) for m in calls), revisit(
            "registering sdpa_mask no longer gives the attention implementation a mask", user, TRANSFORMERS_CAP)
    finally:
        ALL_MASK_ATTENTION_FUNCTIONS._global_mapping.pop(name, None)


# What GrowingLayer (prm/generation/kv_cache.py) overrides, and everything else DynamicLayer has in 5.24: a new member is
# something the cache may call on a GrowingLayer without our override.
GROWING_LAYER_OVERRIDES = {"update", "get_seq_length", "batch_select_indices", "batch_repeat_interleave"}
DYNAMIC_LAYER_MEMBERS = GROWING_LAYER_OVERRIDES | {
    "crop", "get_mask_sizes", "get_max_length", "is_compileable", "is_croppable", "is_sliding",
    "lazy_initialization", "offload", "prefetch", "reorder_cache", "reset", "supports_early_init"}


def test_dynamic_layer_interface():
    """``GrowingLayer`` subclasses ``transformers.cache_utils.DynamicLayer``; ``preallocate`` swaps it into
    ``cache.layers`` where ``type(layer) is DynamicLayer`` and ``layer.is_initialized`` (4.57+); the completer
    reads ``layer.keys/values``."""
    from transformers.cache_utils import DynamicLayer

    user = "prm/generation/kv_cache.py (GrowingLayer, preallocate) and prm/generation/hf_completer.py (cache.layers)"
    members = {n for n in dir(DynamicLayer) if not n.startswith("_")}
    assert members == DYNAMIC_LAYER_MEMBERS, revisit(
        f"DynamicLayer's members changed (new: {sorted(members - DYNAMIC_LAYER_MEMBERS)}, gone: "
        f"{sorted(DYNAMIC_LAYER_MEMBERS - members)})", user, TRANSFORMERS_CAP)
    update = inspect.signature(DynamicLayer.update).parameters
    assert list(update)[:3] == ["self", "key_states", "value_states"], revisit(
        f"DynamicLayer.update{inspect.signature(DynamicLayer.update)} changed", user, TRANSFORMERS_CAP)
    layer = DynamicLayer()  # GrowingLayer calls super().__init__() with no arguments
    assert not layer.is_initialized, revisit("DynamicLayer() starts initialised", user, TRANSFORMERS_CAP)
    model = _tiny_llama("sdpa")
    with torch.inference_mode():
        cache = model(input_ids=torch.tensor([[1, 2, 3]]), use_cache=True).past_key_values
    layers = getattr(cache, "layers", None)
    assert layers and all(type(x) is DynamicLayer for x in layers), revisit(
        f"a Llama forward's cache no longer holds DynamicLayer objects in .layers ({type(cache).__name__})", user,
        TRANSFORMERS_CAP)
    first = layers[0]
    assert first.is_initialized and first.keys.shape == (1, 2, 3, 8) and first.values.shape == (1, 2, 3, 8) and (
        first.device == first.keys.device), revisit(
        "DynamicLayer's keys/values/is_initialized/device are not [B, H_kv, T, D] tensors and flags", user,
        TRANSFORMERS_CAP)


def test_trainer_get_train_sampler():
    """``PRMTrainer`` (prm/train/trainer.py) overrides ``Trainer._get_train_sampler(train_dataset=None)`` for length-grouped
    batches in a fixed order; the training dataloader must still take its sampler from there."""
    from transformers import Trainer

    user = "prm/train/trainer.py (PRMTrainer._get_train_sampler)"
    method = getattr(Trainer, "_get_train_sampler", None)
    assert method is not None, revisit("Trainer._get_train_sampler is gone", user, TRANSFORMERS_CAP)
    params = inspect.signature(method).parameters
    assert list(params)[:2] == ["self", "train_dataset"] and params["train_dataset"].default is None, revisit(
        f"Trainer._get_train_sampler{inspect.signature(method)} changed", user, TRANSFORMERS_CAP)
    assert "self._get_train_sampler" in inspect.getsource(Trainer.get_train_dataloader), revisit(
        "Trainer.get_train_dataloader no longer takes its sampler from _get_train_sampler", user, TRANSFORMERS_CAP)


def test_model_forward_cache_argument():
    """transformers 5.24 renamed the forward's ``past_key_values`` to ``cache`` (the old name is deprecated);
    the completer passes ``cache=`` and before 5.24 that name is not the cache (the lower bound in pyproject)."""
    from transformers import LlamaForCausalLM

    users = "prm/generation/hf_completer.py and benchmarks/scoring_throughput.py (model(..., cache=cache))"
    assert "cache" in inspect.signature(LlamaForCausalLM.forward).parameters, revisit(
        "a causal LM's forward has no 'cache' argument", users, TRANSFORMERS_CAP)
    torch.manual_seed(0)
    model = LlamaForCausalLM(_tiny_llama().config).eval()
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.inference_mode():
        cache = model(input_ids=ids[:, :4], use_cache=True).past_key_values
        step = model(input_ids=ids[:, 4:], cache=cache, use_cache=True).logits[0, -1]
        full = model(input_ids=ids).logits[0, -1]
    torch.testing.assert_close(step, full, atol=1e-5, rtol=1e-5, msg=lambda m: revisit(
        f"model(..., cache=cache) no longer continues from the cache ({m})", users, TRANSFORMERS_CAP))
