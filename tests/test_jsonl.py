"""data_tools.jsonl: the one JSON lines writer (whole files, appends with fsync) and its readers."""

import gzip

import pytest

from data_tools import jsonl


def test_write_creates_parents_and_reads_back(tmp_path):
    path = tmp_path / "a" / "b" / "rows.jsonl"
    assert jsonl.write_rows(path, [{"x": 1, "t": "é"}, [1, 2]]) == 2
    assert path.read_text(encoding="utf-8") == '{"x": 1, "t": "é"}\n[1, 2]\n'
    assert list(jsonl.read_rows(path)) == [(1, {"x": 1, "t": "é"}), (2, [1, 2])]


def test_write_into_an_open_file(tmp_path):
    path = tmp_path / "rows.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        assert jsonl.write_rows(fh, ({"i": i} for i in range(3))) == 3
    assert gzip.open(path, "rt").read() == '{"i": 0}\n{"i": 1}\n{"i": 2}\n'


def test_append_to_a_path_or_an_open_file(tmp_path):
    path = tmp_path / "log.jsonl"
    jsonl.append_row(path, {"event": "start"}, sync=True)
    with open(path, "a", encoding="utf-8") as fh:
        jsonl.append_row(fh, {"event": "row"}, sync=True)
        jsonl.append_row(fh, {"event": "row2"})
    assert [r["event"] for _, r in jsonl.read_rows(path)] == ["start", "row", "row2"]


def test_a_torn_last_line_is_an_error_strictly_and_skipped_tolerantly(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n{"b": 2}\n{"c": ')
    with pytest.raises(jsonl.JSONLineError, match=r"rows.jsonl, line 4"):
        list(jsonl.read_rows(path))
    assert [r for _, r in jsonl.read_rows(path, tolerant=True)] == [{"a": 1}, {"b": 2}]
    assert list(jsonl.read_rows(tmp_path / "missing.jsonl", tolerant=True)) == []
    assert jsonl.cut_torn_tail(path) == len('{"c": ')
    assert path.read_text() == '{"a": 1}\n\n{"b": 2}\n' and jsonl.cut_torn_tail(path) == 0
