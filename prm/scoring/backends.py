"""The scoring backends, as one table: name -> how to build a runner ``(ids, mask) -> step logits``.

    torch            PyTorch eager, fp32
    torch-bf16       PyTorch, bf16 weights and activations (the step head stays fp32); eager attention
                     on a CPU, SDPA (flash attention) on a GPU
    torch-bf16-gptq  PyTorch, bf16 GEMMs over weights GPTQ-rounded to bf16 on calibration data
                     (``prm export MODEL --bf16 --calib DATA``), bf16 causal SDPA; residual stream,
                     norms and head in fp32; compiled with ``torch.compile`` (``compile=False``: eager)
    onnx             ONNX Runtime, onnx/model.onnx (fp32)
    onnx-int8        ONNX Runtime, onnx/model.int8.onnx (dynamic int8, written by `prm export --int8`
                     only when it passed the quality gate)
    onnx-fp16        ONNX Runtime, onnx/model.fp16.onnx (fp16, for GPUs; written by `prm export --fp16`
                     only when it passed the same gate)

The torch backends run on CUDA when torch sees a GPU (``Build.device``: "cuda", "cpu", or None for
that choice). The ONNX backends ask for ONNX Runtime's CUDA provider when
``onnxruntime.get_available_providers()`` lists it and the driver shows a GPU (``prm.scoring.cuda``:
onnxruntime-gpu lists CUDA everywhere and silently falls back), and then feed it through I/O binding.

A runner takes right-padded ``ids``/``mask`` ``[B, T]`` (int64 numpy) and returns step logits
``[B, T]`` (float numpy); ``device`` says where it runs ("cuda" only when ONNX Runtime really took
the CUDA provider, per ``session.get_providers()``); ``model`` is the torch ``StepScorer`` for the
torch backends. Adding a backend is one function and one row in ``BACKENDS``; ``default_backend``
picks, per device, the fastest one the artifact holds that passed its gate (``gates.json``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prm.artifacts import Artifact
from prm.scoring import fpenv
from prm.scoring.cuda import gpu_count


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
    device: str | None = None  # torch backends: "cuda", "cpu"; None: CUDA when torch sees a GPU


def torch_device(b: Build) -> str:
    if b.device:
        return b.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _torch(b: Build) -> Runner:
    if b.model is not None:  # a PRM in memory stays where it is
        device = str(next(b.model.parameters()).device.type)
        return Runner(torch_runner(b.model, None, device=device), device, b.model)
    device = torch_device(b)
    model = b.artifact.load_model().to(device)
    return Runner(torch_runner(model, b.threads, device=device), device, model)


def _torch_bf16(b: Build) -> Runner:
    import torch

    device = torch_device(b)
    model = b.artifact.load_model(dtype=torch.bfloat16).to(device)
    # bf16 SDPA is ~7x slower than matmuls for ONE query token on this CPU; at scoring shapes
    # (8 x 192 tokens, demo model, 1 thread) eager measured 612-802 tok/s and SDPA 556-725 (noisy,
    # shared cores): no worse, so eager, the attention the export traces. A GPU takes SDPA (flash).
    model.backbone.config._attn_implementation = "sdpa" if device == "cuda" else "eager"
    return Runner(torch_runner(model, b.threads, device=device), device, model)


def _torch_bf16_gptq(b: Build) -> Runner:
    from prm.scoring.bf16 import register_bf16_attention, use_bf16_weights

    weights = b.artifact.bf16_weights()  # before the model: a missing file fails fast
    device = torch_device(b)
    model = b.artifact.load_model()
    use_bf16_weights(model.backbone, weights)
    model = model.to(device)
    model.backbone.config._attn_implementation = register_bf16_attention()
    # Scorer pads on the right, so plain causal attention (no mask) is exact at every real position:
    # the padded batch takes SDPA's causal kernel instead of a [B, 1, T, T] mask.
    compiled = True if b.compile is None else b.compile
    return Runner(torch_runner(model, b.threads, compiled=compiled, causal_only=True, device=device), device, model)


def _onnx(b: Build) -> Runner:
    return onnx_runner(b.artifact.require(Artifact.ONNX, f"export the model first with `prm export {b.artifact.folder}`"),
                       b.threads)


def _onnx_int8(b: Build) -> Runner:
    how = f"write it with `prm export {b.artifact.folder} --int8 --check DATA` (kept only if it passes the gate)"
    return onnx_runner(b.artifact.require(Artifact.ONNX_INT8, how), b.threads)


def _onnx_fp16(b: Build) -> Runner:
    how = f"write it with `prm export {b.artifact.folder} --fp16 --check DATA` (kept only if it passes the gate)"
    return onnx_runner(b.artifact.require(Artifact.ONNX_FP16, how), b.threads)


BACKENDS: dict[str, Callable[[Build], Runner]] = {
    "torch": _torch,
    "torch-bf16": _torch_bf16,
    "torch-bf16-gptq": _torch_bf16_gptq,
    "onnx": _onnx,
    "onnx-int8": _onnx_int8,
    "onnx-fp16": _onnx_fp16,
}

# Fastest first, by device. CPU, demo model, 1 thread, one run (README, scoring_throughput.py):
# torch-bf16-gptq 4.9x torch fp32, onnx-int8 3.0x, onnx 1.1x. GPU: fp16 tensor-core graphs first;
# not yet measured here (benchmarks/gpu_check.sh measures them). torch-bf16 (rounded to nearest)
# has no gate of its own and is never a default.
PREFERENCE = {"cpu": ("torch-bf16-gptq", "onnx-int8", "onnx", "torch"),
              "cuda": ("onnx-fp16", "torch-bf16-gptq", "onnx", "torch")}
# What each backend reads, beyond the weights every artifact has; "onnx" was parity-checked at export.
FILES = {"onnx": Artifact.ONNX, "onnx-int8": Artifact.ONNX_INT8, "onnx-fp16": Artifact.ONNX_FP16,
         "torch-bf16-gptq": Artifact.BF16}


def default_backend(artifact: Artifact, device: str | None = None) -> str:
    """The fastest backend on ``device`` ("cpu"/"cuda"; None: "cuda" when the driver shows a GPU) that
    ``artifact`` holds and that passed its quality gate (``gates.json``; fp32 ONNX passed its parity check
    at export, and PyTorch fp32 is the reference)."""
    device = device or ("cuda" if gpu_count() else "cpu")
    for backend in PREFERENCE[device]:
        if backend == "torch" or (artifact.has(FILES[backend]) and
                                  (backend == "onnx" or artifact.passed_gate(backend))):
            return backend
    return "torch"


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
    providers: list = ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in ort.get_available_providers() and gpu_count():
        # kSameAsRequested: the arena grows by what a batch needs, not to the next power of two (padded
        # batches change shape every call); copies on the compute stream (the documented safe default).
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": 0, "arena_extend_strategy": "kSameAsRequested",
                                                       "do_copy_in_default_stream": True}))
    with fpenv.preserved():
        session = ort.InferenceSession(str(path), opts, providers=providers)
    if "CUDAExecutionProvider" in session.get_providers():
        return Runner(_cuda_run(session), "cuda")

    def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        with fpenv.denormals_flushed():
            return session.run(None, {"input_ids": ids, "attention_mask": mask})[0]

    return Runner(run, "cpu")


def _cuda_run(session):
    """``run`` over a CUDA session through I/O binding: inputs copied to the GPU once, the output left
    there by the graph and copied back once (ORT's documented pattern for a CPU -> GPU -> CPU call)."""
    def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        binding = session.io_binding()
        binding.bind_cpu_input("input_ids", np.ascontiguousarray(ids))
        binding.bind_cpu_input("attention_mask", np.ascontiguousarray(mask))
        binding.bind_output("step_logits", "cuda")
        session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    return run


def torch_runner(model, threads: int | None, compiled: bool = False, causal_only: bool = False, device: str = "cpu"):
    """``(ids, mask) -> logits`` over a torch ``StepScorer`` on ``device``; ``compiled`` compiles it on the first call."""
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
            return forward(torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)).float().cpu().numpy()

    return run
