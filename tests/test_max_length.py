"""Context length: training at 1024 tokens, scoring past the trained length (``Scorer(max_length=N)``,
``prm serve --max-length``) up to the backbone's positions, and never past them."""

import logging
import pickle

import numpy as np
import pytest

from prm.tokenization import TooLongError

TRAINED = 64  # the short artifact below is trained at this length; the tiny backbone has 1024 positions
FITS = [("Tom has 5 apples.", ["5 + 3 = 8", "The answer is 8."]), ("Q", ["x", "y"]),
        ("Ann has 12 pens.", ["12 + 30 = 42", "42 - 2 = 40", "The answer is 40."])]
LONG = ("Ann has 12 pens and buys 30 more.",
        [f"Step {k}: {12 + k} + 1 = {13 + k}" for k in range(12)] + ["The answer is 25."])


@pytest.fixture(scope="module")
def short_artifact(tiny_backbone, tmp_path_factory):
    """A tiny PRM trained at 64 tokens (its data fits), exported to ONNX."""
    from data_tools.problems import generate_dataset, ground_truth_labels
    from data_tools.schema import StepwiseExample
    from prm.export import export_onnx
    from prm.train import TrainConfig, train

    data = [StepwiseExample(e.prompt, e.steps, ground_truth_labels(e), e.meta) for e in generate_dataset(24)]
    out = tmp_path_factory.mktemp("short") / "model"
    train(data, TrainConfig(backbone=str(tiny_backbone), output_dir=str(out), epochs=1, bf16=False,
                            probe_init=False, batch_size=8, max_length=TRAINED))
    export_onnx(out)
    return out


def _tokens(scorer, prompt, steps) -> int:
    from prm.tokenization import encode

    return len(encode(scorer.tokenizer, scorer.cfg.step_token_id, prompt, steps, None, 1 << 30).input_ids)


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_a_raised_limit_scores_a_long_solution_and_changes_nothing_that_fit(short_artifact, backend, caplog):
    from prm.scoring import Scorer

    trained = Scorer(short_artifact, backend=backend, calibrated=False)
    assert trained.max_length == trained.trained_length == TRAINED and trained.position_limit == 1024
    assert all(_tokens(trained, p, s) <= TRAINED for p, s in FITS)
    assert 2 * TRAINED < _tokens(trained, *LONG) <= 4 * TRAINED
    with pytest.raises(TooLongError, match=f"limit is {TRAINED}") as refused:
        trained.score([LONG])
    assert refused.value.limit == TRAINED and refused.value.tokens > TRAINED

    with caplog.at_level(logging.WARNING, logger="prm.scoring.scorer"):
        raised = Scorer(short_artifact, backend=backend, calibrated=False, max_length=4 * TRAINED)
    assert f"trained at {TRAINED} tokens" in caplog.text and "extrapolation" in caplog.text
    assert "1024 positions" in caplog.text
    assert raised.max_length == 4 * TRAINED and raised.trained_length == TRAINED

    # Solutions that already fit score exactly as before (the limit only decides what is refused)...
    for a, b in zip(raised.score(FITS), trained.score(FITS), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    # ...and the long one now gets one score per step. The model is causal, so each of its leading steps
    # that fit the trained length scores as it does in the solution cut after it, which the trained
    # scorer takes: the positions past the trained length change nothing before them.
    long = raised.score([LONG], progress=None)[0]
    assert len(long) == len(LONG[1]) and all(0.0 <= s <= 1.0 for s in long)
    k = max(n for n in range(1, len(LONG[1])) if _tokens(trained, LONG[0], LONG[1][:n]) <= TRAINED)
    np.testing.assert_allclose(long[:k], trained.score([(LONG[0], LONG[1][:k])])[0], atol=1e-5)
    # score_each: the long one in its place among the rest, not a refusal
    each = raised.score_each(FITS + [LONG])
    np.testing.assert_allclose(each[-1], long, atol=1e-6)


def test_torch_and_onnx_agree_past_the_trained_length(short_artifact):
    from prm.scoring import Scorer

    torch_scores, onnx_scores = (Scorer(short_artifact, backend=b, max_length=4 * TRAINED).score([LONG])[0]
                                 for b in ("torch", "onnx"))
    np.testing.assert_allclose(torch_scores, onnx_scores, atol=1e-4)


def test_past_the_backbones_positions_is_refused_naming_both(short_artifact):
    from prm.scoring import Scorer

    with pytest.raises(ValueError, match=r"max_length 2000 is past the 1024 positions.*trained at 64.*at most 1024"):
        Scorer(short_artifact, backend="torch", max_length=2000)
    Scorer(short_artifact, backend="onnx", max_length=1024)  # all of them is allowed


def test_a_lower_limit_needs_no_warning_and_a_prm_in_memory_keeps_its_own(short_artifact, caplog):
    from prm import PRM
    from prm.scoring import Scorer

    with caplog.at_level(logging.WARNING, logger="prm.scoring.scorer"):
        lower = Scorer(short_artifact, backend="onnx", max_length=40)
    assert caplog.text == "" and lower.max_length == 40
    with pytest.raises(TooLongError, match="limit is 40"):
        lower.score([("Q", ["1 + 1 = 2 " * 10])])
    model = PRM.from_pretrained(short_artifact)
    raised = Scorer(model, backend="torch", max_length=4 * TRAINED)
    assert raised.max_length == 4 * TRAINED and raised.position_limit == 1024
    assert model.config.max_length == TRAINED  # the limit is the scorer's, not written into the model


def test_too_long_error_keeps_its_numbers_through_pickle():
    exc = pickle.loads(pickle.dumps(TooLongError("too long", tokens=90, limit=64)))
    assert (str(exc), exc.tokens, exc.limit) == ("too long", 90, 64)


# --- prm serve --max-length -------------------------------------------------------------------------

def test_serve_config_takes_max_length_from_flag_and_env():
    import subprocess
    import sys

    from serving.settings import ServeConfig

    assert ServeConfig().max_length == 0  # the artifact's own
    cfg = ServeConfig.from_env({"PRM_MAX_LENGTH": "2048"})
    assert cfg.max_length == 2048 and cfg.to_env()["PRM_MAX_LENGTH"] == "2048"
    with pytest.raises(ValueError, match="max-length"):
        ServeConfig.from_env({"PRM_MAX_LENGTH": "-1"})
    out = subprocess.run([sys.executable, "-m", "serving.cli", "serve", "--help"], capture_output=True, text=True)
    assert "--max-length" in out.stdout, out.stderr


def _inference(artifact, monkeypatch, **env):
    """The service's inference worker, called as a class (the ASGI app is built once per process, in
    test_service.py, where the 413 itself is checked)."""
    monkeypatch.setenv("PRM_MODEL_DIR", str(artifact))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    from serving.service import PRMInference

    return PRMInference()


def test_the_inference_worker_scores_up_to_prm_max_length(short_artifact, monkeypatch):
    from serving.schemas import Item

    items = [Item(prompt=p, steps=s) for p, s in FITS + [LONG]]
    worker = _inference(short_artifact, monkeypatch, PRM_BACKEND="onnx")
    refused = worker.score_steps(items)
    assert [r.too_long is None for r in refused] == [True] * len(FITS) + [False]
    for needle in (f"limit is {TRAINED}", f"scores up to {TRAINED} tokens", "prm serve --max-length N",
                   "PRM_MAX_LENGTH", "1024 positions"):
        assert needle in refused[-1].too_long, needle

    worker = _inference(short_artifact, monkeypatch, PRM_BACKEND="onnx", PRM_MAX_LENGTH=str(4 * TRAINED))
    assert worker.scorer.max_length == 4 * TRAINED
    scored = worker.score_steps(items)
    assert all(r.too_long is None for r in scored)
    assert [len(r.step_scores) for r in scored] == [len(s) for _, s in FITS + [LONG]]
    for r, before in zip(scored, refused[:-1], strict=False):  # what fitted scores as it did
        np.testing.assert_allclose(r.step_scores, before.step_scores, atol=1e-6)
    with pytest.raises(ValueError, match="past the 1024 positions"):
        _inference(short_artifact, monkeypatch, PRM_BACKEND="onnx", PRM_MAX_LENGTH="4096")


# --- training at 1024 -------------------------------------------------------------------------------

def test_training_defaults_to_1024_and_keeps_steps_a_512_limit_drops(tiny_backbone, tmp_path, caplog):
    import json

    from data_tools.problems import generate_dataset, ground_truth_labels
    from data_tools.schema import StepwiseExample
    from prm.tokenization import encode, load_tokenizer
    from prm.train import TrainConfig, encode_dataset, train

    assert TrainConfig().max_length == 1024
    data = []
    for e in generate_dataset(8, seed=2):  # real solutions are longer: restate each step many times
        steps = [f"Restating step {k}: {e.steps[k % (len(e.steps) - 1)]}" for k in range(24)] + e.steps
        data.append(StepwiseExample(e.prompt, steps, ground_truth_labels(e)[:1] * 24 + ground_truth_labels(e), e.meta))
    tok = load_tokenizer(tiny_backbone)
    lengths = [len(encode(tok, tok.eos_token_id, e.prompt, e.steps, None, 1 << 30).input_ids) for e in data]
    assert 512 < min(lengths) and max(lengths) < 1000, lengths

    with caplog.at_level(logging.WARNING, logger="prm.train.data"):
        rows = encode_dataset(data, tok, tok.eos_token_id, TrainConfig(max_length=512))
    assert "steps beyond max_length=512 dropped" in caplog.text
    assert max(len(r["input_ids"]) for r in rows) <= 512
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="prm.train.data"):
        train(data, TrainConfig(backbone=str(tiny_backbone), output_dir=str(tmp_path / "m"), max_steps=2, bf16=False,
                                probe_init=False, batch_size=4))
    assert "dropped" not in caplog.text  # every step of every solution fits at 1024
    assert json.loads((tmp_path / "m" / "prm_config.json").read_text())["max_length"] == 1024
