"""Tiny, randomly initialised PRMs laid out as each public family ships them, built offline.

Each builder writes a Hugging Face folder with the family's architecture (Qwen2 / Mistral / Llama),
head tensors under the family's own names, ``config.json`` naming its remote classes (``auto_map``,
with a modelling file that raises if anything ever runs it), and a tokenizer trained here with the
family's conventions (byte-level BPE with Qwen's or Llama-3's split pattern and chat template; a
SentencePiece-style ``▁`` BPE with BOS for Mistral).
"""

from __future__ import annotations

import json
from pathlib import Path

QWEN_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
                r"|\s+(?!\S)|\s+")
LLAMA3_PATTERN = QWEN_PATTERN.replace(r"\p{N}|", r"\p{N}{1,3}|", 1)

# Qwen2.5-Math's chat template without its tool-calling branch (the PRM never gets tools).
QWEN_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nPlease reason step by step, and put your final answer within \\\\boxed{}."
    "<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}{%- if (message.role == 'user') or (message.role == 'system' and not loop.first) "
    "or (message.role == 'assistant') %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + "
    "'\\n' }}{%- endif %}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")

# Llama-3.1-Instruct's chat template without its tool-calling branches.
LLAMA31_TEMPLATE = (
    "{{- bos_token }}{%- if not date_string is defined %}{%- set date_string = '26 Jul 2024' %}{%- endif %}"
    "{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content']|trim %}"
    "{%- set messages = messages[1:] %}{%- else %}{%- set system_message = '' %}{%- endif %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}{{- 'Cutting Knowledge Date: December 2023\\n' }}"
    "{{- 'Today Date: ' + date_string + '\\n\\n' }}{{- system_message }}{{- '<|eot_id|>' }}"
    "{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + "
    "message['content'] | trim + '<|eot_id|>' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}")

QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<extra_0>", "<|step|>"]
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


def corpus() -> list[str]:
    from data_tools.problems import generate_dataset

    texts = []
    for ex in generate_dataset(120, seed=7):
        texts.append(ex.prompt + " " + " ки\n".join(ex.steps) + " ки")
        texts.append("Please reason step by step, and put your final answer within \\boxed{}.\n" + "\n\n".join(ex.steps))
    texts += ["system user assistant Cutting Knowledge Date: December 2023 Today Date: 26 Jul 2024", "+ - + - +", "a\n+\n-"]
    return texts


def byte_level(pattern: str, specials: list[str], bos: str | None = None, **kw):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus(), trainers.BpeTrainer(vocab_size=600, special_tokens=specials,
                                                          initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    post = [processors.ByteLevel(trim_offsets=False)]
    if bos:  # Llama 3 opens every encoding with <|begin_of_text|>
        post.append(processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, tok.token_to_id(bos))]))
    tok.post_processor = processors.Sequence(post)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, **kw)


def sentencepiece_like():
    """A Mistral/Llama-2 style tokenizer: ``▁`` marks a space, BOS opens every encoding, newlines stand alone."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split("\n", behavior="isolated"),
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)])
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    tok.train_from_iterator(corpus(), trainers.BpeTrainer(vocab_size=600, special_tokens=["<unk>", "<s>", "</s>"]))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def qwen_tokenizer(bos: bool = False):
    tok = byte_level(QWEN_PATTERN, QWEN_SPECIALS, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                     additional_special_tokens=["<|im_start|>", "<|im_end|>", "<extra_0>", "<|step|>"])
    if bos:  # Skywork's tokenizer names a bos_token (prepare_input opens with its text); Qwen adds none itself
        tok.bos_token = "<|endoftext|>"
    tok.chat_template = QWEN_TEMPLATE
    return tok


def small(config_cls, vocab: int, **kw):
    return config_cls(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=512, **kw)


def remote_code(folder: Path, config, architecture: str, module: str) -> None:
    """Name remote classes in config.json as the hub folders do, with a modelling file nothing may run."""
    config.architectures = [architecture]
    config.auto_map = {"AutoConfig": f"{module}.Config", "AutoModel": f"{module}.{architecture}"}
    config.save_pretrained(folder)
    (folder / f"{module}.py").write_text("raise RuntimeError('remote code must never run')\n")


def save_tensors(folder: Path, state: dict) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous() for k, v in state.items()}, str(folder / "model.safetensors"),
              metadata={"format": "pt"})


def build_qwen_prm(folder: Path) -> Path:
    import torch
    from torch import nn
    from transformers import Qwen2Config, Qwen2Model

    torch.manual_seed(1)
    tok = qwen_tokenizer()
    config = small(Qwen2Config, len(tok))
    body = Qwen2Model(config)
    score = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 2))
    state = {f"model.{k}": v for k, v in body.state_dict().items()} | {f"score.{k}": v for k, v in score.state_dict().items()}
    folder.mkdir(parents=True)
    save_tensors(folder, state)
    remote_code(folder, config, "Qwen2ForProcessRewardModel", "modeling_qwen2_rm")
    tok.save_pretrained(folder)
    return folder


def _causal_lm(folder: Path, config_cls, model_cls, tok, seed: int) -> Path:
    import torch

    torch.manual_seed(seed)
    model = model_cls(small(config_cls, len(tok), tie_word_embeddings=False, bos_token_id=tok.bos_token_id,
                            eos_token_id=tok.eos_token_id))
    with torch.no_grad():
        model.lm_head.weight.normal_(std=0.3)  # '+' against '-' neither a coin toss nor saturated
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def build_math_shepherd(folder: Path) -> Path:
    from transformers import MistralConfig, MistralForCausalLM

    return _causal_lm(folder, MistralConfig, MistralForCausalLM, sentencepiece_like(), 2)


def build_rlhflow(folder: Path) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = byte_level(LLAMA3_PATTERN, LLAMA3_SPECIALS, bos="<|begin_of_text|>", eos_token="<|eot_id|>",
                     additional_special_tokens=LLAMA3_SPECIALS[2:])
    tok.chat_template = LLAMA31_TEMPLATE
    return _causal_lm(folder, LlamaConfig, LlamaForCausalLM, tok, 3)


def build_skywork(folder: Path) -> Path:
    import torch
    from torch import nn
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(4)
    tok = qwen_tokenizer(bos=True)
    config = small(Qwen2Config, len(tok), tie_word_embeddings=True)  # as the 1.5B model
    lm = Qwen2ForCausalLM(config)
    v_head = nn.Linear(32, 1)
    state = {k: v for k, v in lm.state_dict().items() if k != "lm_head.weight"}  # tied: stored once
    state |= {f"v_head.summary.{k}": v for k, v in v_head.state_dict().items()}
    folder.mkdir(parents=True)
    save_tensors(folder, state)
    remote_code(folder, config, "Qwen2ForPrmModel", "modeling_prm")
    tok.save_pretrained(folder)
    return folder


def build_token_classification(folder: Path) -> Path:
    import torch
    from transformers import Qwen2Config, Qwen2ForTokenClassification

    torch.manual_seed(5)
    tok = qwen_tokenizer()
    model = Qwen2ForTokenClassification(small(Qwen2Config, len(tok), num_labels=2))
    with torch.no_grad():
        model.score.weight.normal_(std=0.3)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


BUILDERS = {"qwen-prm": build_qwen_prm, "math-shepherd": build_math_shepherd, "rlhflow": build_rlhflow,
            "skywork-prm": build_skywork, "token-classification": build_token_classification}


def config_of(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())
