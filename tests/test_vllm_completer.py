"""The vLLM backend without vLLM: its request mapping, and the error that says how to install it."""

import sys

import pytest

from data_tools.rollouts import RolloutRequest, Sampling
from data_tools.vllm_completer import VLLMCompleter, VLLMConfig, vllm_inputs
from serving.cli import main


def test_one_vllm_request_per_rollout_with_its_seed():
    requests = [RolloutRequest("prefix a", (11, 12)), RolloutRequest("prefix b", (13,))]
    items = vllm_inputs(requests, Sampling(max_new_tokens=30, temperature=0.7, top_k=0, stop=("\n\n",)))
    assert [prompt for prompt, _ in items] == ["prefix a", "prefix a", "prefix b"]
    assert [kw["seed"] for _, kw in items] == [11, 12, 13]
    assert items[0][1] == {"n": 1, "seed": 11, "temperature": 0.7, "top_k": -1, "max_tokens": 30, "stop": ["\n\n"]}
    assert vllm_inputs(requests[:1], Sampling(top_k=50))[0][1]["top_k"] == 50


def test_without_vllm_the_error_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # as where it is not installed, even where it is
    with pytest.raises(ImportError, match="pip install vllm"):
        VLLMCompleter(VLLMConfig(model="m"))
    (tmp_path / "in.jsonl").write_text("")
    assert main(["label", str(tmp_path / "in.jsonl"), str(tmp_path / "o.jsonl"), "--completer", "vllm",
                 "--vllm-model", "m"]) == 2
    assert "pip install vllm" in capsys.readouterr().err


def test_vllm_flags_are_checked_and_kept_to_their_backend(tmp_path, capsys):
    (tmp_path / "in.jsonl").write_text("")
    assert main(["label", str(tmp_path / "in.jsonl"), str(tmp_path / "o.jsonl"), "--completer", "vllm"]) == 2
    assert "--vllm-model is required" in capsys.readouterr().err
    assert main(["label", str(tmp_path / "in.jsonl"), str(tmp_path / "o.jsonl"), "--completer", "simulated",
                 "--vllm-model", "m", "--openai-chat"]) == 2
    err = capsys.readouterr().err
    assert "--vllm-model is for --completer vllm, not simulated" in err and "--openai-chat is for --completer openai" in err
