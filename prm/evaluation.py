"""Step-level evaluation metrics over PRM scores."""

from __future__ import annotations

import numpy as np


def auroc(labels, scores) -> float:
    """Area under the ROC curve of scores against binary step correctness; NaN if one class is absent."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(labels, dtype=float) > 0.5
    if y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, np.asarray(scores, dtype=float)))
