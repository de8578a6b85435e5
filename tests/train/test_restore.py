"""restore(run_dir): clear errors for directories that are not (finished) runs."""

from __future__ import annotations

import pytest

from probsym.errors import ProbsymError
from probsym.train.restore import read_config, restore


def test_a_folder_without_config_is_not_a_run(tmp_path):
    with pytest.raises(ProbsymError, match="not a run directory"):
        read_config(tmp_path)


def test_missing_checkpoint_and_bad_choice_are_named(tmp_path):
    (tmp_path / "config.toml").write_text('experiment = "nbody"\n')
    with pytest.raises(ProbsymError, match="no best.pt"):
        restore(tmp_path, "best")
    with pytest.raises(ProbsymError, match="'best' or 'last'"):
        restore(tmp_path, "newest")
