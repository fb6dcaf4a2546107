"""Checking the fields of one input row, and what happens to a row that fails.

Format readers use the ``need_*`` helpers, which raise a ``DataError`` that names the field, what
was expected and what was found ("field 'label': expected an int >= -1, got 'x'"); the reader loop
adds the file and the line. ``RowLog`` decides whether such an error stops the run or is counted and
skipped (``--skip-invalid``), and keeps the first few reasons for the report.

Fields a format does not know are kept, not dropped: readers move them into ``meta`` and writers
move ``meta`` keys back out as fields (``extra_fields``), so a file round-trips with its extras.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from data_tools.schema import DataError


@dataclass
class RowLog:
    """Rows seen and rows skipped in one run; with ``skip_invalid`` off, the first bad row raises."""

    skip_invalid: bool = False
    rows: int = 0
    skipped: int = 0
    reasons: list[str] = field(default_factory=list)
    keep_reasons: int = 5

    def bad_row(self, message: str) -> None:
        if not self.skip_invalid:
            raise DataError(message + " (pass --skip-invalid to skip such rows and count them)")
        self.skipped += 1
        if len(self.reasons) < self.keep_reasons:
            self.reasons.append(message)

    def note(self) -> str:
        """"; skipped N invalid rows, first: ..." for a run's summary line, or "" when none was skipped."""
        if not self.skipped:
            return ""
        return f"; skipped {self.skipped} invalid rows, first: " + " | ".join(self.reasons)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def field_error(name: str, expected: str, got: Any) -> DataError:
    return DataError(f"field '{name}': expected {expected}, got {_show(got)}")


def need_object(row: Any) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise DataError(f"expected a JSON object per row, got {_show(row)}")
    return row


def need(row: Mapping[str, Any], name: str) -> Any:
    if name not in row:
        raise DataError(f"field '{name}': missing")
    return row[name]


def need_str(row: Mapping[str, Any], name: str) -> str:
    value = need(row, name)
    if not isinstance(value, str):
        raise field_error(name, "a string", value)
    return value


def need_str_list(row: Mapping[str, Any], name: str, allow_empty: bool = False) -> list[str]:
    value = need(row, name)
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise field_error(name, "a list of strings", value)
    if not value and not allow_empty:
        raise field_error(name, "at least one step", value)
    for i, step in enumerate(value):
        if not step.strip():
            raise field_error(f"{name}[{i}]", "a non-empty step", step)
    return value


def need_int(row: Mapping[str, Any], name: str, minimum: int) -> int:
    value = need(row, name)
    # bool is an int in Python; a true/false label index is a mistake, not 1/0.
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise field_error(name, f"an int >= {minimum}", value)
    return value


def optional_bool(row: Mapping[str, Any], name: str) -> bool | None:
    value = row.get(name)
    if value is not None and not isinstance(value, bool):
        raise field_error(name, "true, false or null", value)
    return value


def extras(row: Mapping[str, Any], known: Iterable[str]) -> dict[str, Any]:
    """The fields of ``row`` that its format does not define: they go to ``meta`` unchanged."""
    known = set(known)
    return {k: v for k, v in row.items() if k not in known}


def extra_fields(meta: Mapping[str, Any], owned: Iterable[str], reserved: Iterable[str]) -> dict[str, Any]:
    """``meta`` keys to write as fields: all but the ``owned`` ones (which the format writes itself).

    A key that would overwrite one of the format's own fields (``reserved``) is an error rather than
    a silent loss.
    """
    owned, reserved = set(owned), set(reserved)
    out = {}
    for key, value in meta.items():
        if key in owned:
            continue
        if key in reserved:
            raise DataError(f"meta key '{key}' would overwrite the field of the same name; rename it in meta")
        out[key] = value
    return out
