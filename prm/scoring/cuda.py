"""Is there an NVIDIA GPU here? Asked without torch and without initialising CUDA (standard library only).

``onnxruntime-gpu`` lists ``CUDAExecutionProvider`` on any machine, with or without a GPU, and a
CPU build of torch says no GPU on a machine that has one; neither can decide on its own. This looks
at what the driver exposes instead: ``CUDA_VISIBLE_DEVICES`` set to nothing (or -1) hides every GPU;
on Linux the driver's device nodes ``/dev/nvidia0``, ``/dev/nvidia1``, ...; elsewhere, whether the
driver library (``nvcuda.dll``) loads. It never calls ``cuInit``, so a process that forks workers
after asking can still use CUDA in them. Callers confirm with what they then get (ONNX Runtime's
``session.get_providers()``, ``torch.cuda.is_available()``).
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
from pathlib import Path


def gpu_count() -> int:
    """How many NVIDIA GPUs this process may use (0: none, or hidden by ``CUDA_VISIBLE_DEVICES``)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return 0
    if sys.platform.startswith("linux"):
        nodes = [p for p in Path("/dev").glob("nvidia*") if re.fullmatch(r"nvidia\d+", p.name)]
        count = len(nodes)
    else:
        try:
            ctypes.CDLL("nvcuda.dll" if sys.platform == "win32" else "libcuda.dylib")
            count = 1
        except OSError:
            count = 0
    if count and visible:
        count = min(count, len([d for d in visible.split(",") if d.strip()]))
    return count
