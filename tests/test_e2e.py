"""The whole demo pipeline with a tiny backbone: rollouts, training, calibration, ONNX, a real
``bentoml serve`` process on 127.0.0.1 queried over HTTP with the project's client."""

import json
import subprocess
import sys
import time

import pytest

from serving.demo import DemoConfig, run_demo

REQUIRED = ["labelled_solutions", "label_injected_error_agreement", "injected_error_heldout_auroc", "ece_before", "ece_after",
            "onnx_max_abs_diff", "http_scored_solutions", "seconds_total"]


@pytest.mark.e2e
def test_demo_pipeline_end_to_end(tiny_backbone, tmp_path):
    t0 = time.monotonic()
    summary = run_demo(DemoConfig(out=str(tmp_path / "demo"), backbone=str(tiny_backbone), problems=16,
                                  rollouts=2, max_new_tokens=12, epochs=1.0, eval_problems=20))
    assert time.monotonic() - t0 < 120
    on_disk = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert on_disk == summary
    for key in REQUIRED:
        assert key in summary, key
    assert summary["labelled_solutions"] >= 30
    assert 0.0 <= summary["label_injected_error_agreement"] <= 1.0
    assert summary["onnx_max_abs_diff"] <= 1e-4
    assert summary["http_scored_solutions"] == summary["heldout_solutions"] > summary["test_solutions"] > 0
    # what the service answered is what the in-process calibrated scorer computes
    assert summary["http_vs_inprocess_max_abs_diff"] <= 1e-4
    model = tmp_path / "demo" / "model"
    for name in ["prm_config.json", "calibration.json", "onnx/model.onnx", "manifest.json", "model.safetensors",
                 "step_head.safetensors"]:
        assert (model / name).is_file(), name
    # the artifact never needs pickle: no .bin/.pt/.pkl files
    assert not [p for p in model.rglob("*") if p.suffix in {".bin", ".pt", ".pth", ".pkl"}]

    # each stage can also run alone from the CLI on the previous stage's output
    data = tmp_path / "demo" / "data" / "labelled.jsonl"
    out = subprocess.run([sys.executable, "-m", "serving.cli", "score", str(model), str(data), "--backend", "torch",
                          "--aggregate", "last"], capture_output=True, text=True, check=True).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == summary["labelled_solutions"]
    assert all(r["score"] == r["step_scores"][-1] for r in rows)
