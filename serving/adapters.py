"""PRM scores as rewards for RL trainers, through ``PRMClient``: TRL GRPO, veRL, per-step rewards, and
its_hub's process reward model interface (``its_hub_prm``).

Each adapter turns what a trainer hands a reward function (prompts and completions, as text or chat
messages) into scoring requests: the prompt is the problem, the completion is split into steps
(``data_tools.splitting``, one step per line by default), and the solution score aggregates the
step scores (``min`` by default). A completion with no step at all (empty, or only whitespace) gets
``empty_reward`` and is counted in ``stats``, never sent and never fatal: policies emit such output
early in training. Imports neither torch nor ``prm``, so a trainer's environment stays light.

Not promised: that the trainer's chat template matches what the PRM was trained on, or any
truncation of very long completions (the service answers 413 past its limits).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from data_tools.splitting import split_steps
from serving.client import PRMClient


def message_text(value: Any) -> str:
    """Text of a completion or prompt given as a string or as chat messages.

    For messages (TRL's conversational format: ``[{"role": ..., "content": ...}, ...]``) a prompt is its
    last user message and a completion is its assistant messages joined by newlines.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return str(value.get("content", ""))
    if isinstance(value, Sequence):
        messages = [m for m in value if isinstance(m, dict)]
        assistant = [str(m.get("content", "")) for m in messages if m.get("role") == "assistant"]
        if assistant:
            return "\n".join(assistant)
        user = [str(m.get("content", "")) for m in messages if m.get("role") == "user"]
        return user[-1] if user else "\n".join(str(m.get("content", "")) for m in messages)
    raise TypeError(f"expected a string or a list of chat messages, got {type(value).__name__}")


class StepRewarder:
    """Scores (prompt, completion) pairs through a PRM service; the shared core of every adapter."""

    def __init__(self, client: PRMClient, aggregate: str = "min", split: str = "lines",
                 pattern: str | None = None, empty_reward: float = 0.0, batch_size: int = 64):
        self.client, self.aggregate = client, aggregate
        self.split, self.pattern = split, pattern
        self.empty_reward, self.batch_size = empty_reward, batch_size
        self.stats: Counter = Counter()

    def step_scores(self, prompts: Sequence[Any], completions: Sequence[Any]) -> list[list[float]]:
        """Per-step scores of each completion ([] for a completion with no step)."""
        return [r["step_scores"] if r else [] for r in self._score(prompts, completions)]

    def rewards(self, prompts: Sequence[Any], completions: Sequence[Any]) -> list[float]:
        """One solution score per completion (``empty_reward`` where there is no step)."""
        return [r["score"] if r else self.empty_reward for r in self._score(prompts, completions)]

    def _score(self, prompts: Sequence[Any], completions: Sequence[Any]) -> list[dict | None]:
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions; pass one prompt per "
                             "completion (repeat a prompt for each of its samples)")
        items, where = [], []
        for i, (p, c) in enumerate(zip(prompts, completions, strict=True)):
            steps = split_steps(message_text(c), self.split, self.pattern)
            if steps:
                items.append({"prompt": message_text(p), "steps": steps})
                where.append(i)
            else:
                self.stats["empty_completions"] += 1
        self.stats["scored"] += len(items)
        out: list[dict | None] = [None] * len(completions)
        for start in range(0, len(items), self.batch_size):
            results = self.client.score(items[start:start + self.batch_size], aggregate=self.aggregate)
            for i, r in zip(where[start:start + self.batch_size], results, strict=True):
                out[i] = r
        return out


def trl_reward_function(client: PRMClient, name: str = "prm", **kwargs) -> Callable[..., list[float]]:
    """A reward function with the signature TRL's GRPOTrainer calls.

    ``f(prompts=..., completions=..., completion_ids=..., **dataset_columns) -> list[float]``; pass it as
    ``GRPOTrainer(reward_funcs=[trl_reward_function(PRMClient(url))], ...)``. ``kwargs`` go to
    ``StepRewarder`` (aggregate, split, pattern, empty_reward, batch_size).
    """
    rewarder = StepRewarder(client, **kwargs)

    def reward(prompts, completions, completion_ids=None, **columns) -> list[float]:
        return rewarder.rewards(prompts, completions)

    reward.__name__ = name  # TRL logs each reward function under its __name__
    reward.rewarder = rewarder  # type: ignore[attr-defined]
    return reward


def verl_compute_score(client: PRMClient, prompt_key: str = "question", **kwargs) -> Callable[..., float]:
    """veRL's custom reward function: ``compute_score(data_source, solution_str, ground_truth, extra_info)``.

    veRL does not pass the prompt itself, so it is read from ``extra_info[prompt_key]`` (put it there when
    preparing the dataset); without it the solution is scored with an empty prompt.
    """
    rewarder = StepRewarder(client, **kwargs)

    def compute_score(data_source, solution_str, ground_truth=None, extra_info=None, **_) -> float:
        prompt = (extra_info or {}).get(prompt_key, "")
        return rewarder.rewards([prompt], [solution_str])[0]

    compute_score.rewarder = rewarder  # type: ignore[attr-defined]
    return compute_score


class ItsHubPRM:
    """The PRM service as its_hub's process reward model (``its_hub.AbstractProcessRewardModel``).

    its_hub's step-wise algorithms (``BeamSearch``, ``ParticleFiltering``, ``ParticleGibbs``) call
    ``await prm.ascore(prompt, responses)`` with each partial response as one string, its steps joined
    by ``StepGeneration``'s ``step_token``, and read one score per response (a probability: particle
    filtering takes its logit). So, as its_hub's own ``LocalVllmProcessRewardModel``: ``score`` and
    ``ascore`` take a prompt (a string, chat messages or its_hub's ``ChatMessages``; the last user
    message is the problem) and a response or a list of them, split each into steps (``split``: one
    per line by default, which fits ``step_token="\\n"`` or ``"\\n\\n"``) and return its aggregated
    score (a float for one response, a list for several; ``empty_reward`` for a response with no
    step). Works with ``PRMClient`` (``ascore`` runs it in a thread) or ``AsyncPRMClient`` (``score``
    runs it with ``asyncio.run``). Build one with ``its_hub_prm``, which makes it a subclass of
    its_hub's class; this module never imports its_hub.
    """

    def __init__(self, client, aggregate: str = "min", split: str = "lines", pattern: str | None = None,
                 empty_reward: float = 0.0):
        self.client, self.aggregate, self.split, self.pattern = client, aggregate, split, pattern
        self.empty_reward = empty_reward
        self.stats: Counter = Counter()

    def score(self, prompt_or_messages: Any, response_or_responses: str | Sequence[str]) -> float | list[float]:
        if _is_async(self.client):
            import asyncio

            return asyncio.run(self.ascore(prompt_or_messages, response_or_responses))
        items, where, out = self._items(prompt_or_messages, response_or_responses)
        return self._fill(out, where, self.client.score(items, aggregate=self.aggregate) if items else [],
                          isinstance(response_or_responses, str))

    async def ascore(self, prompt_or_messages: Any, response_or_responses: str | Sequence[str]) -> float | list[float]:
        if not _is_async(self.client):
            import asyncio

            return await asyncio.to_thread(self.score, prompt_or_messages, response_or_responses)
        items, where, out = self._items(prompt_or_messages, response_or_responses)
        results = await self.client.score(items, aggregate=self.aggregate) if items else []
        return self._fill(out, where, results, isinstance(response_or_responses, str))

    def _items(self, prompt_or_messages: Any, responses: str | Sequence[str]) -> tuple[list[dict], list[int], list]:
        prompt = its_hub_prompt(prompt_or_messages)
        responses = [responses] if isinstance(responses, str) else list(responses)
        items, where = [], []
        for i, response in enumerate(responses):
            steps = split_steps(message_text(response), self.split, self.pattern)
            if steps:
                items.append({"prompt": prompt, "steps": steps})
                where.append(i)
            else:
                self.stats["empty_responses"] += 1
        self.stats["scored"] += len(items)
        return items, where, [self.empty_reward] * len(responses)

    @staticmethod
    def _fill(out: list, where: list[int], results: list[dict], single: bool) -> float | list[float]:
        for i, r in zip(where, results, strict=True):
            out[i] = float(r["score"])
        return out[0] if single else out


def its_hub_prompt(value: Any) -> str:
    """The problem text of what its_hub passes as a prompt: a string, chat messages (dicts or its_hub's
    ``ChatMessage``) or its ``ChatMessages`` wrapper (the last user message)."""
    if hasattr(value, "to_chat_messages"):
        value = value.to_chat_messages()
    if isinstance(value, (list, tuple)):
        value = [m if isinstance(m, dict) else
                 {"role": getattr(m, "role", ""),
                  "content": m.extract_text_content() if hasattr(m, "extract_text_content") else getattr(m, "content", "")}
                 for m in value]
    return message_text(value)


def _is_async(client) -> bool:
    import inspect

    return inspect.iscoroutinefunction(getattr(client, "score", None))


def its_hub_prm(client, **kwargs) -> ItsHubPRM:
    """An ``ItsHubPRM`` that is an instance of ``its_hub.AbstractProcessRewardModel`` (its_hub imported here):

        BeamSearch(StepGeneration(max_steps=8, step_token="\\n", stop_token="answer is"), its_hub_prm(PRMClient(url)), beam_width=4)

    ``kwargs`` go to ``ItsHubPRM`` (aggregate, split, pattern, empty_reward).
    """
    from its_hub import AbstractProcessRewardModel

    cls = type("ItsHubProcessRewardModel", (ItsHubPRM, AbstractProcessRewardModel), {"__module__": __name__})
    return cls(client, **kwargs)
