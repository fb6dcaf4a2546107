"""``prm import`` for every family: a tiny random model laid out as the family ships it, imported, and
scored like the family's own code (written here again, plain transformers as on the model cards);
then ONNX, calibration and a real ``bentoml serve`` over HTTP on the imported artifact."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_families import BUILDERS

from serving.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
FLAGS = {"token-classification": ["--separator", "<|step|>", "--right-class", "0", "--prompt-template", "Q: {prompt}\\n"]}
ITEMS = [("Tom has 5 apples. He buys 3 more. How many apples does he have?", ["5 + 3 = 8", "The answer is 8."]),
         ("Ann has 7 pens.", ["She gives away 2: 7 - 2 = 5", "Then she buys 4: 5 + 4 = 9", "The answer is 9."]),
         ("Q", ["only step"])]


# --- the families' own recipes ---------------------------------------------------------------------------------


def qwen_reference(folder, prompt, steps):
    from safetensors.torch import load_file
    from torch import nn
    from transformers import AutoConfig, AutoTokenizer, Qwen2Model

    class Qwen2ForProcessRewardModel(nn.Module):  # the head of the card's remote code, on the stock backbone
        def __init__(self, config):
            super().__init__()
            self.model = Qwen2Model(config)
            self.score = nn.Sequential(nn.Linear(config.hidden_size, config.hidden_size), nn.ReLU(),
                                       nn.Linear(config.hidden_size, 2))

        def forward(self, input_ids):
            return self.score(self.model(input_ids=input_ids).last_hidden_state)

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = Qwen2ForProcessRewardModel(AutoConfig.from_pretrained(folder))
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    messages = [{"role": "system", "content": "Please reason step by step, and put your final answer within \\boxed{}."},
                {"role": "user", "content": prompt},
                {"role": "assistant", "content": "<extra_0>".join(steps) + "<extra_0>"}]
    conversation_str = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    input_ids = tokenizer.encode(conversation_str, return_tensors="pt")
    logits = model.eval()(input_ids)
    step_sep_id = tokenizer.encode("<extra_0>")[0]
    token_masks = input_ids == step_sep_id
    probabilities = torch.nn.functional.softmax(logits, dim=-1) * token_masks.unsqueeze(-1)
    sample = probabilities[0]
    return sample[sample != 0].view(-1, 2)[:, 1].tolist()


def math_shepherd_reference(folder, question, steps):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    candidate_tokens = tokenizer.encode("+ -")[1:]
    step_tag_id = tokenizer.encode("ки")[-1]
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    output = "\n".join(f"{s} ки" for s in steps)
    input_id = torch.tensor([tokenizer.encode(f"{question} {output}")])
    logits = model(input_id).logits[:, :, candidate_tokens]
    scores = logits.softmax(dim=-1)[:, :, 0]
    return scores[input_id == step_tag_id].tolist()


def rlhflow_reference(folder, prompt, steps):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    candidate_tokens = [tokenizer.encode("+")[-1], tokenizer.encode("-")[-1]]
    ans_list = [s.strip() for s in steps]
    conversation, step_scores = [], []
    for k in range(len(ans_list)):
        text = prompt + " " + ans_list[0] if k == 0 else ans_list[k]
        conversation.append({"content": text, "role": "user"})
        conversation.append({"content": "+", "role": "assistant"})
        input_ids = tokenizer.apply_chat_template(conversation, return_tensors="pt")["input_ids"]
        logits = model(input_ids).logits[:, -3, candidate_tokens]
        step_scores.append(logits.softmax(dim=-1)[:, 0][0].item())
    return step_scores


def skywork_reference(folder, problem, steps):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    response = "\n".join(steps)
    prompt_ids = tokenizer.encode(tokenizer.bos_token + problem + "\n")  # their prepare_input
    response_ids, reward_flags = [], [0] * len(prompt_ids)
    step_token_id = tokenizer.encode("\n")[-1]
    for step in response.split("\n"):
        step_ids = tokenizer.encode(step) if step != "" else []
        step_ids += [step_token_id]
        response_ids.extend(step_ids)
        reward_flags.extend([0] * (len(step_ids) - 1) + [1])
    input_ids = torch.tensor([prompt_ids + response_ids])
    model = AutoModelForCausalLM.from_pretrained(folder).eval()  # their PRM_MODEL's pretrained_model
    head = load_file(str(folder / "model.safetensors"))
    hidden = model(input_ids, output_hidden_states=True).hidden_states[-1]
    value = hidden @ head["v_head.summary.weight"].T + head["v_head.summary.bias"]  # v_head (dropout off in eval)
    rewards = torch.sigmoid(value.squeeze(-1))[0]
    return [rewards[i].item() for i, flag in enumerate(reward_flags) if flag == 1]


def token_classification_reference(folder, prompt, steps):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForTokenClassification.from_pretrained(folder).eval()
    ids = tokenizer(f"Q: {prompt}\n" + "".join(s + "<|step|>" for s in steps), return_tensors="pt")["input_ids"]
    probs = model(ids).logits.softmax(-1)[0, :, 0]  # class 0 means right (--right-class 0)
    return probs[ids[0] == tokenizer.convert_tokens_to_ids("<|step|>")].tolist()


REFERENCES = {"qwen-prm": qwen_reference, "math-shepherd": math_shepherd_reference, "rlhflow": rlhflow_reference,
              "skywork-prm": skywork_reference, "token-classification": token_classification_reference}


# --- fixtures --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {name: build(root / name) for name, build in BUILDERS.items()}


@pytest.fixture(scope="module")
def imported(sources, tmp_path_factory):
    root = tmp_path_factory.mktemp("imported")
    out = {}
    for name, src in sources.items():
        assert main(["-q", "import", name, str(src), str(root / name), *FLAGS.get(name, [])]) == 0, name
        out[name] = root / name
    return out


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    from data_tools.problems import generate_dataset, ground_truth_labels
    from data_tools.schema import StepwiseExample, write_jsonl

    path = tmp_path_factory.mktemp("data") / "heldout.jsonl"
    write_jsonl(path, [StepwiseExample(e.prompt, e.steps, ground_truth_labels(e), e.meta) for e in generate_dataset(12)])
    return path


# --- tests ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", list(BUILDERS))
def test_imported_scores_equal_the_family_recipe(family, sources, imported):
    from prm.scoring import Scorer

    scorer = Scorer(imported[family], backend="torch")
    with torch.no_grad():
        want = [REFERENCES[family](sources[family], p, s) for p, s in ITEMS]
    got = scorer.score(ITEMS)
    for g, w in zip(got, want, strict=True):
        assert len(g) == len(w)
        np.testing.assert_allclose(g, w, atol=1e-5, rtol=0)
    # The scores depend on the input (a constant would pass anything): their logits spread.
    assert np.ptp(np.concatenate(scorer.step_logits(ITEMS))) > 0.05


@pytest.mark.parametrize("family", list(BUILDERS))
def test_onnx_export_and_calibration_run_on_the_imported_artifact(family, imported, labelled):
    from data_tools.schema import read_jsonl
    from prm.export.onnx import parity

    folder = imported[family]
    assert main(["-q", "export", str(folder)]) == 0
    items = [(e.prompt, e.steps) for e in read_jsonl(labelled)] + ITEMS
    assert parity(folder, items) <= 1e-4
    assert main(["-q", "calibrate", str(folder), str(labelled)]) == 0
    assert json.loads((folder / "calibration.json").read_text())
    assert main(["-q", "eval", "processbench", str(folder), str(FIXTURES / "processbench.json")]) == 0


def test_the_mlp_head_on_the_bf16_and_int8_backends(imported, labelled, tmp_path):
    """Qwen's mlp head stays fp32 on every reduced-precision path: bf16 backbones, and int8 graphs whose
    head MatMuls (hidden layer and output) are left unquantized."""
    import shutil

    import onnx

    from data_tools.schema import read_jsonl
    from prm.export import Int8GateError, gate_labels, head_matmuls, quantize_int8
    from prm.scoring import Scorer

    folder = tmp_path / "qwen"
    shutil.copytree(imported["qwen-prm"], folder)
    examples = list(read_jsonl(labelled))
    items = [(e.prompt, e.steps) for e in examples]
    ref = np.concatenate(Scorer(folder, backend="torch", calibrated=False).step_logits(items))
    assert main(["-q", "export", str(folder), "--bf16", "--calib", str(labelled)]) == 0
    for backend, kw in (("torch-bf16", {}), ("torch-bf16-gptq", {"compile": False})):
        got = np.concatenate(Scorer(folder, backend=backend, calibrated=False, **kw).step_logits(items))
        assert np.max(np.abs(got - ref)) < 0.1, backend
    if not (folder / "onnx" / "model.onnx").is_file():
        assert main(["-q", "export", str(folder)]) == 0
    try:
        quantize_int8(folder, items, [gate_labels(e) for e in examples], keep_refused=True)
    except Int8GateError:
        pass  # a random tiny model may fail the gate; the graph is kept for this check
    int8 = onnx.load(str(folder / "onnx" / "model.int8.onnx"))
    kept = head_matmuls(int8, [np.asarray(Scorer(folder, backend="torch").model.head[0].weight.detach())])
    assert len(kept) == 2  # both head layers are still fp32 MatMuls


def test_imported_artifacts_are_served_over_http_as_in_process(imported):
    """A real ``bentoml serve`` per family (started side by side), as the service picks its backend."""
    import contextlib
    from concurrent.futures import ThreadPoolExecutor

    from prm.scoring import Scorer
    from serving.launch import served

    expected = {family: Scorer(folder).score(ITEMS) if (folder / "onnx").is_dir()
                else Scorer(folder, backend="torch").score(ITEMS) for family, folder in imported.items()}
    with contextlib.ExitStack() as stack, ThreadPoolExecutor(len(imported)) as pool:
        clients = dict(zip(imported, pool.map(lambda f: stack.enter_context(served(f)), imported.values()), strict=True))
        for family, client in clients.items():
            results = client.score([{"prompt": p, "steps": s} for p, s in ITEMS])
            for r, e in zip(results, expected[family], strict=True):
                np.testing.assert_allclose(r["step_scores"], e, atol=1e-6, rtol=0, err_msg=family)


def test_user_mistakes_end_in_one_actionable_line(sources, imported, tmp_path, capsys):
    import shutil

    pickled = tmp_path / "pickled"
    shutil.copytree(sources["math-shepherd"], pickled)
    (pickled / "model.safetensors").unlink()
    (pickled / "pytorch_model.bin").write_bytes(b"not to be unpickled")
    cases = [
        (["qwen-prm", str(tmp_path / "nowhere")], "is not a folder"),
        (["math-shepherd", str(pickled)], "never unpickles"),
        (["qwen-prm", str(sources["math-shepherd"])], "no chat template"),
        (["math-shepherd", str(sources["qwen-prm"])], "is this a Math-Shepherd"),
        (["rlhflow", str(sources["skywork-prm"])], "not a causal language model"),
        (["skywork-prm", str(sources["rlhflow"])], "has no tensor 'v_head.summary.weight'"),
        (["token-classification", str(sources["token-classification"])], "needs --separator"),
        (["qwen-prm", str(sources["qwen-prm"]), "--separator", "<|step|>"], "--separator set the rendering"),
    ]
    for args, message in cases:
        out = tmp_path / "out"
        assert main(["-q", "import", args[0], args[1], str(out), *args[2:]]) == 2, args
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, (args, err)
        assert not out.exists() or not any(out.iterdir())
    assert main(["-q", "import", "skywork-prm", str(sources["skywork-prm"]), str(imported["skywork-prm"])]) == 2
    assert "is not empty" in capsys.readouterr().err


def test_readme_import_commands_run(sources, labelled, tmp_path, monkeypatch):
    import shutil

    from test_data_cli import README, readme_commands

    names = {"Qwen2.5-Math-PRM-7B": "qwen-prm", "math-shepherd-mistral-7b-prm": "math-shepherd",
             "Llama3.1-8B-PRM-Deepseek-Data": "rlhflow", "Skywork-o1-Open-PRM-Qwen-2.5-1.5B": "skywork-prm",
             "my-token-prm": "token-classification"}
    for name, family in names.items():
        (tmp_path / name).symlink_to(sources[family], target_is_directory=True)
    shutil.copy(labelled, tmp_path / "heldout.jsonl")
    monkeypatch.chdir(tmp_path)
    commands = readme_commands("import")
    assert sorted({c[1] for c in commands}) == sorted(set(names.values()))
    for argv in commands:
        assert main(["-q", *argv]) == 0, argv
        assert (tmp_path / argv[3] / "prm_config.json").is_file()
    section = README.read_text().split("### Serving the PRMs people already use", 1)[1].split("```", 2)[1]
    calibrate = [argv for argv in readme_commands("calibrate") if " ".join(["prm", *argv]) in section]
    assert calibrate
    for argv in calibrate:
        assert main(["-q", *argv]) == 0, argv
