"""One scorer API over backends: PyTorch or ONNX Runtime, same inputs, same calibrated outputs.

``Scorer.score(items)`` takes (prompt, steps) pairs and returns one probability per step. It encodes
with ``prm.tokenization.encode`` (never drops a step: an input that cannot fit raises
``TooLongError``), sorts by length so each batch pads little, runs the backend to get step logits
``[B, T]``, reads them at the separator positions, takes their running minimum when the artifact is
``monotone``, and applies the artifact's calibration.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from prm.calibrate import apply_calibration, load_calibration
from prm.config import AGGREGATIONS, PRMConfig
from prm.tokenization import encode

ONNX_FILE = Path("onnx") / "model.onnx"


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
                 threads: int | None = None, calibrated: bool = True, max_length: int | None = None):
        from prm.artifacts import check_step_token, load_tokenizer

        self.folder = Path(folder)
        self.cfg = PRMConfig.load(self.folder)
        if max_length:  # longer inputs than the model was trained on, where its positions allow
            self.cfg.max_length = max_length
        self.backend = backend
        self.batch_size = batch_size
        self.calibration = load_calibration(self.folder) if calibrated else None
        threads = threads or max(1, os.cpu_count() or 1)
        if backend == "onnx":
            self.tokenizer = load_tokenizer(self.folder)
            check_step_token(self.tokenizer, self.cfg)
            self._run = _onnx_runner(self.folder / ONNX_FILE, threads)
        elif backend == "torch":
            from prm.artifacts import load_scorer

            model, self.tokenizer, _ = load_scorer(self.folder)
            self._run = _torch_runner(model, threads)
        else:
            raise ValueError(f"backend must be 'onnx' or 'torch', got {backend!r}")
        self.pad_id = self.tokenizer.pad_token_id

    @classmethod
    def from_model(cls, model, tokenizer, cfg: PRMConfig, calibration: dict | None = None,
                   batch_size: int = 16) -> Scorer:
        """A torch-backend scorer over a model already in memory (``prm.model.PRM.score`` uses it)."""
        self = cls.__new__(cls)
        self.folder, self.cfg, self.backend, self.batch_size = None, cfg, "torch", batch_size
        self.calibration, self.tokenizer, self.pad_id = calibration, tokenizer, tokenizer.pad_token_id
        self._run = _torch_runner(model, None)
        return self

    def step_logits(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[np.ndarray]:
        encoded = [encode(self.tokenizer, self.cfg.step_token_id, p, s, None, self.cfg.max_length)
                   for p, s in items]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].input_ids))
        out: list[np.ndarray] = [np.empty(0)] * len(encoded)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            n = max(len(encoded[i].input_ids) for i in chunk)
            ids = np.full((len(chunk), n), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(chunk), n), dtype=np.int64)
            for row, i in enumerate(chunk):
                k = len(encoded[i].input_ids)
                ids[row, :k], mask[row, :k] = encoded[i].input_ids, 1
            logits = self._run(ids, mask)  # [b, n]
            for row, i in enumerate(chunk):
                out[i] = logits[row, encoded[i].step_positions].astype(np.float64)
                if self.cfg.monotone:
                    out[i] = np.minimum.accumulate(out[i])
        return out

    def score(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[list[float]]:
        return [apply_calibration(z, self.calibration).tolist() for z in self.step_logits(items)]


def _onnx_runner(path: Path, threads: int):
    import onnxruntime as ort

    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: export the model first with `prm export {path.parent.parent}`")
    opts = ort.SessionOptions()
    # ORT ignores OMP_NUM_THREADS: set both pools deliberately.
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    providers = ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in ort.get_available_providers() and _cuda_present():
        providers.insert(0, "CUDAExecutionProvider")
    session = ort.InferenceSession(str(path), opts, providers=providers)

    def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return session.run(None, {"input_ids": ids, "attention_mask": mask})[0]

    return run


def _cuda_present() -> bool:
    # onnxruntime-gpu lists CUDA even without a GPU and silently falls back; ask torch instead.
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def _torch_runner(model, threads: int | None):
    import torch

    if threads:
        torch.set_num_threads(threads)

    def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model.step_logits(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()

    return run
