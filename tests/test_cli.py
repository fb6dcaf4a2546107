import subprocess
import sys


def run(*args):
    return subprocess.run([sys.executable, "-m", "serving.cli", *args], capture_output=True, text=True)


def test_every_stage_has_a_subcommand():
    out = run("--help").stdout
    for cmd in ["generate", "label", "train", "calibrate", "export", "serve", "score", "demo", "eval"]:
        assert cmd in out


def test_demo_help_documents_the_size_knobs():
    out = run("demo", "--help").stdout
    for flag in ["--problems", "--rollouts", "--max-steps", "--out", "--epochs"]:
        assert flag in out


def test_bad_config_is_reported_before_any_work(tmp_path):
    res = run("demo", "--out", str(tmp_path / "d"), "--problems", "2", "--rollouts", "0")
    assert res.returncode == 2
    assert "--problems must be at least 5" in res.stderr and "--rollouts must be at least 1" in res.stderr
    assert not (tmp_path / "d").exists()


def test_malformed_input_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "completions": ["a"], "labels": [1]}\n{"prompt": "p"}\n')
    res = run("train", str(bad), "--out", str(tmp_path / "m"))
    assert res.returncode == 2
    assert f"{bad}, line 2" in res.stderr and "completions" in res.stderr
