"""Consensus labels: the steps two label sources agree on."""

import json

from data_tools.labelling.consensus import ConsensusReport, agree, consensus
from data_tools.schema import StepwiseExample, write_jsonl
from serving.cli import main


def ex(labels, i=0, **meta):
    return StepwiseExample("p", [f"s{k}" for k in range(len(labels))], labels, {"id": f"x{i}", **meta})


def test_steps_keep_their_label_only_where_both_sources_agree():
    mc = ex([0.75, 0.25, 0.0])  # soft: right, right (some rollout succeeded), wrong
    ref = ex([True, False, False])
    assert agree(mc, ref).labels == [True, None, False]
    assert agree(ex([True, True]), ex([True, True])).labels == [True, True]


def test_unmatched_and_fully_disagreeing_solutions_are_left_out_and_counted():
    report = ConsensusReport()
    first = [ex([True, False], 0), ex([False, False], 1), ex([True, True], 2)]
    second = [ex([True, False], 0), ex([True, True], 1)]
    out = consensus(first, second, report=report)
    assert [o.meta["id"] for o in out] == ["x0"]  # x1: no step agrees, x2: not in the second source
    assert report.to_json() == {"matched": 2, "unmatched": 1, "steps": 4, "steps_kept": 2, "steps_kept_share": 0.5,
                                "first_error_agreement": 0.5, "kept_solutions": 1}
    whole = consensus(first, second, first_error_only=True)
    assert [o.labels for o in whole] == [[True, False]]


def test_cli_consensus(tmp_path, capsys):
    write_jsonl(tmp_path / "a.jsonl", [ex([1.0, 0.5, 0.0], 0), ex([1.0, 1.0], 1)])
    write_jsonl(tmp_path / "b.jsonl", [ex([True, False, False], 0), ex([True, True], 1)])
    assert main(["consensus", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl"), str(tmp_path / "c.jsonl")]) == 0
    report = json.loads(capsys.readouterr().out.splitlines()[0])
    assert report["steps_kept"] == 4 and report["first_error_agreement"] == 0.5
    rows = [json.loads(line) for line in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert [r["labels"] for r in rows] == [[True, None, False], [True, True]]
