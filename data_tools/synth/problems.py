"""Seeded multi-step arithmetic word problems with gold solutions, and exact error injection.

Each problem is a start amount followed by a few additions and subtractions ("has a, buys b, gives
away c"). The gold solution writes one equation per step (``8 - 2 = 6``) and ends with
``The answer is N.``: the fixed format that a small completer can continue (see DESIGN.md: a chat
prompt gives the default backbone no signal, a plain few-shot completion in one format does).

Error injection changes one step (a calculation slip, a wrong operator or a wrong operand), carries
the wrong value through the later steps so they stay self-consistent, and so changes the final
answer. The step it changed is the ground truth ``meta["first_error"]``; labellers never see it.

This module owns the demo's synthetic data only; injecting errors into GSM8K solutions belongs to
``data_tools.synth.inject`` (with ``calculations`` and ``variants``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from data_tools.schema import StepwiseExample

NAMES = ["Tom", "Anna", "Ben", "Lucy", "Sam", "Mia", "Leo", "Emma", "Max", "Zoe", "Jack", "Lily"]
ITEMS = ["apples", "pencils", "stickers", "marbles", "cookies", "books", "cards", "shells", "coins", "toys"]
# Two verbs only: with more (finds, wins, sells, ...) SmolLM2-135M picks the wrong operator so often
# that rollouts from a correct prefix rarely succeed and the labels lose their signal.
ADD_PHRASES = ["{name} buys {n} more {items}."]
SUB_PHRASES = ["{name} gives away {n} {items}."]

ERROR_KINDS = ("slip", "operator", "operand")


@dataclass(frozen=True)
class Op:
    sign: str  # "+" or "-"
    amount: int
    clause: str = ""  # the problem's sentence for this op, restated by the step ("Tom buys 3 more apples")


@dataclass(frozen=True)
class Problem:
    id: str
    question: str
    start: int
    ops: tuple[Op, ...]

    @property
    def answer(self) -> int:
        return run_ops(self.start, self.ops)[-1]


def run_ops(start: int, ops: tuple[Op, ...] | list[Op]) -> list[int]:
    """Running values after each op."""
    values, v = [], start
    for op in ops:
        v = v + op.amount if op.sign == "+" else v - op.amount
        values.append(v)
    return values


def render_steps(start: int, ops: list[Op] | tuple[Op, ...], results: list[int],
                 clauses: list[str] | None = None) -> list[str]:
    """One step per op, "<clause>: a + b = c", then the answer step. ``results`` may be wrong.

    ``clauses`` default to the ops' own; an injected error passes the gold ones, so a step keeps
    restating the problem faithfully while its equation goes wrong.
    """
    steps, left = [], start
    for op, res, clause in zip(ops, results, clauses or [o.clause for o in ops], strict=True):
        steps.append(f"{clause}: {left} {op.sign} {op.amount} = {res}" if clause else f"{left} {op.sign} {op.amount} = {res}")
        left = res
    steps.append(f"The answer is {results[-1]}.")
    return steps


def generate_problem(rng: random.Random, pid: str, n_steps: int, max_number: int = 6) -> Problem:
    """One problem of ``n_steps`` additions/subtractions; amounts stay at most ``max_number``."""
    name, items = rng.choice(NAMES), rng.choice(ITEMS)
    start = rng.randint(3, max_number)
    v, ops, sentences = start, [], [f"{name} has {start} {items}."]
    for _ in range(n_steps):
        if v > 3 and rng.random() < 0.5:
            op = Op("-", rng.randint(1, min(v - 1, max_number)))
            phrase = rng.choice(SUB_PHRASES)
        else:
            op = Op("+", rng.randint(1, max_number))
            phrase = rng.choice(ADD_PHRASES)
        sentence = phrase.format(name=name, n=op.amount, items=items)
        op = Op(op.sign, op.amount, sentence.rstrip("."))
        v = run_ops(v, [op])[0]
        ops.append(op)
        sentences.append(sentence)
    sentences.append(f"How many {items} does {name} have now?")
    return Problem(id=pid, question=" ".join(sentences), start=start, ops=tuple(ops))


def gold_example(problem: Problem) -> StepwiseExample:
    results = run_ops(problem.start, problem.ops)
    return StepwiseExample(
        prompt=problem.question,
        steps=render_steps(problem.start, problem.ops, results),
        meta={"id": f"{problem.id}-gold", "problem_id": problem.id, "answer": str(problem.answer),
              "first_error": -1, "error_kind": None},
    )


def inject_error(problem: Problem, rng: random.Random) -> StepwiseExample | None:
    """A wrong solution with one injected error, carried through; None if no valid error was found."""
    k = len(problem.ops)
    for _ in range(20):
        step, kind = rng.randrange(k), rng.choice(ERROR_KINDS)
        ops = list(problem.ops)
        gold_results = run_ops(problem.start, problem.ops)
        left = problem.start if step == 0 else gold_results[step - 1]
        delta = rng.choice([-1, 1]) * rng.randint(1, 5)
        if kind == "operator":
            flipped = Op("-" if ops[step].sign == "+" else "+", ops[step].amount, ops[step].clause)
            ops[step] = flipped
            wrong = run_ops(left, [flipped])[0]
        elif kind == "operand":
            if ops[step].amount + delta <= 0:
                continue
            ops[step] = Op(ops[step].sign, ops[step].amount + delta, ops[step].clause)
            wrong = run_ops(left, [ops[step]])[0]
        else:  # slip: right equation, wrong result
            wrong = gold_results[step] + delta
        results = gold_results[:step] + [wrong] + run_ops(wrong, ops[step + 1:])
        if min(results) < 0 or results[-1] == problem.answer:
            continue
        return StepwiseExample(
            prompt=problem.question,
            steps=render_steps(problem.start, ops, results, [o.clause for o in problem.ops]),
            meta={"id": f"{problem.id}-err", "problem_id": problem.id, "answer": str(problem.answer),
                  "first_error": step, "error_kind": kind},
        )
    return None


def generate_dataset(n_problems: int, seed: int = 0, min_steps: int = 2, max_steps: int = 2,
                     max_number: int = 6) -> list[StepwiseExample]:
    """For each problem, its gold solution and (when possible) one solution with an injected error."""
    if not 1 <= min_steps <= max_steps:
        raise ValueError(f"need 1 <= --min-steps <= --max-steps, got {min_steps} and {max_steps}")
    rng = random.Random(seed)
    out: list[StepwiseExample] = []
    for i in range(n_problems):
        problem = generate_problem(rng, f"p{i:05d}", rng.randint(min_steps, max_steps), max_number)
        out.append(gold_example(problem))
        wrong = inject_error(problem, rng)
        if wrong is not None:
            out.append(wrong)
    return out


def ground_truth_labels(example: StepwiseExample) -> list[bool]:
    """Step correctness implied by the injected error: steps before it right, it and after wrong."""
    first = example.meta.get("first_error", -1)
    return [first < 0 or i < first for i in range(len(example.steps))]
