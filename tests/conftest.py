import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny_backbone import build_tiny_backbone  # noqa: E402


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> Path:
    """A 2-layer Llama with a locally trained BPE tokenizer (built once per test session)."""
    return build_tiny_backbone(tmp_path_factory.mktemp("tiny") / "backbone")


@pytest.fixture(scope="session")
def tiny_completer(tiny_backbone):
    from prm.rollout_model import load_completer

    return load_completer(str(tiny_backbone), max_new_tokens=12, temperature=1.0, bf16=False)


@pytest.fixture(scope="session")
def tiny_artifact(tiny_backbone, tmp_path_factory) -> Path:
    """A PRM artifact on the tiny backbone, trained one epoch and exported to ONNX (once per session)."""
    from data_tools.problems import generate_dataset
    from prm.export import export_onnx
    from prm.train import TrainConfig, train

    data = generate_dataset(4, seed=0)
    for ex in data:
        ex.labels = [1.0] * len(ex.steps)
    out = tmp_path_factory.mktemp("svc") / "model"
    train(data, TrainConfig(backbone=str(tiny_backbone), output_dir=str(out), epochs=1, bf16=False))
    export_onnx(out)
    return out
