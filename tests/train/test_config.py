"""Config precedence, TOML files, --set parsing and atomic checkpoint writes."""

import argparse

import pytest

from probsym.cli import build_parser, config_from_args
from probsym.errors import ProbsymError, UnknownNameError
from probsym.train import checkpoint
from probsym.train import config as cfg


def test_precedence_defaults_experiment_method_file_options_set(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('epochs = 7\nlr = 0.5\nmethod = "canonical"\n')
    args = build_parser().parse_args(
        ["train", "exp-classify", "--config", str(path), "--lr", "0.25", "--set", "tau=0.3"]
    )
    _, config = config_from_args(args)
    assert config.epochs == 7  # file beats the experiment default (2000)
    assert config.lr == 0.25  # option beats file
    assert config.tau == 0.3  # --set beats everything
    assert config.samples == config.test_num_samples == 1  # the canonical method default
    assert config.grad_clip == 0.1  # experiment default beats the dataclass default


def test_unknown_keys_and_bad_values_are_errors(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("epochz = 3\n")
    with pytest.raises(UnknownNameError, match="epochz"):
        cfg.load_toml(path)
    with pytest.raises(ValueError, match="epochs expects int"):
        cfg.parse_value("epochs", "many")
    with pytest.raises(TypeError, match="lr must be float"):
        cfg.resolve({"experiment": "x", "lr": "fast"})
    args = build_parser().parse_args(["train", "exp-classify", "--set", "epochs"])
    with pytest.raises(ProbsymError, match="KEY=VALUE"):
        config_from_args(args)


def test_resolved_config_round_trips_through_toml(tmp_path):
    config = cfg.resolve({"experiment": "nbody", "quiet": True, "out": 'a "quoted" dir'})
    path = tmp_path / "config.toml"
    checkpoint.write_text(path, cfg.to_toml(config))
    assert cfg.resolve(cfg.load_toml(path)) == config


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "state.pt"
    checkpoint.save(path, {"step": 1})

    def explode(handle):
        handle.write(b"partial")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        checkpoint.atomic_write_bytes(path, explode)
    assert checkpoint.load(path) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]  # no temporary file left


def test_parser_has_every_config_field():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    options = {o for a in sub.choices["train"]._actions for o in a.option_strings}
    for name in cfg.field_types():
        if name != "experiment":
            assert "--" + name.replace("_", "-") in options
