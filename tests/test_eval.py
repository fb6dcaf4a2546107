"""prm.eval: ProcessBench, best-of-N, step AUROC and the last-step share against hand-computed values,
trivial predictors, brute force and scikit-learn; then ``prm eval`` on the fixture and a tiny artifact."""

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from prm.eval.metrics import (
    Candidate,
    auroc,
    best_of_n,
    best_of_n_curve,
    choose_threshold,
    first_error,
    last_step_share,
    predicted_first_error,
    processbench,
    step_auroc,
)

FIXTURES = Path(__file__).parent / "fixtures"

# (first-error label, step scores): predictions at 0.5 worked out by hand in the comments.
SOLUTIONS = [
    (1, [0.9, 0.3, 0.2]),         # predicts 1: match
    (0, [0.6, 0.4]),              # predicts 1: miss
    (2, [0.8, 0.7, 0.45, 0.1]),   # predicts 2: match
    (1, [0.95, 0.51]),            # predicts -1: miss
    (-1, [0.9, 0.8]),             # predicts -1: match
    (-1, [0.7, 0.2, 0.9]),        # predicts 1: miss
    (-1, [0.55]),                 # predicts -1: match
]
LABELS = [y for y, _ in SOLUTIONS]
SCORES = [s for _, s in SOLUTIONS]


def test_processbench_matches_hand_computed_metrics():
    m = processbench(LABELS, SCORES, 0.5)
    assert m["acc_erroneous"] == pytest.approx(2 / 4)
    assert m["acc_correct"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(4 / 7)  # 2 * (1/2) * (2/3) / (1/2 + 2/3)
    assert (m["n"], m["n_erroneous"], m["n_correct"]) == (7, 4, 3)
    # a step exactly at the threshold is not below it
    assert predicted_first_error([0.5, 0.49], 0.5) == 1
    assert predicted_first_error([0.7, 0.9], 0.5) == -1


def test_trivial_predictors_give_their_known_values():
    all_right = processbench(LABELS, [[1.0] * len(s) for s in SCORES])
    assert (all_right["acc_erroneous"], all_right["acc_correct"], all_right["f1"]) == (0.0, 1.0, 0.0)
    all_wrong = processbench(LABELS, [[0.0] * len(s) for s in SCORES])  # always "the first step"
    assert (all_wrong["acc_erroneous"], all_wrong["acc_correct"], all_wrong["f1"]) == (0.25, 0.0, 0.0)
    perfect = [[1.0 if y < 0 or i < y else 0.0 for i in range(len(s))] for y, s in SOLUTIONS]
    assert processbench(LABELS, perfect)["f1"] == 1.0
    # one class absent: its accuracy, and so F1, is undefined rather than a made-up number
    only_wrong = processbench([0, 1], [[0.1, 0.9], [0.9, 0.1]])
    assert only_wrong["acc_erroneous"] == 1.0 and only_wrong["acc_correct"] is None and only_wrong["f1"] is None


def test_first_error_from_step_labels():
    assert first_error([True, True, False, None]) == 2  # ProcessBench: unlabelled after the error
    assert first_error([1.0, 1.0]) == -1
    assert first_error([False]) == 0
    assert first_error([1.0, 0.0, 0.0]) == 1
    assert first_error([True, None, False]) is None  # step 1 unknown: the first error cannot be told
    assert first_error([0.75, 0.25]) == -1  # soft labels: right above 0 (any rollout succeeded), the schema's rule


def _brute_best_f1(labels, scores):
    values = sorted({v for s in scores for v in s})
    cands = values + [(a + b) / 2 for a, b in zip(values, values[1:], strict=False)] + [values[-1] + 1, values[0] - 1]
    return max(processbench(labels, scores, t)["f1"] for t in cands)


def test_chosen_threshold_maximises_f1_exactly():
    t, f1 = choose_threshold(LABELS, SCORES)
    assert f1 == pytest.approx(_brute_best_f1(LABELS, SCORES))
    assert processbench(LABELS, SCORES, t)["f1"] == pytest.approx(f1)
    rng = random.Random(0)
    for _ in range(200):
        sols = []
        for _ in range(rng.randint(2, 12)):
            n = rng.randint(1, 5)
            scores = [round(rng.random(), 1) for _ in range(n)]  # coarse: many ties
            sols.append((rng.randint(-1, n - 1), scores))
        labels, scores = [y for y, _ in sols], [s for _, s in sols]
        if min(labels) >= 0 or max(labels) < 0:
            continue
        t, f1 = choose_threshold(labels, scores)
        assert f1 == pytest.approx(_brute_best_f1(labels, scores))
        assert processbench(labels, scores, t)["f1"] == pytest.approx(f1)
    with pytest.raises(ValueError, match="solutions with an error and solutions without one"):
        choose_threshold([0, 1], [[0.1], [0.9, 0.1]])


def test_auroc_is_exact_with_ties():
    from sklearn.metrics import roc_auc_score

    assert auroc([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1]) == 1.0
    assert auroc([1, 0], [0.5, 0.5]) == 0.5
    assert np.isnan(auroc([1, 1], [0.2, 0.3]))
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.integers(0, 2, 300)
        s = rng.integers(0, 10, 300) / 10  # heavy ties
        assert auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    # the old import path still works (serving.demo used it)
    from prm.evaluation import auroc as old

    assert old is auroc


def test_step_auroc_skips_unlabelled_steps():
    labels = [[True, False, None], [True, True]]
    scores = [[0.9, 0.1, 0.95], [0.8, 0.7]]
    assert step_auroc(labels, scores) == 1.0  # the unlabelled 0.95 would otherwise spoil it


def test_last_step_share():
    labels = [1, 0, 2, -1]
    scores = [[0.9, 0.2, 0.3],      # lowest at step 1: not the last
              [0.8, 0.6, 0.1],      # lowest at the last step
              [0.7, 0.7, 0.3, 0.3],  # running-minimum style tie: first lowest is step 2, not the last
              [0.1, 0.9]]           # right solution: not counted
    m = last_step_share(labels, scores)
    assert m["n_wrong"] == 3
    assert m["last_step_min_share"] == pytest.approx(1 / 3)
    assert m["last_step_error_share"] == pytest.approx(0.0)
    outcome_model = last_step_share([0, 1], [[0.9, 0.8, 0.1], [0.9, 0.9, 0.2]])
    assert outcome_model["last_step_min_share"] == 1.0


BON = [
    # problem A: the PRM's favourite is wrong, the vote goes to the wrong '5', the weighted vote to '7'
    [Candidate(0.9, "5", False), Candidate(0.8, "7", True), Candidate(0.5, "7", True),
     Candidate(0.2, "5", False), Candidate(0.1, "5", False)],
    # problem B: ties everywhere count one half
    [Candidate(0.6, "3", True), Candidate(0.6, "4", False)],
    # problem C: a candidate with no final answer cannot vote
    [Candidate(0.5, None, False), Candidate(0.4, "2", True)],
]


def test_best_of_n_matches_hand_computed_values():
    m = best_of_n(BON)
    assert m["prm"] == pytest.approx((0 + 0.5 + 0) / 3)
    assert m["majority"] == pytest.approx((0 + 0.5 + 1) / 3)
    assert m["weighted_majority"] == pytest.approx((1 + 0.5 + 1) / 3)  # '7': 1.3 > '5': 1.2
    assert m["random"] == pytest.approx((2 / 5 + 1 / 2 + 1 / 2) / 3)
    assert m["oracle"] == 1.0
    assert (m["n_problems"], m["n_min"], m["n_max"]) == (3, 2, 5)


def test_best_of_n_curve():
    curve = best_of_n_curve(BON, draws=400, seed=1)
    assert sorted(curve) == [1, 2, 4, 5]
    full = best_of_n(BON)
    for key in ("prm", "majority", "weighted_majority", "random", "oracle"):
        assert curve[5][key] == pytest.approx(full[key])
    # one candidate: choosing is a random pick, whatever the selector (C's unanswered one cannot vote)
    assert curve[1]["prm"] == pytest.approx(full["random"], abs=0.05)
    assert curve[1]["oracle"] == pytest.approx(full["random"], abs=0.05)


class _FakeScorer:
    """Scores read off the prompt: lets the glue be checked against hand-computed values."""

    def __init__(self, table):
        self.table = table

    def score(self, items, progress=None):
        return [list(self.table[prompt]) for prompt, _ in items]


def test_run_processbench_on_the_fixture(monkeypatch, tmp_path):
    from data_tools.formats import read
    from prm.eval import run

    rows = list(read("processbench", FIXTURES / "processbench.json"))
    assert [first_error(r.labels) for r in rows] == [1, -1, 0, -1]
    # step scores: predicts 1 (match), -1 (match), 1 (miss: label 0), 1 (miss: label -1)
    table = {rows[0].prompt: [0.9, 0.2, 0.1], rows[1].prompt: [0.8, 0.9],
             rows[2].prompt: [0.7, 0.3, 0.3, 0.2], rows[3].prompt: [0.9, 0.4]}
    monkeypatch.setattr(run, "make_scorer", lambda model, cfg: _FakeScorer(table))
    model = tmp_path / "model"
    model.mkdir()
    (model / "prm_config.json").write_text("{}")
    dump = tmp_path / "scores.jsonl"
    res = run.run_processbench(str(model), str(FIXTURES / "processbench.json"), run.ScoreConfig(),
                               run.ProcessBenchConfig(dump_scores=str(dump)))
    assert (res["acc_erroneous"], res["acc_correct"], res["f1"], res["n"]) == (0.5, 0.5, 0.5, 4)
    assert res["threshold"] == 0.5 and res["threshold_source"] == "fixed"
    # labelled steps: row0 [T, F], row1 [T, T], row2 [F], row3 [T, T]; the unlabelled ones are left out
    assert res["step_auroc"] == pytest.approx(auroc([1, 0, 1, 1, 0, 1, 1], [0.9, 0.2, 0.8, 0.9, 0.7, 0.9, 0.4]))
    assert res["last_step_min_share"] == 1.0 and res["last_step_error_share"] == 0.0
    # ids gsm8k-*, math-*: per-subset metrics and their plain mean, as ProcessBench's table
    assert res["subsets"]["gsm8k"]["f1"] == 1.0
    assert res["subsets"]["math"]["f1"] == 0.0
    assert res["f1_subset_mean"] == 0.5
    dumped = [json.loads(line) for line in dump.read_text().splitlines()]
    assert [d["prediction"] for d in dumped] == [1, -1, 1, 1]
    assert [d["id"] for d in dumped] == ["gsm8k-0", "gsm8k-1", "math-2", "math-3"]

    # a threshold chosen on a split: 0.75 separates these scores perfectly on the split...
    split = tmp_path / "split.json"
    split.write_text(json.dumps([
        {"id": "s-0", "problem": "a", "steps": ["x", "y"], "label": 1},
        {"id": "s-1", "problem": "b", "steps": ["x", "y"], "label": -1}]))
    table.update(a=[0.9, 0.7], b=[0.9, 0.8])
    res = run.run_processbench(str(model), str(FIXTURES / "processbench.json"), run.ScoreConfig(),
                               run.ProcessBenchConfig(threshold_split=str(split)))
    assert res["threshold"] == pytest.approx(0.75) and res["threshold_split_f1"] == 1.0
    assert "max F1 on" in res["threshold_source"]
    # ...and is then applied to DATA: row0 predicts 1 (match), row1 -1 (match), row2 0 (match), row3 1 (miss)
    assert (res["acc_erroneous"], res["acc_correct"]) == (1.0, 0.5) and res["f1"] == pytest.approx(2 / 3)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "serving.cli", "eval", *args], capture_output=True, text=True)


def test_cli_processbench_and_bon_with_a_real_artifact(tiny_artifact, tmp_path):
    dump = tmp_path / "dump.jsonl"
    out = _cli("processbench", str(tiny_artifact), str(FIXTURES / "processbench.json"), "--dump-scores", str(dump),
               "--threshold-split", str(FIXTURES / "processbench.json"))
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ("acc_erroneous", "acc_correct", "f1", "n", "step_auroc", "last_step_min_share", "threshold"):
        assert key in res, key
    assert res["n"] == 4 and res["threshold_split_f1"] >= res["f1"] - 1e-9  # same file: the split's optimum
    assert len(dump.read_text().splitlines()) == 4

    from data_tools.problems import generate_dataset
    from data_tools.schema import write_jsonl

    cands = tmp_path / "cands.jsonl"
    write_jsonl(cands, generate_dataset(12, seed=5))
    out = _cli("bon", str(tiny_artifact), str(cands), "--agg", "last")
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["agg"] == "last" and res["oracle"] == 1.0 and res["n_problems"] == 12
    assert res["random"] == pytest.approx(0.5) and res["majority"] == pytest.approx(0.5)  # gold vs one wrong
    assert set(res["by_n"]) == {"1", "2"}


def test_cli_reports_bad_arguments_together(tmp_path):
    out = _cli("processbench", str(tmp_path / "nomodel"), str(tmp_path / "nodata.json"), "--threshold", "0.3",
               "--threshold-split", str(tmp_path / "nosplit.json"), "--batch-size", "0")
    assert out.returncode == 2
    for needle in ("--threshold and --threshold-split", "--threshold-split", "--batch-size must be at least 1",
                   "DATA", "not a PRM artifact"):
        assert needle in out.stderr, needle


def test_readme_eval_commands_run(tiny_artifact, tmp_path, monkeypatch, capsys):
    import shutil

    from test_data_cli import readme_commands

    from data_tools.problems import generate_dataset, ground_truth_labels
    from data_tools.schema import StepwiseExample, write_jsonl
    from serving.cli import main

    shutil.copytree(tiny_artifact, tmp_path / "model")
    for name in ("processbench.json", "processbench_val.json"):
        shutil.copy(FIXTURES / "processbench.json", tmp_path / name)
    examples = generate_dataset(8, seed=3)
    write_jsonl(tmp_path / "heldout.jsonl", [StepwiseExample(e.prompt, e.steps, ground_truth_labels(e), e.meta)
                                             for e in examples])
    write_jsonl(tmp_path / "candidates.jsonl", examples)
    monkeypatch.chdir(tmp_path)
    assert main(["export", "model"]) == 0
    commands = readme_commands("eval")
    assert len(commands) == 5
    for argv in commands:
        capsys.readouterr()
        assert main(argv) == 0, argv
        res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert ("f1" in res) if argv[1] == "processbench" else ("prm" in res), argv
    assert Path("scores.jsonl").is_file()


# --- solutions too long to score: counted, listed, never a free hit ---------------------------------

class _RefusingScorer(_FakeScorer):
    """``_FakeScorer`` that refuses the prompts in ``too_long`` as ``Scorer`` does (``score`` raises,
    ``score_each`` puts the error in place)."""

    def __init__(self, table, too_long):
        super().__init__(table)
        self.too_long = too_long
        self.progress = []

    def score(self, items, progress=None):
        from prm.tokenization import TooLongError

        self.progress.append(progress)
        if any(prompt in self.too_long for prompt, _ in items):
            raise TooLongError("the steps alone take 2000 tokens but the model's limit is 1024", 2000, 1024)
        return super().score(items, progress)

    def score_each(self, items, progress=None):
        from prm.tokenization import TooLongError

        self.progress.append(progress)
        return [TooLongError("the steps alone take 2000 tokens but the model's limit is 1024", 2000, 1024)
                if prompt in self.too_long else list(self.table[prompt]) for prompt, _ in items]


def test_processbench_counts_refused_solutions_as_misses(monkeypatch, tmp_path, caplog):
    import logging

    from data_tools.formats import read
    from prm.eval import run

    rows = list(read("processbench", FIXTURES / "processbench.json"))  # labels 1, -1, 0, -1
    # every prediction would match: 1, -1, 0, -1
    table = {rows[0].prompt: [0.9, 0.2, 0.1], rows[1].prompt: [0.8, 0.9],
             rows[2].prompt: [0.3, 0.3, 0.3, 0.2], rows[3].prompt: [0.9, 0.8]}
    fake = _RefusingScorer(table, too_long={rows[0].prompt, rows[1].prompt})  # one erroneous, one correct
    monkeypatch.setattr(run, "make_scorer", lambda model, cfg: fake)
    model = tmp_path / "model"
    model.mkdir()
    (model / "prm_config.json").write_text("{}")
    dump = tmp_path / "scores.jsonl"
    with caplog.at_level(logging.WARNING, logger="prm.eval.run"):
        res = run.run_processbench(str(model), str(FIXTURES / "processbench.json"), run.ScoreConfig(),
                                   run.ProcessBenchConfig(dump_scores=str(dump)))
    # the refused erroneous one is an error not found, the refused correct one is not passed: half of each
    # class, where leaving them out would have read 1.0 and 1.0
    assert (res["acc_erroneous"], res["acc_correct"], res["f1"], res["n"]) == (0.5, 0.5, 0.5, 4)
    assert res["refused"] == {"count": 2, "ids": ["gsm8k-0", "gsm8k-1"]}
    assert res["subsets"]["gsm8k"]["f1"] == 0.0 and res["subsets"]["math"]["f1"] == 1.0
    # the step-score metrics read the scored solutions: rows 2 and 3 ([F], [T, T])
    assert res["step_auroc"] == pytest.approx(auroc([0, 1, 1], [0.3, 0.9, 0.8]))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "2 of 4 solutions too long" in warnings[0] and "limit 1024" in warnings[0]
    assert "gsm8k-0, gsm8k-1" in warnings[0] and "--max-length" in warnings[0]
    dumped = [json.loads(line) for line in dump.read_text().splitlines()]
    assert [d["prediction"] for d in dumped] == [None, None, 0, -1]
    assert "limit is 1024" in dumped[0]["refused"] and "refused" not in dumped[2]
    assert set(fake.progress) == {"prm eval"}  # the progress display stays

    # run.score: None in place of a refused solution
    assert run.score(fake, rows) == [None, None, table[rows[2].prompt], table[rows[3].prompt]]


def _too_long(ex, words=1500):
    """The same solution, made too long for any limit the tiny artifact has: a long first step."""
    from data_tools.schema import StepwiseExample

    return StepwiseExample(ex.prompt, ["Let me restate the problem: " + "word " * words] + ex.steps, ex.labels,
                           dict(ex.meta))


def test_cli_processbench_scores_past_a_too_long_solution(tiny_artifact, tmp_path):
    base = json.loads((FIXTURES / "processbench.json").read_text())
    long_rows = [dict(base[0], id="gsm8k-90"), dict(base[1], id="gsm8k-91")]  # erroneous, correct
    for row in long_rows:
        row["steps"] = ["Let me restate the problem: " + "word " * 1500] + row["steps"]
        row["label"] = row["label"] + 1 if row["label"] >= 0 else -1
    data = tmp_path / "with_long.json"
    data.write_text(json.dumps(base + long_rows))

    out = _cli("processbench", str(tiny_artifact), str(FIXTURES / "processbench.json"))
    assert out.returncode == 0, out.stderr
    alone = json.loads(out.stdout.strip().splitlines()[-1])
    assert alone["refused"] == {"count": 0, "ids": []}
    out = _cli("processbench", str(tiny_artifact), str(data))
    assert out.returncode == 0, out.stderr  # the long ones no longer end the run
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["refused"] == {"count": 2, "ids": ["gsm8k-90", "gsm8k-91"]} and res["n"] == 6
    # the same 4 scored as before, and one more miss on each side
    assert res["acc_erroneous"] == pytest.approx(alone["acc_erroneous"] * 2 / 3)
    assert res["acc_correct"] == pytest.approx(alone["acc_correct"] * 2 / 3)
    assert res["step_auroc"] == pytest.approx(alone["step_auroc"], abs=1e-6)
    assert "2 of 6 solutions too long" in out.stderr and "gsm8k-90, gsm8k-91" in out.stderr


def test_cli_bon_never_picks_a_refused_candidate(tiny_artifact, tmp_path):
    from data_tools.problems import generate_dataset
    from data_tools.schema import write_jsonl

    cands = generate_dataset(12, seed=5)  # per problem: the gold solution and one wrong one
    assert [c.meta["id"] for c in cands[:4]] == ["p00000-gold", "p00000-err", "p00001-gold", "p00001-err"]
    # problem 0 loses its right candidate, problem 1 both
    cands[:4] = [_too_long(cands[0]), cands[1], _too_long(cands[2]), _too_long(cands[3])]
    path, dump = tmp_path / "cands.jsonl", tmp_path / "dump.jsonl"
    write_jsonl(path, cands)
    out = _cli("bon", str(tiny_artifact), str(path), "--agg", "min", "--dump-scores", str(dump))
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["refused"] == {"count": 3, "ids": ["p00000-gold", "p00001-gold", "p00001-err"]}
    assert res["problems_all_refused"] == 1 and res["n_problems"] == 12
    # what needs no scores still counts every candidate
    assert (res["oracle"], res["random"], res["majority"]) == (1.0, pytest.approx(0.5), pytest.approx(0.5))
    # the PRM's pick among the scored candidates only; a problem with none scored is a wrong pick
    rows = [json.loads(line) for line in dump.read_text().splitlines()]
    picks = []
    for problem in dict.fromkeys(r["problem"] for r in rows):
        scored = [r for r in rows if r["problem"] == problem and r["score"] is not None]
        best = max((r["score"] for r in scored), default=None)
        tied = [r["correct"] for r in scored if r["score"] == best]
        picks.append(sum(tied) / len(tied) if tied else 0.0)
    assert picks[:2] == [0.0, 0.0]
    assert res["prm"] == pytest.approx(sum(picks) / len(picks))
    assert res["by_n"][str(2)]["prm"] == pytest.approx(res["prm"])  # N = 2 is every candidate
    assert sum(r["score"] is None and "limit is" in r["refused"] for r in rows) == 3
    assert "3 of 24 candidates too long" in out.stderr and "p00000-gold, p00001-gold, p00001-err" in out.stderr
