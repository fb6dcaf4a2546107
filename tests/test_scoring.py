"""Scorer backends, the overflow policy, calibrated parity across backends, and the int8 quality gate."""

import json

import numpy as np
import pytest

from prm.tokenization import TooLongError

MIXED = [("Tom has 5 apples.", ["a: 5 + 3 = 8", "b: 8 - 2 = 6", "The answer is 6."]), ("Q", ["x", "y"]),
         ("Ann has 12 pens and buys 30 more. " * 3, ["12 + 30 = 42", "The answer is 42."]), ("Q2", ["1 + 1 = 2"])]


@pytest.fixture(scope="module")
def artifact(tiny_backbone, labelled_24, tmp_path_factory):
    from data_tools.schema import read_jsonl
    from prm.export import export_onnx
    from prm.train import TrainConfig, train

    out = tmp_path_factory.mktemp("scoring") / "model"
    train(list(read_jsonl(labelled_24))[:12], TrainConfig(backbone=str(tiny_backbone), output_dir=str(out), epochs=1,
                                                        bf16=False))
    export_onnx(out)
    return out


def run_cli(*argv):
    from serving.cli import main

    return main(list(argv))


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_calibrated_torch_and_onnx_agree_on_mixed_length_batches(artifact, labelled_24, method, capsys, tmp_path):
    from prm.scoring import Scorer

    assert run_cli("calibrate", str(artifact), str(labelled_24), "--method", method, "--per-position",
                   "--plot", str(tmp_path / "rel.png")) == 0
    report = json.loads(capsys.readouterr().out.splitlines()[0])
    assert report["method"] == method and report["steps"] > 0 and {"ece_before", "ece_after", "brier_after"} <= set(report)
    assert (tmp_path / "rel.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((artifact / "calibration.json").read_text())["method"] == "per_position"
    torch_scores = Scorer(artifact, backend="torch", batch_size=3).score(MIXED)
    onnx_scores = Scorer(artifact, backend="onnx", batch_size=3).score(MIXED)
    for t, o, (_, steps) in zip(torch_scores, onnx_scores, MIXED, strict=True):
        assert len(t) == len(o) == len(steps)
        np.testing.assert_allclose(t, o, atol=1e-4)


def test_batches_sort_by_length_and_pad_only_to_their_longest(artifact):
    from prm.scoring import Scorer

    scorer = Scorer(artifact, backend="onnx", batch_size=2, calibrated=False)
    encoded, batches = scorer.batches(MIXED)
    lengths = [len(e.input_ids) for e in encoded]
    assert [i for chunk, _, _ in batches for i in chunk] == sorted(range(len(MIXED)), key=lengths.__getitem__)
    for chunk, ids, mask in batches:
        assert ids.shape[1] == max(lengths[i] for i in chunk) and mask.sum() == sum(lengths[i] for i in chunk)
    one_by_one = Scorer(artifact, backend="onnx", batch_size=1, calibrated=False).step_logits(MIXED)
    for a, b in zip(scorer.step_logits(MIXED), one_by_one, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_bf16_backend_scores_every_step_close_to_fp32(artifact):
    from prm.scoring import Scorer

    fp32 = Scorer(artifact, backend="torch", calibrated=False).step_logits(MIXED)
    bf16 = Scorer(artifact, backend="torch-bf16", calibrated=False).step_logits(MIXED)
    for a, b in zip(fp32, bf16, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=0.1)


def test_gptq_bf16_rounding_beats_round_to_nearest_on_the_layer_output():
    import torch

    from prm.bf16_weights import BF16Linear, gptq_bf16

    torch.manual_seed(0)
    w = torch.randn(32, 64)
    mix = torch.randn(64, 64)
    mix[:, :3] *= 30  # a few outlier input channels, as LLM activations have
    x = torch.randn(500, 64) @ mix.T
    q = gptq_bf16(w, (x.T @ x).double())
    assert q.dtype == torch.bfloat16 and q.shape == w.shape
    assert torch.equal(q.float().bfloat16().float(), q.float())  # on the bf16 grid
    exact = x @ w.T
    err_gptq = (x @ q.float().T - exact).pow(2).mean()
    err_nearest = (x @ w.bfloat16().float().T - exact).pow(2).mean()
    assert err_gptq < err_nearest / 2, (err_gptq, err_nearest)
    layer = BF16Linear(q, torch.ones(32))
    assert layer(x[:4]).dtype == torch.float32 and layer.weight.dtype == torch.bfloat16


def test_bf16_gptq_backend_needs_its_weights_then_beats_plain_bf16(artifact, labelled_24, capsys):
    from prm.scoring import Scorer

    with pytest.raises(FileNotFoundError, match="--bf16 --calib"):
        Scorer(artifact, backend="torch-bf16-gptq")
    assert run_cli("export", str(artifact), "--bf16") == 2
    assert "--bf16 needs --calib" in capsys.readouterr().err
    assert run_cli("export", str(artifact), "--bf16", "--calib", str(labelled_24)) == 0
    assert "torch-bf16-gptq" in capsys.readouterr().out
    assert "bf16/model.safetensors" in json.loads((artifact / "manifest.json").read_text())["files"]
    fp32 = Scorer(artifact, backend="torch", calibrated=False).step_logits(MIXED)
    bf16 = Scorer(artifact, backend="torch-bf16", calibrated=False).step_logits(MIXED)
    eager = Scorer(artifact, backend="torch-bf16-gptq", calibrated=False, compile=False).step_logits(MIXED)
    compiled = Scorer(artifact, backend="torch-bf16-gptq", calibrated=False, batch_size=3).step_logits(MIXED)
    err = {name: max(np.max(np.abs(a - b)) for a, b in zip(fp32, got, strict=True))
           for name, got in (("bf16", bf16), ("eager", eager), ("compiled", compiled))}
    assert all(len(a) == len(b) for a, b in zip(fp32, compiled, strict=True))
    assert err["eager"] < err["bf16"] and err["compiled"] < err["bf16"], err
    np.testing.assert_allclose(np.concatenate(eager), np.concatenate(compiled), atol=0.02)


def test_overflow_policies_never_drop_a_step(artifact):
    from prm.scoring import Scorer

    long_prompt = ("Ann has 12 pens. " * 20, ["12 + 30 = 42", "The answer is 42."])
    strict = Scorer(artifact, backend="onnx", overflow="error")
    lenient = Scorer(artifact, backend="onnx")
    for s in (strict, lenient):
        s.cfg.max_length = 40
    with pytest.raises(TooLongError, match="limit is 40.*truncate_prompt"):
        strict.score([long_prompt])
    kept = lenient.encode(*long_prompt)
    assert len(kept.input_ids) <= 40 and len(kept.step_positions) == 2
    assert len(lenient.score([long_prompt])[0]) == 2
    with pytest.raises(TooLongError, match="steps alone"):
        lenient.score([("Q", ["1 + 1 = 2 " * 30])])


def test_bad_backend_and_policy_are_named(artifact):
    from prm.scoring import Scorer

    with pytest.raises(ValueError, match="backend must be one of.*'tensorrt'.*overflow must be one of.*'drop'"):
        Scorer(artifact, backend="tensorrt", overflow="drop")


def test_int8_export_passes_the_gate_or_is_refused_with_figures(artifact, labelled_24, capsys):
    from data_tools.schema import read_jsonl
    from prm.export import Int8Gate, Int8GateError, quantize_int8
    from prm.scoring import Scorer
    from prm.train import training_labels

    assert run_cli("export", str(artifact), "--int8", "--check", str(labelled_24)) == 0
    out = capsys.readouterr().out
    report = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    assert report["int8"]["passed"] and report["int8"]["decisions_unchanged"] >= 0.99
    assert (artifact / "onnx" / "model.int8.onnx").is_file()
    assert len(Scorer(artifact, backend="onnx-int8").score(MIXED)[0]) == 3
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert "onnx/model.int8.onnx" in manifest["files"]

    examples = list(read_jsonl(labelled_24))
    with pytest.raises(Int8GateError, match="refused.*decisions_unchanged") as err:
        quantize_int8(artifact, [(e.prompt, e.steps) for e in examples], [training_labels(e, "hard") for e in examples],
                      Int8Gate(min_agreement=1.01))  # impossible: forces the refusal path
    assert err.value.figures["passed"] is False and err.value.figures["steps"] > 0
    assert not (artifact / "onnx" / "model.int8.onnx").exists() and (artifact / "onnx" / "model.onnx").is_file()


def test_int8_quantizes_every_weight_matmul_but_the_head(artifact, labelled_24):
    import onnx

    from data_tools.schema import read_jsonl
    from prm.export import Int8Gate, head_matmuls, quantize_int8, weight_matmuls
    from prm.train import training_labels

    model = onnx.load(str(artifact / "onnx" / "model.onnx"))
    # tiny model: 2 layers x (q/k/v merged, o, gate/up merged, down) and the step head
    assert len(weight_matmuls(model)) == 9 and len(head_matmuls(model)) == 1
    examples = list(read_jsonl(labelled_24))
    figures = quantize_int8(artifact, [(e.prompt, e.steps) for e in examples],
                            [training_labels(e, "hard") for e in examples], Int8Gate(max_auroc_drop=1, min_agreement=0))
    assert figures["passed"] and figures["decisions_changed"] >= 0
    int8 = onnx.load(str(artifact / "onnx" / "model.int8.onnx"))
    ops = [n.op_type for n in int8.graph.node]
    assert ops.count("MatMulInteger") == 8 and len(head_matmuls(int8)) == 1


def test_export_traces_a_fused_causal_graph_with_merged_matmuls(artifact):
    import onnx

    model = onnx.load(str(artifact / "onnx" / "model.onnx"), load_external_data=False)
    assert {p.key: p.value for p in model.metadata_props}["prm_export_plan"] == "causal"
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Attention") == 2 and ops.count("RotaryEmbedding") == 4 and ops.count("Split") == 4


def test_right_padded_mixed_lengths_match_torch_at_every_real_position(artifact):
    import torch

    from prm.artifacts import load_scorer
    from prm.scoring import Scorer

    scorer = Scorer(artifact, backend="onnx", batch_size=4, calibrated=False)
    model, _, _ = load_scorer(artifact)
    _, batches = scorer.batches(MIXED)
    (_, ids, mask), = batches
    assert mask.sum(1).min() < mask.shape[1]  # some rows are padded
    with torch.inference_mode():
        ref = model.step_logits(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    got = scorer._run(ids, mask)
    real = mask.astype(bool)
    np.testing.assert_allclose(got[real], ref[real], atol=1e-4)
    assert np.all(got[~real] == 0)  # padding positions carry no score


def test_export_falls_back_to_the_masked_graph(artifact, tmp_path, monkeypatch):
    import shutil

    import onnx

    import prm.export.onnx as export  # the module whose EXPORT_PLANS export_onnx reads
    from prm.scoring import Scorer

    shutil.copytree(artifact, tmp_path / "model", ignore=shutil.ignore_patterns("*.int8.onnx"))
    plans = list(export.EXPORT_PLANS)
    monkeypatch.setattr(export, "EXPORT_PLANS", (plans[0][:3] + (99,) + plans[0][4:], *plans[1:]))  # opset 99 fails
    path = export.export_onnx(tmp_path / "model")
    model = onnx.load(str(path), load_external_data=False)
    assert {p.key: p.value for p in model.metadata_props}["prm_export_plan"] == "masked"
    torch_logits = Scorer(artifact, backend="torch", calibrated=False, batch_size=3).step_logits(MIXED)
    onnx_logits = Scorer(tmp_path / "model", backend="onnx", calibrated=False, batch_size=3).step_logits(MIXED)
    for a, b in zip(torch_logits, onnx_logits, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_merge_shared_matmuls_keeps_the_outputs():
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from prm.export import merge_shared_matmuls

    rng = np.random.default_rng(0)
    ws = [rng.standard_normal((6, n)).astype(np.float32) for n in (4, 2, 3)]
    nodes = [helper.make_node("MatMul", ["x", f"w{i}"], [f"y{i}"], name=f"mm{i}") for i in range(3)]
    nodes.append(helper.make_node("Relu", ["y2"], ["r"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 6])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["n", k]) for n, k in (("y0", 4), ("y1", 2), ("r", 3))],
                              [numpy_helper.from_array(w, f"w{i}") for i, w in enumerate(ws)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    x = rng.standard_normal((5, 6)).astype(np.float32)

    def run(m):
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})

    before = run(model)
    assert merge_shared_matmuls(model) == 3
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node] == ["MatMul", "Split", "Relu"] and len(model.graph.initializer) == 2
    for a, b in zip(before, run(model), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_generated_problems_are_gated_on_their_injected_errors():
    from data_tools.problems import generate_dataset
    from prm.export import gate_labels

    gold, wrong = generate_dataset(1, seed=0, min_steps=3, max_steps=3)
    assert gold.labels is None and gate_labels(gold) == [1.0] * len(gold.steps)
    first = wrong.meta["first_error"]
    assert gate_labels(wrong) == [float(i < first) for i in range(len(wrong.steps))]


def test_int8_without_check_data_is_refused(artifact, capsys):
    assert run_cli("export", str(artifact), "--int8") == 2
    assert "--int8 needs --check DATA" in capsys.readouterr().err


def test_readme_calibration_and_backend_commands_run(artifact, labelled_24, tmp_path, monkeypatch):
    import re
    import shlex
    import shutil
    from pathlib import Path

    shutil.copytree(artifact, tmp_path / "model")
    shutil.copy(labelled_24, tmp_path / "heldout.jsonl")
    shutil.copy(labelled_24, tmp_path / "calib.jsonl")
    monkeypatch.chdir(tmp_path)
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("### Calibrated scores, scoring backends and int8", 1)[1].split("```", 2)[1]
    commands = [shlex.split(re.sub(r"\s+#.*$", "", line))[1:] for line in section.splitlines()
                if line.startswith("prm ")]
    assert [c[0] for c in commands] == ["calibrate", "export", "export", "score"]
    for argv in commands:
        assert run_cli(*argv) == 0, argv
    assert Path("reliability.png").is_file() and Path("model/onnx/model.int8.onnx").is_file()
    assert Path("model/bf16/model.safetensors").is_file() and Path("model/onnx/model.fp16.onnx").is_file()
    assert {b for b, g in json.loads(Path("model/gates.json").read_text()).items() if g["passed"]} == {
        "onnx-int8", "onnx-fp16", "torch-bf16-gptq"}
