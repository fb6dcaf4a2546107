"""``ProxyConfig``: every setting of ``prm proxy``, its flag (``data_tools.flags``) and its default.

Standard library and ``serving.search``'s names only. Secrets (the generator's API key, the PRM service's token, the proxy's own
token) are read from environment variables named by a setting, never passed as flags, which show in
the process list.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from data_tools.flags import opt, problems
from serving.search import STRATEGIES

AGGREGATES = ("min", "last", "prod", "mean")


@dataclass
class ProxyConfig:
    host: str = "127.0.0.1"
    """address to listen on (0.0.0.0: every interface)"""
    port: int = opt(8080, min=0, max=65535)
    """port to listen on"""
    generator_url: str = "http://127.0.0.1:8000/v1"
    """the generator's OpenAI-compatible base URL, ending where /completions is (vLLM, SGLang, llama.cpp, prm generate-server)"""
    generator_model: str = ""
    """model name sent to the generator when a request names none past its strategy prefix (empty: the first model of the generator's /v1/models)"""
    generator_api: str = opt("completions", choices=("completions", "chat"))
    """how steps are asked for: completions (the few-shot prompt prm label uses, continued as raw text) or chat (question as the user turn, steps so far as an assistant turn to continue; vLLM/SGLang's continue_final_message)"""
    generator_key_env: str = "GENERATOR_API_KEY"
    """environment variable holding the generator's API key, sent as a bearer token when set"""
    prm_url: str = "http://127.0.0.1:3000"
    """the PRM service (prm serve) that scores the steps"""
    prm_token_env: str = "PRM_API_TOKEN"
    """environment variable holding the PRM service's bearer token, when it needs one"""
    api_token_env: str = "PROXY_API_TOKEN"
    """environment variable holding the bearer token clients must send to this proxy (unset: no auth)"""
    strategy: str = opt("best_of_n", choices=STRATEGIES)
    """strategy of a request that names none (in its body or as a model-name prefix)"""
    budget: int = opt(4, min=1)
    """budget of a request that names none"""
    max_budget: int = opt(64, min=1)
    """largest budget a request may ask for; more gets a 400"""
    max_steps: int = opt(12, min=1)
    """most steps of an answer (a request may ask for fewer with max_steps)"""
    max_step_tokens: int = opt(64, min=1)
    """longest step, in generator tokens"""
    temperature: float = opt(0.7, min=0)
    """sampling temperature of the generator (a request's temperature wins)"""
    aggregate: str = opt("min", choices=AGGREGATES)
    """how step scores make a solution score, unless a request says otherwise"""
    timeout_s: float = opt(300.0, above=0)
    """deadline of one request, search included: past it the client gets a 504 error body"""
    backend_timeout_s: float = opt(60.0, above=0)
    """longest wait for one generator or PRM call (also bounded by the request's deadline)"""
    retries: int = opt(2, min=0)
    """retries of a generator or PRM call after a connection error, a 429 or a 5xx"""
    max_concurrency: int = opt(8, min=1)
    """searches in flight; the next request gets a 429 at once"""
    generator_concurrency: int = opt(16, min=1)
    """generator requests in flight over all searches (a beam's or particles' prefixes go out together)"""

    def problems(self) -> list[str]:
        out = problems(self)
        out += [f"--{name.replace('_', '-')} {url!r} is not an http(s) URL, e.g. http://127.0.0.1:8000/v1"
                for name, url in (("generator_url", self.generator_url), ("prm_url", self.prm_url))
                if not url.startswith(("http://", "https://"))]
        if self.budget > self.max_budget:
            out.append(f"--budget {self.budget} is above --max-budget {self.max_budget}")
        return out

    def secret(self, env_name: str) -> str:
        return os.environ.get(env_name, "") if env_name else ""
