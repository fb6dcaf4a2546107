"""Evaluating a PRM the way papers report it: ProcessBench, best-of-N, step AUROC, last-step share.

``prm.eval.metrics`` holds the metrics as pure functions over step scores and labels (numpy only,
no model); ``prm.eval.run`` reads data through ``data_tools.formats``, scores it with
``prm.scoring.Scorer`` and calls them. ``prm eval processbench|bon`` is the command line.
"""

from prm.eval.metrics import (  # noqa: F401
    Candidate,
    auroc,
    best_of_n,
    best_of_n_curve,
    choose_threshold,
    first_error,
    last_step_share,
    predicted_first_error,
    processbench,
    processbench_metrics,
    step_auroc,
)
