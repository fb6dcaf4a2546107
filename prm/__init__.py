"""The model side of prm-toolkit: tokenization, training, calibration, export, scoring, evaluation.

``from prm import PRM`` gives the whole trained model (``PRM.from_pretrained`` / ``save_pretrained``);
it is imported on first use, so ``import prm`` stays free of torch.
"""


def __getattr__(name: str):
    if name == "PRM":
        from prm.pretrained import PRM

        return PRM
    raise AttributeError(f"module 'prm' has no attribute {name!r}")
