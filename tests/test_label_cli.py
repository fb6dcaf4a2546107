"""The README's ``prm label`` commands, run as written, on small inputs.

And the ``prm sample`` commands, whose output the reference labeller reads. Substitutions, so that they
run here in seconds: ``prm generate`` makes 10 problems (one of them in shard 0/4), GSM8K and MR-GSM8K
inputs are the test fixtures, the ``hf`` commands use the tiny test model instead of SmolLM2 (and 8
new tokens for a rollout, 24 for a solution), and ``--openai-base-urls`` points at two test servers
on 127.0.0.1 serving that model.
"""

import json
import shutil
from pathlib import Path

import pytest
from openai_server import serving
from test_data_cli import readme_commands

from serving.cli import main


@pytest.mark.slow
def test_readme_label_commands_run(tmp_path, monkeypatch, tiny_backbone, tiny_completer):
    fixtures = Path(__file__).parent / "fixtures"
    shutil.copy(fixtures / "gsm8k.jsonl", tmp_path / "gsm8k_train.jsonl")
    shutil.copy(fixtures / "mr_gsm8k.jsonl", tmp_path / "labelled_errors.jsonl")
    monkeypatch.chdir(tmp_path)
    commands = readme_commands("generate", "label", "sample")
    assert sum(argv[0] == "label" for argv in commands) >= 7 and sum(argv[0] == "sample" for argv in commands) >= 2
    completers = set()
    with serving(tiny_completer) as (url_a, log_a), serving(tiny_completer) as (url_b, log_b):
        for argv in commands:
            if argv[0] == "generate":
                argv = [*argv, "--problems", "10"]
            elif "reference" in argv:  # no completer: nothing to substitute
                pass
            else:
                completer = argv[argv.index("--completer") + 1] if "--completer" in argv else "hf"
                completers.add(completer)
                if completer == "hf":
                    argv = [*argv, "--backbone", str(tiny_backbone),
                            "--max-new-tokens", "8" if argv[0] == "label" else "24"]
                if completer == "openai":
                    argv[argv.index("--openai-base-urls") + 1] = f"{url_a},{url_b}"
                if argv[0] == "label":
                    argv = [*argv, "--no-progress"]
            assert main(argv) == 0, argv
            if argv[0] == "label":
                out = Path(argv[2])
                assert all(len(json.loads(line)["labels"]) == len(json.loads(line)["completions"])
                           for line in out.read_text().splitlines())
    assert completers == {"hf", "simulated", "openai"}
    assert log_a.entries and log_b.entries  # round-robin reached both servers
    labelled = [json.loads(line) for line in Path("binary.jsonl").read_text().splitlines()]
    assert len(labelled) == 20 and all(r["meta"]["label_method"] == "binary" for r in labelled)
    sampled = [json.loads(line) for line in Path("wrong.jsonl").read_text().splitlines()]
    assert all(not r["meta"]["final_answer_correct"] and r["meta"]["reference_solution"] for r in sampled)
    by_reference = [json.loads(line) for line in Path("wrong_labelled.jsonl").read_text().splitlines()]
    assert len(by_reference) == len(sampled) and all(r["meta"]["label_method"] == "reference" for r in by_reference)
    assert [json.loads(line)["meta"]["label_method"] for line in Path("mr.jsonl").read_text().splitlines()]
