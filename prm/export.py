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
