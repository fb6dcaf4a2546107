"""ONNX export of the step-logit graph, with a parity check against PyTorch on padded batches.

The exported graph is ``(input_ids [B, T], attention_mask [B, T]) -> step_logits [B, T]`` with
dynamic batch and sequence; it never contains the vocabulary projection. It is written as one file
(``onnx/model.onnx``, no external data). Parity is checked on a mixed-length, right-padded batch of
real encoded examples, at the separator positions the scorer reads.

``quantize_int8`` adds ``onnx/model.int8.onnx`` by dynamic quantization and keeps it only when it
passes a quality gate against fp32 (``Int8Gate``); otherwise it refuses with the measured figures.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def export_onnx(folder: str | Path, opset: int = 18) -> Path:
    """Export the artifact in ``folder`` to ``folder/onnx/model.onnx``; returns the path."""
    import torch

    from prm.artifacts import load_scorer, write_manifest
    from prm.model import StepLogitsForExport
    from prm.scoring import ONNX_FILE

    folder = Path(folder)
    scorer, tok, cfg = load_scorer(folder)
    scorer.backbone.config._attn_implementation = "eager"
    wrapper = StepLogitsForExport(scorer).eval()
    ids = torch.randint(0, len(tok), (2, 16))
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0
    out = folder / ONNX_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    batch, seq = torch.export.Dim("batch", min=1), torch.export.Dim("seq", min=2)
    with torch.no_grad():
        try:
            program = torch.onnx.export(
                wrapper, (ids, mask), dynamo=True, opset_version=opset, external_data=False,
                input_names=["input_ids", "attention_mask"], output_names=["step_logits"],
                dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
            )
            program.save(str(out), external_data=False)
        except Exception as exc:  # the dynamo exporter still misses some backbones: fall back
            log.warning("dynamo ONNX export failed (%s); using the TorchScript exporter", exc)
            torch.onnx.export(
                wrapper, (ids, mask), str(out), dynamo=False, opset_version=opset,
                input_names=["input_ids", "attention_mask"], output_names=["step_logits"],
                dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                              "step_logits": {0: "batch", 1: "seq"}},
            )
    write_manifest(folder)
    return out


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


def quantize_int8(folder: str | Path, items, labels, gate: Int8Gate | None = None) -> dict:
    """Write ``onnx/model.int8.onnx`` (dynamic int8) if it passes ``gate`` against fp32; returns the figures.

    ``items`` are (prompt, steps) pairs and ``labels`` one list per item (a float per step, or None
    for an unlabelled step). Weights are quantized per channel to QInt8 after ORT's pre-processing
    (shape inference and graph cleanup); activations are quantized dynamically per batch. Both
    graphs are scored through ``Scorer`` with the artifact's calibration, so the decisions compared
    are the ones search and RL see. On failure the int8 file is removed, ``Int8GateError`` carries
    the figures, and the fp32 graph stays.
    """
    import tempfile

    from onnxruntime.quantization import QuantType, quant_pre_process, quantize_dynamic

    from prm.artifacts import write_manifest
    from prm.scoring import ONNX_FILE, ONNX_INT8_FILE

    gate = gate or Int8Gate()
    folder = Path(folder)
    fp32_path, int8_path = folder / ONNX_FILE, folder / ONNX_INT8_FILE
    if not fp32_path.is_file():
        raise FileNotFoundError(f"{fp32_path} not found: export the fp32 graph first (`prm export {folder}`)")
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        quantize_dynamic(str(pre), str(int8_path), per_channel=True, weight_type=QuantType.QInt8,
                         nodes_to_quantize=int8_matmuls(pre))
    figures = compare_backends(folder, items, labels, "onnx", "onnx-int8", gate)
    if not figures["passed"]:
        int8_path.unlink(missing_ok=True)
        raise Int8GateError(figures)
    write_manifest(folder)
    return figures


def int8_matmuls(path: str | Path) -> list[str]:
    """Names of the MatMuls worth int8: weight matmuls whose input is hidden-size wide, not the head.

    Measured on the demo model (SmolLM2-135M, 21 layers): quantizing every MatMul also quantizes
    attention's activation x activation products and the step head, and changed 48% of step
    decisions; weight matmuls without the head still changed 48%; also leaving out the MLP down
    projections (their input, the MLP's wide activations, carries large outliers that a per-tensor
    uint8 activation scale cannot hold) changed 7%.
    """
    import onnx

    model = onnx.load(str(path))
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    weights = [(n.name, shapes[n.input[1]]) for n in model.graph.node
               if n.op_type == "MatMul" and len(shapes.get(n.input[1], ())) == 2]
    head_width = next((k for _, (k, n) in reversed(weights) if n == 1), None)  # [hidden, 1]: the step head
    return [name for name, (k, n) in weights if n > 1 and (head_width is None or k <= head_width)]


def compare_backends(folder: str | Path, items, labels, reference: str, candidate: str,
                     gate: Int8Gate | None = None, threads: int | None = None) -> dict:
    """The gate's figures for ``candidate`` against ``reference`` (Scorer backends) on labelled steps.

    AUROC is taken on the logits (the ranking is the model's; an isotonic calibration's ties would
    blur it); decisions on the calibrated scores, since those are what search and RL threshold.
    """
    from prm.calibrate import apply_calibration, labelled_steps
    from prm.evaluation import auroc
    from prm.scoring import Scorer

    gate = gate or Int8Gate()
    logits, scores = {}, {}
    for backend in (reference, candidate):
        scorer = Scorer(folder, backend=backend, threads=threads)
        z, y, pos = labelled_steps(scorer.step_logits(items), labels)
        logits[backend], scores[backend] = z, apply_calibration(z, scorer.calibration, pos)
    ref, cand = scores[reference], scores[candidate]
    figures = {"reference_backend": reference, "candidate": candidate, "steps": int(len(y)),
               "auroc_reference": auroc(y, logits[reference]), "auroc_candidate": auroc(y, logits[candidate]),
               "decisions_unchanged": float(np.mean((ref >= gate.threshold) == (cand >= gate.threshold))),
               "max_abs_score_diff": float(np.max(np.abs(ref - cand))),
               "max_auroc_drop": gate.max_auroc_drop, "min_agreement": gate.min_agreement}
    figures["auroc_drop"] = figures["auroc_reference"] - figures["auroc_candidate"]
    # A NaN AUROC (one class only) cannot show a drop: the gate then rests on the decisions alone.
    auroc_ok = not figures["auroc_drop"] > gate.max_auroc_drop
    figures["passed"] = bool(auroc_ok and figures["decisions_unchanged"] >= gate.min_agreement)
    return figures
