"""User mistakes end in one line that says what is wrong and what to do, exit status 2, no traceback
(-v shows it)."""

import json
import shutil
import subprocess
import sys

import pytest


def prm(*args):
    return subprocess.run([sys.executable, "-m", "serving.cli", *args], capture_output=True, text=True)


def one_line_error(res, *says):
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr, res.stderr
    errors = [line for line in res.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, res.stderr
    for text in says:
        assert text in errors[0], errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from data_tools.problems import generate_dataset
    from data_tools.schema import write_jsonl

    path = tmp_path_factory.mktemp("errors") / "solutions.jsonl"
    write_jsonl(path, generate_dataset(3))
    return path


def test_a_missing_data_file(tmp_path):
    one_line_error(prm("train", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "m")), "nope.jsonl")


def test_a_malformed_data_file(tiny_artifact, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "completions": ["a"]}\n{"prompt": "p", "completions": "not a list"}\n')
    one_line_error(prm("score", str(tiny_artifact), str(bad), "--backend", "torch"), f"{bad}, line 2")


def test_a_folder_that_is_not_a_model(tmp_path, data):
    (tmp_path / "empty").mkdir()
    one_line_error(prm("score", str(tmp_path / "empty"), str(data)), "is not a PRM artifact", "prm train")
    one_line_error(prm("score", str(tmp_path / "absent"), str(data)), "is not a PRM artifact: no such folder")


def test_a_model_folder_from_another_version(tiny_artifact, tmp_path, data):
    model = tmp_path / "model"
    shutil.copytree(tiny_artifact, model)
    manifest = json.loads((model / "manifest.json").read_text())
    (model / "manifest.json").write_text(json.dumps({**manifest, "format": "prm-toolkit-artifact/2",
                                                     "prm_toolkit": "9.0.0"}))
    one_line_error(prm("score", str(model), str(data), "--backend", "torch"), "prm-toolkit-artifact/2", "9.0.0")
    (model / "manifest.json").write_text(json.dumps(manifest))
    config = json.loads((model / "prm_config.json").read_text())
    (model / "prm_config.json").write_text(json.dumps({**config, "step_pooling": "last"}))
    one_line_error(prm("calibrate", str(model), str(data)), "step_pooling", "newer prm-toolkit")


def test_an_export_file_that_was_never_written(tiny_artifact, tmp_path, data):
    model = tmp_path / "model"
    shutil.copytree(tiny_artifact, model)
    one_line_error(prm("score", str(model), str(data), "--backend", "onnx-int8"), "model.int8.onnx", "--int8")
    one_line_error(prm("score", str(model), str(data), "--backend", "torch-bf16-gptq"), "--bf16 --calib")


def test_a_missing_optional_package(tmp_path, data):
    line = one_line_error(prm("label", str(data), str(tmp_path / "out.jsonl"), "--completer", "vllm",
                              "--vllm-model", "some/model"), "pip install vllm")
    assert "vllm" in line


def test_a_bad_config_file(tmp_path, data):
    config = tmp_path / "run.yaml"
    config.write_text("learning-rat: 0.1\n")
    one_line_error(prm("train", str(data), "--out", str(tmp_path / "m"), "--config", str(config)),
                   "'learning-rat' is not an option", "lr")


def test_verbose_shows_the_traceback(tmp_path):
    res = prm("-v", "train", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "m"))
    assert res.returncode == 2 and "Traceback" in res.stderr and "nope.jsonl" in res.stderr.splitlines()[-1]
