"""Accuracy against generator tokens for every search strategy, SmolLM2 generating and a PRM guiding it.

Problems: the demo's generator (``data_tools.synth.problems``) at 3 to 4 operations (``--min-ops``,
``--max-ops``), harder than the demo's 2, where SmolLM2-135M alone is often wrong; the generator is
asked after worked examples of the same length (the built-in ones have 2 operations and teach it to
stop after two steps). The PRM: ``--model`` (an artifact), or one trained here the way ``prm demo``
trains (Monte-Carlo rollout labels by the same SmolLM2 on gold and error-injected solutions of
``--train-problems`` such problems, then ``prm train``'s recipe), never on the evaluation problems
(a fresh seed, and any question seen in training dropped).

Then every strategy of ``serving.search`` (greedy once; the others at each of ``--budgets``) runs
over the ``--problems`` held-out problems: all problems of one (strategy, budget) in lockstep, so
each round is one batched generator call and one PRM call (``serving.search.lockstep``). Samples
are drawn from seeds of (problem, steps so far, sample index), and a sample drawn once is reused by
any later search that asks for the same one (``CompleterProposer``'s cache), as step scores are for
any prefix scored before: each strategy is charged the tokens and PRM steps it asked for, whether
or not they were computed again. That makes strategies compare on the same samples (common random
numbers) and the whole run several times cheaper.

    .venv/bin/python benchmarks/search_accuracy.py [--problems 60] [--budgets 2,4,8] [--model DIR]
    .venv/bin/python benchmarks/search_accuracy.py --problems 6 --budgets 1,2 --train-problems 12 --rollouts 2  # small

Last line, JSON: ``results[strategy][budget] = {accuracy, generator_tokens (mean per problem), prm_calls,
prm_steps_scored, seconds}``, ``oracle`` (share of problems whose budget rollouts hold a right answer),
and ``largest_budget``: majority vote's accuracy and the best PRM-guided strategy's among those that
spent at most 10% more generator tokens than majority vote at the largest budget.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from data_tools.answers import answers_match  # noqa: E402
from data_tools.labelling.prompt import render_prefix  # noqa: E402
from data_tools.progress import Progress  # noqa: E402
from data_tools.synth.problems import generate_dataset, generate_problem, gold_example  # noqa: E402
from serving.search import PRM_GUIDED, STRATEGIES, answer_key, run_search  # noqa: E402
from serving.search.completer import CompleterProposer  # noqa: E402
from serving.search.lockstep import Lockstep  # noqa: E402

EQUAL_TOKENS = 1.10  # "equal generator tokens": at most 10% more than majority vote spent


def few_shot(min_ops: int, max_ops: int, seed: int = 1_000_003, n: int = 4) -> str:
    """Worked examples as long as the problems, from problems of their own seed (never evaluated)."""
    rng = random.Random(seed)
    ops = [min_ops + i % (max_ops - min_ops + 1) for i in range(n)]
    gold = [gold_example(generate_problem(rng, f"shot{i}", k, 9)) for i, k in enumerate(ops)]
    return "".join(render_prefix(ex.prompt, ex.steps, few_shot="") + "\n" for ex in gold)


def load_generator(backbone: str, fp32: bool):
    from prm.generation import load_completer

    return load_completer(backbone, bf16=not fp32)


def train_prm(args, completer, shots: str, out: Path) -> tuple[Path, dict, set[str]]:
    """``prm demo``'s labelling and training on problems of ``--min-ops`` to ``--max-ops`` operations."""
    from data_tools.labelling import LabelConfig
    from data_tools.labelling.job import LabelJobConfig, run_label_job, runs_path
    from data_tools.schema import StepwiseExample, read_jsonl, write_jsonl
    from prm.train import train
    from serving.demo import DemoConfig, train_config

    data = out / "train"
    data.mkdir(parents=True, exist_ok=True)
    examples = generate_dataset(args.train_problems, seed=args.seed, min_steps=args.min_ops, max_steps=args.max_ops,
                                max_number=args.max_number)
    blind = [StepwiseExample(e.prompt, e.steps, None, {k: v for k, v in e.meta.items()
                                                      if k not in ("first_error", "error_kind")}) for e in examples]
    write_jsonl(data / "solutions.jsonl", blind)
    labelled_path = data / "labelled.jsonl"
    labelled_path.unlink(missing_ok=True)
    runs_path(labelled_path).unlink(missing_ok=True)
    completer.temperature, completer.max_new_tokens = args.label_temperature, 16 * args.max_ops + 8
    completer.stop = ("\n\n", "Question:")
    t0 = time.monotonic()
    result = run_label_job(data / "solutions.jsonl", labelled_path, completer,
                           LabelConfig(rollouts=args.rollouts, seed=args.seed), LabelJobConfig(), {"completer": "hf"},
                           shots)
    label_s = time.monotonic() - t0
    labelled = list(read_jsonl(labelled_path))
    t0 = time.monotonic()
    model = out / "prm"
    cfg = DemoConfig(backbone=args.backbone, epochs=args.epochs, layers=args.layers, freeze_layers=args.freeze_layers,
                     seed=args.seed)
    train(labelled, train_config(cfg, model))
    report = result.report.to_json()
    info = {"train_problems": args.train_problems, "labelled_solutions": len(labelled), "rollouts": report["rollouts"],
            "rollout_success_rate": round(report["success_rate"], 4), "label_seconds": round(label_s, 1),
            "train_seconds": round(time.monotonic() - t0, 1)}
    return model, info, {e.prompt for e in examples}


def eval_problems(args, seen: set[str]):
    rng = random.Random(args.seed + 7_919)
    out = []
    while len(out) < args.problems:
        p = generate_problem(rng, f"e{len(out):04d}", rng.randint(args.min_ops, args.max_ops), args.max_number)
        if p.question not in seen:
            seen.add(p.question)
            out.append(p)
    return out


class MemoScorer:
    """Step scores of (prompt, steps) pairs, each prefix of a scored solution remembered (a PRM's step
    scores are causal: a prefix's are the first ones of any solution that extends it)."""

    def __init__(self, scorer):
        self.scorer, self.memo, self.computed, self.asked = scorer, {}, 0, 0

    def __call__(self, items: list[tuple[str, list[str]]]) -> list[list[float]]:
        self.asked += len(items)
        keys = [(p, tuple(s)) for p, s in items]
        todo = list(dict.fromkeys(k for k in keys if k not in self.memo))
        if todo:
            self.computed += len(todo)
            for (prompt, steps), scores in zip(todo, self.scorer.score([(p, list(s)) for p, s in todo]), strict=True):
                for i in range(len(steps)):
                    self.memo[(prompt, steps[:i + 1])] = list(scores[:i + 1])
        return [self.memo[k] for k in keys]


def run_strategy(strategy, budget, problems, args, completer, scores, cache, count, shots) -> dict:
    lock = Lockstep()
    generate, score = lock.batched(completer.complete, "generate"), lock.batched(scores, "score")

    class Batched:
        complete = staticmethod(generate)

    def job(problem):
        def run():
            proposer = CompleterProposer(Batched(), seed=args.seed, few_shot=shots, count_tokens=count, cache=cache)
            return run_search(strategy, problem.question, proposer,
                              None if strategy not in PRM_GUIDED else lambda q, c: score([(q, x) for x in c]),
                              budget, seed=args.seed, max_steps=args.max_ops + 3)
        return run

    t0 = time.monotonic()
    results = lock.run([job(p) for p in problems])
    for r in results:
        if isinstance(r, BaseException):
            raise r
    n = len(problems)
    right = [answers_match(r.answer, str(p.answer)).correct for r, p in zip(results, problems, strict=True)]
    row = {"accuracy": round(sum(right) / n, 4), "generator_tokens": round(sum(r.generator_tokens for r in results) / n, 1),
           "prm_calls": round(sum(r.prm_calls for r in results) / n, 2),
           "prm_steps_scored": round(sum(r.prm_steps_scored for r in results) / n, 1),
           "finished": round(sum(r.finished for r in results) / n, 4), "seconds": round(time.monotonic() - t0, 1),
           "generator_calls": lock.calls.get("generate", 0)}
    if strategy == "majority_vote":  # the oracle: a right answer among the rollouts at all
        votes = [next(e for e in r.trace if e["event"] == "select")["votes"] for r in results]
        row["oracle"] = round(sum(answer_key(str(p.answer)) in v for v, p in zip(votes, problems, strict=True)) / n, 4)
    return row


def largest_budget(results: dict, budget: int) -> dict:
    mv = results["majority_vote"][str(budget)]
    fair = {s: results[s][str(budget)] for s in PRM_GUIDED if str(budget) in results.get(s, {})
            and results[s][str(budget)]["generator_tokens"] <= EQUAL_TOKENS * mv["generator_tokens"]}
    best = max(fair, key=lambda s: (fair[s]["accuracy"], -fair[s]["generator_tokens"]), default=None)
    return {"budget": budget, "majority_vote": mv["accuracy"], "majority_vote_tokens": mv["generator_tokens"],
            "best_prm_guided": fair[best]["accuracy"] if best else None, "best_prm_guided_strategy": best,
            "best_prm_guided_tokens": fair[best]["generator_tokens"] if best else None,
            "prm_guided_beats_majority_vote": bool(best) and fair[best]["accuracy"] > mv["accuracy"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="search_accuracy_out", help="folder for the training data and the PRM")
    ap.add_argument("--model", help="an artifact folder to guide the search (default: train one here)")
    ap.add_argument("--exclude", help="with --model: stepwise JSONL whose questions are never evaluated (default: "
                    "OUT/train/solutions.jsonl, what an earlier run trained on, when it exists)")
    ap.add_argument("--backbone", default="smollm2-135m", help="generator, and the PRM's backbone when trained here")
    ap.add_argument("--problems", type=int, default=60, help="held-out problems evaluated")
    ap.add_argument("--budgets", default="2,4,8", help="comma-separated budgets (rollouts' worth each)")
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--min-ops", type=int, default=3)
    ap.add_argument("--max-ops", type=int, default=4)
    ap.add_argument("--max-number", type=int, default=6)
    ap.add_argument("--temperature", type=float, default=0.7, help="generator sampling temperature (greedy: 0)")
    ap.add_argument("--prm-backend", default="torch-bf16")
    ap.add_argument("--train-problems", type=int, default=100)
    ap.add_argument("--rollouts", type=int, default=8, help="Monte-Carlo rollouts per step prefix when labelling")
    ap.add_argument("--label-temperature", type=float, default=0.5)
    ap.add_argument("--epochs", type=float, default=8.0)
    ap.add_argument("--layers", type=int, default=21)
    ap.add_argument("--freeze-layers", type=int, default=10)
    ap.add_argument("--fp32", action="store_true", help="generate in fp32 (the tiny test backbone)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default, all cores)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    budgets = sorted({int(b) for b in args.budgets.split(",")}, reverse=True)  # largest first: later ones reuse samples
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown or "majority_vote" not in strategies or min(budgets) < 1 or args.min_ops > args.max_ops:
        ap.error(f"strategies from {STRATEGIES} including majority_vote (unknown: {unknown}), budgets >= 1, "
                 "--min-ops <= --max-ops")
    t_start, out = time.monotonic(), Path(args.out)
    shots = few_shot(args.min_ops, args.max_ops)
    completer = load_generator(args.backbone, args.fp32)
    summary: dict = {"problems": args.problems, "ops": [args.min_ops, args.max_ops], "budgets": sorted(budgets)}
    seen: set[str] = set()
    if args.model:
        model = Path(args.model)
        exclude = Path(args.exclude) if args.exclude else out / "train" / "solutions.jsonl"
        if exclude.is_file():  # the PRM's training questions stay out of the evaluation
            from data_tools.schema import read_jsonl

            seen = {e.prompt for e in read_jsonl(exclude)}
    else:
        print("[train] labelling and training the PRM", file=sys.stderr, flush=True)
        model, summary["prm_training"], seen = train_prm(args, completer, shots, out)
    from prm.generation import HFCompleter
    from prm.scoring import Scorer

    scores = MemoScorer(Scorer(model, backend=args.prm_backend))
    problems = eval_problems(args, seen)
    tok = completer.tokenizer
    count = lambda text: len(tok(text, add_special_tokens=False)["input_ids"]) + 1  # noqa: E731 (+1: the newline)
    completer.temperature, completer.max_new_tokens, completer.stop = args.temperature, 40, ("\n", "Question:")
    greedy = HFCompleter(completer.model, tok, max_new_tokens=40, temperature=0.0, stop=("\n", "Question:"),
                         shared_prefix_attention=completer.shared_prefix_attention)
    plan = [("greedy", 1)] * ("greedy" in strategies) + [(s, b) for b in budgets for s in strategies if s != "greedy"]
    results: dict = {}
    sampled_cache: dict = {}
    progress = Progress(len(plan), "search_accuracy", unit="run")
    for strategy, budget in plan:
        gen = greedy if strategy == "greedy" else completer
        row = run_strategy(strategy, budget, problems, args, gen, scores, {} if strategy == "greedy" else sampled_cache,
                           count, shots)
        results.setdefault(strategy, {})[str(budget)] = row
        print(f"{strategy:>16} budget {budget:>2}: accuracy {row['accuracy']:.3f}, {row['generator_tokens']:.0f} "
              f"generator tokens, {row['prm_steps_scored']:.0f} PRM steps, {row['seconds']:.0f} s",
              file=sys.stderr, flush=True)
        progress.update(1, last=f"{strategy}@{budget} acc {row['accuracy']:.2f}")
    progress.close()
    summary.update(results=results, largest_budget=largest_budget(results, max(budgets)),
                   prm_items_asked=scores.asked, prm_items_computed=scores.computed,
                   seconds_total=round(time.monotonic() - t_start, 1), model=str(model))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
