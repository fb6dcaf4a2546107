"""``prm convert`` and ``prm inject-errors`` from the command line, and the README's commands for them."""

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest

from serving.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
README = Path(__file__).parent.parent / "README.md"


def rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def test_help_lists_the_data_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "convert" in out and "inject-errors" in out


def test_convert(tmp_path, capsys):
    out = tmp_path / "pb.parquet"
    assert main(["convert", "--from", "processbench", "--to", "trl", str(FIXTURES / "processbench.json"),
                 str(out)]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "read 4 rows" in printed and "wrote 4 rows" in printed
    assert main(["convert", "--from", "trl", "--to", "processbench", str(out), str(tmp_path / "pb.json")]) == 0
    assert json.loads((tmp_path / "pb.json").read_text()) == json.loads((FIXTURES / "processbench.json").read_text())


def test_convert_reports_a_bad_row_and_skips_it_when_asked(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "p", "steps": ["a"], "label": -1}\n{"problem": "p", "steps": ["a"], "label": "x"}\n')
    assert main(["convert", "--from", "processbench", "--to", "stepwise", str(bad), str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert f"{bad}, line 2: field 'label': expected an int >= -1, got 'x'" in err and "--skip-invalid" in err
    assert main(["convert", "--from", "processbench", "--to", "stepwise", "--skip-invalid", str(bad),
                 str(tmp_path / "o.jsonl")]) == 0
    assert "skipped 1 invalid rows" in capsys.readouterr().out and len(rows(tmp_path / "o.jsonl")) == 1


def test_convert_refuses_options_for_other_formats(tmp_path, capsys):
    assert main(["convert", "--from", "gsm8k", "--to", "trl", "--rating0", "false", "--after-error", "wrong",
                 str(FIXTURES / "gsm8k.jsonl"), str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "--rating0 does not apply" in err and "--after-error does not apply" in err
    assert not (tmp_path / "o.jsonl").exists()


def test_inject_errors(tmp_path, capsys):
    out = tmp_path / "errors.jsonl"
    assert main(["inject-errors", str(FIXTURES / "gsm8k.jsonl"), str(out), "--seed", "3", "--variants", "2",
                 "--kinds", "slip,operator"]) == 0
    assert "coverage 100.0%" in capsys.readouterr().out
    written = rows(out)
    assert len(written) == 8 and {r["meta"]["error_kind"] for r in written} <= {"slip", "operator"}
    for row in written:
        k = row["meta"]["first_error"]
        assert row["labels"] == [True] * k + [False] * (len(row["completions"]) - k)


README_INPUTS = {"processbench.json": "processbench.json", "math_shepherd.jsonl": "math_shepherd.jsonl",
                 "phase2_train.jsonl": "prm800k.jsonl", "gsm8k_train.jsonl": "gsm8k.jsonl",
                 "labelled_errors.jsonl": "mr_gsm8k.jsonl"}


def readme_argv(*prefixes: str) -> list[list[str]]:
    """Each README line that starts with one of ``prefixes`` and a space, split as a shell would with its
    comment dropped: the commands the README shows, in order."""
    return [shlex.split(re.sub(r"\s+#.*$", "", line)) for line in README.read_text().splitlines()
            if any(line.startswith(f"{prefix} ") for prefix in prefixes)]


def readme_commands(*names):
    """The README's ``prm NAME ...`` lines, as the arguments after ``prm``."""
    return [argv[1:] for argv in readme_argv(*(f"prm {name}" for name in names))]


def test_readme_data_commands_run(tmp_path, monkeypatch):
    for name, fixture in README_INPUTS.items():
        shutil.copy(FIXTURES / fixture, tmp_path / name)
    # labelled.jsonl stands for `prm label` output: soft labels in [0, 1]
    (tmp_path / "labelled.jsonl").write_text("".join(
        line + "\n" for line in (FIXTURES / "stepwise.jsonl").read_text().splitlines()[:2]))
    monkeypatch.chdir(tmp_path)
    commands = readme_commands("convert", "inject-errors")
    assert len(commands) >= 5
    for argv in commands:
        inputs = [a for a in argv[1:] if not a.startswith("-") and Path(a).exists()]
        assert inputs, f"README command {argv} reads a file this test does not provide"
        assert main(argv) == 0, argv
        assert Path(argv[[i for i, a in enumerate(argv) if a == inputs[0]][0] + 1]).exists()
