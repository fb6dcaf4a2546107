"""ONNX export of the step-logit graph, with a parity check against PyTorch on padded batches.

The exported graph is ``(input_ids [B, T], attention_mask [B, T]) -> step_logits [B, T]`` with
dynamic batch and sequence; it never contains the vocabulary projection. It is written as one file
(``onnx/model.onnx``, no external data). Parity is checked on a mixed-length, right-padded batch of
real encoded examples, at the separator positions the scorer reads.

The default graph is traced for right-padded rows (how ``Scorer`` pads): causal attention without
a padding mask, as one fused op (see ``EXPORT_PLANS``). ``quantize_int8`` adds
``onnx/model.int8.onnx`` (int8 weights and activations) and keeps it only when it passes a quality
gate against fp32 (``prm.export.int8``); otherwise it refuses with the measured figures.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from data_tools.progress import activity
from prm.artifacts import Artifact

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
    art = Artifact(folder)
    scorer, tok, _ = art.load()
    out = art.onnx_path
    out.parent.mkdir(parents=True, exist_ok=True)
    problems = []
    for name, causal_only, attention, opset, dynamo in EXPORT_PLANS:
        try:
            with activity(f"exporting {art.folder} to ONNX (plan {name!r}: trace, merge, self-check)"):
                _trace(scorer, len(tok), out, causal_only, attention, opset, dynamo)
                _finish_graph(out, name)
                err = _self_check(scorer, len(tok), out)
        except Exception as exc:  # exporters still miss some backbones: try the next plan
            problems.append(f"{name}: {type(exc).__name__}: {str(exc)[:300]}")
            continue
        if err <= 1e-3:
            log.info("ONNX export plan %r, max |torch - onnx| %.2e on a padded check batch", name, err)
            art.write_manifest()
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

    from prm.scoring.backends import onnx_runner

    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (3, 23), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 17:], mask[2, 5:] = 0, 0
    with torch.inference_mode():
        ref = scorer.step_logits(ids, mask).numpy()
    got = onnx_runner(path, threads=0).run(ids.numpy(), mask.numpy())  # 0: ORT's default
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

    torch_logits = Scorer(folder, backend="torch", calibrated=False, batch_size=8).step_logits(items, "parity: torch")
    onnx_logits = Scorer(folder, backend="onnx", calibrated=False, batch_size=8).step_logits(items, "parity: onnx")
    return float(max(np.max(np.abs(a - b)) for a, b in zip(torch_logits, onnx_logits, strict=False)))
