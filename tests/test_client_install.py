"""Install what you use: the ``[client]`` extra alone scores against a live service, with no torch, BentoML or
ONNX Runtime in the environment, and the extras pick ONNX Runtime's build by platform."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "bentoml", "onnxruntime", "transformers", "numpy", "prm")  # prm: installed, never imported

CLIENT_SCRIPT = """
import importlib.util, json, sys
import serving.client
loaded_by_client = sorted(m for m in {HEAVY!r} if m in sys.modules)
from serving.adapters import trl_reward_function
from serving.client import PRMClient
from serving.search import best_of_n

with PRMClient(sys.argv[1]) as prm:
    scores = prm.score([{{"prompt": "Tom has 3 apples and buys 2 more. How many?",
                          "steps": ["3 + 2 = 5", "The answer is 5."]}}])
    reward = trl_reward_function(prm)
    rewards = reward(prompts=["Tom has 3 apples and buys 2 more. How many?"] * 2,
                     completions=["3 + 2 = 5\\nThe answer is 5.", [{{"role": "assistant", "content": "3 + 2 = 6"}}]])
    best, _ = best_of_n(prm, "Tom has 3 apples and buys 2 more. How many?", [["3 + 2 = 5"], ["3 + 2 = 6"]])
print(json.dumps({{"loaded_by_client": loaded_by_client, "scores": scores, "rewards": rewards, "best": best,
                  "installed": sorted(m for m in {HEAVY!r}[:-1] if importlib.util.find_spec(m)),
                  "client_file": serving.client.__file__}}))
"""


def _source_copy(dest: Path) -> Path:
    """The project as pip builds it (pyproject, README, the packages), outside the working tree."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, dest / name)
    for pkg in ("data_tools", "prm", "serving"):
        shutil.copytree(ROOT / pkg, dest / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


@pytest.mark.slow
def test_a_client_only_environment_scores_against_a_live_service(tiny_artifact, tmp_path):
    from serving.launch import served

    venv = tmp_path / "client-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    install = subprocess.run([str(py), "-m", "pip", "install", "--quiet", f"{_source_copy(tmp_path / 'src')}[client]"],
                             capture_output=True, text=True, cwd=tmp_path)
    if install.returncode != 0 and ("Could not find a version" in install.stderr or "NewConnectionError" in install.stderr):
        pytest.skip(f"the package index is out of reach: {install.stderr.strip().splitlines()[-1]}")
    assert install.returncode == 0, install.stderr
    with served(tiny_artifact) as client:
        want = client.score([{"prompt": "Tom has 3 apples and buys 2 more. How many?",
                              "steps": ["3 + 2 = 5", "The answer is 5."]}])
        run = subprocess.run([str(py), "-c", CLIENT_SCRIPT.format(HEAVY=HEAVY), client.base_url],
                             capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["loaded_by_client"] == [] and out["installed"] == []  # not loaded, not even installed
    assert Path(out["client_file"]).is_relative_to(venv)  # the installed package, not this checkout
    assert out["scores"][0]["step_scores"] == pytest.approx(want[0]["step_scores"], abs=1e-6)
    assert len(out["rewards"]) == 2 and out["best"] in (0, 1)


def _extra(name: str) -> list[str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"][name]


PLATFORMS = {  # (platform_system, platform_machine) -> the ONNX Runtime build pip must pick
    ("Linux", "x86_64"): "onnxruntime-gpu", ("Windows", "AMD64"): "onnxruntime-gpu",
    ("Darwin", "arm64"): "onnxruntime", ("Darwin", "x86_64"): "onnxruntime", ("Linux", "aarch64"): "onnxruntime",
}


@pytest.mark.parametrize("system,machine", list(PLATFORMS))
def test_exactly_one_onnxruntime_build_per_platform(system, machine):
    from packaging.requirements import Requirement

    env = {"platform_system": system, "platform_machine": machine, "sys_platform": system.lower(), "extra": ""}
    picked = [r.name for r in map(Requirement, _extra("model")) if r.name.startswith("onnxruntime")
              and (r.marker is None or r.marker.evaluate(env))]
    assert picked == [PLATFORMS[(system, machine)]]


def test_the_extras_nest_and_the_base_install_is_the_client():
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert [Requirement(r).name for r in project["dependencies"]] == ["httpx"]
    assert [Requirement(r).name for r in _extra("client")] == ["httpx"]
    names = {extra: {Requirement(r).name: Requirement(r) for r in _extra(extra)} for extra in
             ("serve", "train", "gpu", "all")}
    assert names["serve"]["prm-toolkit"].extras == {"model"} and "bentoml" in names["serve"]
    assert names["train"]["prm-toolkit"].extras == {"model"} and "onnxscript" in names["train"]
    assert names["all"]["prm-toolkit"].extras == {"serve", "train", "proxy"}
    assert names["gpu"]["onnxruntime-gpu"].extras == {"cuda", "cudnn"}
    assert "'.[all,dev]'" in (ROOT / "Makefile").read_text()
