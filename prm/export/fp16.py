"""fp16 ONNX graph behind the same quality gate as int8: ``convert_fp16`` writes ``onnx/model.fp16.onnx``
and keeps it only when, on held-out labelled steps, it keeps the fp32 graph's step AUROC and decisions.

The fp16 graph is for GPUs (ONNX Runtime's CUDA provider runs its MatMuls and fused attention on
tensor cores); on a CPU it runs, but no faster than fp32, so the gate can be run anywhere. It is
converted with ONNX Runtime's own converter (``onnxruntime.transformers.float16``): weights and
activations fp16, inputs and outputs as in the fp32 graph (int64 ids and mask in, fp32 step logits
out), and kept in fp32 the ops that converter blocks by default, the RMS norms (a sum of squares
over the hidden size is where fp16 overflows first) and the step head's MatMuls (one column: nothing
to gain, all to lose).
"""

from __future__ import annotations

from pathlib import Path

from prm.artifacts import Artifact
from prm.export.int8 import GateError, Int8Gate, compare_backends, head_matmuls, mlp_head_weights

KEEP_FP32_OPS = ("RMSNormalization", "SimplifiedLayerNormalization", "LayerNormalization")


def convert_fp16(folder: str | Path, items, labels, gate: Int8Gate | None = None, keep_refused: bool = False) -> dict:
    """Write ``onnx/model.fp16.onnx`` if it passes ``gate`` against the fp32 graph; returns the figures.

    ``items`` (prompt, steps) pairs and ``labels`` one list per item, as ``quantize_int8`` takes them.
    On failure the file is removed (unless ``keep_refused``), the refusal is recorded in ``gates.json``
    and ``GateError`` carries the figures.
    """
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    art = Artifact(folder)
    fp32_path = art.require(Artifact.ONNX, f"export the fp32 graph first (`prm export {folder}`)")
    model = onnx.load(str(fp32_path))
    fp16 = convert_float_to_float16(model, keep_io_types=True, op_block_list=list(DEFAULT_OP_BLOCK_LIST) + list(KEEP_FP32_OPS),
                                    node_block_list=head_matmuls(model, mlp_head_weights(art)))
    onnx.save(fp16, str(art.onnx_fp16_path))
    figures = compare_backends(folder, items, labels, "onnx", "onnx-fp16", gate or Int8Gate())
    if not figures["passed"] and not keep_refused:
        art.onnx_fp16_path.unlink(missing_ok=True)
    art.save_gate("onnx-fp16", Artifact.ONNX_FP16, figures)
    if not figures["passed"]:
        raise GateError(figures, "fp16 graph")
    return figures
