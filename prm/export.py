"""ONNX export of the step-logit graph, with a parity check against PyTorch on padded batches.

The exported graph is ``(input_ids [B, T], attention_mask [B, T]) -> step_logits [B, T]`` with
dynamic batch and sequence; it never contains the vocabulary projection. It is written as one file
(``onnx/model.onnx``, no external data). Parity is checked on a mixed-length, right-padded batch of
real encoded examples, at the separator positions the scorer reads.

``quantize_int8`` adds ``onnx/model.int8.onnx`` (blockwise int8 weights) and keeps it only when it
passes a quality gate against fp32 (``Int8Gate``); otherwise it refuses with the measured figures.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
INT8_BLOCK = 32  # weights and activations quantized in blocks of 32 along the hidden dimension


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


def quantize_int8(folder: str | Path, items, labels, gate: Int8Gate | None = None,
                  block_size: int = INT8_BLOCK) -> dict:
    """Write ``onnx/model.int8.onnx`` (int8 weights) if it passes ``gate`` against fp32; returns the figures.

    ``items`` are (prompt, steps) pairs and ``labels`` one list per item (a float per step, or None
    for an unlabelled step). Every weight matmul but the step head becomes ORT's ``MatMulNBits``
    with 8-bit symmetric weights in blocks of ``block_size`` along the input dimension, computed
    with int8 activations quantized per block too (``accuracy_level`` 4). Blocks are what keep the
    decisions: per-tensor dynamic activation quantization (``quantize_dynamic``) changed 48% of the
    demo model's step decisions, 7% even with the MLP down projections left in fp32, because a
    few hidden channels of these backbones carry outliers a single scale cannot hold; 32-wide
    blocks changed 0.3%. Both graphs are scored through ``Scorer`` with the artifact's calibration,
    so the decisions compared are the ones search and RL see. On failure the int8 file is removed,
    ``Int8GateError`` carries the figures, and the fp32 graph stays.
    """
    import onnx
    from onnxruntime.quantization import QuantFormat
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    from prm.artifacts import write_manifest
    from prm.scoring import ONNX_FILE, ONNX_INT8_FILE

    gate = gate or Int8Gate()
    folder = Path(folder)
    fp32_path, int8_path = folder / ONNX_FILE, folder / ONNX_INT8_FILE
    if not fp32_path.is_file():
        raise FileNotFoundError(f"{fp32_path} not found: export the fp32 graph first (`prm export {folder}`)")
    model = onnx.load(str(fp32_path))
    config = DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=True, accuracy_level=4, bits=8,
                                          quant_format=QuantFormat.QOperator, op_types_to_quantize=("MatMul",))
    quantizer = MatMulNBitsQuantizer(model, bits=8, block_size=block_size, is_symmetric=True, accuracy_level=4,
                                     nodes_to_exclude=head_matmuls(model), algo_config=config)
    quantizer.process()
    quantizer.model.save_model_to_file(str(int8_path), use_external_data_format=False)
    figures = compare_backends(folder, items, labels, "onnx", "onnx-int8", gate)
    figures["block_size"] = block_size
    if not figures["passed"]:
        int8_path.unlink(missing_ok=True)
        raise Int8GateError(figures)
    write_manifest(folder)
    return figures


def weight_matmuls(model) -> list[tuple[str, tuple[int, ...]]]:
    """(name, weight shape) of the graph's MatMuls whose second input is a 2-D initializer."""
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    return [(n.name, shapes[n.input[1]]) for n in model.graph.node
            if n.op_type == "MatMul" and len(shapes.get(n.input[1], ())) == 2]


def head_matmuls(model) -> list[str]:
    """The step head's MatMul ([hidden, 1]): it stays fp32 (one column, nothing to gain, all to lose)."""
    return [name for name, (_, n) in weight_matmuls(model) if n == 1]


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
