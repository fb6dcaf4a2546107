"""How rows are stored on disk, independently of what their fields mean, streamed both ways.

A container is chosen from the path: ``.jsonl`` (also ``.ndjson``, ``.jsonl.gz``), ``.json`` (a JSON
array, or JSON lines when the file does not start with ``[``), ``.parquet``, or a folder written by
``datasets.Dataset.save_to_disk`` (a path without a suffix, when writing). Reading yields
``(where, row)`` pairs, ``where`` being "line 17" for text files and "row 17" for columnar ones,
one row at a time: memory does not grow with the file. Writing consumes an iterable of rows.

Columnar containers (Parquet, dataset folders) give every row the same columns: the types come
from the first batch of rows, a key missing from a row reads back as null, and a later row that
brings a new column or another type is an error, never a silent drop. JSON keeps every row as is.
"""

from __future__ import annotations

import gzip
import json
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

from data_tools import jsonl
from data_tools.schema import DataError

CONTAINERS = ("jsonl", "json", "parquet", "dataset")
T = TypeVar("T")
BATCH_ROWS = 1024
_READ_CHUNK = 1 << 20


def container_of(path: str | Path, writing: bool = False) -> str:
    """Which container ``path`` names (see the module docstring); an unknown suffix is an error."""
    p = Path(path)
    name = p.name.lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if name.endswith(".json"):
        return "json"
    if name.endswith(".parquet"):
        return "parquet"
    if p.is_dir() or (writing and not p.suffix):
        return "dataset"
    if not writing:
        return "jsonl"  # e.g. a .txt of JSON lines: reading it as JSON lines fails loudly if it is not
    raise DataError(f"{path}: cannot tell how to store rows from this name; use a .jsonl, .json or .parquet "
                    "file, or a path without a suffix for a Hugging Face dataset folder")


def _open_text(path: Path, mode: str) -> IO[str]:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, mode + "t", encoding="utf-8")
    return open(path, mode, encoding="utf-8", newline="\n" if "w" in mode else None)


# --- reading ------------------------------------------------------------------------------------

def read_rows(path: str | Path, bad_row: Callable[[str], None]) -> Iterator[tuple[str, Any]]:
    """``(where, row)`` for every row of ``path``; undecodable rows go to ``bad_row(message)``."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    kind = container_of(p)
    if kind in ("jsonl", "json"):
        with _open_text(p, "r") as fh:
            head = fh.read(1)
            while head and head.isspace():
                head = fh.read(1)
            if head == "[":
                yield from _json_array(fh, path, bad_row)
            else:
                fh.seek(0)
                yield from _json_lines(fh, path, bad_row)
    elif kind == "parquet":
        yield from _arrow_rows(_parquet_batches(p))
    else:
        yield from _arrow_rows(_dataset_batches(p))


def _json_lines(fh: IO[str], path: str | Path, bad_row: Callable[[str], None]) -> Iterator[tuple[str, Any]]:
    loads = json.loads
    for lineno, line in enumerate(fh, 1):
        try:
            row = loads(line)
        except json.JSONDecodeError as exc:
            if line.strip():
                bad_row(f"{path}, line {lineno}: not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        yield f"line {lineno}", row


def _json_array(fh: IO[str], path: str | Path, bad_row: Callable[[str], None]) -> Iterator[tuple[str, Any]]:
    """Elements of a JSON array (its ``[`` already read), decoded one by one from a sliding buffer."""
    decode = json.JSONDecoder().raw_decode
    buf, pos, line, eof = "", 0, 1, False

    def fill() -> bool:
        nonlocal buf, pos, eof
        chunk = fh.read(_READ_CHUNK)
        eof = not chunk
        buf, pos = buf[pos:] + chunk, 0
        return not eof

    def skip_space() -> None:
        nonlocal pos, line
        while True:
            while pos < len(buf) and buf[pos].isspace():
                line += buf[pos] == "\n"
                pos += 1
            if pos < len(buf) or not fill():
                return

    fill()
    expect_value = True
    while True:
        skip_space()
        if pos >= len(buf):
            raise DataError(f"{path}, line {line}: the JSON array is not closed with ']'")
        char = buf[pos]
        if char == "]":
            return
        if char == "," and not expect_value:
            pos += 1
            expect_value = True
            continue
        while True:
            try:
                row, end = decode(buf, pos)
                break
            except json.JSONDecodeError as exc:
                if eof or not fill():
                    raise DataError(f"{path}, line {line}: not valid JSON ({exc.msg})") from None
        yield f"line {line}", row
        line += buf.count("\n", pos, end)
        pos, expect_value = end, False


def _arrow_rows(batches: Iterator[Any]) -> Iterator[tuple[str, Any]]:
    n = 0
    for batch in batches:
        for row in batch.to_pylist():
            n += 1
            yield f"row {n}", row


def _parquet_batches(path: Path) -> Iterator[Any]:
    import pyarrow.parquet as pq

    yield from pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS)


def _dataset_batches(path: Path) -> Iterator[Any]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except FileNotFoundError as exc:
        raise DataError(f"{path}: not a dataset folder written by save_to_disk ({exc})") from None
    if isinstance(ds, datasets.DatasetDict):
        raise DataError(f"{path} holds several splits ({', '.join(ds)}); give one split's folder, "
                        f"e.g. {Path(path) / next(iter(ds))}")
    yield from ds.with_format("arrow").iter(batch_size=BATCH_ROWS)


# --- writing ------------------------------------------------------------------------------------

def write_rows(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write ``rows`` to ``path`` (parent folders created); returns how many were written.

    If ``rows`` raises midway, what was written before stays written and the file stays valid.
    """
    p = Path(path)
    kind = container_of(p, writing=True)
    p.parent.mkdir(parents=True, exist_ok=True)
    if kind == "jsonl":
        return _write_json(p, rows, array=False)
    if kind == "json":
        return _write_json(p, rows, array=True)
    if kind == "parquet":
        return _write_parquet(p, rows)
    return _write_dataset(p, rows)


def _write_json(path: Path, rows: Iterable[dict[str, Any]], array: bool) -> int:
    if not array:
        with _open_text(path, "w") as fh:  # gzip-aware; the lines themselves are data_tools.jsonl's
            return jsonl.write_rows(fh, rows)
    encode = json.JSONEncoder(ensure_ascii=False).encode
    n = 0
    with _open_text(path, "w") as fh:
        fh.write("[")
        try:
            for row in rows:
                fh.write(",\n" if n else "\n")
                fh.write(encode(row))
                n += 1
        finally:
            fh.write("\n]\n")
    return n


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last one shorter), as ``itertools.batched`` on Python 3.12."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _write_parquet(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer, schema, n = None, None, 0
    try:
        for batch in batched(rows, BATCH_ROWS):
            table = _table(batch, schema, f"{path}: rows {n + 1}-{n + len(batch)}")
            if writer is None:
                schema = table.schema
                writer = pq.ParquetWriter(path, schema)
            writer.write_table(table)
            n += len(batch)
    finally:
        if writer is None:
            writer = pq.ParquetWriter(path, pa.schema([]))
        writer.close()
    return n


def _table(batch: list[dict[str, Any]], schema: Any, where: str) -> Any:
    """One batch as an Arrow table with the file's schema; a column that does not fit is an error.

    Built column by column: pyarrow's ``from_pylist`` takes the columns from the first row only and
    would silently drop a key that later rows add.
    """
    import pyarrow as pa

    names = list(dict.fromkeys(k for row in batch for k in row))
    if schema is not None:
        new = [k for k in names if k not in schema.names]
        if new:
            raise DataError(f"{where}: column '{new[0]}' first appears here, and a Parquet file has one set of "
                            "columns fixed by its first rows; write .jsonl instead, or give every row the field")
        names = schema.names
    arrays = []
    for name in names:
        values = [row.get(name) for row in batch]
        try:
            array = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise DataError(f"{where}: column '{name}' mixes types ({exc}); write .jsonl instead, or make the "
                            "field consistent") from None
        if schema is not None and not array.type.equals(schema.field(name).type):
            expected = schema.field(name).type
            try:
                merged = pa.unify_schemas([pa.schema([(name, expected)]), pa.schema([(name, array.type)])])
                fits = merged.field(name).type.equals(expected)
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                fits = False
            if not fits:
                raise DataError(f"{where}: column '{name}' is {array.type} here but {expected} in the rows before; "
                                "write .jsonl instead, or make the field consistent")
            array = pa.array(values, type=expected)
        arrays.append(array)
    return pa.Table.from_arrays(arrays, names=names)


def _write_dataset(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """A ``save_to_disk`` folder, built from a Parquet file streamed into a temporary folder.

    Rows converted before an error are still saved, as the other containers keep theirs.
    """
    import datasets

    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as tmp:
        staged = Path(tmp) / "rows.parquet"
        try:
            n = _write_parquet(staged, rows)
        except BaseException:
            if staged.exists():
                _save_dataset(datasets, staged, path, Path(tmp) / "cache")
            raise
        _save_dataset(datasets, staged, path, Path(tmp) / "cache")
    return n


def _save_dataset(datasets: Any, parquet: Path, path: Path, cache: Path) -> None:
    quiet = datasets.is_progress_bar_enabled()
    if quiet:
        datasets.disable_progress_bars()
    try:
        if path.exists():
            shutil.rmtree(path)
        datasets.Dataset.from_parquet(str(parquet), cache_dir=str(cache)).save_to_disk(str(path))
    finally:
        if quiet:
            datasets.enable_progress_bars()
