"""Format readers and writers: round trips, label semantics, malformed rows, streaming."""

import json
import random
import tracemalloc
from pathlib import Path

import pytest

from data_tools.formats import FORMATS, ConvertConfig, convert, read, write
from data_tools.formats.containers import read_rows
from data_tools.formats.fields import RowLog
from data_tools.schema import DataError, StepwiseExample

FIXTURES = Path(__file__).parent / "fixtures"
WRITABLE = {"gsm8k": "gsm8k.jsonl", "math-shepherd": "math_shepherd.jsonl", "processbench": "processbench.json",
            "trl": "trl.jsonl", "stepwise": "stepwise.jsonl"}


def rows_of(path):
    return [row for _, row in read_rows(path, bad_row=pytest.fail)]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("fmt", sorted(WRITABLE))
@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".jsonl.gz"])
def test_round_trip_reproduces_every_field(tmp_path, fmt, suffix):
    source = FIXTURES / WRITABLE[fmt]
    out = tmp_path / f"out{suffix}"
    assert write(fmt, out, read(fmt, source)) == len(rows_of(source))
    assert rows_of(out) == rows_of(source)


@pytest.mark.parametrize("fmt", ["gsm8k", "math-shepherd", "processbench", "trl"])
@pytest.mark.parametrize("name", ["out.parquet", "out_dataset"])
def test_round_trip_through_columnar_containers(tmp_path, fmt, name):
    """Parquet and dataset folders keep everything, except that a column missing from a row reads as null."""
    source = rows_of(FIXTURES / WRITABLE[fmt])
    columns = {k for row in source for k in row}
    write(fmt, tmp_path / name, read(fmt, FIXTURES / WRITABLE[fmt]))
    assert rows_of(tmp_path / name) == [{k: row.get(k) for k in columns} for row in source]


def test_trl_datasets_written_by_the_datasets_library_are_read(tmp_path):
    import datasets

    source = [r for r in rows_of(FIXTURES / "trl.jsonl") if set(r) == {"prompt", "completions", "labels"}]
    ds = datasets.Dataset.from_list(source * 3)
    ds.save_to_disk(str(tmp_path / "folder"))
    ds.to_parquet(str(tmp_path / "rows.parquet"))
    for path in (tmp_path / "folder", tmp_path / "rows.parquet"):
        examples = list(read("trl", path))
        assert [(e.prompt, e.steps, e.labels) for e in examples] == [
            (r["prompt"], r["completions"], r["labels"]) for r in source * 3]
        assert examples[1].origin == f"{path}, row 2"


def test_a_dataset_dict_folder_asks_for_a_split(tmp_path):
    import datasets

    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows_of(FIXTURES / "trl.jsonl")[:1])}).save_to_disk(
        str(tmp_path / "dd"))
    with pytest.raises(DataError, match="several splits.*dd/train"):
        list(read("trl", tmp_path / "dd"))


def test_columnar_output_refuses_a_column_that_changes_type(tmp_path, monkeypatch):
    from data_tools.formats import containers

    monkeypatch.setattr(containers, "BATCH_ROWS", 2)
    examples = [StepwiseExample("p", ["a"], [True], {"n": value}) for value in (1, 2, "three", "four")]
    with pytest.raises(DataError, match=r"rows 3-4: column 'n' is string here but int64"):
        write("trl", tmp_path / "x.parquet", examples)
    assert [r["n"] for r in rows_of(tmp_path / "x.parquet")] == [1, 2]  # what was written stays
    examples[3].meta["late"] = True
    with pytest.raises(DataError, match=r"rows 3-4: column 'late' first appears here"):
        write("trl", tmp_path / "x.parquet", examples[:2] + examples[:1] + examples[3:])


def test_processbench_to_trl_gives_label_right_steps_then_one_wrong(tmp_path):
    rng = random.Random(0)
    rows = []
    for i in range(200):
        n = rng.randint(1, 8)
        rows.append({"id": f"x-{i}", "generator": "g", "problem": f"problem {i}",
                     "steps": [f"step {k} of {i}" for k in range(n)], "final_answer_correct": rng.random() < 0.5,
                     "label": rng.randint(-1, n - 1)})
    for source in (FIXTURES / "processbench.json", write_jsonl(tmp_path / "pb.jsonl", rows)):
        out = tmp_path / "trl.jsonl"
        convert("processbench", "trl", source, out)
        for pb, trl in zip(rows_of(source), rows_of(out), strict=True):
            k = pb["label"]
            expected = [True] * len(pb["steps"]) if k < 0 else [True] * k + [False]
            assert trl["labels"] == expected
            assert trl["completions"] == pb["steps"][:len(expected)]
            # the unlabelled tail is kept, so TRL -> ProcessBench restores the original row
            assert trl["completions"] + trl.get("unlabelled_completions", []) == pb["steps"]
        convert("trl", "processbench", out, tmp_path / "back.jsonl")
        assert rows_of(tmp_path / "back.jsonl") == rows_of(source)


def test_processbench_after_error_option():
    unlabelled = list(read("processbench", FIXTURES / "processbench.json"))
    wrong = list(read("processbench", FIXTURES / "processbench.json", after_error="wrong"))
    assert unlabelled[0].labels == [True, False, None] and wrong[0].labels == [True, False, False]
    assert unlabelled[0].meta == {"id": "gsm8k-0", "generator": "SomeModel-7B", "final_answer_correct": False}


def test_soft_labels_need_a_threshold_for_true_false_formats(tmp_path):
    examples = [StepwiseExample("p", ["a", "b", "c"], [0.75, 0.0, 1.0])]
    with pytest.raises(DataError, match="label 0 is 0.75, a soft label.*--soft-threshold"):
        write("trl", tmp_path / "t.jsonl", examples)
    write("trl", tmp_path / "t.jsonl", examples, soft_threshold=0.5)
    assert rows_of(tmp_path / "t.jsonl")[0]["labels"] == [True, False, True]
    write("trl", tmp_path / "t.jsonl", examples, soft_threshold=0.8)
    assert rows_of(tmp_path / "t.jsonl")[0]["labels"] == [False, False, True]


def test_unlabelled_steps_policies(tmp_path):
    tail = StepwiseExample("p", ["a", "b", "c"], [True, False, None])
    gap = StepwiseExample("p", ["a", "b", "c"], [True, None, False])
    out = tmp_path / "t.jsonl"
    write("trl", out, [tail])
    assert rows_of(out)[0] == {"prompt": "p", "completions": ["a", "b"], "labels": [True, False],
                               "unlabelled_completions": ["c"]}
    assert list(read("trl", out)) == [tail]
    write("trl", out, [tail, gap], unlabelled="false")
    assert [r["labels"] for r in rows_of(out)] == [[True, False, False], [True, False, False]]
    with pytest.raises(DataError, match="step 1 is unlabelled but a later step is labelled.*--unlabelled false"):
        write("trl", out, [gap])
    with pytest.raises(DataError, match="unlabelled"):
        write("math-shepherd", out, [tail], unlabelled="error")


def test_stepwise_is_lossless_across_trl_and_back(tmp_path):
    examples = list(read("stepwise", FIXTURES / "stepwise.jsonl"))[:2]
    write("trl", tmp_path / "t.parquet", examples, soft_threshold=0.0)
    back = list(read("trl", tmp_path / "t.parquet"))
    assert [e.steps for e in back] == [e.steps for e in examples]
    assert [e.labels for e in back] == [[True, True], [False, None]]
    assert back[0].meta["hard_labels"] == [True, True]


def test_math_shepherd_reading_and_writing_headers(tmp_path):
    first, second, third = read("math-shepherd", FIXTURES / "math_shepherd.jsonl")
    assert first.prompt == "Ann has 3 boxes of 4 pens. She gives away 5 pens. How many pens are left?"
    assert first.steps[0] == "Step 1: Ann has 3 * 4 = <<3*4=12>>12 pens." and first.labels == [True] * 3
    assert second.labels == [False] * 3 and second.meta == {"task": "MATH"}
    assert "math_shepherd_layout" in third.meta  # unusual whitespace, kept for an exact round trip
    write("math-shepherd", tmp_path / "ms.jsonl", [StepwiseExample("Q?", ["x = 1", "Step 2: y = 2"], [True, False])])
    assert rows_of(tmp_path / "ms.jsonl") == [{"input": "Q? Step 1: x = 1 ки\nStep 2: y = 2 ки",
                                               "label": "Q? Step 1: x = 1 +\nStep 2: y = 2 -"}]
    unlabelled = StepwiseExample("Q?", ["Step 1: x = 1"], None, {"task": "MATH"})
    write("math-shepherd", tmp_path / "ms.jsonl", [unlabelled])
    assert rows_of(tmp_path / "ms.jsonl") == [{"input": "Q? Step 1: x = 1 ки", "task": "MATH"}]
    assert list(read("math-shepherd", tmp_path / "ms.jsonl")) == [StepwiseExample("Q?", ["Step 1: x = 1"], [None],
                                                                                  {"task": "MATH"})]


def test_gsm8k_reading():
    rows = list(read("gsm8k", FIXTURES / "gsm8k.jsonl"))
    assert rows[0].steps == ["In the afternoon he makes 36/2 = <<36/2=18>>18 rolls.",
                             "In total he makes 36+18 = <<36+18=54>>54 rolls.", "#### 54"]
    assert rows[0].labels == [True] * 3 and rows[0].meta == {"answer": "54"}
    stripped = next(read("gsm8k", FIXTURES / "gsm8k.jsonl", strip_calculations=True))
    assert stripped.steps[0] == "In the afternoon he makes 36/2 = 18 rolls."


def test_prm800k_follows_the_chosen_path():
    phase2, phase1, control = read("prm800k", FIXTURES / "prm800k.jsonl")
    # phase 2: labelling stopped at the first -1; that pre-generated step is kept as the wrong last step
    assert phase2.steps == ["The first three odd numbers are 1, 3 and 5.", "Their sum is 1 + 3 + 5 = 10."]
    assert phase2.labels == [True, False]
    assert phase2.meta["finish_reason"] == "found_error" and phase2.meta["answer"] == "9"
    assert phase2.meta["ratings"] == [1, -1] and "pre_generated_steps" not in phase2.meta
    # phase 1: neutral first step, a chosen completion, then a human-written last step
    assert phase1.steps[-1] == "# Answer\n\n6" and phase1.labels == [True, True, True]
    assert phase1.meta["sources"] == ["model", "model", "human"]
    assert control.meta["is_quality_control_question"] is True


def test_prm800k_options():
    path = FIXTURES / "prm800k.jsonl"
    assert next(iter(read("prm800k", path, rating0="false"))).labels == [True, False]
    phase1 = list(read("prm800k", path, rating0="none"))[1]
    assert phase1.labels[0] is None
    assert len(list(read("prm800k", path, drop_quality_control=True))) == 2
    with_alternatives = list(read("prm800k", path, alternatives=True, drop_quality_control=True))
    branches = [e for e in with_alternatives if "alternative_at" in e.meta]
    assert [(b.steps[-1], b.labels[-1]) for b in branches] == [
        ("Their sum is 1 + 3 + 5 = 9.", True), ("12 = 2 * 6, so it has 2 divisors.", False),
        ("# Answer\n\n5", False)]
    assert all(b.steps[:-1] == with_alternatives[0 if i == 0 else 2].steps[:len(b.steps) - 1]
               for i, b in enumerate(branches))


def test_config_refuses_options_that_would_be_ignored(tmp_path):
    config = ConvertConfig(rating0="false", soft_threshold=0.5)
    problems = config.problems("processbench", "gsm8k")
    assert any("--rating0 does not apply" in p for p in problems)
    assert any("--soft-threshold does not apply" in p for p in problems)
    assert ConvertConfig(rating0="false").problems("prm800k", "trl") == []
    assert any("no prm800k writer" in p for p in ConvertConfig().problems("trl", "prm800k"))
    assert any("--unlabelled must be one of" in p for p in ConvertConfig(unlabelled="drop").problems("trl", "trl"))
    with pytest.raises(ValueError, match="same path"):
        convert("trl", "trl", FIXTURES / "trl.jsonl", FIXTURES / "trl.jsonl")
    with pytest.raises(ValueError, match="no such file"):
        convert("trl", "trl", tmp_path / "missing.jsonl", tmp_path / "never.jsonl")
    assert not (tmp_path / "never.jsonl").exists()


BAD_ROWS = [
    ("processbench", '{"id": "a", "generator": "g", "problem": "p", "steps": ["s"], "final_answer_correct": true, '
                     '"label": "x"}', r"field 'label': expected an int >= -1, got 'x'"),
    ("processbench", '{"problem": "p", "steps": ["s", "t"], "label": 2}', r"field 'label': expected -1 or a step"),
    ("processbench", '{"problem": "p", "steps": [], "label": -1}', r"field 'steps': expected at least one step"),
    ("trl", '{"prompt": "p", "completions": ["a"], "labels": [0.5]}', r"field 'labels': expected a list of true/false"),
    ("trl", '{"prompt": "p", "completions": ["a", "b"], "labels": [true]}', r"field 'labels': expected 2 labels"),
    ("trl", '{"completions": ["a"], "labels": [true]}', r"field 'prompt': missing"),
    ("math-shepherd", '{"input": "no tags here"}', r"field 'input': expected steps closed by the step tag"),
    ("math-shepherd", '{"input": "Q? first ки", "label": "Q? first +"}', r"field 'input': expected a 'Step 1:'"),
    ("math-shepherd", '{"input": "Q Step 1: a ки", "label": "Q Step 1: a ?"}', r"field 'label': expected the input"),
    ("gsm8k", '{"question": "q", "answer": "1 + 1 = 2"}', r"field 'answer': expected solution lines ending"),
    ("stepwise", '{"prompt": "p", "completions": ["a"], "labels": [2], "meta": {}}', r"label 0 is 2"),
    ("stepwise", '{"prompt": "p", "completions": ["a"], "id": 3}', r"field 'id': not part of the stepwise format"),
    ("prm800k", '{"question": {"problem": "p"}, "label": {"steps": [{"completions": [{"text": "a", "rating": 1}], '
                '"chosen_completion": 3}]}}', r"field 'label.steps\[0\].chosen_completion'"),
    ("prm800k", '{"question": {"problem": "p"}, "label": {"steps": [{"completions": [{"text": "a", "rating": 5}], '
                '"chosen_completion": 0}]}}', r"field 'label.steps\[0\].completions\[0\].rating'"),
    ("trl", '{"prompt": "p", "completions": ["a"], "labels": [true]', r"not valid JSON"),
]


@pytest.mark.parametrize("fmt,line,message", BAD_ROWS)
def test_a_malformed_row_names_file_line_and_field(tmp_path, fmt, line, message):
    good = {"trl": '{"prompt": "p", "completions": ["a"], "labels": [true]}'}.get(fmt, "")
    path = tmp_path / "data.jsonl"
    path.write_text(f"{good}\n\n{line}\n" if good else f"\n\n{line}\n")
    with pytest.raises(DataError, match=rf"{path}, line 3: .*{message}"):
        list(read(fmt, path))


def test_skip_invalid_counts_and_keeps_going(tmp_path):
    rows = [json.dumps({"problem": f"p{i}", "steps": ["a", "b"], "label": i % 3 - 1}) for i in range(6)]
    rows[1] = '{"problem": "p1", "steps": ["a"], "label": "first"}'
    rows[4] = "{not json"
    path = tmp_path / "pb.jsonl"
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match="line 2.*--skip-invalid"):
        convert("processbench", "trl", path, tmp_path / "out.jsonl")
    assert len(rows_of(tmp_path / "out.jsonl")) == 1  # written before the error stays written
    report = convert("processbench", "trl", path, tmp_path / "out.jsonl", ConvertConfig(skip_invalid=True))
    assert (report.log.rows, report.log.skipped, report.rows_written) == (5, 2, 4)
    assert "line 2: field 'label'" in report.log.reasons[0] and "line 5: not valid JSON" in report.log.reasons[1]
    assert "skipped 2 invalid rows" in report.summary()


def test_rows_the_target_cannot_hold_are_skippable_too(tmp_path):
    path = FIXTURES / "stepwise.jsonl"
    with pytest.raises(DataError, match=rf"{path}, line 1: cannot write as trl: label 0 is 0.75"):
        convert("stepwise", "trl", path, tmp_path / "t.jsonl")
    report = convert("stepwise", "trl", path, tmp_path / "t.jsonl", ConvertConfig(skip_invalid=True))
    assert report.log.skipped == 2 and report.rows_written == 1  # soft labels, and a row with no labels at all


def test_readers_are_lazy(tmp_path):
    """The first example comes out before a bad last row is even read: nothing is loaded up front."""
    good = '{"prompt": "p", "completions": ["a"], "labels": [true]}'
    (tmp_path / "x.jsonl").write_text(good + "\n" + "{broken\n")
    (tmp_path / "x.json").write_text("[" + good + ",\n" + " " * 3_000_000 + "{broken]")
    for name in ("x.jsonl", "x.json"):
        examples = read("trl", tmp_path / name)
        assert next(examples).steps == ["a"]
        with pytest.raises(DataError, match="line 2: not valid JSON"):
            next(examples)


def test_conversion_memory_does_not_grow_with_the_file(tmp_path):
    path = tmp_path / "big.jsonl"
    with open(path, "w") as fh:
        for i in range(4000):
            steps = " ки\n".join(f"Step {k}: {i} + {k} = {i + k}" for k in range(1, 6))
            text = f"What is {i} plus 5? {steps} ки"
            fh.write(json.dumps({"input": text, "label": text.replace("ки", "+"), "task": "GSM8K"}) + "\n")
    tracemalloc.start()
    report = convert("math-shepherd", "trl", path, tmp_path / "out.jsonl")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert report.rows_written == 4000 and report.steps_read == 20000
    assert peak < path.stat().st_size / 4


def test_every_format_is_listed_with_its_options():
    names = set(ConvertConfig.__dataclass_fields__) - {"skip_invalid"}
    used = {o for fmt in FORMATS.values() for o in fmt.read_options + fmt.write_options}
    assert used == names


def test_unknown_output_suffix_is_refused(tmp_path):
    with pytest.raises(DataError, match="cannot tell how to store rows"):
        write("trl", tmp_path / "out.csv", [StepwiseExample("p", ["a"], [True])])


def test_row_log_keeps_the_first_reasons():
    log = RowLog(skip_invalid=True, keep_reasons=2)
    for i in range(5):
        log.bad_row(f"r{i}")
    assert (log.skipped, log.reasons) == (5, ["r0", "r1"])


def test_data_layer_imports_nothing_heavy():
    from test_imports import loaded_after

    loaded = loaded_after("import data_tools.formats, data_tools.inject, data_tools.splitting, data_tools.cli")
    assert loaded & {"prm", "serving", "torch", "transformers", "pyarrow", "datasets", "math_verify", "sympy"} == set()
