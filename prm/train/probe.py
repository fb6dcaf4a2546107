"""The head as a linear probe: fitted on frozen features before fine-tuning (LP-FT)."""

from __future__ import annotations

import logging

from prm.tokenization import IGNORE

log = logging.getLogger(__name__)


def fit_probe_head(scorer, rows: list[dict], collate, bf16: bool = True, l2: float = 1e-1,
                   batch_size: int = 16) -> None:
    """Set the head to the L2-regularised logistic regression of the labels on frozen features.

    One forward pass over the training rows collects the hidden state at every labelled separator;
    L-BFGS then solves the convex problem exactly. Labels may be soft (BCE with fractional targets).
    """
    import torch

    feats, targets = [], []
    scorer.eval()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for i in range(0, len(rows), batch_size):
            batch = collate(rows[i:i + batch_size])
            hidden = scorer.hidden_states(batch["input_ids"], batch["attention_mask"])  # [B, T, H]
            mask = batch["labels"] != IGNORE
            feats.append(hidden[mask].float())
            targets.append(batch["labels"][mask].float())
    x, y = torch.cat(feats), torch.cat(targets)  # [N, H], [N]
    mean, std = x.mean(0), x.std(0) + 1e-6
    xs = (x - mean) / std
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xs @ w + b, y) + l2 * (w @ w) / 2
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():  # fold the standardisation into the head: w.(x - m)/s + b
        scorer.head.weight.copy_((w / std)[None, :])
        scorer.head.bias.copy_(b - (w * mean / std).sum())
    scorer.train()
    log.info("probe-initialised head on %d labelled steps", len(y))
