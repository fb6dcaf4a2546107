"""One mechanism from config dataclasses to flags, config files and bound checks (data_tools.flags)."""

import argparse
import dataclasses
import json
from pathlib import Path

import pytest

from data_tools.flags import add_config_file, add_config_flags, config_from, opt, parse_with_config, problems
from serving.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass
class Toy:
    rate: float = opt(0.1, flag="--lr", above=0)
    """learning rate"""
    steps: int = opt(4, min=1, max=10)
    """how many"""
    mode: str = opt("a", choices=("a", "b"))
    """which"""
    fast: bool = False
    """go fast"""
    stops: tuple[str, ...] = ("\n",)
    """where to stop"""


def toy_parser():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("run")
    add_config_flags(p, Toy)
    add_config_file(p)
    return parser


def test_flags_carry_names_docs_and_defaults(capsys):
    args = toy_parser().parse_args(["run", "--lr", "0.5", "--fast", "--stops", "a,\\n"])
    assert config_from(args, Toy) == Toy(rate=0.5, fast=True, stops=("a", "\n"))
    with pytest.raises(SystemExit):
        toy_parser().parse_args(["run", "--help"])
    shown = capsys.readouterr().out
    assert "--lr LR" in shown and "learning rate (default 0.1)" in shown and "--no-fast" in shown


def test_bounds_are_reported_all_at_once_naming_the_flag():
    assert problems(Toy(rate=0, steps=11, mode="c")) == [
        "--lr must be above 0, got 0", "--steps must be at most 10, got 11", "--mode must be one of a, b, got 'c'"]
    assert problems(Toy()) == []


def test_config_file_sets_defaults_and_flags_win(tmp_path):
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("lr: 0.25\nsteps: 7\nfast: true\nstops: [x, y]\n")
    args = parse_with_config(toy_parser(), ["run", "--config", str(yaml_file), "--steps", "3"])
    assert config_from(args, Toy) == Toy(rate=0.25, steps=3, fast=True, stops=("x", "y"))
    json_file = tmp_path / "run.json"
    json_file.write_text(json.dumps({"--lr": 2, "mode": "b"}))
    assert config_from(parse_with_config(toy_parser(), ["run", "--config", str(json_file)]), Toy) == Toy(rate=2.0, mode="b")


@pytest.mark.parametrize("content,says", [
    ("lr: 0.1\nlearning_rat: 3\n", "'learning_rat' is not an option of this command"),
    ("fast: maybe\n", "fast: expected true or false"),
    ("mode: c\n", "mode: expected one of a, b"),
    ("steps: many\n", "steps: invalid literal"),
    ("- just\n- a list\n", "expected a mapping"),
    ("lr: [unclosed\n", "not valid YAML"),
])
def test_a_bad_config_file_says_what_is_wrong(tmp_path, content, says):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(ValueError, match=None) as err:
        parse_with_config(toy_parser(), ["run", "--config", str(path)])
    assert says in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize("command", ["train", "label", "demo", "serve"])
def test_commands_take_a_config_file(command, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    assert "--config FILE" in capsys.readouterr().out


def test_the_demo_recipe_config_is_what_the_demo_trains_with():
    from prm.train import TrainConfig
    from serving.demo import DemoConfig, train_config

    path = ROOT / "configs" / "train_demo.yaml"
    first = path.read_text().splitlines()[0]
    assert first == "# prm train labelled.jsonl --out model --config configs/train_demo.yaml"
    args = parse_with_config(build_parser(), ["train", "labelled.jsonl", "--out", "model", "--config", str(path)])
    assert config_from(args, TrainConfig) == train_config(DemoConfig(), "model")


def test_serve_takes_every_setting_as_a_flag_env_and_config(tmp_path, monkeypatch, capsys):
    from serving.settings import ServeConfig

    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for f in dataclasses.fields(ServeConfig):
        flag = "--" + f.name.replace("_", "-")
        assert flag in shown, flag
        if f.default not in ("", 0):
            assert f"(default {f.default})" in shown or flag in shown
    monkeypatch.setenv("PRM_MAX_ITEMS", "9")
    monkeypatch.setenv("PRM_PORT", "4000")
    config = tmp_path / "serve.yaml"
    config.write_text("max-wait-ms: 3000\nport: 5000\n")
    args = parse_with_config(build_parser(), ["serve", "model", "--config", str(config), "--max-steps", "7"])
    cfg = config_from(args, ServeConfig)
    assert (cfg.max_items, cfg.port, cfg.max_wait_ms, cfg.max_steps) == (9, 5000, 3000, 7)  # env, file, file, flag
    assert cfg.to_env()["PRM_MAX_WAIT_MS"] == "3000" and ServeConfig.from_env(cfg.to_env()) == cfg


def test_a_bad_service_variable_is_named():
    from serving.settings import ServeConfig

    with pytest.raises(ValueError, match="PRM_MAX_ITEMS='lots'"):
        ServeConfig.from_env({"PRM_MAX_ITEMS": "lots"})
    with pytest.raises(ValueError, match="--port must be at most 65535"):
        ServeConfig.from_env({"PRM_PORT": "70000"})
