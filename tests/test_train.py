"""Training: resume continues to the uninterrupted result, soft labels end to end, last step only,
length-grouped batches, LoRA merged on save, gradient checkpointing, save_pretrained/from_pretrained."""

import json

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
