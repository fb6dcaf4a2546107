"""``prm proxy``: an OpenAI-compatible chat endpoint that answers by PRM-guided search.

In front of any OpenAI-compatible generator (vLLM, SGLang, llama.cpp, ``prm generate-server``) and
the PRM service (``prm serve``): a chat request's last user message is the problem, the strategy and
budget come from the body's extra fields or a model-name prefix (``protocol``), the generator
proposes steps (``generator``), the service scores them, ``serving.search.run_search`` chooses, and
the client gets an ordinary chat completion (``app``). Settings: ``config.ProxyConfig``.

Runs without torch or BentoML: httpx, starlette and uvicorn (``pip install prm-toolkit[proxy]``).
"""

from __future__ import annotations

from serving.proxy.config import ProxyConfig


def check(config: ProxyConfig) -> None:
    """Every problem with the settings at once, as one ValueError naming the flags."""
    bad = config.problems()
    if bad:
        raise ValueError("invalid prm proxy settings: " + "; ".join(bad))


def serve_proxy(config: ProxyConfig, log_level: str = "warning") -> None:
    """Run the proxy with uvicorn until interrupted."""
    import uvicorn

    from serving.proxy.app import make_app

    check(config)
    uvicorn.run(make_app(config), host=config.host, port=config.port, log_level=log_level)


__all__ = ["ProxyConfig", "check", "serve_proxy"]
