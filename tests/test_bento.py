"""`bentoml build` packs a Bento with every module the service needs, and its service imports from it."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bentoml_build_packs_an_importable_service(tmp_path):
    env = dict(os.environ, BENTOML_HOME=str(tmp_path / "bentoml"), BENTOML_DO_NOT_TRACK="true")
    bentoml = Path(sys.executable).with_name("bentoml")
    res = subprocess.run([str(bentoml), "build", str(ROOT)], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    bentos = [p for p in (tmp_path / "bentoml" / "bentos" / "prm_service").iterdir() if p.name != "latest"]
    assert len(bentos) == 1
    src = bentos[0] / "src"
    # every module of the three packages travels, subpackages included
    for package in ("data_tools", "prm", "serving"):
        for module in (ROOT / package).rglob("*.py"):
            assert (src / module.relative_to(ROOT)).is_file(), module
    requirements = (bentos[0] / "env" / "python" / "requirements.txt").read_text()
    assert "torch==2.13.0" in requirements and "onnxruntime-gpu" in requirements
    # the Bento's own source (not this checkout) provides the service class
    probe = (f"import serving.service as s, bentoml; assert s.__file__.startswith({str(src)!r}); "
             "assert isinstance(s.PRMService, bentoml.Service); print(sorted(s.PRMService.apis)); "
             "print(sorted(s.PRMService.all_services()))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=src,
                         env=dict(env, PYTHONPATH=str(src)), timeout=120)
    assert out.returncode == 0, out.stderr
    assert "score" in out.stdout
    assert "PRMInference" in out.stdout  # the batching inference service travels with the front
