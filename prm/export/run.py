"""``prm export``: what one export run does, for the CLI and the demo alike."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from prm.artifacts import Artifact
from prm.export.gptq import write_bf16_weights
from prm.export.int8 import gate_labels, quantize_int8
from prm.export.onnx import export_onnx, parity


def export_artifact(folder: str | Path, check: Sequence = (), int8: bool = False, bf16: bool = False,
                    calib: Sequence = (), say: Callable[[str], None] = lambda _: None) -> dict:
    """Export the artifact to ONNX; with ``check`` (labelled ``StepwiseExample``s), measure torch/ONNX
    parity on them and, with ``int8``, write the int8 graph if it passes its gate there (else
    ``Int8GateError`` with the figures); with ``bf16``, write GPTQ-rounded bf16 weights fitted on
    ``calib``'s solutions. ``say`` hears where each file went. Returns the figures."""
    if int8 and not check:
        raise ValueError("--int8 needs --check DATA: held-out labelled steps to run the int8 quality gate on")
    if bf16 and not calib:
        raise ValueError("--bf16 needs --calib DATA: solutions whose layer inputs GPTQ rounds the weights against")
    report: dict = {"onnx": str(export_onnx(folder))}
    say(f"ONNX model written to {report['onnx']}")
    if bf16:
        report["bf16"] = str(write_bf16_weights(folder, [(e.prompt, e.steps) for e in calib]))
        say(f"bf16 weights written to {report['bf16']} (backend torch-bf16-gptq)")
    if check:
        items = [(e.prompt, e.steps) for e in check]
        report["onnx_max_abs_diff"] = parity(folder, items)
        if int8:
            report["int8"] = quantize_int8(folder, items, [gate_labels(e) for e in check])
            say(f"int8 model written to {Artifact(folder).onnx_int8_path}")
    return report
