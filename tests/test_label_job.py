"""``prm label`` as a job: appending, resuming after SIGKILL, torn rows, shards, ids, settings checks."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data_tools.label_job import LabelJobConfig, run_label_job, runs_path
from data_tools.labelling import LabelConfig
from data_tools.problems import generate_dataset
from data_tools.schema import DataError, write_jsonl
from data_tools.simulated import SimulatedCompleter, SimulatedConfig

ROOT = Path(__file__).parent.parent


@pytest.fixture
def problems_file(tmp_path) -> Path:
    path = tmp_path / "problems.jsonl"
    write_jsonl(path, generate_dataset(30, seed=3, min_steps=2, max_steps=6))
    return path


def sim(**kw) -> SimulatedCompleter:
    return SimulatedCompleter(SimulatedConfig(**kw))


def rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def prm_label(*args, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "serving.cli", "label", *map(str, args)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def kill_at_random_point(argv, out: Path, rng: random.Random, total: int) -> int:
    """Start ``prm label``, SIGKILL it a random while after its first row is written; rows it had written."""
    proc = prm_label(*argv)
    deadline = time.monotonic() + 120
    while not (out.exists() and out.stat().st_size > 0):
        assert proc.poll() is None, f"prm label ended before writing anything: {proc.communicate()[1]}"
        assert time.monotonic() < deadline, "prm label wrote nothing in 120 s"
        time.sleep(0.01)
    time.sleep(rng.uniform(0, 0.4))
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    written = out.read_bytes().count(b"\n")
    assert written < total, "the run finished before it was killed: nothing was tested"
    return written


def finish(argv) -> subprocess.CompletedProcess:
    proc = prm_label(*argv)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


@pytest.mark.parametrize("method", [["--method", "mc", "--early-stop"], ["--method", "binary"]], ids=["mc", "binary"])
def test_sigkill_then_rerun_writes_exactly_the_uninterrupted_output(problems_file, tmp_path, method):
    common = [problems_file, "--completer", "simulated", *method, "--chunk-size", "4", "--sim-p-correct", "0.6"]
    reference = tmp_path / "reference.jsonl"
    finish([common[0], reference, *common[1:], "--no-progress"])
    total = len(rows(reference))
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    out = tmp_path / "killed.jsonl"
    argv = [common[0], out, *common[1:], "--sim-latency-s", "0.02", "--no-progress"]
    before = [kill_at_random_point(argv, out, rng, total)]
    before.append(kill_at_random_point(argv, out, rng, total))  # killed again while resuming
    done = finish([common[0], out, *common[1:]])  # latency is not a label setting: the resume is accepted
    assert out.read_bytes() == reference.read_bytes(), f"kill points from seed {seed}, rows before kills {before}"
    assert "rollouts/s" in done.stderr  # the progress bar
    result = json.loads(done.stdout.splitlines()[0])
    assert result["already_done"] + result["written"] == total and result["already_done"] >= before[-1]
    assert [r["event"] for r in rows(runs_path(out))][-2:] == ["start", "end"]


@pytest.mark.slow
def test_sigkill_then_rerun_with_the_tiny_model_in_bf16(tiny_backbone, tmp_path):
    """bf16 logits move with batch composition; fixed chunks make the resumed batches the same ones."""
    data = tmp_path / "problems.jsonl"
    write_jsonl(data, generate_dataset(16, seed=8))
    common = ["--completer", "hf", "--backbone", tiny_backbone, "--rollouts", "2", "--chunk-size", "2",
              "--max-new-tokens", "10", "--temperature", "1.0", "--no-progress"]
    reference = tmp_path / "reference.jsonl"
    finish([data, reference, *common])
    total = len(rows(reference))
    seed = int.from_bytes(os.urandom(4), "big")
    out = tmp_path / "killed.jsonl"
    before = kill_at_random_point([data, out, *common], out, random.Random(seed), total)
    finish([data, out, *common])
    assert out.read_bytes() == reference.read_bytes(), f"kill point from seed {seed}, {before} rows before the kill"
    assert any(step > 0 for r in rows(out) for step in r["meta"]["step_rollouts"])


def test_a_torn_last_row_is_cut_and_labelled_again(problems_file, tmp_path, caplog):
    out = tmp_path / "out.jsonl"
    label, job = LabelConfig(method="binary"), LabelJobConfig(chunk_size=5, progress=False)
    run_label_job(problems_file, out, sim(), label, job)
    complete = out.read_bytes()
    out.write_bytes(complete[: len(complete) - 25])  # the last row, half written
    result = run_label_job(problems_file, out, sim(), label, job)
    assert out.read_bytes() == complete and result.written == 1
    assert "dropped a partly written last row" in caplog.text


def test_resuming_with_other_settings_is_refused(problems_file, tmp_path):
    out = tmp_path / "out.jsonl"
    run_label_job(problems_file, out, sim(), LabelConfig(rollouts=4), LabelJobConfig(progress=False),
                  completer_settings={"p_correct": 0.8})
    with pytest.raises(DataError, match=r"\(label.rollouts 4 then, 6 now\)"):
        run_label_job(problems_file, out, sim(), LabelConfig(rollouts=6), LabelJobConfig(progress=False),
                      completer_settings={"p_correct": 0.8})
    with pytest.raises(DataError, match=r"completer.p_correct 0.8 then, 0.5 now"):
        run_label_job(problems_file, out, sim(p_correct=0.5), LabelConfig(rollouts=4), LabelJobConfig(progress=False),
                      completer_settings={"p_correct": 0.5})


def test_shards_split_by_problem_and_together_make_the_whole(problems_file, tmp_path):
    whole = tmp_path / "whole.jsonl"
    run_label_job(problems_file, whole, sim(), job=LabelJobConfig(progress=False))
    parts = []
    for i in range(3):
        out = tmp_path / f"part{i}.jsonl"
        run_label_job(problems_file, out, sim(), job=LabelJobConfig(shard=f"{i}/3", progress=False))
        parts.append(rows(out))
    assert all(parts)
    assert sorted(map(json.dumps, sum(parts, []))) == sorted(map(json.dumps, rows(whole)))
    problem_shards = {}
    for i, part in enumerate(parts):
        for r in part:
            assert problem_shards.setdefault(r["meta"]["problem_id"], i) == i  # a problem never spans shards
    for bad in ("3/3", "1", "a/b", "-1/2"):
        assert "--shard must be I/N" in " ".join(LabelJobConfig(shard=bad).problems())


def test_ids_are_given_or_derived_and_must_be_unique(tmp_path):
    data = generate_dataset(2, seed=1)
    for ex in data:
        del ex.meta["id"]
    path = tmp_path / "in.jsonl"
    write_jsonl(path, data + data[:1])  # the first solution twice
    out = tmp_path / "out.jsonl"
    run_label_job(path, out, sim(), job=LabelJobConfig(progress=False))
    ids = [r["meta"]["id"] for r in rows(out)]
    assert len(ids) == 5 and len(set(ids)) == 5 and ids[4] == ids[0] + "#2"
    write_jsonl(path, generate_dataset(2, seed=1)[:1] * 2)
    with pytest.raises(DataError, match=r"in.jsonl, line 2: meta.id 'p00000-gold' appears twice"):
        run_label_job(path, tmp_path / "o2.jsonl", sim(), job=LabelJobConfig(progress=False))


def test_a_row_without_gold_answer_names_its_line_or_is_skipped(tmp_path):
    data = generate_dataset(2, seed=1)
    del data[1].meta["answer"]
    path = tmp_path / "in.jsonl"
    write_jsonl(path, data)
    with pytest.raises(DataError, match=r"in.jsonl, line 2: no meta\['answer'\].*--answer-key.*--skip-invalid"):
        run_label_job(path, tmp_path / "o.jsonl", sim(), job=LabelJobConfig(progress=False))
    assert not (tmp_path / "o.jsonl").exists()  # checked before any rollout
    result = run_label_job(path, tmp_path / "o.jsonl", sim(), job=LabelJobConfig(progress=False, skip_invalid=True))
    assert result.written == len(data) - 1 and result.invalid.skipped == 1


def test_bad_paths_and_flags_are_reported_together(problems_file, tmp_path):
    with pytest.raises(ValueError) as err:
        run_label_job(problems_file, tmp_path / "out.parquet", sim(), LabelConfig(rollouts=0, method="tree"),
                      LabelJobConfig(chunk_size=0))
    for text in ("--rollouts must be at least 1", "--method must be one of mc, binary", "--chunk-size",
                 "must be a .jsonl file"):
        assert text in str(err.value)


def test_report_counts_rollouts_by_step_and_agreement_with_known_errors(problems_file, tmp_path):
    result = run_label_job(problems_file, tmp_path / "o.jsonl", sim(p_correct=1.0, p_wrong=0.0, p_unparseable=0.0),
                           LabelConfig(rollouts=4), LabelJobConfig(progress=False))
    report = result.to_json()
    assert report["first_error_agreement"] == 1.0 and report["first_error_compared"] == result.written
    by_step = report["success_rate_by_step"]
    assert [s["step"] for s in by_step] == list(range(len(by_step)))
    assert sum(s["rollouts"] for s in by_step) == report["rollouts"] > 0
    assert report["rollouts_per_s"] > 0
