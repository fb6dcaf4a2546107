"""The on-disk PRM artifact: one folder that every later stage reads without guessing.

``Artifact(folder)`` owns every file name of the folder and how each is read and written:

    config.json, model.safetensors   backbone (safetensors); with a linear step head, written as a stock
                                     ``<Arch>ForTokenClassification`` with one label (``prm.stock``)
    step_head.safetensors            the step head
    tokenizer files                  with the step separator as an added special token
    prm_config.json                  separator and its id, max length, aggregation, label type
    calibration.json                 when calibrated (``prm calibrate``)
    onnx/model.onnx                  when exported (``prm export``); onnx/model.int8.onnx with --int8,
                                     onnx/model.fp16.onnx with --fp16 (each kept only if it passed its gate)
    gates.json                       each quality gate an export ran: the backend, the file it gated (with
                                     its sha256), the figures and whether it passed (``prm export --check``)
    bf16/model.safetensors           GPTQ-rounded bf16 weights (``prm export --bf16``)
    training.json                    how it was trained (settings, loss history, tokens seen)
    README.md                        the model card (``prm.card``), rewritten with the manifest
    manifest.json                    artifact format, versions and sha256 of every file
    checkpoints/                     training state for ``--resume``; not part of the model

Loading never unpickles (safetensors and JSON only) and never passes ``trust_remote_code``. A folder
that is not an artifact, or one written in another artifact format, is refused with an
``ArtifactError`` that says so and what to do. What this module does not own: what the files mean
to a stage (scoring, export and calibration read them through it).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from prm.backbone import new_scorer, truncate_layers  # noqa: F401 (old import path)
from prm.config import PRMConfig
from prm.tokenization import check_step_token, load_tokenizer

FORMAT = "prm-toolkit-artifact/1"


class ArtifactError(ValueError):
    """A model folder that cannot be used as it is: says what is wrong and what to do."""


class MissingFile(ArtifactError, FileNotFoundError):
    """A file of the folder that a stage needs was never written: says which stage writes it."""


class Artifact:
    CONFIG = "prm_config.json"
    HEAD = "step_head.safetensors"
    CALIBRATION = "calibration.json"
    TRAINING = "training.json"
    MANIFEST = "manifest.json"
    ONNX = Path("onnx") / "model.onnx"
    ONNX_INT8 = Path("onnx") / "model.int8.onnx"
    ONNX_FP16 = Path("onnx") / "model.fp16.onnx"
    GATES = "gates.json"
    BF16 = Path("bf16") / "model.safetensors"
    CHECKPOINTS = "checkpoints"

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def __repr__(self) -> str:
        return f"Artifact({str(self.folder)!r})"

    def path(self, name: str | Path) -> Path:
        return self.folder / name

    @property
    def onnx_path(self) -> Path:
        return self.folder / self.ONNX

    @property
    def onnx_int8_path(self) -> Path:
        return self.folder / self.ONNX_INT8

    @property
    def onnx_fp16_path(self) -> Path:
        return self.folder / self.ONNX_FP16

    @property
    def bf16_path(self) -> Path:
        return self.folder / self.BF16

    @property
    def checkpoints_dir(self) -> Path:
        return self.folder / self.CHECKPOINTS

    def has(self, name: str | Path) -> bool:
        return (self.folder / name).is_file()

    # --- reading -----------------------------------------------------------------------------------

    def check(self) -> None:
        """Raise ``ArtifactError`` unless this is a PRM artifact in the format this version reads."""
        if not self.folder.is_dir():
            raise ArtifactError(f"{self.folder} is not a PRM artifact: no such folder")
        if not self.has(self.CONFIG):
            raise ArtifactError(f"{self.folder} is not a PRM artifact (no {self.CONFIG}): train one with "
                                "`prm train`, or give the folder that holds prm_config.json")
        manifest = self.manifest()
        if manifest is not None and manifest.get("format") != FORMAT:
            raise ArtifactError(f"{self.folder} was written as {manifest.get('format')!r} by prm-toolkit "
                                f"{manifest.get('prm_toolkit', '(unknown version)')}; this version reads {FORMAT!r}: "
                                "use the prm-toolkit that wrote it, or retrain/re-export the model with this one")

    def manifest(self) -> dict | None:
        return self._json(self.MANIFEST)

    def config(self) -> PRMConfig:
        self.check()
        try:
            return PRMConfig.from_json(self._json(self.CONFIG))
        except (TypeError, ValueError) as exc:
            raise ArtifactError(f"{self.path(self.CONFIG)}: {exc}; use the prm-toolkit that wrote this model, "
                                "or retrain it with this one") from None

    def tokenizer(self, cfg: PRMConfig | None = None):
        """The tokenizer, checked against the separator id in ``prm_config.json``."""
        tok = load_tokenizer(self.folder)
        check_step_token(tok, cfg or self.config())
        return tok

    def load_model(self, dtype=None):
        """The ``StepScorer`` (backbone + step head) in eval mode; fp32 unless ``dtype`` says otherwise."""
        import torch
        from safetensors.torch import load_file

        from prm.model import StepScorer
        from prm.stock import load_backbone

        backbone, stock = load_backbone(self.folder, dtype)
        scorer = StepScorer(backbone, self.config().head)  # linear, or an imported PRM's mlp
        scorer.head.load_state_dict(load_file(self.path(self.HEAD)))
        if stock is not None and not all(torch.equal(a, b.to(a.dtype)) for a, b in
                                          ((stock.weight, scorer.head.weight), (stock.bias, scorer.head.bias))):
            raise ArtifactError(f"{self.folder}: the step head in model.safetensors differs from {self.HEAD}; "
                                "one of them was changed by hand: restore it, or re-save the model with prm-toolkit")
        return scorer.eval()

    def load(self, dtype=None):
        """(step scorer, tokenizer, config), the separator id checked."""
        cfg = self.config()
        return self.load_model(dtype), self.tokenizer(cfg), cfg

    def calibration(self) -> dict | None:
        return self._json(self.CALIBRATION)

    def training_record(self) -> dict | None:
        return self._json(self.TRAINING)

    def bf16_weights(self) -> dict:
        from safetensors.torch import load_file

        if not self.bf16_path.is_file():
            raise MissingFile(f"{self.bf16_path} not found: write it with `prm export {self.folder} --bf16 --calib DATA`")
        return load_file(str(self.bf16_path))

    def gates(self) -> dict:
        """``gates.json``: {backend: {"file", "sha256", "passed", "figures"}} of the gates exports ran."""
        return self._json(self.GATES) or {}

    def passed_gate(self, backend: str) -> bool:
        """Whether ``backend``'s file passed its gate and is still the file that was gated (its sha256 in
        the manifest, refreshed by every write, equals the one the gate recorded; nothing is re-hashed)."""
        record = self.gates().get(backend)
        if not record or not record.get("passed") or not self.has(record.get("file", "")):
            return False
        return (self.manifest() or {}).get("files", {}).get(record["file"]) == record.get("sha256")

    def require(self, name: str | Path, how: str) -> Path:
        """The path of a file the caller needs; ``ArtifactError`` saying ``how`` to make it when it is missing."""
        path = self.path(name)
        if not path.is_file():
            raise MissingFile(f"{path} not found: {how}")
        return path

    def _json(self, name: str) -> dict | None:
        path = self.path(name)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except ValueError as exc:
            raise ArtifactError(f"{path} is not valid JSON ({exc}); restore it, or rewrite it with the stage that "
                                "writes it") from None

    # --- writing -----------------------------------------------------------------------------------

    @classmethod
    def save(cls, folder: str | Path, scorer, tokenizer, cfg: PRMConfig, training: dict | None = None,
             calibration: dict | None = None) -> Artifact:
        """Write a model folder; ``training`` (what the run was) goes to ``training.json``."""
        from safetensors.torch import save_file

        from prm.stock import save_backbone

        art = cls(folder)
        art.folder.mkdir(parents=True, exist_ok=True)
        save_backbone(scorer, art.folder)  # a stock token-classification checkpoint where the head allows
        save_file({k: v.detach().contiguous().cpu() for k, v in scorer.head.state_dict().items()}, art.path(cls.HEAD))
        tokenizer.save_pretrained(art.folder)
        art._write_json(cls.CONFIG, cfg.to_json())
        if training is not None:
            art._write_json(cls.TRAINING, training, indent=1)
        if calibration is not None:
            art._write_json(cls.CALIBRATION, calibration)
        art.write_manifest()
        return art

    def save_calibration(self, state: dict) -> None:
        self._write_json(self.CALIBRATION, state)
        self.write_manifest()

    def save_bf16_weights(self, weights: dict, metadata: dict[str, str]) -> Path:
        from safetensors.torch import save_file

        self.bf16_path.parent.mkdir(parents=True, exist_ok=True)
        save_file(weights, str(self.bf16_path), metadata=metadata)
        self.write_manifest()
        return self.bf16_path

    def save_gate(self, backend: str, file: str | Path, figures: dict) -> None:
        """Record a gate's outcome for ``backend`` over ``file`` (a path in the folder) in ``gates.json``."""
        gates = self.gates()
        gates[backend] = {"file": str(file), "sha256": _sha256(self.path(file)) if self.has(file) else None,
                          "passed": bool(figures.get("passed")), "figures": figures}
        self._write_json(self.GATES, gates)
        self.write_manifest()

    def _write_json(self, name: str, data: dict, indent: int = 2) -> None:
        self.path(name).write_text(json.dumps(data, indent=indent) + "\n")

    def write_card(self, name: str | None = None) -> Path | None:
        """``README.md``, the model card (``prm.card``), unless a person wrote it; ``name``: what to load the
        model by (default: the card's own, else the folder). A failure is logged, never raised: the card
        describes a model, and must not cost one."""
        import logging

        from prm.card import write_card

        try:
            return write_card(self, name)
        except Exception as exc:  # noqa: BLE001
            logging.getLogger(__name__).warning("model card not written in %s: %s: %s", self.folder,
                                                type(exc).__name__, exc)
            return None

    def write_manifest(self) -> dict:
        """``manifest.json``: the artifact format, the versions that wrote it, sha256 of every file."""
        import platform

        import torch
        import transformers

        self.write_card()  # before the checksums: the card is one of the files
        files = {}
        for path in sorted(self.folder.rglob("*")):
            rel = path.relative_to(self.folder)
            if path.is_file() and path.name != self.MANIFEST and rel.parts[0] != self.CHECKPOINTS:
                files[str(rel)] = _sha256(path)
        manifest = {"format": FORMAT, "prm_toolkit": _version(), "python": platform.python_version(),
                    "torch": torch.__version__, "transformers": transformers.__version__, "files": files}
        self._write_json(self.MANIFEST, manifest)
        return manifest


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("prm-toolkit")
    except PackageNotFoundError:
        return "unknown"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# Older entry points, kept for existing imports.
HEAD_FILE, TRAINING_FILE = Artifact.HEAD, Artifact.TRAINING


def load_scorer(folder: str | Path, dtype=None):
    """(scorer, tokenizer, config) from an artifact folder; checks the separator id."""
    return Artifact(folder).load(dtype)


def save_artifact(scorer, tokenizer, cfg: PRMConfig, folder: str | Path, training: dict | None = None) -> Path:
    return Artifact.save(folder, scorer, tokenizer, cfg, training).folder


def write_manifest(folder: str | Path) -> dict:
    return Artifact(folder).write_manifest()


__all__ = ["Artifact", "ArtifactError", "FORMAT", "MissingFile", "HEAD_FILE", "TRAINING_FILE", "check_step_token", "load_scorer",
           "load_tokenizer", "new_scorer", "save_artifact", "truncate_layers", "write_manifest"]
