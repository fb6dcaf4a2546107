"""Moved: the code lives in ``data_tools.labelling.job``; this path keeps old imports working."""

from data_tools.labelling.job import JobResult, LabelJobConfig, run_label_job, runs_path  # noqa: F401
