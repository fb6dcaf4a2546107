"""int8 ONNX graphs behind a quality gate: ``quantize_int8`` writes ``onnx/model.int8.onnx`` and keeps it
only when, on held-out labelled steps, it keeps fp32's step AUROC and decisions (``Int8Gate``);
``compare_backends`` measures any two scoring backends the same way (benchmarks use it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prm.artifacts import Artifact


@dataclass
class Int8Gate:
    """What an int8 graph must keep of the fp32 graph's quality, on held-out labelled steps."""

    max_auroc_drop: float = 0.005  # step AUROC (against the labels) may drop by at most this much
    min_agreement: float = 0.99  # share of calibrated step decisions (score >= threshold) left unchanged
    threshold: float = 0.5


class GateError(ValueError):
    """A graph or weights failed their quality gate; ``figures`` holds what was measured."""

    def __init__(self, figures: dict, what: str = "int8 graph"):
        self.figures = figures
        super().__init__(f"{what} refused, it does not keep fp32 quality: {json.dumps(figures)}; "
                         "serve the fp32 graph (backend 'onnx'), or check on more held-out data")


class Int8GateError(GateError):
    """int8 failed the quality gate; ``figures`` holds what was measured."""


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

    gate = gate or Int8Gate()
    art = Artifact(folder)
    fp32_path = art.require(Artifact.ONNX, f"export the fp32 graph first (`prm export {folder}`)")
    int8_path = art.onnx_int8_path
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        # ORT's symbolic shape inference takes opset 23's Attention for its own contrib op of that name.
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        quantize_dynamic(str(pre), str(int8_path), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"], nodes_to_exclude=head_matmuls(onnx.load(str(pre)), mlp_head_weights(art)),
                         extra_options={"MatMulConstBOnly": True})
    figures = compare_backends(folder, items, labels, "onnx", "onnx-int8", gate)
    if not figures["passed"] and not keep_refused:
        int8_path.unlink(missing_ok=True)
    art.save_gate("onnx-int8", Artifact.ONNX_INT8, figures)  # also refreshes the manifest
    if not figures["passed"]:
        raise Int8GateError(figures)
    return figures


def gate_labels(example) -> list[float | None]:
    """Step labels for the gate: the example's hard labels, or, for a generated problem without
    labels (``prm generate``), the ones its injected error implies (``meta.first_error``)."""
    from data_tools.synth.problems import ground_truth_labels

    if example.labels is None and "first_error" in example.meta:
        return [float(x) for x in ground_truth_labels(example)]
    return [None if h is None else float(h) for h in example.hard_labels()]


def weight_matmuls(model) -> list[tuple[str, tuple[int, ...]]]:
    """(name, weight shape) of the graph's MatMuls whose second input is a 2-D initializer."""
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    return [(n.name, shapes[n.input[1]]) for n in model.graph.node
            if n.op_type == "MatMul" and len(shapes.get(n.input[1], ())) == 2]


def head_matmuls(model, head_weights=()) -> list[str]:
    """The step head's MatMuls: its [hidden, 1] output layer, and any MatMul whose weight is one of
    ``head_weights`` ([out, in] arrays: an mlp head's hidden layer). They stay fp32 (one column, nothing to
    gain, all to lose; an mlp head's hidden layer feeds that column)."""
    import numpy as np
    from onnx import numpy_helper

    arrays = {t.name: t for t in model.graph.initializer}
    wanted = [np.asarray(w, dtype=np.float32).T for w in head_weights]
    out = []
    for node in model.graph.node:
        w = arrays.get(node.input[1]) if node.op_type == "MatMul" else None
        if w is None or len(w.dims) != 2:
            continue
        if w.dims[1] == 1 or any(tuple(w.dims) == a.shape and np.array_equal(numpy_helper.to_array(w), a)
                                 for a in wanted):
            out.append(node.name)
    return out


def mlp_head_weights(art: Artifact) -> list:
    """The hidden-layer weight of an mlp step head (``prm import``'s Qwen heads); none for a linear head."""
    if art.config().head != "mlp":
        return []
    from safetensors.numpy import load_file

    return [load_file(str(art.path(Artifact.HEAD)))["0.weight"]]


def compare_backends(folder: str | Path, items, labels, reference: str, candidate: str,
                     gate: Int8Gate | None = None, threads: int | None = None, cache: dict | None = None) -> dict:
    """The gate's figures for ``candidate`` against ``reference`` (Scorer backends) on labelled steps.

    AUROC is taken on the logits (the ranking is the model's; an isotonic calibration's ties would
    blur it); decisions on the calibrated scores, since those are what search and RL threshold.
    ``cache`` (a dict, filled here) keeps each backend's scores for later calls on the same steps.
    """
    from prm.calibrate import apply_calibration, labelled_steps
    from prm.eval.metrics import auroc
    from prm.scoring import Scorer

    gate = gate or Int8Gate()
    cache = {} if cache is None else cache
    for backend in (reference, candidate):
        if backend not in cache:
            scorer = Scorer(folder, backend=backend, threads=threads)
            z, y, pos = labelled_steps(scorer.step_logits(items, f"gate: {backend}"), labels)
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
