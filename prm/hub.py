"""An artifact on the Hugging Face Hub: ``push`` (``prm push``) and ``resolve`` (``PRM.from_pretrained``).

``push(folder, repo_id)`` names the model card after the repository (``README.md``, ``prm.card``),
refreshes the manifest, creates the model repository if needed and uploads the folder in one commit
(``HfApi.create_repo`` and ``HfApi.upload_folder``), leaving ``checkpoints/`` (training state, pickled
optimizer files) behind: what lands on the Hub is safetensors, JSON, the tokenizer and ONNX only.
``resolve(name)`` gives a local folder: the path itself when it is one, else the repository's snapshot
in the Hugging Face cache (``snapshot_download``: downloaded once, then read from the cache;
``HF_HUB_OFFLINE=1`` reads the cache only). Login, tokens and the cache location are
``huggingface_hub``'s own (``HF_TOKEN``, ``hf auth login``, ``HF_HUB_CACHE``).

Not promised: anything about the Hub's side (rate limits, private repositories' access rules).
"""

from __future__ import annotations

import re
from pathlib import Path

from prm.artifacts import Artifact, ArtifactError

LEFT_BEHIND = ["checkpoints/*", "checkpoints/**"]
"""Paths never uploaded: training state for ``--resume`` (it holds pickled optimizer files)."""
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]*[A-Za-z0-9_]$")


def is_repo_id(name: str) -> bool:
    """Whether ``name`` has the shape of a Hub model id (``org/name``)."""
    return bool(REPO_ID.fullmatch(str(name))) and ".." not in str(name)


def resolve(name: str | Path, revision: str | None = None, token: str | None = None,
            cache_dir: str | Path | None = None) -> Path:
    """A local artifact folder for ``name``: a folder path as it is, or a Hub id's snapshot in the cache."""
    if Path(name).exists() or not is_repo_id(str(name)):
        return Path(name)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(name), revision=revision, token=token, cache_dir=cache_dir,
                                      ignore_patterns=LEFT_BEHIND))
    except Exception as exc:  # huggingface_hub's errors: offline, not found, gated, no network
        raise ArtifactError(f"{name} is not a folder here, and the Hugging Face Hub could not give it: "
                            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} (a Hub id is "
                            "ORG/NAME; HF_HUB_OFFLINE=1 reads only the local cache; HF_TOKEN or `hf auth login` for "
                            "private repositories)") from None


def push(folder: str | Path, repo_id: str, token: str | None = None, private: bool | None = None,
         revision: str | None = None, message: str | None = None, api=None) -> str:
    """Upload the artifact in ``folder`` to the model repository ``repo_id``; returns the commit's URL.

    ``api``: an ``huggingface_hub.HfApi`` (or anything with its ``create_repo`` and ``upload_folder``);
    default ``HfApi(token=token)``. The card is renamed to ``repo_id`` and the manifest refreshed first,
    in the folder itself, so the folder and the repository hold the same files."""
    if not is_repo_id(repo_id):
        raise ValueError(f"REPO_ID must look like ORG/NAME (letters, digits, '-', '_', '.'), got {repo_id!r}")
    art = Artifact(folder)
    art.config()  # refuses anything that is not an artifact this version reads
    art.write_card(repo_id)
    art.write_manifest()
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, folder_path=str(art.folder), repo_type="model", revision=revision,
                             commit_message=message or f"Upload PRM artifact ({art.folder.name}) with prm-toolkit",
                             ignore_patterns=LEFT_BEHIND)
    return str(getattr(info, "commit_url", None) or info)
