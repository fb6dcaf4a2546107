"""Moved: the code lives in ``data_tools.labelling.binary``; this path keeps old imports working."""

from data_tools.labelling.binary import binary_label, binary_label_batch  # noqa: F401
