"""Moved: the code lives in ``data_tools.synth.problems``; this path keeps old imports working."""

from data_tools.synth.problems import (  # noqa: F401
    ADD_PHRASES,
    ERROR_KINDS,
    ITEMS,
    NAMES,
    SUB_PHRASES,
    Op,
    Problem,
    generate_dataset,
    generate_problem,
    gold_example,
    ground_truth_labels,
    inject_error,
    render_steps,
    run_ops,
)
