"""Step labels: from rollouts, the prompt (``prompt``), the rollout bank and its report (``bank``),
Monte-Carlo labels (``mc``) and binary search for the first wrong step (``binary``); without them,
first errors found against a reference solution (``reference``); and the resumable, sharded
``prm label`` job (``job``). ``job`` and ``reference`` are imported from their modules: they read
through ``formats`` (``reference`` the GSM8K calculations), which this package does not import.

Every name ``data_tools.labelling`` offered as a single module is re-exported here (``first_error``
from ``data_tools.schema``, which owns the one first-error rule).
"""

from data_tools.labelling.bank import (
    METHODS,
    BatchLabeller,
    Done,
    LabelConfig,
    LabelReport,
    PrefixKey,
    RolloutBank,
    collect,
    hash_steps,
)
from data_tools.labelling.binary import binary_label, binary_label_batch
from data_tools.labelling.mc import mc_label, mc_label_batch
from data_tools.labelling.prompt import FEW_SHOT, render_prefix
from data_tools.schema import first_error  # the one rule, on the schema

__all__ = ["FEW_SHOT", "METHODS", "BatchLabeller", "Done", "LabelConfig", "LabelReport", "PrefixKey", "RolloutBank",
           "binary_label", "binary_label_batch", "collect", "first_error", "hash_steps", "mc_label", "mc_label_batch",
           "render_prefix"]
