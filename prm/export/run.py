"""``prm export``: what one export run does, for the CLI and the demo alike."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from prm.artifacts import Artifact
from prm.export.fp16 import convert_fp16
from prm.export.gptq import write_bf16_weights
from prm.export.int8 import GateError, compare_backends, gate_labels, quantize_int8
from prm.export.onnx import export_onnx, parity


def export_artifact(folder: str | Path, check: Sequence = (), int8: bool = False, bf16: bool = False,
                    calib: Sequence = (), say: Callable[[str], None] = lambda _: None, fp16: bool = False) -> dict:
    """Export the artifact to ONNX; with ``check`` (labelled ``StepwiseExample``s), measure torch/ONNX
    parity on them and, with ``int8`` / ``fp16``, write the int8 / fp16 graph if it passes its gate there
    (else ``GateError`` with the figures, after the other exports); with ``bf16``, write GPTQ-rounded bf16
    weights fitted on ``calib``'s solutions, gated against PyTorch fp32 on ``check`` when given (kept
    either way, since ``--backend torch-bf16-gptq`` asks for them by name; only a passed gate lets the
    service pick them by default). Every gate's outcome goes to ``gates.json``. ``say`` hears where each
    file went. Returns the figures."""
    if (int8 or fp16) and not check:
        raise ValueError(f"--{'int8' if int8 else 'fp16'} needs --check DATA: held-out labelled steps to run its "
                         "quality gate on")
    if bf16 and not calib:
        raise ValueError("--bf16 needs --calib DATA: solutions whose layer inputs GPTQ rounds the weights against")
    report: dict = {"onnx": str(export_onnx(folder))}
    say(f"ONNX model written to {report['onnx']}")
    items = [(e.prompt, e.steps) for e in check]
    labels = [gate_labels(e) for e in check]
    if bf16:
        report["bf16"] = str(write_bf16_weights(folder, [(e.prompt, e.steps) for e in calib]))
        say(f"bf16 weights written to {report['bf16']} (backend torch-bf16-gptq)")
        if check:
            report["bf16_gate"] = compare_backends(folder, items, labels, "torch", "torch-bf16-gptq")
            Artifact(folder).save_gate("torch-bf16-gptq", Artifact.BF16, report["bf16_gate"])
            say(f"bf16 gate against PyTorch fp32: {'passed' if report['bf16_gate']['passed'] else 'FAILED'} "
                f"({report['bf16_gate']['decisions_changed']} of {report['bf16_gate']['steps']} decisions changed)")
    if check:
        report["onnx_max_abs_diff"] = parity(folder, items)
    refused = []
    for wanted, key, make, path in ((int8, "int8", quantize_int8, Artifact.ONNX_INT8),
                                    (fp16, "fp16", convert_fp16, Artifact.ONNX_FP16)):
        if not wanted:
            continue
        try:
            report[key] = make(folder, items, labels)
            say(f"{key} model written to {Artifact(folder).path(path)}")
        except GateError as exc:
            report[key] = exc.figures
            refused.append(exc)
    if refused:
        raise refused[0]
    return report
