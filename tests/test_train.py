"""Training: resume continues to the uninterrupted result, soft labels end to end, last step only,
length-grouped batches, LoRA merged on save, gradient checkpointing, save_pretrained/from_pretrained."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from data_tools.problems import generate_dataset, ground_truth_labels
from data_tools.schema import StepwiseExample
from prm.train import TrainConfig, length_grouped_indices, train


def labelled(n=40, seed=0):
    return [StepwiseExample(e.prompt, e.steps, ground_truth_labels(e), e.meta) for e in generate_dataset(n, seed=seed)]


def weights(folder):
    return {**load_file(folder / "model.safetensors"), **{"head." + k: v for k, v in
                                                          load_file(folder / "step_head.safetensors").items()}}


def test_resume_from_a_checkpoint_ends_where_an_uninterrupted_run_ends(tiny_backbone, tmp_path):
    from transformers import TrainerCallback

    data = labelled()

    def cfg(out, **kw):  # 10 steps per epoch, 2.5 epochs: the interruption at step 8 is mid-epoch
        return TrainConfig(backbone=str(tiny_backbone), output_dir=str(tmp_path / out), epochs=2.5, batch_size=8,
                           save_steps=4, logging_steps=1, learning_rate=1e-3, **kw)

    whole = train(data, cfg("whole"))

    class Killed(Exception):
        pass

    class KillAfterCheckpoint(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 8:
                raise Killed

    with pytest.raises(Killed):
        train(data, cfg("parts"), callbacks=[KillAfterCheckpoint()])
    assert (tmp_path / "parts" / "checkpoints" / "checkpoint-8").is_dir()
    assert not (tmp_path / "parts" / "model.safetensors").exists()
    resumed = train(data, cfg("parts", resume="latest"))

    a, b = weights(whole), weights(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    ra, rb = (json.loads((f / "training.json").read_text()) for f in (whole, resumed))
    assert ra["global_step"] == rb["global_step"] == 25
    assert ra["loss_history"] == rb["loss_history"]  # every step's loss, the resumed ones included
    assert "checkpoints/" not in (resumed / "manifest.json").read_text()

    # a resume with other settings (or other data) is refused, naming what differs
    with pytest.raises(ValueError, match="learning_rate"):
        train(data, TrainConfig(**{**cfg("parts", resume="latest").__dict__, "learning_rate": 2e-3}))
    with pytest.raises(ValueError, match="data_sha256"):
        train(labelled(seed=1), cfg("parts", resume="latest"))
    with pytest.raises(ValueError, match="no checkpoint under"):
        train(data, cfg("fresh", resume="latest"))


def test_length_grouped_batches_pad_little_and_depend_only_on_seed_and_epoch():
    import random

    rng = random.Random(0)
    lengths = [rng.randint(20, 400) for _ in range(1000)]
    order = length_grouped_indices(lengths, 8, seed=3)
    assert sorted(order) == list(range(1000))
    assert order == length_grouped_indices(lengths, 8, seed=3)
    assert order != length_grouped_indices(lengths, 8, seed=4)

    def padding(idx):
        batches = [idx[i:i + 8] for i in range(0, len(idx), 8)]
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches) / sum(lengths)

    assert padding(order) < 0.03 < 0.3 < padding(list(range(1000)))
    # a dataset that is no multiple of the batch size: the short batch comes last, so the loader's
    # batch_size slices stay aligned with the length groups
    order = length_grouped_indices(lengths[:98], 8, seed=3)
    assert padding(order) < 0.03 and len(order) == 98


def constant_labels(value, n=24):
    return [StepwiseExample(e.prompt, e.steps, [value] * len(e.steps), e.meta) for e in generate_dataset(n, seed=2)]


def mean_score(model_dir, data):
    from prm import PRM

    scores = PRM.from_pretrained(model_dir).score([(e.prompt, e.steps) for e in data])
    return sum(map(sum, scores)) / sum(map(len, scores))


@pytest.mark.parametrize("label_type,low,high", [("soft", 0.2, 0.3), ("hard", 0.9, 1.0)])
def test_a_soft_label_of_a_quarter_trains_toward_a_quarter(tiny_backbone, tmp_path, label_type, low, high):
    """From the JSONL value to the loss and back out of the saved artifact: 0.25 is not rounded to 0
    or 1 anywhere (a hard run on the same data learns 'right', since any success counts)."""
    data = constant_labels(0.25)
    out = train(data, TrainConfig(backbone=str(tiny_backbone), output_dir=str(tmp_path / "m"), epochs=6,
                                  learning_rate=3e-3, probe_init=False, label_type=label_type, seed=1))
    assert low < mean_score(out, data) < high


def test_last_step_only_labels_one_step_per_solution(tiny_backbone, tmp_path):
    from prm.artifacts import load_tokenizer
    from prm.config import DEFAULT_STEP_TOKEN
    from prm.tokenization import IGNORE
    from prm.train import encode_dataset, last_step_labels

    assert last_step_labels([1.0, 0.0, None]) == [None, 0.0, None]
    assert last_step_labels([None, None]) == [None, None]
    tok = load_tokenizer(tiny_backbone, DEFAULT_STEP_TOKEN)
    sep = tok.convert_tokens_to_ids(DEFAULT_STEP_TOKEN)
    data = labelled(6)
    cfg = TrainConfig(last_step_only=True)
    for row, ex in zip(encode_dataset(data, tok, sep, cfg), data, strict=True):
        placed = [(i, lab) for i, lab in enumerate(row["labels"]) if lab != IGNORE]
        assert len(placed) == 1 and placed[0][0] == len(row["input_ids"]) - 1
        assert placed[0][1] == float(ex.labels[-1])
    train(data, TrainConfig(backbone=str(tiny_backbone), output_dir=str(tmp_path / "m"), epochs=1, last_step_only=True))


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(tiny_backbone):
    from prm.train import PadCollator, build_scorer, encode_dataset

    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        cfg = TrainConfig(backbone=str(tiny_backbone), gradient_checkpointing=checkpointing, freeze_layers=1)
        scorer, tok, prm_cfg = build_scorer(cfg)
        flag = getattr(scorer.backbone, "is_activation_checkpointing", None)
        assert (flag if flag is not None else scorer.backbone.is_gradient_checkpointing) == checkpointing
        rows = encode_dataset(labelled(4), tok, prm_cfg.step_token_id, cfg)
        batch = PadCollator(tok.pad_token_id)(rows)
        scorer.train()
        loss = scorer(**batch)["loss"]
        loss.backward()
        grads.append((loss.item(), {n: p.grad.clone() for n, p in scorer.named_parameters() if p.grad is not None}))
    (l0, g0), (l1, g1) = grads
    assert l0 == pytest.approx(l1, abs=1e-6)
    assert g0.keys() == g1.keys() and "head.weight" in g0
    assert not any("layers.0." in n for n in g0)  # frozen bottom layer
    for name in g0:
        assert torch.allclose(g0[name], g1[name], atol=1e-6), name


def test_attention_kernel_eager_under_cpu_bf16_gives_the_same_loss_and_gradients(tiny_backbone):
    from prm.train import PadCollator, attention_kernel, build_scorer, encode_dataset

    assert attention_kernel(TrainConfig(bf16=True), "sdpa") == ("sdpa" if torch.cuda.is_available() else "eager")
    assert attention_kernel(TrainConfig(bf16=False), "sdpa") == "sdpa"
    assert attention_kernel(TrainConfig(attention="sdpa"), "eager") == "sdpa"
    with pytest.raises(ValueError, match="--attention must be auto, eager or sdpa"):
        attention_kernel(TrainConfig(attention="flash"), "sdpa")
    grads = []
    for kernel in ("sdpa", "eager"):
        torch.manual_seed(0)
        cfg = TrainConfig(backbone=str(tiny_backbone), attention=kernel)
        scorer, tok, prm_cfg = build_scorer(cfg)
        assert scorer.backbone.config._attn_implementation == kernel
        batch = PadCollator(tok.pad_token_id)(encode_dataset(labelled(4), tok, prm_cfg.step_token_id, cfg))  # padded
        scorer.train()
        loss = scorer(**batch)["loss"]
        loss.backward()
        grads.append((loss.item(), {n: p.grad.clone() for n, p in scorer.named_parameters() if p.grad is not None}))
    (l0, g0), (l1, g1) = grads
    assert l0 == pytest.approx(l1, abs=1e-5)
    for name in g0:
        assert torch.allclose(g0[name], g1[name], atol=1e-5), name


def test_lora_trains_adapters_and_saves_a_plain_merged_artifact(tiny_backbone, tmp_path):
    from prm import PRM
    from prm.train import build_scorer

    cfg = TrainConfig(backbone=str(tiny_backbone), lora_r=4, freeze_layers=1)
    scorer, tok, prm_cfg = build_scorer(cfg)
    trainable = {n for n, p in scorer.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("head.") or "token_adapter" in n for n in trainable)
    assert not any("layers.0." in n for n in trainable)  # adapters only above --freeze-layers
    # with gradient checkpointing too, gradients reach the adapters
    scorer, tok, prm_cfg = build_scorer(TrainConfig(backbone=str(tiny_backbone), lora_r=4, gradient_checkpointing=True))
    ids = torch.tensor([tok("a b c", add_special_tokens=False)["input_ids"] + [prm_cfg.step_token_id]])
    scorer.train()
    scorer(ids, torch.ones_like(ids), torch.tensor([[-100.0] * (ids.shape[1] - 1) + [1.0]]))["loss"].backward()
    assert all(p.grad is not None for n, p in scorer.named_parameters() if p.requires_grad and "lora_B" in n)

    data = labelled(16)
    out = train(data, TrainConfig(backbone=str(tiny_backbone), output_dir=str(tmp_path / "lora"), epochs=2,
                                  learning_rate=5e-3, lora_r=4, seed=0))
    saved = load_file(out / "model.safetensors")
    base = load_file(tiny_backbone / "model.safetensors")
    assert not any("lora" in k or "token_adapter" in k for k in saved)
    assert not (out / "adapter_config.json").exists()
    # merged: attention weights moved away from the base model, the separator row was trained
    key = next(k for k in saved if k.endswith("layers.1.self_attn.q_proj.weight"))
    assert not torch.equal(saved[key], base["model." + key if "model." + key in base else key])
    sep = json.loads((out / "prm_config.json").read_text())["step_token_id"]
    emb = next(v for k, v in saved.items() if k.endswith("embed_tokens.weight"))
    newline = tok("\n", add_special_tokens=False)["input_ids"][-1]
    assert not torch.equal(emb[sep], emb[newline])  # started as the newline's row, trained since

    # the whole PRM round-trips through save_pretrained / from_pretrained with identical scores
    prm = PRM.from_pretrained(out)
    items = [(e.prompt, e.steps) for e in data[:4]]
    again = PRM.from_pretrained(prm.save_pretrained(tmp_path / "copy"))
    assert prm.score(items) == again.score(items)


@pytest.mark.slow
def test_readme_train_commands_run(tiny_backbone, tmp_path, monkeypatch):
    """Every `prm train` line of the README, with the tiny backbone, one short epoch and checkpoints
    every 2 steps (so that the --resume line has one to resume: the previous line's last)."""
    import shutil

    from test_data_cli import readme_commands

    from data_tools.schema import write_jsonl
    from serving.cli import main

    shutil.copytree(Path(__file__).resolve().parent.parent / "configs", tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    write_jsonl("labelled.jsonl", labelled(8))
    commands = readme_commands("train")
    assert len(commands) >= 5 and any("--resume" in argv for argv in commands)
    for argv in commands:
        argv = list(argv)
        if "--backbone" in argv:
            argv[argv.index("--backbone") + 1] = str(tiny_backbone)
        else:
            argv += ["--backbone", str(tiny_backbone)]
        if "--save-steps" in argv:
            argv[argv.index("--save-steps") + 1] = "2"
        assert main([*argv, "--epochs", "1"]) == 0, argv
        assert (Path("model") / "training.json").is_file()
