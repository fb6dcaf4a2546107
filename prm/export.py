"""ONNX export of the step-logit graph, with a parity check against PyTorch on padded batches.

The exported graph is ``(input_ids [B, T], attention_mask [B, T]) -> step_logits [B, T]`` with
dynamic batch and sequence; it never contains the vocabulary projection. It is written as one file
(``onnx/model.onnx``, no external data). Parity is checked on a mixed-length, right-padded batch of
real encoded examples, at the separator positions the scorer reads.
"""

from __future__ import annotations

import logging
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
