"""The ``probsym`` command: bad options end in one ``probsym: error:`` line, not a traceback."""

from __future__ import annotations

import pytest

from probsym import cli
from probsym.errors import ConfigError
from probsym.train import config as cfg


@pytest.mark.parametrize("value", ["0", "-3"])
def test_train_rejects_epochs_below_one_before_loading_data(tmp_path, capsys, value):
    out = tmp_path / "run"
    argv = ["train", "exp-classify", "--epochs", value, "--data-dir", str(tmp_path / "absent")]
    assert cli.main([*argv, "--out", str(out), "--quiet"]) == 2
    assert f"probsym: error: option --epochs must be >= 1, got {value}" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    "key, value, low",
    [
        ("epochs", 0, 1),
        ("batch_size", 0, 1),
        ("samples", 0, 1),
        ("eval_every", 0, 1),
        ("test_samples", -1, 0),
        ("limit", -5, 0),
    ],
)
def test_config_rejects_counts_out_of_range(key, value, low):
    flag = "--" + key.replace("_", "-")
    with pytest.raises(ConfigError, match=f"option {flag} must be >= {low}, got {value}"):
        cfg.resolve({"experiment": "nbody", key: value})


def test_zero_means_off_where_documented():
    config = cfg.resolve({"experiment": "nbody", "test_samples": 0, "limit": 0, "threads": 0})
    assert config.test_num_samples == config.eval_samples


def test_eval_rejects_zero_samples_before_loading_the_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["eval", str(tmp_path / "no-such-run"), "--eval-samples", "0"])
    assert exit_info.value.code == 2
    assert "--eval-samples" in capsys.readouterr().err
