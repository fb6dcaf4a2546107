"""benchmarks/search_accuracy.py end to end on the tiny backbone (labelling, training, every strategy), so it
does not rot; its SmolLM2 figures come from running it by hand (README: search strategies)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_search_accuracy_runs_every_strategy_and_reports_the_largest_budget(tiny_backbone, tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "search_accuracy.py"), "--backbone",
                          str(tiny_backbone), "--fp32", "--out", str(tmp_path / "out"), "--problems", "3", "--budgets",
                          "1,2", "--train-problems", "4", "--rollouts", "1", "--epochs", "0.5", "--layers", "2",
                          "--freeze-layers", "1", "--prm-backend", "torch"],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert set(out["results"]) == {"greedy", "majority_vote", "best_of_n", "weighted_vote", "beam", "particle_filter",
                                   "mcts"}
    assert set(out["results"]["greedy"]) == {"1"} and all(set(v) == {"1", "2"} for k, v in out["results"].items()
                                                          if k != "greedy")
    for row in (r for by_budget in out["results"].values() for r in by_budget.values()):
        assert 0 <= row["accuracy"] <= 1 and row["generator_tokens"] >= 0
    assert out["results"]["majority_vote"]["2"]["prm_calls"] == 0 and out["results"]["beam"]["2"]["prm_calls"] > 0
    lb = out["largest_budget"]
    assert lb["budget"] == 2 and {"majority_vote", "best_prm_guided", "best_prm_guided_strategy"} <= set(lb)
    assert out["prm_training"]["labelled_solutions"] == 8 and (tmp_path / "out" / "prm" / "prm_config.json").is_file()
