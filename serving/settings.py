"""``ServeConfig``: every setting of the scoring service, its flag, its environment variable, its default.

``prm serve`` takes each as a flag (``--max-items``) or from ``--config FILE``; the environment
variable (``PRM_MAX_ITEMS``: ``PRM_`` + the field name in capitals) is still honoured and becomes the
flag's default. ``prm serve`` hands the settings to the service processes as those variables, and
the service reads them with ``ServeConfig.from_env()``: one source of truth for names and defaults.
Standard library only (the service imports it at start-up).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from data_tools.flags import opt, problems


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"
    """address to listen on (0.0.0.0: every interface)"""
    port: int = opt(3000, min=0, max=65535)
    """port to listen on"""
    backend: str = ""
    """scoring backend: torch, torch-bf16, torch-bf16-gptq, onnx, onnx-int8, onnx-fp16 (empty: the fastest the model holds
    that passed its quality gate, per its gates.json: see prm.scoring.default_backend)"""
    threads: int = opt(0, min=0)
    """CPU threads of the model (0: all cores)"""
    checks: str = opt("artifact", choices=("artifact", "on", "off"))
    """step checks (a step wrong by its own numbers scores at most 0.01): as the artifact's step_checks says, on, or off"""
    prefix_cache_mb: int = opt(256, min=0)
    """MiB of keys/values of recently scored token prefixes that the torch backends keep, so that a search's next
    step computes only its new tokens (evicted least recently used; 0: off). The ONNX backends score in full"""
    max_items: int = opt(256, min=1)
    """solutions per request; more get a 413"""
    max_steps: int = opt(128, min=1)
    """steps per solution; more get a 413"""
    max_length: int = opt(0, min=0)
    """tokens per solution (prompt + steps); 0: the artifact's max_length, the length it was trained at.
    More scores longer solutions, up to the backbone's positions (a WARNING says that is extrapolation);
    a longer solution gets a 413"""
    max_body_bytes: int = opt(4 << 20, min=1024)
    """request body size in bytes; more get a 413"""
    api_token: str = ""
    """bearer token required on POST endpoints (empty: no auth); prefer the PRM_API_TOKEN variable, since a flag shows in the process list"""
    timeout_s: int = opt(60, min=1)
    """seconds a request may take before BentoML answers 504"""
    max_concurrency: int = opt(64, min=1)
    """requests in flight; the next gets a 429 at once"""
    max_wait_ms: int = opt(30000, min=0)
    """a request whose solutions would wait longer than this for the model, at the rate it has been scoring, gets a 429 at once"""
    batch_max_size: int = opt(64, min=1)
    """solutions per model call (adaptive batching merges concurrent requests up to this)"""
    batch_max_latency_ms: int = opt(60000, min=1)
    """BentoML's batcher drops (503) a queued call it expects to miss this; a backstop behind --max-wait-ms"""
    forward_batch: int = opt(0, min=0)
    """rows per forward pass (0: 1 on a CPU, where padding only adds work, 16 with the prefix cache on; 64 on a GPU)"""
    batch_max_hold_ms: int = opt(0, min=0)
    """cap on how long BentoML's batcher holds a batch open for more requests"""
    batch_tick_ms: int = opt(5, min=1)
    """how often BentoML's batcher polls while a batch runs"""

    @staticmethod
    def env_name(field: str) -> str:
        return "PRM_" + field.upper()

    @classmethod
    def from_env(cls, environ: dict | None = None) -> ServeConfig:
        """Defaults overridden by the ``PRM_*`` variables that are set; ValueError naming a bad one."""
        environ = os.environ if environ is None else environ
        values = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(cls.env_name(f.name))
            if raw in (None, ""):
                continue
            kind = type(f.default) if f.default is not dataclasses.MISSING else str
            try:
                values[f.name] = kind(raw)
            except ValueError:
                raise ValueError(f"{cls.env_name(f.name)}={raw!r} is not a valid {kind.__name__}") from None
        cfg = cls(**values)
        bad = problems(cfg)
        if bad:
            raise ValueError("invalid service settings: " + "; ".join(bad))
        return cfg

    def to_env(self) -> dict[str, str]:
        """The variables that hand these settings to the service processes (empty ones left out)."""
        return {self.env_name(k): str(v) for k, v in dataclasses.asdict(self).items() if v != ""}
