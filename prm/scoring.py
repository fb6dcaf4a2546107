"""One scorer API over backends: PyTorch or ONNX Runtime, same inputs, same calibrated outputs.

Backends (``Scorer(folder, backend=...)``):

    torch        PyTorch eager, fp32
    torch-bf16   PyTorch eager, bf16 weights and activations (the step head stays fp32)
    torch-bf16-gptq  PyTorch, bf16 GEMMs over weights GPTQ-rounded to bf16 on calibration data
                 (``prm export MODEL --bf16 --calib DATA``, ``prm.bf16_weights``), bf16 causal SDPA;
                 residual stream, norms and head in fp32; compiled with ``torch.compile``
                 (``compile=False``: eager)
    onnx         ONNX Runtime, onnx/model.onnx (fp32; CUDA when a GPU is present)
    onnx-int8    ONNX Runtime, onnx/model.int8.onnx (dynamic int8, written by `prm export --int8`
                 only when it passed the quality gate)

``Scorer.score(items)`` takes (prompt, steps) pairs and returns one probability per step. It encodes
with ``prm.tokenization.encode``, sorts by length so each batch pads only to its own longest row,
runs the backend to get step logits ``[B, T]``, reads them at the separator positions, takes their
running minimum when the artifact is ``monotone``, and applies the artifact's calibration with
``prm.calibrate.apply_calibration`` (the same function for every backend). ``Scorer.device`` says
where it runs ("cuda" only when ONNX Runtime really took the CUDA provider).

Inputs longer than the model's ``max_length`` follow an explicit ``overflow`` policy; no policy
ever drops a step:

    truncate_prompt  (default) keep every step and as much of the END of the prompt as fits;
                     raise ``TooLongError`` when the steps alone do not fit
    error            raise ``TooLongError`` as soon as prompt + steps do not fit
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from prm import fpenv
from prm.calibrate import apply_calibration, load_calibration
from prm.config import AGGREGATIONS, PRMConfig
from prm.tokenization import TooLongError, encode

ONNX_FILE = Path("onnx") / "model.onnx"
ONNX_INT8_FILE = Path("onnx") / "model.int8.onnx"
BACKENDS = ("torch", "torch-bf16", "torch-bf16-gptq", "onnx", "onnx-int8")
OVERFLOW = ("truncate_prompt", "error")


def aggregate(step_scores: Sequence[float], how: str) -> float:
    """A solution score from its step scores: min, last, prod or mean."""
    if how not in AGGREGATIONS:
        raise ValueError(f"aggregate must be one of {AGGREGATIONS}, got {how!r}")
    s = np.asarray(step_scores, dtype=np.float64)
    if s.size == 0:
        raise ValueError("cannot aggregate an empty list of step scores")
    return float({"min": s.min, "last": lambda: s[-1], "prod": s.prod, "mean": s.mean}[how]())


class Scorer:
    def __init__(self, folder: str | Path, backend: str = "onnx", batch_size: int = 16,
                 threads: int | None = None, calibrated: bool = True, overflow: str = "truncate_prompt",
                 max_length: int | None = None, compile: bool | None = None):
        from prm.artifacts import check_step_token, load_tokenizer

        problems = []
        if backend not in BACKENDS:
            problems.append(f"backend must be one of {BACKENDS}, got {backend!r}")
        if overflow not in OVERFLOW:
            problems.append(f"overflow must be one of {OVERFLOW}, got {overflow!r}")
        if batch_size < 1:
            problems.append(f"batch_size must be at least 1, got {batch_size}")
        if problems:
            raise ValueError("; ".join(problems))
        self.folder = Path(folder)
        self.cfg = PRMConfig.load(self.folder)
        if max_length:  # longer inputs than the model was trained on, where its positions allow
            self.cfg.max_length = max_length
        self.backend, self.batch_size, self.overflow = backend, batch_size, overflow
        self.calibration = load_calibration(self.folder) if calibrated else None
        threads = threads or max(1, os.cpu_count() or 1)
        if backend.startswith("onnx"):
            self.tokenizer = load_tokenizer(self.folder)
            check_step_token(self.tokenizer, self.cfg)
            path = self.folder / (ONNX_INT8_FILE if backend == "onnx-int8" else ONNX_FILE)
            self._run = _onnx_runner(path, threads)
            self.device = self._run.device
        else:
            import torch

            from prm.artifacts import load_scorer

            bf16, gptq = backend == "torch-bf16", backend == "torch-bf16-gptq"
            model, self.tokenizer, _ = load_scorer(self.folder, dtype=torch.bfloat16 if bf16 else None)
            if bf16:
                # bf16 SDPA is ~7x slower than matmuls for ONE query token on this CPU; at scoring
                # shapes (8 x 192 tokens, demo model, 1 thread) eager measured 612-802 tok/s and SDPA
                # 556-725 (noisy, shared cores): no worse, so eager, the attention the export traces.
                model.backbone.config._attn_implementation = "eager"
            if gptq:
                from safetensors.torch import load_file

                from prm.bf16_weights import BF16_FILE, register_bf16_attention, use_bf16_weights

                if not (self.folder / BF16_FILE).is_file():
                    raise FileNotFoundError(f"{self.folder / BF16_FILE} not found: write it with "
                                            f"`prm export {self.folder} --bf16 --calib DATA`")
                use_bf16_weights(model.backbone, load_file(self.folder / BF16_FILE))
                model.backbone.config._attn_implementation = register_bf16_attention()
            self.model = model
            # Scorer pads on the right, so plain causal attention (no mask) is exact at every real
            # position: the padded batch takes SDPA's causal kernel instead of a [B, 1, T, T] mask.
            self._run = _torch_runner(model, threads, compiled=gptq if compile is None else compile, causal_only=gptq)
            self.device = "cpu"
        self.pad_id = self.tokenizer.pad_token_id

    @classmethod
    def from_model(cls, model, tokenizer, cfg: PRMConfig, calibration: dict | None = None,
                   batch_size: int = 16, overflow: str = "truncate_prompt") -> Scorer:
        """A torch-backend scorer over a model already in memory (``prm.model.PRM.score`` uses it)."""
        self = cls.__new__(cls)
        self.folder, self.cfg, self.backend, self.batch_size = None, cfg, "torch", batch_size
        self.overflow = overflow
        self.calibration, self.tokenizer, self.pad_id = calibration, tokenizer, tokenizer.pad_token_id
        self.model, self._run = model, _torch_runner(model, None)
        self.device = str(next(model.parameters()).device.type)
        return self

    def encode(self, prompt: str, steps: Sequence[str]):
        """One solution as model input under the ``overflow`` policy (``TooLongError`` when it cannot fit)."""
        if self.overflow == "error":
            full = encode(self.tokenizer, self.cfg.step_token_id, prompt, steps, None, 1 << 30)
            if len(full.input_ids) > self.cfg.max_length:
                raise TooLongError(
                    f"prompt + {len(steps)} steps take {len(full.input_ids)} tokens but the model's limit is "
                    f"{self.cfg.max_length}; shorten the input, or use overflow='truncate_prompt' to keep the "
                    "end of the prompt")
            return full
        return encode(self.tokenizer, self.cfg.step_token_id, prompt, steps, None, self.cfg.max_length)

    def batches(self, items: Sequence[tuple[str, Sequence[str]]]):
        """(encoded items, [(indices, ids [b, n], mask [b, n])]): sorted by length, padded to each batch's longest."""
        return self._pad([self.encode(p, s) for p, s in items])

    def _pad(self, encoded: list):
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].input_ids))
        out = []
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            n = max(len(encoded[i].input_ids) for i in chunk)
            ids = np.full((len(chunk), n), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(chunk), n), dtype=np.int64)
            for row, i in enumerate(chunk):
                k = len(encoded[i].input_ids)
                ids[row, :k], mask[row, :k] = encoded[i].input_ids, 1
            out.append((chunk, ids, mask))
        return encoded, out

    def step_logits(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[np.ndarray]:
        return self._step_logits(*self.batches(items))

    def _step_logits(self, encoded: list, batches: list) -> list[np.ndarray]:
        out: list[np.ndarray] = [np.empty(0)] * len(encoded)
        for chunk, ids, mask in batches:
            logits = self._run(ids, mask)  # [b, n]
            for row, i in enumerate(chunk):
                out[i] = logits[row, encoded[i].step_positions].astype(np.float64)
                if self.cfg.monotone:
                    out[i] = np.minimum.accumulate(out[i])
        return out

    def score(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[list[float]]:
        return [apply_calibration(z, self.calibration).tolist() for z in self.step_logits(items)]

    def score_each(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[list[float] | TooLongError]:
        """Like ``score``, but a solution that cannot fit gets its ``TooLongError`` in its place and the
        others are still scored (the service's batches mix solutions of several requests)."""
        encoded, failed = [], {}
        for n, (prompt, steps) in enumerate(items):
            try:
                encoded.append(self.encode(prompt, steps))
            except TooLongError as exc:
                failed[n] = exc
        scores = iter(apply_calibration(z, self.calibration).tolist()
                      for z in self._step_logits(*self._pad(encoded)))
        return [failed[n] if n in failed else next(scores) for n in range(len(items))]


def _onnx_runner(path: Path, threads: int):
    import onnxruntime as ort

    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: export the model first with `prm export {path.parent.parent}`")
    opts = ort.SessionOptions()
    # ORT ignores OMP_NUM_THREADS: set both pools deliberately.
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Masked softmax entries underflow to denormals, which this CPU handles ~7x slower (measured:
    # causal Attention 17 ms -> 5.8 ms at 8 x 172 tokens); flushing them to zero changes nothing visible.
    # ORT leaves the flags set on the creating thread; prm.fpenv keeps them to our own runs.
    opts.add_session_config_entry("session.set_denormal_as_zero", "1")
    providers = ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in ort.get_available_providers() and _cuda_present():
        providers.insert(0, "CUDAExecutionProvider")
    with fpenv.preserved():
        session = ort.InferenceSession(str(path), opts, providers=providers)

    def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        with fpenv.denormals_flushed():
            return session.run(None, {"input_ids": ids, "attention_mask": mask})[0]

    run.device = "cuda" if "CUDAExecutionProvider" in session.get_providers() else "cpu"
    return run


def _cuda_present() -> bool:
    # onnxruntime-gpu lists CUDA even without a GPU and silently falls back; ask torch instead.
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def _torch_runner(model, threads: int | None, compiled: bool = False, causal_only: bool = False):
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

    def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return forward(torch.from_numpy(ids), torch.from_numpy(mask)).float().numpy()

    return run
