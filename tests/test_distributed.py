"""The same training code under ``accelerate launch``: two CPU processes (DDP over gloo) end with
identical weights, and every shipped config opens with the command that uses it and loads."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from data_tools.problems import generate_dataset, ground_truth_labels
from data_tools.schema import StepwiseExample, write_jsonl

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted(c for c in (ROOT / "configs").glob("*.yaml")
                 if c.read_text().startswith("# accelerate launch"))  # the others are prm --config files
ACCELERATE = Path(sys.executable).parent / "accelerate"


def test_every_config_opens_with_its_command_and_loads():
    from accelerate.commands.config.config_args import load_config_from_file

    assert {c.name for c in CONFIGS} >= {"ddp.yaml", "deepspeed_zero2.yaml", "fsdp.yaml"}
    kinds = {}
    for config in CONFIGS:
        first = config.read_text().splitlines()[0]
        assert first.startswith(f"# accelerate launch --config_file configs/{config.name} "), config.name
        assert " train " in first and "--out" in first
        kinds[config.name] = load_config_from_file(str(config)).distributed_type.value
        assert load_config_from_file(str(config)).mixed_precision == "no"  # prm train's --no-bf16 must hold
    assert kinds["deepspeed_zero2.yaml"] == "DEEPSPEED" and kinds["fsdp.yaml"] == "FSDP"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("launch", [["--multi_gpu", "--num_processes", "2"], ["--config_file", "configs/ddp.yaml"]],
                         ids=["flags", "config"])
def test_two_cpu_processes_train_to_identical_weights(tiny_backbone, tmp_path, launch):
    data = tmp_path / "labelled.jsonl"
    write_jsonl(data, [StepwiseExample(e.prompt, e.steps, ground_truth_labels(e), e.meta)
                       for e in generate_dataset(24)])
    out = tmp_path / "model"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # CPUs (gloo), also on a machine with GPUs
    cmd = [str(ACCELERATE), "launch", *launch, "--main_process_port", str(_free_port()), "-m", "serving.cli", "train",
           str(data), "--out", str(out), "--backbone", str(tiny_backbone), "--epochs", "1", "--batch-size", "4"]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("trained PRM written") == 1  # rank 0 reports, rank 1 stays quiet
    record = json.loads((out / "training.json").read_text())
    assert record["world_size"] == 2
    digests = record["replica_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]  # both ranks ended with the same weights
    assert record["global_step"] == 6  # 48 solutions / (2 processes x 4)

    from prm import PRM

    scores = PRM.from_pretrained(out).score([("Tom has 5 apples.", ["Tom buys 3: 5 + 3 = 8", "The answer is 8."])])
    assert len(scores[0]) == 2
