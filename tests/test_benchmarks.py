"""The training benchmarks run end to end on the tiny backbone and a slice of GSM8K (so they do not rot);
their numbers on SmolLM2 come from running them by hand (see the issue notes)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GSM8K = ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl"
needs_gsm8k = pytest.mark.skipif(not GSM8K.is_file(), reason="../shared/data/gsm8k/train.jsonl not present")


def run(script, *args, cwd=None):
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True,
                         timeout=600, cwd=cwd)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@needs_gsm8k
def test_train_gsm8k_leaves_an_artifact_prm_eval_reproduces(tiny_backbone, tmp_path):
    out = tmp_path / "g"
    res = run("train_gsm8k.py", "--backbone", str(tiny_backbone), "--layers", "2", "--freeze-layers", "1",
              "--limit", "80", "--heldout", "15", "--calib", "15", "--minutes", "0.5", "--out", str(out),
              "--kinds", "all", "--style", "model", "--real-limit", "12")
    assert list(res)[:3] == ["real_error_f1", "real_error_acc_erroneous", "real_error_acc_correct"]  # reported first
    assert res["real_error_n_erroneous"] == 12
    for key in ("injected_error_f1", "injected_error_auroc", "injected_error_ece", "injected_error_acc_erroneous",
                "injected_error_acc_correct", "threshold", "injected_error_last_step_min_share"):
        assert key in res, key
    assert res["heldout_solutions"] == 30 and res["train_solutions"] > 0
    assert (out / "model" / "calibration.json").is_file()
    # step checks on by default: the artifact carries them, the network's own figures are reported apart
    assert res["step_checks"] and json.loads((out / "model" / "prm_config.json").read_text())["step_checks"]
    for key in ("real_error_model_only_f1", "real_error_model_only_acc_erroneous", "injected_error_f1_with_checks",
                "model_only_threshold", "checks_threshold"):
        assert key in res, key

    def cli_eval(*extra):
        again = subprocess.run([sys.executable, "-m", "serving.cli", "eval", "processbench", str(out / "model"),
                                str(out / "heldout_processbench.json"), "--threshold-split",
                                str(out / "calib_processbench.json"), *extra], capture_output=True, text=True, cwd=ROOT)
        return json.loads(again.stdout.strip().splitlines()[-1])

    cli = cli_eval("--checks", "off")
    assert cli["f1"] == pytest.approx(res["injected_error_f1"], abs=1e-4)
    assert cli["step_auroc"] == pytest.approx(res["injected_error_auroc_to_first_error"], abs=1e-4)
    assert cli_eval()["f1"] == pytest.approx(res["injected_error_f1_with_checks"], abs=1e-4)


@pytest.mark.slow
@needs_gsm8k
def test_train_throughput_reports_both_speedups(tiny_backbone):
    res = run("train_throughput.py", "--backbone", str(tiny_backbone), "--problems", "12", "--steps", "3",
              "--threads", "1")
    assert res["speedup_same_precision"] > 0 and res["speedup_vs_default_fp32"] > 0
    runs = res["runs"]
    assert runs["ours_bf16"]["padding_share"] < runs["plain_bf16"]["padding_share"]
    # both sides start from a zero head: the same loss at step 1
    assert runs["ours_bf16"]["first_loss"] == pytest.approx(runs["plain_bf16"]["first_loss"], abs=1e-3)


def test_load_test_runs_on_the_tiny_artifact_and_reports_json(tiny_artifact):
    res = run("load_test.py", "--model", str(tiny_artifact), "--solutions", "16", "--warmup", "8",
              "--concurrency", "4", "--seconds", "1", "--min-requests", "5", "--overload-seconds", "1", "--pairs", "1",
              "--compare-rounds", "1")
    for key in ("service_vs_inprocess", "p50_s", "p99_s", "by_load", "status_2x", "healthy_after", "targets"):
        assert key in res, key
    assert set(res["by_load"]) == {"0.25", "0.5", "0.8", "2.0"}
    assert set(res["status_2x"]) == {"200", "429", "503", "504", "other"}
    assert res["service_vs_inprocess"] > 0 and res["healthy_after"]
    assert res["after_max_abs_diff"] <= 1e-5  # the service answers what the in-process scorer computes
    # the default (onnx here: nothing else passed a gate) served side by side with eager PyTorch fp32
    assert res["backend"] == "onnx" and set(res["served_tokens_per_s"]) == {"onnx", "torch"}
    assert res["default_vs_torch_fp32"] > 0 and res["default_vs_onnx_fp32"] is None
    assert len(res["first_requests_s"]) == 10 and res["first_request_s"] > 0


def test_readme_load_test_command_parses():
    from test_data_cli import readme_argv

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import load_test

    commands = readme_argv(".venv/bin/python benchmarks/load_test.py")
    assert commands
    for argv in commands:
        args = load_test.build_parser().parse_args(argv[2:])
        assert args.model == "demo_out/model"


MR_GSM8K = Path(__file__).parent / "fixtures" / "mr_gsm8k.jsonl"


def test_real_errors_runs_on_mr_gsm8k_rows_and_its_figures_add_up(tiny_artifact, tmp_path):
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"threshold": 0.42, "threshold_source": "max F1 on the calibration split"}))
    res = run("real_errors.py", str(tiny_artifact), "--data", str(MR_GSM8K), "--summary", str(summary),
              "--backend", "onnx", "--threads", "1")
    for key in ("acc_erroneous", "acc_correct", "f1", "acc_erroneous_at_0.5", "acc_correct_at_0.5", "f1_at_0.5",
                "threshold", "threshold_source", "n_erroneous", "n_correct", "step_auroc_to_first_error",
                "share_right_step", "share_too_early", "share_too_late", "share_never", "share_refused",
                "refused_erroneous", "refused_correct", "refused_erroneous_ids", "refused_correct_ids", "by_type"):
        assert key in res, key
    # 7 rows: 1 POT left out; 6 wrong solutions of 5 problems, one of which has no reference solution
    assert res["n_erroneous"] == 6 and res["n_correct"] == 4 and res["pot_rows_left_out"] == 1
    assert res["no_reference_ids"] == ["0a000000-0000-4000-8000-000000000007"]
    assert res["threshold"] == 0.42 and str(summary) in res["threshold_source"]
    shares = [res[f"share_{k}"] for k in ("right_step", "too_early", "too_late", "never", "refused")]
    assert sum(shares) == pytest.approx(1.0, abs=1e-3) and res["share_right_step"] == pytest.approx(res["acc_erroneous"])
    assert res["refused_erroneous"] == res["refused_correct"] == 0
    assert {t: (m["n_erroneous"], m["n_correct"]) for t, m in res["by_type"].items()} == {"original": (3, 2),
                                                                                          "reversed": (3, 2)}

    # nothing fits in 16 tokens: every solution is refused, listed, and a miss on both sides
    res = run("real_errors.py", str(tiny_artifact), "--data", str(MR_GSM8K), "--max-length", "16", "--limit", "3",
              "--threads", "1")
    assert res["n_erroneous"] == res["refused_erroneous"] == 3 and len(res["refused_erroneous_ids"]) == 3
    assert res["n_correct"] == res["refused_correct"] == 3 and res["share_refused"] == 1
    assert res["acc_erroneous"] == res["acc_correct"] == res["f1"] == 0 and res["step_auroc_to_first_error"] is None
    assert res["threshold"] == 0.5 and res["threshold_source"].startswith("default 0.5")


def test_real_errors_one_pass_with_and_without_checks_equals_two_runs(tiny_artifact):
    common = ("--data", str(MR_GSM8K), "--backend", "onnx", "--threads", "1")
    both = run("real_errors.py", str(tiny_artifact), *common, "--threshold", "0.45", "--checks-threshold", "0.3")
    alone = run("real_errors.py", str(tiny_artifact), *common, "--threshold", "0.45", "--checks", "off")
    checked = run("real_errors.py", str(tiny_artifact), *common, "--threshold", "0.3", "--checks", "on")
    keys = ("acc_erroneous", "acc_correct", "f1", "f1_at_0.5", "step_auroc_to_first_error", "share_right_step",
            "share_too_late", "by_type")
    assert {k: both[k] for k in keys} == {k: alone[k] for k in keys}
    assert {k: both["with_checks"][k] for k in keys} == {k: checked[k] for k in keys}
    assert both["with_checks"]["threshold"] == 0.3
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "real_errors.py"), str(tiny_artifact), *common,
                          "--checks", "on", "--checks-threshold", "0.3"], capture_output=True, text=True)
    assert bad.returncode != 0 and "drop --checks on" in bad.stderr and "Traceback" not in bad.stderr


def test_real_errors_measures_the_step_checks_alone_and_chooses_a_threshold_on_another_split(tmp_path):
    split = tmp_path / "calib.json"
    split.write_text(json.dumps([
        {"id": "a", "problem": "Tom has 3 bags of 12 apples. How many apples?", "steps": ["3 * 12 = 38", "#### 38"],
         "label": 0, "final_answer_correct": False},
        {"id": "b", "problem": "Tom has 3 bags of 12 apples. How many apples?", "steps": ["3 * 12 = 36", "#### 36"],
         "label": -1, "final_answer_correct": True}]))
    res = run("real_errors.py", "checks", "--data", str(MR_GSM8K), "--threshold-split", str(split))
    assert res["threshold_source"] == f"max F1 on {split}" and 0.01 < res["threshold"] <= 1.0
    assert res["n_erroneous"] == 6 and sum(res[f"share_{k}"] for k in ("right_step", "too_early", "too_late", "never",
                                                                        "refused")) == pytest.approx(1.0, abs=1e-3)
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "real_errors.py"), "checks", "--data",
                          str(MR_GSM8K), "--threshold-split", str(MR_GSM8K)], capture_output=True, text=True)
    assert bad.returncode != 0 and "measuring only" in bad.stderr and "Traceback" not in bad.stderr
