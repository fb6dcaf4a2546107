"""The one first-error rule, on the schema: a label is right when true or a number > 0."""

import pytest

from data_tools.schema import StepwiseExample, first_error, is_right


def test_a_soft_label_is_right_when_any_rollout_succeeded():
    assert is_right(0.3) and is_right(1.0) and is_right(True) and is_right(1)
    assert not is_right(0.0) and not is_right(False) and not is_right(0)
    assert is_right(None) is None
    assert first_error([0.3, 0.125, 0.0, 0.5]) == 2
    assert first_error([0.3, 1.0, True]) == -1


def test_an_unlabelled_step_before_any_error_leaves_the_first_error_unknown():
    assert first_error([True, None, 0.0]) is None
    assert first_error([None]) is None
    assert first_error([1.0, 0.0, None]) == 1  # unlabelled after the error: known
    assert first_error([]) == -1


def test_hard_labels_prefer_the_labellers_own():
    soft = StepwiseExample("p", ["a", "b", "c"], [0.5, 0.25, 0.0])
    assert soft.hard_labels() == [True, True, False] and soft.first_error() == 2
    # a labeller's meta.hard_labels win over the rule applied to the labels (binary search, early stop)
    given = StepwiseExample("p", ["a", "b", "c"], [0.5, 0.25, 0.0], {"hard_labels": [True, False, False]})
    assert given.hard_labels() == [True, False, False] and given.first_error() == 1
    partial = StepwiseExample("p", ["a", "b"], [None, 0.0])
    assert partial.hard_labels() == [None, False] and partial.first_error() is None
    unlabelled = StepwiseExample("p", ["a", "b"])
    assert unlabelled.hard_labels() == [None, None] and unlabelled.first_error() is None


@pytest.mark.parametrize("module", ["data_tools.labelling", "prm.eval.metrics", "prm.eval"])
def test_every_first_error_is_the_schemas(module):
    import importlib

    assert importlib.import_module(module).first_error is first_error
