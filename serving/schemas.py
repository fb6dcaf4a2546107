"""Request and response shapes of the scoring service (pydantic), shared by service and docs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Aggregate = Literal["min", "last", "prod", "mean"]


class Item(BaseModel):
    prompt: str = Field(description="The problem text.")
    steps: list[str] = Field(min_length=1, description="The solution's steps, in order.")


class Result(BaseModel):
    step_scores: list[float] = Field(description="Calibrated probability that each step is correct.")
    score: float = Field(description="The solution score: step scores aggregated as requested.")
    tokens: int = Field(default=0, description="Tokens the model read for this solution (prompt and steps as "
                                               "rendered for it; the prefix cache may have computed fewer).")


class StepScores(BaseModel):
    """One solution's answer from the inner inference service: its step scores, or why it was not scored."""
    step_scores: list[float] = Field(default_factory=list)
    too_long: str | None = Field(default=None, description="Set when the solution does not fit the model.")
    tokens: int = Field(default=0, description="Tokens the model read for this solution.")


class ScoreResponse(BaseModel):
    results: list[Result]


class RankResponse(BaseModel):
    scores: list[float] = Field(description="Each candidate's solution score, in the order given.")
    order: list[int] = Field(description="Candidate indices from best to worst (ties keep the given order).")
    best: int = Field(description="Index of the best candidate.")


class OpenRLHFResponse(BaseModel):
    rewards: list[float] = Field(description="One reward per query: its solution score.")
    scores: list[float] = Field(description="The same scores (OpenRLHF logs both).")
    extra_logs: dict[str, list[float]] = Field(description="Per-query extras: number of steps scored.")


EXAMPLE_ITEMS = [Item(prompt="Tom has 5 apples. Tom buys 3 more apples. How many apples does Tom have now?",
                      steps=["5 + 3 = 8\nThe answer is 8."])]
