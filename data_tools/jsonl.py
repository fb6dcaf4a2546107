"""JSON lines, written and read in one place: one JSON value per line, UTF-8, ``\\n`` line ends.

``write_rows`` writes a whole file (parent folders created) or into a file already open (a gzip
stream, say); ``append_row`` adds one row to an open file or a path, optionally flushed and fsynced so
that a kill loses at most the line being written; ``read_rows`` reads back, strictly (a line that is
not JSON is an error naming the file and line) or tolerating what a killed writer leaves (a missing
file, a torn last line); ``cut_torn_tail`` truncates such a line before appending again.

Non-ASCII text is written as is (``ensure_ascii=False``). What a row means is the caller's business:
``data_tools.schema`` turns rows into examples, ``formats.containers`` picks the container.
Standard library only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

_encode = json.JSONEncoder(ensure_ascii=False).encode


class JSONLineError(ValueError):
    """A line of a JSON lines file that is not JSON; the message names the file and the line."""


def dumps(row: Any) -> str:
    """One row as its line, newline included."""
    return _encode(row) + "\n"


def write_rows(target: str | Path | IO[str], rows: Iterable[Any]) -> int:
    """Write ``rows`` to a path (parent folders created, the file replaced) or an open text file;
    returns how many were written. If ``rows`` raises midway, the lines written so far stay."""
    if not isinstance(target, (str, Path)):
        return _write(target, rows)
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        return _write(fh, rows)


def _write(fh: IO[str], rows: Iterable[Any]) -> int:
    n = 0
    for row in rows:
        fh.write(dumps(row))
        n += 1
    return n


def append_row(target: str | Path | IO[str], row: Any, sync: bool = False) -> None:
    """Append one row to an open text file or a path (created if missing); with ``sync``, flush and
    fsync it, so that it is on disk before this returns."""
    if isinstance(target, (str, Path)):
        with open(target, "a", encoding="utf-8", newline="\n") as fh:
            append_row(fh, row, sync)
        return
    target.write(dumps(row))
    if sync:
        target.flush()
        os.fsync(target.fileno())


def read_rows(path: str | Path, tolerant: bool = False) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` for every non-blank line of ``path``.

    Strict (default): a line that is not JSON raises ``JSONLineError`` ("PATH, line N: ..."). With
    ``tolerant``, such lines (a row a killed writer was writing) are skipped, and a missing file
    reads as empty.
    """
    if tolerant and not Path(path).exists():
        return
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                if tolerant:
                    continue
                raise JSONLineError(f"{path}, line {lineno}: {exc}") from None
            yield lineno, value


def cut_torn_tail(path: str | Path) -> int:
    """Truncate ``path`` after its last newline (what follows is a row a killed writer was writing);
    returns how many bytes were dropped (0 when the file ends with a newline)."""
    with open(path, "rb+") as fh:
        size = fh.seek(0, os.SEEK_END)
        pos, block = size, 1 << 16
        while pos > 0:
            start = max(0, pos - block)
            fh.seek(start)
            data = fh.read(pos - start)
            cut = data.rfind(b"\n")
            if cut >= 0:
                end = start + cut + 1
                break
            pos = start
        else:
            end = 0
        if end < size:
            fh.truncate(end)
            fh.flush()
            os.fsync(fh.fileno())
    return size - end
