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
    from prm.generation import load_completer

    return load_completer(str(tiny_backbone), max_new_tokens=12, temperature=1.0, bf16=False)


@pytest.fixture(scope="session")
def tiny_artifact(tiny_backbone, tmp_path_factory) -> Path:
    """A PRM artifact trained one epoch on the tiny backbone with ground-truth labels (fp32), exported to ONNX."""
    from data_tools.problems import generate_dataset, ground_truth_labels
    from data_tools.schema import StepwiseExample
    from prm.export import export_onnx
    from prm.train import TrainConfig, train

    data = [StepwiseExample(e.prompt, e.steps, ground_truth_labels(e), e.meta) for e in generate_dataset(24)]
    out = tmp_path_factory.mktemp("artifact") / "model"
    train(data, TrainConfig(backbone=str(tiny_backbone), output_dir=str(out), epochs=1, bf16=False,
                            probe_init=False, batch_size=8))
    export_onnx(out)
    return out


@pytest.fixture(scope="session")
def labelled_24(tmp_path_factory) -> Path:
    """24 generated solutions with labels of both classes on their steps (so AUROC is defined), as JSONL:
    calibration, export gates and backend checks read it (read only)."""
    from data_tools.problems import generate_dataset
    from data_tools.schema import write_jsonl

    data = generate_dataset(24, seed=3)
    for i, ex in enumerate(data):
        ex.labels = [float((i + k) % 3 != 0) for k in range(len(ex.steps))]
    path = tmp_path_factory.mktemp("data") / "labelled.jsonl"
    write_jsonl(path, data)
    return path


def pytest_collection_modifyitems(config, items):
    """A test marked gpu, selected on a machine without a GPU, is skipped saying so (``make test`` deselects
    them with -m "not gpu"; benchmarks/gpu_check.sh runs them on a GPU machine)."""
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    from prm.scoring.cuda import gpu_count

    if gpu_count():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU (CUDA): run benchmarks/gpu_check.sh on a GPU machine")
    for item in gpu_items:
        item.add_marker(skip)


@pytest.fixture(autouse=True, scope="module")
def _fresh_bentoml_metrics():
    """BentoML registers its HTTP metrics in prometheus_client's default registry whenever a service app starts,
    and a second app in one process (another module's ``TestClient(PRMService.to_asgi())``) then fails with
    DuplicateTimeseries: each test module starts from a registry without them."""
    if "prometheus_client" in sys.modules:
        from prometheus_client import REGISTRY

        for collector, names in list(REGISTRY._collector_to_names.items()):
            if any(name.startswith("bentoml_") for name in names):
                REGISTRY.unregister(collector)
    yield
