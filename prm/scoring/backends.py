"""The scoring backends, as one table: name -> how to build a runner ``(ids, mask) -> step logits``.

    torch            PyTorch eager, fp32
    torch-bf16       PyTorch eager, bf16 weights and activations (the step head stays fp32)
    torch-bf16-gptq  PyTorch, bf16 GEMMs over weights GPTQ-rounded to bf16 on calibration data
                     (``prm export MODEL --bf16 --calib DATA``), bf16 causal SDPA; residual stream,
                     norms and head in fp32; compiled with ``torch.compile`` (``compile=False``: eager)
    onnx             ONNX Runtime, onnx/model.onnx (fp32; CUDA when a GPU is present)
    onnx-int8        ONNX Runtime, onnx/model.int8.onnx (dynamic int8, written by `prm export --int8`
                     only when it passed the quality gate)

A runner takes right-padded ``ids``/``mask`` ``[B, T]`` (int64 numpy) and returns step logits
``[B, T]`` (float numpy); ``device`` says where it runs ("cuda" only when ONNX Runtime really took
the CUDA provider); ``model`` is the torch ``StepScorer`` for the torch backends. Adding a backend is
one function and one row in ``BACKENDS``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prm.artifacts import Artifact
from prm.scoring import fpenv


@dataclass(frozen=True)
class Runner:
    run: Callable[[np.ndarray, np.ndarray], np.ndarray]
    device: str = "cpu"
    model: object = None


@dataclass(frozen=True)
class Build:
    """What a backend is built from: the artifact, or a model already in memory (torch only)."""

    artifact: Artifact | None
    model: object = None
    threads: int = 1
    compile: bool | None = None


def _torch(b: Build) -> Runner:
    model = b.model if b.model is not None else b.artifact.load_model()
    device = str(next(model.parameters()).device.type)
    return Runner(torch_runner(model, b.threads if b.model is None else None), device, model)


def _torch_bf16(b: Build) -> Runner:
    import torch

    model = b.artifact.load_model(dtype=torch.bfloat16)
    # bf16 SDPA is ~7x slower than matmuls for ONE query token on this CPU; at scoring shapes
    # (8 x 192 tokens, demo model, 1 thread) eager measured 612-802 tok/s and SDPA 556-725 (noisy,
    # shared cores): no worse, so eager, the attention the export traces.
    model.backbone.config._attn_implementation = "eager"
    return Runner(torch_runner(model, b.threads), "cpu", model)


def _torch_bf16_gptq(b: Build) -> Runner:
    from prm.scoring.bf16 import register_bf16_attention, use_bf16_weights

    weights = b.artifact.bf16_weights()  # before the model: a missing file fails fast
    model = b.artifact.load_model()
    use_bf16_weights(model.backbone, weights)
    model.backbone.config._attn_implementation = register_bf16_attention()
    # Scorer pads on the right, so plain causal attention (no mask) is exact at every real position:
    # the padded batch takes SDPA's causal kernel instead of a [B, 1, T, T] mask.
    compiled = True if b.compile is None else b.compile
    return Runner(torch_runner(model, b.threads, compiled=compiled, causal_only=True), "cpu", model)


def _onnx(b: Build) -> Runner:
    return onnx_runner(b.artifact.require(Artifact.ONNX, f"export the model first with `prm export {b.artifact.folder}`"),
                       b.threads)


def _onnx_int8(b: Build) -> Runner:
    how = f"write it with `prm export {b.artifact.folder} --int8 --check DATA` (kept only if it passes the gate)"
    return onnx_runner(b.artifact.require(Artifact.ONNX_INT8, how), b.threads)


BACKENDS: dict[str, Callable[[Build], Runner]] = {
    "torch": _torch,
    "torch-bf16": _torch_bf16,
    "torch-bf16-gptq": _torch_bf16_gptq,
    "onnx": _onnx,
    "onnx-int8": _onnx_int8,
}


def onnx_runner(path: Path, threads: int) -> Runner:
    """An ONNX Runtime session over ``path`` (``threads`` 0: ORT's default)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    # ORT ignores OMP_NUM_THREADS: set both pools deliberately.
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Masked softmax entries underflow to denormals, which this CPU handles ~7x slower (measured:
    # causal Attention 17 ms -> 5.8 ms at 8 x 172 tokens); flushing them to zero changes nothing visible.
    # ORT leaves the flags set on the creating thread; fpenv keeps them to our own runs.
    opts.add_session_config_entry("session.set_denormal_as_zero", "1")
    providers = ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in ort.get_available_providers() and _cuda_present():
        providers.insert(0, "CUDAExecutionProvider")
    with fpenv.preserved():
        session = ort.InferenceSession(str(path), opts, providers=providers)

    def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        with fpenv.denormals_flushed():
            return session.run(None, {"input_ids": ids, "attention_mask": mask})[0]

    return Runner(run, "cuda" if "CUDAExecutionProvider" in session.get_providers() else "cpu")


def _cuda_present() -> bool:
    # onnxruntime-gpu lists CUDA even without a GPU and silently falls back; ask torch instead.
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def torch_runner(model, threads: int | None, compiled: bool = False, causal_only: bool = False):
    """``(ids, mask) -> logits`` over a torch ``StepScorer``; ``compiled`` compiles it on the first call."""
    import torch

    from prm.model import StepLogitsForExport

    if threads:
        torch.set_num_threads(threads)
    forward = StepLogitsForExport(model, causal_only=True) if causal_only else model.step_logits
    if compiled:
        # Dynamic batch and length: one compiled graph for every padded shape (a new one only for a
        # batch of 1). Freezing folds the weights into the graph as constants, which lets inductor
        # prepack them for oneDNN; the first call compiles (minutes on 2 cores, cached on disk after).
        forward = torch.compile(forward, dynamic=True, options={"freezing": True})
    pending = [compiled]  # the first call compiles: say so, it takes minutes

    def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        from data_tools.progress import activity

        announce = activity("compiling the scoring graph (first call; minutes on a small CPU, cached on disk "
                            "after)") if pending[0] else contextlib.nullcontext()
        pending[0] = False
        with torch.inference_mode(), announce:
            return forward(torch.from_numpy(ids), torch.from_numpy(mask)).float().numpy()

    return run
