"""Label placement: each step's label sits exactly on the token where the model reads its score."""

import numpy as np
import pytest
import torch

from prm.tokenization import IGNORE, TooLongError, encode, place_labels

SEP = 99


def test_place_labels_with_literal_ids():
    enc = place_labels([1, 2, 3], [[10, 11], [12], [13, 14, 15]], SEP, [1.0, 0.25, None], max_length=64)
    assert enc.input_ids == [1, 2, 3, 10, 11, SEP, 12, SEP, 13, 14, 15, SEP]
    assert enc.step_positions == [5, 7, 11]
    assert enc.labels == [IGNORE] * 5 + [1.0, IGNORE, 0.25] + [IGNORE] * 4  # None -> unlabelled
    assert enc.dropped_steps == 0


def test_prompt_is_cut_from_the_left_and_steps_never_cut():
    enc = place_labels([1, 2, 3, 4, 5], [[10, 11], [12]], SEP, [1, 0], max_length=7)
    assert enc.input_ids == [4, 5, 10, 11, SEP, 12, SEP]
    assert enc.step_positions == [4, 6]


def test_overflowing_steps_raise_for_scoring_and_are_counted_for_training():
    with pytest.raises(TooLongError, match="limit is 4"):
        place_labels([1], [[10, 11], [12, 13]], SEP, None, max_length=4)
    enc = place_labels([1], [[10, 11], [12, 13]], SEP, [1, 0], max_length=4, drop_overflow=True)
    assert enc.input_ids == [1, 10, 11, SEP] and enc.dropped_steps == 1


def test_label_count_must_match_steps():
    with pytest.raises(ValueError, match="2 labels for 1 steps"):
        place_labels([1], [[10]], SEP, [1, 0], max_length=8)


@pytest.fixture(scope="module")
def real_tokenizer():
    """SmolLM2-135M-Instruct's real tokenizer, with the step token added as the PRM adds it."""
    from prm.artifacts import load_tokenizer
    from prm.backbone import default_backbone_dir
    from prm.config import DEFAULT_STEP_TOKEN

    return load_tokenizer(default_backbone_dir(), DEFAULT_STEP_TOKEN)


STEPS = ["Tom buys 3 more apples: 5 + 3 = 8", " 8-2=6 ки", "\nThe answer is 6.", "<|prm_step|> x"]


def test_real_tokenizer_labels_sit_on_separators(real_tokenizer):
    from prm.config import DEFAULT_STEP_TOKEN

    tok = real_tokenizer
    sep = tok.convert_tokens_to_ids(DEFAULT_STEP_TOKEN)
    assert sep != tok.unk_token_id and sep >= 49152  # a new, dedicated id
    enc = encode(tok, sep, "Tom has 5 apples.", STEPS, [1.0, 0.0, 0.5, 1.0], max_length=512)
    ids = np.asarray(enc.input_ids)
    # the separator appears once per step and nowhere else: the literal text "<|prm_step|>" in the
    # last step is tokenized as plain text, so it cannot fake a step boundary.
    assert (ids == sep).sum() == len(STEPS)
    labelled = [i for i, lab in enumerate(enc.labels) if lab != IGNORE]
    assert labelled == enc.step_positions
    assert all(ids[p] == sep for p in enc.step_positions)
    # every step's text is exactly the tokens between the previous separator and its own
    starts = [enc.step_positions[i - 1] + 1 if i else len(tok("Tom has 5 apples.\n")["input_ids"])
              for i in range(len(STEPS))]
    for step, start, end in zip(STEPS, starts, enc.step_positions, strict=False):
        assert tok.decode(enc.input_ids[start:end]) == step


def test_model_reads_scores_at_the_label_positions(real_tokenizer, tiny_backbone):
    """The collator's labels and the scorer's read positions are the same tokens."""
    from prm.train import PadCollator

    enc = encode(real_tokenizer, 7, "Q", ["a b", "c"], [1.0, 0.0], max_length=64)
    batch = PadCollator(0)([{"input_ids": enc.input_ids, "labels": enc.labels}])
    labelled = torch.nonzero(batch["labels"][0] != IGNORE).flatten().tolist()
    assert labelled == enc.step_positions
    assert batch["input_ids"][0, labelled].tolist() == [7, 7]


def test_a_separator_that_text_can_spell_is_refused():
    from prm.artifacts import check_step_token
    from prm.config import PRMConfig

    class Tok:  # a tokenizer whose separator is an ordinary vocabulary entry: its text maps onto it
        def convert_tokens_to_ids(self, token):
            return 5

        def __call__(self, text, **kwargs):
            return {"input_ids": [5]}

    with pytest.raises(ValueError, match="fake a step boundary"):
        check_step_token(Tok(), PRMConfig(step_token="\n", step_token_id=5))
    with pytest.raises(ValueError, match="do not belong to this model"):
        check_step_token(Tok(), PRMConfig(step_token="\n", step_token_id=6))
