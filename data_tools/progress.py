"""Feedback on long work: a live bar on a terminal, one plain line per interval elsewhere (CI logs).

``Progress(total, desc, unit)`` counts work done; ``update(n, **extra)`` adds to it and sets extra
fields shown after the rate and ETA (``success="41.2%"``). On a terminal it draws a tqdm bar; when
the stream is not a terminal it prints ``desc: 120/480 ex (25%) | 3.20 ex/s | ETA 1m52s | ...``
when it starts, then at most once per ``PRM_PROGRESS_INTERVAL`` seconds (default 30), and a last
line when it closes. ``activity(desc)`` does the same for work of unknown length (a compile, an
export trace): a line when it starts, one per interval while it runs, one when it ends.

``set_quiet(True)`` (the CLI's ``-q``) or ``PRM_QUIET=1`` silences all of it. Everything goes to
stderr, so stdout stays the command's result. Standard library only; tqdm is imported for a
terminal alone.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import time
from collections.abc import Iterator

_quiet = False


def set_quiet(flag: bool) -> None:
    global _quiet
    _quiet = flag


def is_quiet() -> bool:
    return _quiet or os.environ.get("PRM_QUIET", "") not in ("", "0")


def interval_s() -> float:
    try:
        return max(0.0, float(os.environ.get("PRM_PROGRESS_INTERVAL", "30")))
    except ValueError:
        return 30.0


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``."""
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def rate(per_s: float) -> str:
    """``0.42``, ``3.2``, ``57.1``, ``1,234``: a rate with the digits that mean something."""
    return f"{per_s:.2f}" if per_s < 10 else f"{per_s:.1f}" if per_s < 1000 else f"{per_s:,.0f}"


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Progress:
    def __init__(self, total: int | None, desc: str, unit: str = "it", stream=None, enabled: bool = True):
        self.total, self.desc, self.unit = total, desc, unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and not is_quiet()
        self.n, self.extra = 0, {}
        self.start = self._last = time.monotonic()
        self._bar = None
        if self.enabled and _isatty(self.stream):
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream, dynamic_ncols=True,
                             mininterval=0.5, smoothing=0.05)
        elif self.enabled:
            self._line()

    def update(self, n: int = 1, **extra) -> None:
        self.n += n
        self.extra.update(extra)
        if self._bar is not None:
            if extra:
                self._bar.set_postfix_str(self._extras(), refresh=False)
            self._bar.update(n)
        elif self.enabled and time.monotonic() - self._last >= interval_s():
            self._line()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.enabled:
            self._line(done=True)
        self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _extras(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in self.extra.items())

    def _line(self, done: bool = False) -> None:
        now = time.monotonic()
        self._last = now
        elapsed = now - self.start
        per_s = self.n / elapsed if elapsed > 0 else 0.0
        count = f"{self.n}/{self.total}" if self.total is not None else str(self.n)
        parts = [f"{count} {self.unit}" + (f" ({100 * self.n / self.total:.0f}%)" if self.total else "")]
        if self.n:
            parts.append(f"{rate(per_s)} {self.unit}/s")
        if done:
            parts.append(f"done in {duration(elapsed)}")
        elif self.total is not None and self.n:
            parts.append(f"ETA {duration((self.total - self.n) / per_s) if per_s > 0 else '?'}")
        if self.extra:
            parts.append(self._extras())
        print(f"{self.desc}: " + " | ".join(parts), file=self.stream, flush=True)


@contextlib.contextmanager
def activity(desc: str, stream=None) -> Iterator[None]:
    """Work of unknown length: a line when it starts, one per interval while it runs, one at the end."""
    stream = stream if stream is not None else sys.stderr
    if is_quiet():
        yield
        return
    start, stop = time.monotonic(), threading.Event()
    print(f"{desc} ...", file=stream, flush=True)

    def heartbeat() -> None:
        # On a terminal every 5 s, so it visibly moves; in a log once per interval.
        while not stop.wait(5.0 if _isatty(stream) else max(interval_s(), 1.0)):
            print(f"{desc}: still running, {duration(time.monotonic() - start)}", file=stream, flush=True)

    thread = threading.Thread(target=heartbeat, daemon=True)
    thread.start()
    ok = False
    try:
        yield
        ok = True
    finally:
        stop.set()
        thread.join()
        print(f"{desc}: {'done' if ok else 'failed'} in {duration(time.monotonic() - start)}", file=stream, flush=True)
