"""PRM800K (phase 1 and phase 2 JSON lines): human step ratings on model-generated MATH solutions.

Each row is one labelled trajectory: ``question`` (``problem``, ``ground_truth_answer``, ...) and
``label.steps``, where every step holds one or more rated ``completions`` (rating -1, 0, +1 or
null), the index of the ``chosen_completion`` the labeller went on with, or a ``human_completion``
written when none was acceptable; ``label.finish_reason`` says how labelling ended.

Reading follows the chosen path: the chosen completion of each step (labelled by its rating), or
the human one (labelled right). At the step where the path stops with no completion chosen, when
the labeller ``found_error``, the rated-wrong step is kept as the last (wrong) step: the
pre-generated one in phase 2, the first completion rated -1 in phase 1. Rating 0 ("neutral")
maps to ``rating0``: right (default), wrong (what TRL's trl-lib/prm800k uses) or unlabelled.
``alternatives`` also yields every rated completion that was not chosen as its own example (the
path before it, then it), as TRL's conversion does; ``drop_quality_control`` skips the
quality-control and screening rows.

``meta`` keeps the labeller, timestamp, generation, flags, ``finish_reason``, ``total_time``, the
question's other fields (``ground_truth_answer`` also as ``answer``, the gold the labeller checks
against; the pre-generated steps are dropped as they repeat the path), and per kept step its
``ratings`` and ``sources`` (model or human).

There is no writer: reading keeps one path out of a tree of rated alternatives, and a file written
from that path alone would claim labels and choices that no labeller made.
"""

from __future__ import annotations

from typing import Any

from data_tools.formats.fields import field_error, need, need_object
from data_tools.schema import Label, StepwiseExample

RATING0 = ("true", "false", "none")
_ROW_META = ("labeler", "timestamp", "generation", "is_quality_control_question", "is_initial_screening_question")


def _label(rating: Any, rating0: str, where: str) -> Label:
    if rating is None:
        return None
    if rating not in (-1, 0, 1) or isinstance(rating, bool):
        raise field_error(where, "a rating -1, 0, 1 or null", rating)
    if rating == 0:
        return {"true": True, "false": False, "none": None}[rating0]
    return rating == 1


def _text(completion: Any, where: str) -> str:
    text = completion.get("text") if isinstance(completion, dict) else completion
    if not isinstance(text, str) or not text.strip():
        raise field_error(f"{where}.text", "a non-empty step text", text)
    return text


def from_row(row: Any, rating0: str = "true", drop_quality_control: bool = False,
             alternatives: bool = False) -> list[StepwiseExample]:
    row = need_object(row)
    if drop_quality_control and (row.get("is_quality_control_question") or row.get("is_initial_screening_question")):
        return []
    question, label = need(row, "question"), need(row, "label")
    if not isinstance(question, dict):
        raise field_error("question", "an object", question)
    if not isinstance(label, dict):
        raise field_error("label", "an object", label)
    problem = question.get("problem")
    if not isinstance(problem, str):
        raise field_error("question.problem", "a string", problem)
    steps_in = label.get("steps")
    if not isinstance(steps_in, list):
        raise field_error("label.steps", "a list of steps", steps_in)
    finish = label.get("finish_reason")
    pre_generated = question.get("pre_generated_steps") or []

    texts: list[str] = []
    labels: list[Label] = []
    ratings: list[Any] = []
    sources: list[str] = []
    branches: list[tuple[int, str, Any]] = []  # (step index, text, rating) of completions not chosen
    for i, step in enumerate(steps_in):
        where = f"label.steps[{i}]"
        if not isinstance(step, dict):
            raise field_error(where, "an object", step)
        completions = step.get("completions") or []
        if not isinstance(completions, list):
            raise field_error(f"{where}.completions", "a list or null", completions)
        chosen, human = step.get("chosen_completion"), step.get("human_completion")
        if chosen is not None and (not isinstance(chosen, int) or isinstance(chosen, bool)
                                   or not 0 <= chosen < len(completions)):
            raise field_error(f"{where}.chosen_completion", f"null or an index below {len(completions)}", chosen)
        for j, completion in enumerate(completions):
            if j != chosen and isinstance(completion, dict) and completion.get("rating") is not None:
                branches.append((i, _text(completion, f"{where}.completions[{j}]"), completion["rating"]))
        if chosen is not None:
            completion = completions[chosen]
            if not isinstance(completion, dict):
                raise field_error(f"{where}.completions[{chosen}]", "an object with text and rating", completion)
            rating = completion.get("rating")
            texts.append(_text(completion, f"{where}.completions[{chosen}]"))
            labels.append(_label(rating, rating0, f"{where}.completions[{chosen}].rating"))
            ratings.append(rating)
            sources.append("model")
        elif human is not None:
            texts.append(_text(human, f"{where}.human_completion"))
            labels.append(True)  # labellers wrote their own step only when it was right
            ratings.append(human.get("rating") if isinstance(human, dict) else None)
            sources.append("human")
        else:
            wrong = _found_error(completions, pre_generated, i) if finish == "found_error" else None
            if wrong is not None:
                texts.append(_text(wrong, f"{where}.completions"))
                labels.append(False)
                ratings.append(-1)
                sources.append("model")
                branches = [b for b in branches if not (b[0] == i and b[1] == texts[-1])]
            break

    meta: dict[str, Any] = {k: row.get(k) for k in _ROW_META}
    meta.update({k: v for k, v in question.items() if k not in ("problem", "pre_generated_steps")})
    meta["answer"] = question.get("ground_truth_answer")
    meta.update(finish_reason=finish, total_time=label.get("total_time"), ratings=ratings, sources=sources)
    # A trajectory abandoned before its first step has no path; its rated alternatives still count.
    out = [StepwiseExample(problem, texts, labels, meta)] if texts else []
    if alternatives:
        for i, text, rating in branches:
            lab = _label(rating, rating0, f"label.steps[{i}].completions[].rating")
            branch_meta = dict(meta, ratings=ratings[:i] + [rating], sources=sources[:i] + ["model"],
                               alternative_at=i)
            out.append(StepwiseExample(problem, texts[:i] + [text], labels[:i] + [lab], branch_meta))
    return out


def _found_error(completions: list[Any], pre_generated: list[Any], index: int) -> Any:
    """The completion the labeller rated wrong where the path stops: phase 2's own step, else the first -1."""
    rated_wrong = [c for c in completions if isinstance(c, dict) and c.get("rating") == -1]
    if index < len(pre_generated):
        for c in rated_wrong:
            if c.get("text") == pre_generated[index]:
                return c
    return rated_wrong[0] if rated_wrong else None
