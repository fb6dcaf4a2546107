"""The calling thread's floating-point environment, kept as the caller had it around ONNX Runtime.

ONNX Runtime's ``session.set_denormal_as_zero`` flushes denormals to zero, which its attention
needs on this CPU (masked softmax entries underflow to denormals, and the causal Attention op ran
17 ms instead of 5.8 ms at 8 x 172 tokens without it); but it sets the flags (MXCSR's FTZ and DAZ)
on the thread that creates the session and leaves them there, so afterwards the user's own
numpy/Python arithmetic on that thread silently flushed denormals too (hypothesis noticed).
``preserved()`` restores the caller's environment on exit; ``denormals_flushed()`` sets FTZ/DAZ
only for the duration of a run. Both use C99 ``fegetenv``/``fesetenv`` on x86-64 glibc, where
``fenv_t`` ends with MXCSR; elsewhere they do nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import platform
import sys

_MXCSR_OFFSET = 28  # glibc x86-64 fenv_t: 28 bytes of x87 environment, then the 4-byte MXCSR
_FTZ_DAZ = 0x8000 | 0x0040


def _libm():
    if not (sys.platform.startswith("linux") and platform.machine() in ("x86_64", "AMD64")):
        return None
    name = ctypes.util.find_library("m")
    return ctypes.CDLL(name) if name else None


_LIBM = _libm()


def _get() -> ctypes.Array:
    env = ctypes.create_string_buffer(32)
    _LIBM.fegetenv(env)
    return env


@contextlib.contextmanager
def preserved():
    """Restore the calling thread's floating-point environment when the block ends."""
    if _LIBM is None:
        yield
        return
    saved = _get()
    try:
        yield
    finally:
        _LIBM.fesetenv(saved)


@contextlib.contextmanager
def denormals_flushed():
    """Flush denormals to zero (FTZ and DAZ) inside the block only."""
    if _LIBM is None:
        yield
        return
    saved = _get()
    env = ctypes.create_string_buffer(saved.raw, 32)
    mxcsr = int.from_bytes(env.raw[_MXCSR_OFFSET:_MXCSR_OFFSET + 4], "little") | _FTZ_DAZ
    ctypes.memmove(ctypes.addressof(env) + _MXCSR_OFFSET, mxcsr.to_bytes(4, "little"), 4)
    _LIBM.fesetenv(env)
    try:
        yield
    finally:
        _LIBM.fesetenv(saved)
