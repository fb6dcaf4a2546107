"""The prompt format rollouts continue: ``FEW_SHOT`` worked examples and ``render_prefix``.

How the completer is asked matters as much as the completer (DESIGN.md): a plain completion after a
few worked examples in one fixed format. ``FEW_SHOT`` is that format; ``render_prefix`` builds the
text a rollout continues.
"""

from __future__ import annotations

from collections.abc import Sequence

# Four worked examples covering every order of the two operations, each step restating the
# sentence it acts on. Measured with SmolLM2-135M on two-step problems (see the demo's summary).
FEW_SHOT = (
    "Question: Tom has 5 apples. Tom buys 3 more apples. Tom gives away 2 apples. "
    "How many apples does Tom have now?\nAnswer:\nTom buys 3 more apples: 5 + 3 = 8\n"
    "Tom gives away 2 apples: 8 - 2 = 6\nThe answer is 6.\n\n"
    "Question: Anna has 9 pencils. Anna gives away 4 pencils. Anna buys 7 more pencils. "
    "How many pencils does Anna have now?\nAnswer:\nAnna gives away 4 pencils: 9 - 4 = 5\n"
    "Anna buys 7 more pencils: 5 + 7 = 12\nThe answer is 12.\n\n"
    "Question: Ben has 6 marbles. Ben buys 2 more marbles. Ben buys 5 more marbles. "
    "How many marbles does Ben have now?\nAnswer:\nBen buys 2 more marbles: 6 + 2 = 8\n"
    "Ben buys 5 more marbles: 8 + 5 = 13\nThe answer is 13.\n\n"
    "Question: Mia has 10 cards. Mia gives away 3 cards. Mia gives away 5 cards. "
    "How many cards does Mia have now?\nAnswer:\nMia gives away 3 cards: 10 - 3 = 7\n"
    "Mia gives away 5 cards: 7 - 5 = 2\nThe answer is 2.\n\n"
)


def render_prefix(prompt: str, steps: Sequence[str], few_shot: str | None = None) -> str:
    """The text a rollout continues: worked examples, the question, and the steps so far."""
    text = f"{FEW_SHOT if few_shot is None else few_shot}Question: {prompt}\nAnswer:\n"
    return text + "".join(s + "\n" for s in steps)
