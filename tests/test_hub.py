"""``prm push`` and ``PRM.from_pretrained("org/name")`` offline: a file-based stand-in for the Hub's API
writes each upload as a snapshot in a Hugging Face cache layout, and the real ``snapshot_download``
reads it back with ``HF_HUB_OFFLINE`` on (no network here)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = "org/tiny-prm"
ITEM = ("Tom has 3 apples. He buys 2 more. How many now?", ["3 + 2 = 5", "The answer is 5."])


class FileHub:
    """``create_repo`` and ``upload_folder`` as ``huggingface_hub.HfApi`` has them, writing into a cache folder
    (``models--ORG--NAME/refs/main`` and ``snapshots/<commit>/``), the patterns filtered by the library's own
    ``filter_repo_objects``, as ``upload_folder`` filters them."""

    def __init__(self, cache: Path):
        self.cache, self.calls = cache, []

    def __call__(self, token=None):  # stands in for the HfApi class
        self.calls.append(("HfApi", token))
        return self

    def create_repo(self, repo_id, *, repo_type=None, private=None, exist_ok=False, token=None):
        self.calls.append(("create_repo", repo_id, repo_type, private, exist_ok))

    def upload_folder(self, *, repo_id, folder_path, repo_type=None, revision=None, commit_message=None,
                      allow_patterns=None, ignore_patterns=None, **_):
        from huggingface_hub.utils import filter_repo_objects

        folder = Path(folder_path)
        files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        kept = list(filter_repo_objects(files, allow_patterns=allow_patterns, ignore_patterns=ignore_patterns))
        commit = hashlib.sha1("".join(kept).encode() + str(len(self.calls)).encode()).hexdigest()
        repo = self.cache / f"models--{repo_id.replace('/', '--')}"
        for name in kept:
            (repo / "snapshots" / commit / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(folder / name, repo / "snapshots" / commit / name)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / (revision or "main")).write_text(commit)
        self.calls.append(("upload_folder", repo_id, repo_type, commit_message, tuple(kept)))
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/{commit}")


@pytest.fixture(scope="module")
def artifact(tiny_backbone, tmp_path_factory):
    import torch

    from prm.artifacts import Artifact
    from prm.backbone import new_scorer

    torch.manual_seed(2)
    scorer, tok, cfg = new_scorer(str(tiny_backbone), "<|prm_step|>", 128)
    with torch.no_grad():
        scorer.head.weight.normal_(0.0, 1.0)
    folder = tmp_path_factory.mktemp("hub") / "model"
    Artifact.save(folder, scorer.eval(), tok, cfg, training={"examples": 8, "train_loss": 0.5},
                  calibration={"method": "temperature", "temperature": 1.5})
    (folder / "checkpoints" / "checkpoint-1").mkdir(parents=True)
    (folder / "checkpoints" / "checkpoint-1" / "optimizer.pt").write_bytes(b"pickled optimizer state")
    return folder


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_push_then_from_pretrained_by_hub_id(artifact, offline_cache, monkeypatch, capsys):
    import huggingface_hub
    import numpy as np
    from transformers import AutoModelForTokenClassification

    from prm import PRM
    from prm.hub import resolve
    from serving.cli import main

    hub = FileHub(offline_cache)
    monkeypatch.setattr(huggingface_hub, "HfApi", hub)
    assert main(["push", str(artifact), REPO, "--private"]) == 0
    assert f"pushed {artifact} to {REPO}: https://huggingface.co/{REPO}/commit/" in capsys.readouterr().out
    assert ("create_repo", REPO, "model", True, True) in hub.calls
    uploaded = next(c for c in hub.calls if c[0] == "upload_folder")[4]
    assert not [f for f in uploaded if f.startswith("checkpoints/")] and "README.md" in uploaded
    assert not [f for f in uploaded if f.endswith((".pt", ".bin", ".pkl", ".pth"))]
    assert {"model.safetensors", "step_head.safetensors", "prm_config.json", "manifest.json"} <= set(uploaded)
    assert f'from_pretrained("{REPO}")' in (artifact / "README.md").read_text()  # the card is named after the repo

    assert resolve(REPO).is_relative_to(offline_cache / "models--org--tiny-prm" / "snapshots")
    loaded = PRM.from_pretrained(REPO)  # offline: the cache's snapshot
    assert loaded.calibration == {"method": "temperature", "temperature": 1.5}
    want = PRM.from_pretrained(artifact).score([ITEM])
    np.testing.assert_allclose(loaded.score([ITEM]), want, atol=1e-6)
    stock = AutoModelForTokenClassification.from_pretrained(REPO, cache_dir=offline_cache, local_files_only=True)
    assert stock.config.num_labels == 1


def test_an_unknown_hub_id_or_folder_says_both(offline_cache):
    from prm import PRM
    from prm.artifacts import ArtifactError

    with pytest.raises(ArtifactError, match="is not a folder here, and the Hugging Face Hub could not give it"):
        PRM.from_pretrained("org/not-pushed")
    with pytest.raises(ArtifactError, match="no such folder"):
        PRM.from_pretrained("./not/a/folder")


def test_push_refuses_a_bad_repo_id_or_a_folder_that_is_no_artifact(artifact, tmp_path):
    from prm.artifacts import ArtifactError
    from prm.hub import is_repo_id, push

    assert is_repo_id("org/name") and is_repo_id("Org-1/name.v2_b")
    assert not is_repo_id("name") and not is_repo_id("a/b/c") and not is_repo_id("../x") and not is_repo_id("org/")
    with pytest.raises(ValueError, match="ORG/NAME"):
        push(artifact, "no-slash", api=object())
    with pytest.raises(ArtifactError, match="not a PRM artifact"):
        push(tmp_path, REPO, api=object())
