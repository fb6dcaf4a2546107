"""Our artifact through stock tools: ``transformers`` alone gives the raw step logits, the card describes it."""

from __future__ import annotations

import json

import pytest

ITEMS = [("Tom has 3 apples. He buys 2 more. How many now?", ["3 + 2 = 5", "The answer is 5."]),
         ("Ann has 6 pens and gives 4 away. How many are left?", ["6 - 4 = 2", "She has 2 pens.", "The answer is 2."]),
         ("A prompt that spells <|prm_step|> in its text", ["a step that also spells <|prm_step|>"])]


@pytest.fixture(scope="module")
def stock_artifact(tiny_backbone, tmp_path_factory):
    """An artifact on the tiny backbone with a head whose logits are far from zero (no training needed)."""
    import torch

    from prm.artifacts import Artifact
    from prm.backbone import new_scorer

    torch.manual_seed(1)
    scorer, tok, cfg = new_scorer(str(tiny_backbone), "<|prm_step|>", 128)
    with torch.no_grad():
        scorer.head.weight.normal_(0.0, 1.0)
        scorer.head.bias.fill_(0.3)
    folder = tmp_path_factory.mktemp("stock") / "model"
    Artifact.save(folder, scorer.eval(), tok, cfg, training={"examples": 24, "train_loss": 0.41, "seconds": 3.5,
                                                            "config": {"epochs": 1.0, "label_type": "soft"}})
    return folder


def stock_ids(tok, sep_id: int, prompt: str, steps: list[str]) -> tuple[list[int], list[int]]:
    """The input rendering written out with the tokenizer alone, as the model card tells it."""
    def ids(text):
        return tok(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]

    out, positions = ids(prompt + "\n"), []
    for step in steps:
        out += ids(step)
        positions.append(len(out))
        out.append(sep_id)
    return out, positions


def test_transformers_alone_reproduces_the_step_logits(stock_artifact):
    import numpy as np
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from prm.scoring import Scorer

    ours = Scorer(stock_artifact, backend="torch", calibrated=False, checks=False).step_logits(ITEMS)
    model = AutoModelForTokenClassification.from_pretrained(stock_artifact).eval()  # no trust_remote_code
    tok = AutoTokenizer.from_pretrained(stock_artifact)
    assert type(model).__name__ == "LlamaForTokenClassification" and model.config.num_labels == 1
    sep_id = tok.convert_tokens_to_ids("<|prm_step|>")
    rows = [stock_ids(tok, sep_id, p, s) for p, s in ITEMS]
    for (ids, positions), want in zip(rows, ours, strict=True):  # one solution at a time
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0, :, 0]
        np.testing.assert_allclose(logits[positions].numpy(), want, atol=1e-5, rtol=0)
        assert np.abs(want).max() > 0.05  # a real check, not two zeros
    width = max(len(ids) for ids, _ in rows)  # and as one right-padded batch
    batch = torch.tensor([ids + [tok.pad_token_id] * (width - len(ids)) for ids, _ in rows])
    mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in rows])
    with torch.no_grad():
        logits = model(input_ids=batch, attention_mask=mask).logits[..., 0]
    for row, ((_, positions), want) in enumerate(zip(rows, ours, strict=True)):
        np.testing.assert_allclose(logits[row, positions].numpy(), want, atol=1e-5, rtol=0)


def test_the_folder_holds_safetensors_only_and_loads_back(stock_artifact):
    import torch
    from safetensors.torch import load_file

    from prm.artifacts import Artifact

    names = {p.name for p in stock_artifact.rglob("*") if p.is_file()}
    assert not {n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))}
    config = json.loads((stock_artifact / "config.json").read_text())
    assert config["architectures"] == ["LlamaForTokenClassification"] and config["id2label"] == {"0": "step"}
    weights = load_file(stock_artifact / "model.safetensors")
    head = load_file(stock_artifact / Artifact.HEAD)
    assert torch.equal(weights["score.weight"], head["weight"]) and torch.equal(weights["score.bias"], head["bias"])
    scorer, _, _ = Artifact(stock_artifact).load()
    assert type(scorer.backbone).__name__ == "LlamaModel" and torch.equal(scorer.head.weight, head["weight"])


def test_a_head_changed_by_hand_is_refused(stock_artifact, tmp_path):
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from prm.artifacts import Artifact, ArtifactError

    folder = tmp_path / "model"
    shutil.copytree(stock_artifact, folder)
    head = load_file(folder / Artifact.HEAD)
    save_file({"weight": head["weight"] + 1.0, "bias": head["bias"]}, folder / Artifact.HEAD)
    with pytest.raises(ArtifactError, match="differs"):
        Artifact(folder).load_model()
    assert torch.is_tensor(head["weight"])


def test_a_head_that_is_not_one_linear_layer_keeps_the_plain_backbone(tiny_backbone, tmp_path):
    from torch import nn

    from prm.backbone import new_scorer
    from prm.stock import is_stock, save_backbone

    scorer, _, _ = new_scorer(str(tiny_backbone), "<|prm_step|>", 128)
    scorer.head = nn.Sequential(nn.Linear(32, 8), nn.ReLU(), nn.Linear(8, 1))
    assert save_backbone(scorer, tmp_path) is False and not is_stock(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["LlamaModel"]


def front_matter(text: str) -> dict:
    import yaml

    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_the_model_card_lists_the_training_and_calibration_figures(stock_artifact, tmp_path):
    import shutil

    from prm.artifacts import Artifact
    from prm.card import GENERATED

    folder = tmp_path / "model"
    shutil.copytree(stock_artifact, folder)
    card = (folder / "README.md").read_text()
    meta = front_matter(card)
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "token-classification"
    assert meta["prm_toolkit"]["step_token_id"] == json.loads((folder / "prm_config.json").read_text())["step_token_id"]
    assert meta["prm_toolkit"]["calibration"] == "none" and GENERATED in card
    for figure in ("`examples` | 24", "`train_loss` | 0.41", "`seconds` | 3.5", "`epochs` | 1 |"):
        assert figure in card
    assert "AutoModelForTokenClassification.from_pretrained" in card and "step_tag_id" in card
    assert "README.md" in json.loads((folder / "manifest.json").read_text())["files"]
    Artifact(folder).save_calibration({"method": "temperature", "temperature": 1.6814})  # calibration rewrites it
    card = (folder / "README.md").read_text()
    assert front_matter(card)["prm_toolkit"]["calibration"] == "temperature"
    assert "sigmoid(z / 1.6814)" in card and "`temperature` | 1.6814" in card and '"logit_sigma": 1.6814' in card
    Artifact(folder).write_card("org/tiny-prm")  # a name sticks through later rewrites
    Artifact(folder).write_manifest()
    card = (folder / "README.md").read_text()
    assert 'from_pretrained("org/tiny-prm")' in card and front_matter(card)["prm_toolkit"]["name"] == "org/tiny-prm"
    (folder / "README.md").write_text("# my own card\n")  # a person's card is never overwritten
    Artifact(folder).write_manifest()
    assert (folder / "README.md").read_text() == "# my own card\n"


def test_the_card_snippet_runs_and_gives_the_calibrated_scores(stock_artifact, tmp_path):
    """The card's plain-transformers code, run as a user would copy it, equals ``PRM.score``."""
    import re
    import shutil

    import numpy as np

    from prm import PRM
    from prm.artifacts import Artifact

    folder = tmp_path / "model"
    shutil.copytree(stock_artifact, folder)
    cfg = json.loads((folder / "prm_config.json").read_text())
    (folder / "prm_config.json").write_text(json.dumps({**cfg, "monotone": True}))
    Artifact(folder).save_calibration({"method": "platt", "a": 0.8, "b": -0.2})
    code = re.search(r"```python\n(import torch.*?)```", (folder / "README.md").read_text(), re.DOTALL).group(1)
    scope: dict = {}
    exec(code, scope)  # noqa: S102
    want = PRM.from_pretrained(folder).score([(scope["prompt"], scope["steps"])])[0]
    np.testing.assert_allclose(scope["p"].numpy(), want, atol=1e-5)


def test_an_imported_prm_with_a_linear_head_loads_with_transformers_too(tmp_path):
    """``prm import`` of a Math-Shepherd-style model (its LM rows folded into one linear head): the stock
    checkpoint's logits at the positions its rendering reads are our raw step logits."""
    import numpy as np
    import torch
    from tiny_families import build_math_shepherd
    from transformers import AutoModelForTokenClassification

    from prm.artifacts import Artifact
    from prm.families import ImportConfig, import_prm
    from prm.rendering import encode_rendered
    from prm.scoring import Scorer

    out = tmp_path / "imported"
    import_prm("math-shepherd", str(build_math_shepherd(tmp_path / "source")), str(out), ImportConfig())
    items = ITEMS[:2]
    ours = Scorer(out, backend="torch", calibrated=False, checks=False).step_logits(items)
    model = AutoModelForTokenClassification.from_pretrained(out).eval()
    art = Artifact(out)
    cfg, tok = art.config(), art.tokenizer()
    for (prompt, steps), want in zip(items, ours, strict=True):
        enc = encode_rendered(tok, cfg, prompt, steps, cfg.max_length)
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([enc.input_ids])).logits[0, :, 0]
        np.testing.assert_allclose(logits[enc.step_positions].numpy(), want, atol=1e-5, rtol=0)
    card = (out / "README.md").read_text()
    assert '"family": "math-shepherd"' in card and "encode_rendered" in card and "step_tag_id" not in card
