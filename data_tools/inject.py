"""Moved: the code lives in ``data_tools.synth`` (``calculations``, ``variants``, ``inject``); old imports keep working."""

from data_tools.synth.calculations import (  # noqa: F401
    Calc,
    Step,
    Token,
    evaluate,
    parse_solution,
    parse_step,
    quantize,
    render,
)
from data_tools.synth.inject import INPUT_FORMATS, InjectConfig, InjectReport, inject_errors  # noqa: F401
from data_tools.synth.variants import DRAWS_PER_CHOICE, Injection, inject_variants  # noqa: F401
