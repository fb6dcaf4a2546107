"""A PRM artifact of a real backbone's shape, for speed measurements where no trained model can be brought.

A GPU machine here reaches no hub and takes no large upload, so ``benchmarks/gpu_check.sh`` builds its
model on the spot: a Llama backbone of SmolLM2-135M's shape (``--shape smollm2-135m``: 30 layers,
hidden 576, 9 heads, 3 KV heads) or Qwen2.5-0.5B's (``qwen2.5-0.5b``: 24 layers, hidden 896), randomly
initialised, with a byte-level BPE tokenizer trained locally on generated problems (the tests'
recipe), then trained for one epoch on generated, labelled problems (``prm.train``), calibrated off,
exported to ONNX. Throughput depends on the shapes, not the weights, so its tokens/s stand for the real
model's; its quality does not, and its gates say only whether fp16 / bf16 keep THIS model's decisions.

    .venv/bin/python benchmarks/gpu_model.py OUT [--shape smollm2-135m] [--problems 48]

Prints the artifact folder as the last line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

SHAPES = {
    "smollm2-135m": {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
                     "num_key_value_heads": 3},
    "qwen2.5-0.5b": {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
                     "num_key_value_heads": 2},
}


def build_backbone(folder: Path, shape: str) -> Path:
    """The tests' locally trained tokenizer, under a randomly initialised Llama of ``shape``."""
    import torch
    from tiny_backbone import build_tiny_backbone
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tiny = build_tiny_backbone(folder / "tokenizer")
    tok = AutoTokenizer.from_pretrained(tiny)
    folder.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), max_position_embeddings=2048, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, tie_word_embeddings=True, **SHAPES[shape])
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    return folder


def build(out: Path, shape: str, problems: int) -> Path:
    from data_tools.schema import StepwiseExample
    from data_tools.synth.problems import generate_dataset, ground_truth_labels
    from prm.export import export_onnx
    from prm.train import TrainConfig, train

    data = [StepwiseExample(e.prompt, e.steps, ground_truth_labels(e), e.meta)
            for e in generate_dataset(problems, seed=7, max_number=99)]
    model = out / "model"
    train(data, TrainConfig(backbone=str(build_backbone(out / "backbone", shape)), output_dir=str(model), epochs=1,
                            bf16=False, probe_init=False, batch_size=8))
    export_onnx(model)
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="folder to build in (the artifact goes to OUT/model)")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="smollm2-135m")
    ap.add_argument("--problems", type=int, default=48, help="generated problems to train the one epoch on")
    args = ap.parse_args()
    print(build(Path(args.out), args.shape, args.problems))


if __name__ == "__main__":
    main()
