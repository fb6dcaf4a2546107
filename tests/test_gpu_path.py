"""The GPU path and the service's default backend: the fp16 graph behind its gate, gates.json, the fastest
gated backend as the default, how a GPU is found without torch. Tests marked ``gpu`` need a GPU (CUDA) and
are left out of ``make test`` (``-m "not gpu"``); ``benchmarks/gpu_check.sh`` runs them on a GPU machine."""

import json

import numpy as np
import pytest

MIXED = [("Tom has 5 apples.", ["a: 5 + 3 = 8", "b: 8 - 2 = 6", "The answer is 6."]), ("Q", ["x", "y"]),
         ("Ann has 12 pens and buys 30 more. " * 3, ["12 + 30 = 42", "The answer is 42."]), ("Q2", ["1 + 1 = 2"])]


def run_cli(*argv):
    from serving.cli import main

    return main(list(argv))


@pytest.fixture(scope="module")
def artifact(tiny_artifact, tmp_path_factory):
    import shutil

    out = tmp_path_factory.mktemp("gpu_path") / "model"
    shutil.copytree(tiny_artifact, out)
    return out


def test_fp16_graph_is_gated_recorded_and_refused_like_int8(artifact, labelled_24, capsys):
    from data_tools.schema import read_jsonl
    from prm.artifacts import Artifact
    from prm.export import GateError, Int8Gate, convert_fp16
    from prm.scoring import Scorer
    from prm.train import training_labels

    assert run_cli("export", str(artifact), "--fp16") == 2
    assert "--fp16 needs --check" in capsys.readouterr().err
    assert run_cli("export", str(artifact), "--fp16", "--check", str(labelled_24)) == 0
    report = json.loads(next(line for line in capsys.readouterr().out.splitlines() if line.startswith("{")))
    assert report["fp16"]["passed"] and report["fp16"]["candidate"] == "onnx-fp16"
    art = Artifact(artifact)
    assert art.onnx_fp16_path.is_file() and art.passed_gate("onnx-fp16")
    assert "onnx/model.fp16.onnx" in art.manifest()["files"] and "gates.json" in art.manifest()["files"]
    fp32 = Scorer(artifact, backend="onnx", calibrated=False).step_logits(MIXED)
    fp16 = Scorer(artifact, backend="onnx-fp16", calibrated=False).step_logits(MIXED)
    assert max(np.max(np.abs(a - b)) for a, b in zip(fp32, fp16, strict=True)) < 0.05

    examples = list(read_jsonl(labelled_24))
    with pytest.raises(GateError, match="fp16 graph refused"):
        convert_fp16(artifact, [(e.prompt, e.steps) for e in examples], [training_labels(e, "hard") for e in examples],
                     Int8Gate(min_agreement=1.01))  # impossible: forces the refusal path
    assert not art.onnx_fp16_path.exists() and art.gates()["onnx-fp16"]["passed"] is False
    assert not art.passed_gate("onnx-fp16")


def test_the_default_is_the_fastest_backend_that_passed_its_gate(artifact, labelled_24, capsys):
    from prm.artifacts import Artifact
    from prm.scoring import default_backend

    art = Artifact(artifact)
    assert default_backend(art, "cpu") == "onnx"
    # bf16 weights without a gate are served only when asked for by name
    assert run_cli("export", str(artifact), "--bf16", "--calib", str(labelled_24)) == 0
    assert default_backend(art, "cpu") == "onnx"
    assert run_cli("export", str(artifact), "--bf16", "--calib", str(labelled_24), "--check", str(labelled_24),
                   "--int8", "--fp16") == 0
    out = capsys.readouterr().out
    assert "bf16 gate against PyTorch fp32: passed" in out
    assert {b for b, g in art.gates().items() if g["passed"]} == {"torch-bf16-gptq", "onnx-int8", "onnx-fp16"}
    assert default_backend(art, "cpu") == "torch-bf16-gptq"
    assert default_backend(art, "cuda") == "onnx-fp16"
    # a gated file changed afterwards no longer counts as gated (the manifest's sha256 differs)
    with open(art.bf16_path, "ab") as fh:
        fh.write(b" ")
    art.write_manifest()
    assert default_backend(art, "cpu") == "onnx-int8"
    art.onnx_int8_path.unlink()
    art.write_manifest()
    assert default_backend(art, "cpu") == "onnx"


def test_a_gpu_is_found_from_the_driver_not_from_torch_or_the_provider_list(monkeypatch, artifact):
    import onnxruntime as ort

    from prm.scoring import Scorer
    from prm.scoring import cuda as probe

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert probe.gpu_count() == 0
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert probe.gpu_count() == 0
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    if probe.gpu_count() == 0:  # this machine: whatever ORT lists, the session stays on the CPU
        monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
        assert Scorer(artifact, backend="onnx").device == "cpu"


gpu = pytest.mark.gpu


@gpu
@pytest.mark.parametrize("backend", ["onnx", "onnx-fp16", "torch-bf16", "torch-bf16-gptq"])
def test_on_a_gpu_each_backend_runs_on_cuda_and_matches_fp32(artifact, labelled_24, backend):
    from prm.artifacts import Artifact
    from prm.scoring import Scorer

    if not Artifact(artifact).has(Artifact.ONNX_FP16) or not Artifact(artifact).has(Artifact.BF16):
        assert run_cli("export", str(artifact), "--bf16", "--calib", str(labelled_24), "--check", str(labelled_24),
                       "--fp16") == 0
    reference = Scorer(artifact, backend="torch", calibrated=False, device="cpu").step_logits(MIXED)
    scorer = Scorer(artifact, backend=backend, calibrated=False, batch_size=4)
    assert scorer.device == "cuda", f"{backend} did not take the GPU"
    got = scorer.step_logits(MIXED)
    assert max(np.max(np.abs(a - b)) for a, b in zip(reference, got, strict=True)) < 0.1


@gpu
def test_on_a_gpu_the_default_backend_and_forward_batch_are_the_gpu_ones(artifact, labelled_24):
    from prm.artifacts import Artifact
    from prm.scoring import default_backend

    assert run_cli("export", str(artifact), "--check", str(labelled_24), "--fp16") == 0
    assert default_backend(Artifact(artifact)) == "onnx-fp16"
