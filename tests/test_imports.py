"""Imports flow one way: data_tools <- prm <- serving; the client stays light."""

import json
import subprocess
import sys

import pytest


def loaded_after(statement: str) -> set[str]:
    code = f"import sys, json; {statement}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return {m.split(".")[0] for m in json.loads(out.splitlines()[-1])}


@pytest.mark.parametrize("statement,forbidden", [
    ("import data_tools.schema, data_tools.problems, data_tools.labelling, data_tools.rollouts, data_tools.answers",
     {"prm", "serving", "torch", "transformers", "bentoml", "onnxruntime", "sklearn"}),
    ("import data_tools.label_job, data_tools.binary_search, data_tools.openai_completer, data_tools.simulated, "
     "data_tools.vllm_completer", {"prm", "serving", "torch", "transformers", "vllm", "httpx", "tqdm"}),
    ("import prm.train, prm.scoring, prm.export, prm.calibrate, prm.artifacts, prm.cli",
     {"serving", "bentoml", "onnxruntime", "sklearn", "matplotlib"}),
    ("import serving.client, serving.adapters, serving.search, serving.search.completer, serving.search.lockstep, "
     "serving.search.linearise", {"prm", "torch", "bentoml", "transformers", "onnxruntime", "numpy", "sympy"}),
    ("import serving.proxy, serving.proxy.app", {"prm", "torch", "bentoml", "transformers", "onnxruntime", "its_hub"}),
])
def test_layering(statement, forbidden):
    assert loaded_after(statement) & forbidden == set()
