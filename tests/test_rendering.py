"""``prm.rendering``'s pure parts with literal offsets and ids, and ``prm_config.json`` with and without the
keys an imported PRM adds (older artifacts load and score as before)."""

import json
import shutil

import numpy as np
import pytest

from prm.config import PRMConfig
from prm.rendering import RenderError, check_recipe, locate

# "ab ки cd ки": tokens "<s>" (added, empty span), "ab", " ки", " cd", " ки"
IDS = [1, 10, 84, 11, 84]
OFFSETS = [(0, 0), (0, 2), (2, 5), (5, 8), (8, 11)]


def test_locate_reads_the_token_that_ends_each_separator():
    assert locate(IDS, OFFSETS, [5, 11], expected=84) == [2, 4]
    assert locate(IDS, OFFSETS, [5, 11], expected=None, read_offset=-1) == [1, 3]


def test_locate_refuses_a_separator_merged_with_its_neighbours():
    with pytest.raises(RenderError, match="step 1: the tokenizer merged its separator"):
        locate(IDS, OFFSETS, [4, 11], expected=84)  # no token ends where the separator does
    with pytest.raises(RenderError, match="with id 99"):
        locate(IDS, OFFSETS, [5], expected=99)  # a token ends there, but it is not the separator


def test_a_character_split_over_byte_tokens_is_read_at_its_last_token():
    # "к" as two byte-level tokens sharing the span (2, 3)
    assert locate([5, 6, 7], [(0, 2), (2, 3), (2, 3)], [3], expected=7) == [2]


def test_older_prm_config_loads_as_before_and_new_keys_are_checked():
    old = {"step_token": "<|prm_step|>", "step_token_id": 7, "max_length": 512, "aggregation": "min",
           "label_type": "soft", "monotone": False, "step_checks": False, "backbone": "x"}
    cfg = PRMConfig.from_json(old)
    assert cfg.head == "linear" and cfg.rendering is None
    with pytest.raises(ValueError, match="unknown step head 'deep'"):
        PRMConfig.from_json({**old, "head": "deep"})
    with pytest.raises(ValueError, match="rendering layout must be one of"):
        PRMConfig.from_json({**old, "rendering": {"layout": "poem"}})
    with pytest.raises(ValueError, match="needs the text fields"):
        check_recipe({"layout": "text", "separator": " ки"})


def test_an_artifact_written_before_imports_scores_exactly_as_today(tiny_artifact, tmp_path):
    from prm.scoring import Scorer

    folder = tmp_path / "older"
    shutil.copytree(tiny_artifact, folder)
    path = folder / "prm_config.json"
    cfg = json.loads(path.read_text())
    path.write_text(json.dumps({k: v for k, v in cfg.items() if k not in ("head", "rendering")}))
    items = [("Tom has 5 apples.", ["5 + 3 = 8", "The answer is 8."])]
    np.testing.assert_array_equal(Scorer(folder, backend="torch").step_logits(items)[0],
                                  Scorer(tiny_artifact, backend="torch").step_logits(items)[0])
