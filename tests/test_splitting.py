"""Step splitting: each strategy, exact step text, no empty steps, lossless layout."""

import random

import pytest

from data_tools.splitting import SPLIT_STRATEGIES, join_steps, split_layout, split_steps

TEXT = "Let us start.\n\nStep 1: add 2 and 3:\n  2 + 3 = 5\n\n\n**Step 2.** double it: 10  \n## Step 3\nThe answer is 10.\n"


def test_lines_keep_each_line_exactly_and_skip_blank_ones():
    assert split_steps("a = 1\n\n  b = 2  \r\nc\n") == ["a = 1", "b = 2", "c"]


def test_paragraphs_split_at_blank_lines_only():
    assert split_steps(TEXT, "paragraphs") == [
        "Let us start.", "Step 1: add 2 and 3:\n  2 + 3 = 5", "**Step 2.** double it: 10  \n## Step 3\nThe answer is 10."]


def test_headers_start_steps_and_keep_the_preamble():
    assert split_steps(TEXT, "headers") == [
        "Let us start.", "Step 1: add 2 and 3:\n  2 + 3 = 5", "**Step 2.** double it: 10",
        "## Step 3\nThe answer is 10."]
    # "step" inside a sentence is not a header
    assert split_steps("We take a step 1 at a time.\nStep 1: go", "headers") == ["We take a step 1 at a time.",
                                                                                   "Step 1: go"]


def test_custom_regex_separators_including_zero_width():
    assert split_steps("1) a 2) b 3) c", "regex", r"\s(?=\d\))") == ["1) a", "2) b", "3) c"]
    assert split_steps("a;;b; ;c", "regex", ";") == ["a", "b", "c"]


@pytest.mark.parametrize("strategy,pattern", [(s, r"\s*;\s*" if s == "regex" else None) for s in SPLIT_STRATEGIES])
def test_layout_is_lossless_and_steps_are_never_empty(strategy, pattern):
    rng = random.Random(0)
    pieces = ["x = 1", "Step 2: y", "; ", "\n", "\n\n", "  ", "## Step 3", "\t", "ok."]
    for _ in range(300):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        steps, separators = split_layout(text, strategy, pattern)
        assert join_steps(steps, separators=separators) == text
        assert all(s and s == s.strip() for s in steps)
        assert steps == split_steps(text, strategy, pattern)


def test_bad_strategy_or_pattern_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown split strategy 'sentences'"):
        split_steps("a", "sentences")
    with pytest.raises(ValueError, match="needs a pattern"):
        split_steps("a", "regex")
    with pytest.raises(ValueError, match="bad split pattern"):
        split_steps("a", "regex", "(")
    with pytest.raises(ValueError, match="only used with the 'regex' strategy"):
        split_steps("a", "lines", ";")
