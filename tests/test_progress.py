"""Feedback on long work: periodic progress lines when output is not a terminal, none with -q."""

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from data_tools import progress
from data_tools.progress import Progress, activity

FIXTURES = Path(__file__).parent / "fixtures"


def test_progress_lines_carry_count_rate_eta_and_extras(monkeypatch):
    monkeypatch.setenv("PRM_PROGRESS_INTERVAL", "0")
    out = io.StringIO()  # not a terminal
    with Progress(4, "job", "ex", stream=out) as bar:
        for _ in range(4):
            bar.update(1, success="50%")
    lines = out.getvalue().splitlines()
    assert lines[0] == "job: 0/4 ex (0%)"
    assert len(lines) == 6 and "ex/s" in lines[2] and "ETA" in lines[2] and "success 50%" in lines[2]
    assert lines[-1].startswith("job: 4/4 ex (100%)") and "done in" in lines[-1]


def test_lines_come_once_per_interval(monkeypatch):
    monkeypatch.setenv("PRM_PROGRESS_INTERVAL", "3600")
    out = io.StringIO()
    with Progress(1000, "job", stream=out) as bar:
        for _ in range(1000):
            bar.update()
    assert len(out.getvalue().splitlines()) == 2  # the opening line and the closing one


def test_quiet_silences_everything(monkeypatch):
    monkeypatch.setenv("PRM_PROGRESS_INTERVAL", "0")
    out = io.StringIO()
    progress.set_quiet(True)
    try:
        with Progress(3, "job", stream=out) as bar:
            bar.update(3)
        with activity("compiling", stream=out):
            pass
    finally:
        progress.set_quiet(False)
    assert out.getvalue() == ""


def test_activity_says_when_it_starts_and_ends():
    out = io.StringIO()
    with activity("compiling the graph", stream=out):
        pass
    lines = out.getvalue().splitlines()
    assert lines[0] == "compiling the graph ..." and lines[-1].startswith("compiling the graph: done in")
    with pytest.raises(RuntimeError), activity("exporting", stream=out):
        raise RuntimeError("boom")
    assert out.getvalue().splitlines()[-1].startswith("exporting: failed in")


def prm(*args, quiet=False):
    env = dict(os.environ, PRM_PROGRESS_INTERVAL="0")
    cmd = [sys.executable, "-m", "serving.cli", *(["-q"] if quiet else []), *args]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)  # pipes: not a terminal
    assert res.returncode == 0, res.stderr
    return res.stderr


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    from data_tools.problems import generate_dataset
    from data_tools.schema import write_jsonl

    folder = tmp_path_factory.mktemp("progress")
    write_jsonl(folder / "problems.jsonl", generate_dataset(12, seed=3))
    return folder


@pytest.mark.parametrize("quiet", [False, True])
def test_label_train_and_eval_show_progress_unless_quiet(labelled, tiny_backbone, tiny_artifact, tmp_path, quiet):
    out = tmp_path / "labelled.jsonl"
    lines = prm("label", str(labelled / "problems.jsonl"), str(out), "--completer", "simulated", "--chunk-size", "4",
                quiet=quiet).splitlines()
    label_lines = [x for x in lines if x.startswith("prm label: ")]
    lines = prm("train", str(out), "--out", str(tmp_path / "model"), "--backbone", str(tiny_backbone), "--epochs", "2",
                "--no-bf16", "--no-probe-init", "--batch-size", "4", quiet=quiet).splitlines()
    train_lines = [x for x in lines if x.startswith("prm train: ")]
    lines = prm("eval", "processbench", str(tiny_artifact), str(FIXTURES / "processbench.json"), quiet=quiet).splitlines()
    eval_lines = [x for x in lines if x.startswith("prm eval: ")]
    if quiet:
        assert label_lines == train_lines == eval_lines == []
        return
    assert len(label_lines) >= 3 and "ETA" in label_lines[1] and "rollouts" in label_lines[1], label_lines
    assert any("success" in x for x in label_lines), label_lines
    assert len(train_lines) >= 3 and all(k in train_lines[-2] for k in ("steps/s", "ETA", "loss", "tokens/s")), train_lines
    assert len(eval_lines) >= 2 and "solutions/s" in eval_lines[-1], eval_lines
