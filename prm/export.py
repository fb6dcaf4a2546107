"""ONNX export of the step-logit graph, with a parity check against PyTorch on padded batches.

The exported graph is ``(input_ids [B, T], attention_mask [B, T]) -> step_logits [B, T]`` with
dynamic batch and sequence; it never contains the vocabulary projection. It is written as one file
(``onnx/model.onnx``, no external data). Parity is checked on a mixed-length, right-padded batch of
real encoded examples, at the separator positions the scorer reads.

The default graph is traced for right-padded rows (how ``Scorer`` pads): causal attention without
a padding mask, as one fused op (see ``EXPORT_PLANS``). ``quantize_int8`` adds
``onnx/model.int8.onnx`` (int8 weights and activations) and keeps it only when it passes a quality
gate against fp32 (``Int8Gate``); otherwise it refuses with the measured figures.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


# How the graph is traced, best first; the first that exports and matches PyTorch is kept.
#   causal: ONNX opset 23's fused Attention (is_causal), RMSNormalization and RotaryEmbedding, no
#           [B, 1, T, T] mask (right padding, see StepLogitsForExport); SDPA is what maps to them.
#   masked: eager attention with the padding mask, any padding side (opset 18, what older
#           backbones and the TorchScript exporter handle).
EXPORT_PLANS = (("causal", True, "sdpa", 23, True), ("masked", False, "eager", 18, True),
                ("masked-torchscript", False, "eager", 18, False))


def export_onnx(folder: str | Path) -> Path:
    """Export the artifact in ``folder`` to ``folder/onnx/model.onnx``; returns the path.

    Tries ``EXPORT_PLANS`` in order and keeps the first graph whose step logits match PyTorch
    (within 1e-3) on a right-padded batch of other shapes than the traced one; MatMuls that share
    their input (q/k/v, gate/up) are then merged into one wider MatMul each (``merge_shared_matmuls``).
    The plan used is logged and stored in the graph's metadata (``prm_export_plan``).
    """
    from prm.artifacts import load_scorer, write_manifest
    from prm.scoring import ONNX_FILE

    folder = Path(folder)
    scorer, tok, _ = load_scorer(folder)
    out = folder / ONNX_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    problems = []
    for name, causal_only, attention, opset, dynamo in EXPORT_PLANS:
        try:
            _trace(scorer, len(tok), out, causal_only, attention, opset, dynamo)
            _finish_graph(out, name)
            err = _self_check(scorer, len(tok), out)
        except Exception as exc:  # exporters still miss some backbones: try the next plan
            problems.append(f"{name}: {type(exc).__name__}: {str(exc)[:300]}")
            continue
        if err <= 1e-3:
            log.info("ONNX export plan %r, max |torch - onnx| %.2e on a padded check batch", name, err)
            write_manifest(folder)
            return out
        problems.append(f"{name}: max |torch - onnx| {err:.3g} on a padded check batch")
    out.unlink(missing_ok=True)
    raise RuntimeError("ONNX export failed with every plan: " + "; ".join(problems))


def _trace(scorer, vocab: int, out: Path, causal_only: bool, attention: str, opset: int, dynamo: bool) -> None:
    import torch

    from prm.model import StepLogitsForExport

    scorer.backbone.config._attn_implementation = attention
    wrapper = StepLogitsForExport(scorer, causal_only=causal_only).eval()
    ids = torch.randint(0, vocab, (2, 16))
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0
    names = {"input_names": ["input_ids", "attention_mask"], "output_names": ["step_logits"]}
    with torch.no_grad():
        if dynamo:
            batch, seq = torch.export.Dim("batch", min=1), torch.export.Dim("seq", min=2)
            program = torch.onnx.export(
                wrapper, (ids, mask), dynamo=True, opset_version=opset, external_data=False, **names,
                dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}})
            program.save(str(out), external_data=False)
        else:
            torch.onnx.export(wrapper, (ids, mask), str(out), dynamo=False, opset_version=opset, **names,
                              dynamic_axes={k: {0: "batch", 1: "seq"} for k in ("input_ids", "attention_mask",
                                                                                "step_logits")})


def _finish_graph(path: Path, plan: str) -> None:
    import onnx

    model = onnx.load(str(path))
    merge_shared_matmuls(model)
    onnx.helper.set_model_props(model, {"prm_export_plan": plan})
    onnx.save(model, str(path))


def _self_check(scorer, vocab: int, path: Path) -> float:
    """Largest |torch - onnx| logit at real positions of a right-padded batch (shapes not traced)."""
    import torch

    from prm.scoring import _onnx_runner

    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (3, 23), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 17:], mask[2, 5:] = 0, 0
    with torch.inference_mode():
        ref = scorer.step_logits(ids, mask).numpy()
    got = _onnx_runner(path, threads=0)(ids.numpy(), mask.numpy())  # 0: ORT's default
    real = mask.numpy().astype(bool)
    return float(np.max(np.abs(ref[real] - got[real])))


def merge_shared_matmuls(model) -> int:
    """Merge MatMuls that read one activation with 2-D constant weights (q/k/v; gate/up) into one
    MatMul over the concatenated weights and a Split; returns how many MatMuls were merged.

    One wide GEMM runs faster than three narrow ones (the k/v projections of a GQA backbone are
    only 192 wide), and an int8 graph quantizes the shared activation once.
    """
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    groups: dict[str, list] = {}
    for node in graph.node:
        w = weights.get(node.input[1]) if node.op_type == "MatMul" else None
        if w is not None and len(w.dims) == 2:
            groups.setdefault(node.input[0], []).append(node)
    merged = 0
    for x, nodes in groups.items():
        if len(nodes) < 2:
            continue
        arrays = [numpy_helper.to_array(weights[n.input[1]]) for n in nodes]
        name = nodes[0].name + "_merged"
        graph.initializer.extend([numpy_helper.from_array(np.concatenate(arrays, axis=1), name + "_weight"),
                                  numpy_helper.from_array(np.array([a.shape[1] for a in arrays], dtype=np.int64), name + "_sizes")])
        at = min(list(graph.node).index(n) for n in nodes)
        for n in nodes:
            graph.node.remove(n)
        graph.node.insert(at, onnx.helper.make_node("MatMul", [x, name + "_weight"], [name + "_out"], name=name))
        graph.node.insert(at + 1, onnx.helper.make_node("Split", [name + "_out", name + "_sizes"],
                                                        [n.output[0] for n in nodes], axis=-1, name=name + "_split"))
        merged += len(nodes)
    used = {i for n in graph.node for i in n.input}
    for t in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(t)
    return merged


def parity(folder: str | Path, items) -> float:
    """Largest |torch - onnx| step logit over ``items`` [(prompt, steps)], scored in padded batches."""
    from prm.scoring import Scorer

    torch_logits = Scorer(folder, backend="torch", calibrated=False, batch_size=8).step_logits(items)
    onnx_logits = Scorer(folder, backend="onnx", calibrated=False, batch_size=8).step_logits(items)
    return float(max(np.max(np.abs(a - b)) for a, b in zip(torch_logits, onnx_logits, strict=False)))


@dataclass
class Int8Gate:
    """What an int8 graph must keep of the fp32 graph's quality, on held-out labelled steps."""

    max_auroc_drop: float = 0.005  # step AUROC (against the labels) may drop by at most this much
    min_agreement: float = 0.99  # share of calibrated step decisions (score >= threshold) left unchanged
    threshold: float = 0.5


class Int8GateError(ValueError):
    """int8 failed the quality gate; ``figures`` holds what was measured."""

    def __init__(self, figures: dict):
        self.figures = figures
        super().__init__(f"int8 graph refused, it does not keep fp32 quality: {json.dumps(figures)}; "
                         "serve the fp32 graph (backend 'onnx'), or check on more held-out data")


def quantize_int8(folder: str | Path, items, labels, gate: Int8Gate | None = None,
                  keep_refused: bool = False) -> dict:
    """Write ``onnx/model.int8.onnx`` if it passes ``gate`` against fp32; returns the figures.

    ``items`` are (prompt, steps) pairs and ``labels`` one list per item (a float per step, or None
    for an unlabelled step). Every weight MatMul but the step head gets int8 weights (symmetric,
    one scale per output channel) and int8 activations quantized per tensor at run time (ORT's
    dynamic quantization, after ``quant_pre_process``): 2.3-3.0x PyTorch fp32 on the project CPU.
    Blockwise ``MatMulNBits`` (8-bit, blocks of 32, int8 compute) was tried and dropped: on that CPU
    it ran at 0.96x PyTorch fp32, i.e. slower than the fp32 graph it would replace, and it still
    changed 1.2-2.1% of the demo model's decisions on 1,800-2,500 held-out steps. Both graphs are
    scored through ``Scorer`` with the artifact's calibration, so the decisions compared are the
    ones search and RL see. On failure the int8 file is removed (unless ``keep_refused``, for a
    benchmark that times it), ``Int8GateError`` carries the figures, and the fp32 graph stays.
    """
    import tempfile

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from prm.artifacts import write_manifest
    from prm.scoring import ONNX_FILE, ONNX_INT8_FILE

    gate = gate or Int8Gate()
    folder = Path(folder)
    fp32_path, int8_path = folder / ONNX_FILE, folder / ONNX_INT8_FILE
    if not fp32_path.is_file():
        raise FileNotFoundError(f"{fp32_path} not found: export the fp32 graph first (`prm export {folder}`)")
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        # ORT's symbolic shape inference takes opset 23's Attention for its own contrib op of that name.
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        quantize_dynamic(str(pre), str(int8_path), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"], nodes_to_exclude=head_matmuls(onnx.load(str(pre))),
                         extra_options={"MatMulConstBOnly": True})
    figures = compare_backends(folder, items, labels, "onnx", "onnx-int8", gate)
    if not figures["passed"]:
        if not keep_refused:
            int8_path.unlink(missing_ok=True)
        raise Int8GateError(figures)
    write_manifest(folder)
    return figures


def gate_labels(example) -> list[float | None]:
    """Step labels for the gate: the example's hard labels, or, for a generated problem without
    labels (``prm generate``), the ones its injected error implies (``meta.first_error``)."""
    from data_tools.problems import ground_truth_labels
    from prm.train import training_labels

    if example.labels is None and "first_error" in example.meta:
        return [float(x) for x in ground_truth_labels(example)]
    return training_labels(example, "hard")


def weight_matmuls(model) -> list[tuple[str, tuple[int, ...]]]:
    """(name, weight shape) of the graph's MatMuls whose second input is a 2-D initializer."""
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    return [(n.name, shapes[n.input[1]]) for n in model.graph.node
            if n.op_type == "MatMul" and len(shapes.get(n.input[1], ())) == 2]


def head_matmuls(model) -> list[str]:
    """The step head's MatMul ([hidden, 1]): it stays fp32 (one column, nothing to gain, all to lose)."""
    return [name for name, (_, n) in weight_matmuls(model) if n == 1]


def compare_backends(folder: str | Path, items, labels, reference: str, candidate: str,
                     gate: Int8Gate | None = None, threads: int | None = None, cache: dict | None = None) -> dict:
    """The gate's figures for ``candidate`` against ``reference`` (Scorer backends) on labelled steps.

    AUROC is taken on the logits (the ranking is the model's; an isotonic calibration's ties would
    blur it); decisions on the calibrated scores, since those are what search and RL threshold.
    ``cache`` (a dict, filled here) keeps each backend's scores for later calls on the same steps.
    """
    from prm.calibrate import apply_calibration, labelled_steps
    from prm.evaluation import auroc
    from prm.scoring import Scorer

    gate = gate or Int8Gate()
    cache = {} if cache is None else cache
    for backend in (reference, candidate):
        if backend not in cache:
            scorer = Scorer(folder, backend=backend, threads=threads)
            z, y, pos = labelled_steps(scorer.step_logits(items), labels)
            cache[backend] = z, y, apply_calibration(z, scorer.calibration, pos)
    (z_ref, y, ref), (z_cand, _, cand) = cache[reference], cache[candidate]
    figures = {"reference_backend": reference, "candidate": candidate, "steps": int(len(y)),
               "auroc_reference": auroc(y, z_ref), "auroc_candidate": auroc(y, z_cand),
               "decisions_unchanged": float(np.mean((ref >= gate.threshold) == (cand >= gate.threshold))),
               "decisions_changed": int(np.sum((ref >= gate.threshold) != (cand >= gate.threshold))),
               "max_abs_score_diff": float(np.max(np.abs(ref - cand))),
               "max_auroc_drop": gate.max_auroc_drop, "min_agreement": gate.min_agreement}
    figures["auroc_drop"] = figures["auroc_reference"] - figures["auroc_candidate"]
    # A NaN AUROC (one class only) cannot show a drop: the gate then rests on the decisions alone.
    auroc_ok = not figures["auroc_drop"] > gate.max_auroc_drop
    figures["passed"] = bool(auroc_ok and figures["decisions_unchanged"] >= gate.min_agreement)
    return figures
