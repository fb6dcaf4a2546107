"""Our own stepwise format: ``prompt``, ``completions``, ``labels`` (bool, float or null), ``meta``.

The lossless hub of every conversion: soft and missing labels and all of ``meta`` survive as they
are. A field outside these four (``steps`` is accepted for ``completions``) is an error: write such
files with ``--from trl``, which keeps extra columns in ``meta``.
"""

from __future__ import annotations

from typing import Any

from data_tools.formats.fields import need_object
from data_tools.schema import DataError, StepwiseExample

FIELDS = ("prompt", "completions", "steps", "labels", "meta")


def from_row(row: Any) -> StepwiseExample:
    row = need_object(row)
    for key in row:
        if key not in FIELDS:
            raise DataError(f"field '{key}': not part of the stepwise format (prompt, completions, labels, "
                            "meta); read the file with --from trl to keep extra fields in meta")
    if not isinstance(row.get("meta", {}), (dict, type(None))):
        raise DataError(f"field 'meta': expected an object, got {type(row['meta']).__name__}")
    return StepwiseExample.from_json(row)


def to_row(example: StepwiseExample) -> dict[str, Any]:
    return example.to_json()
