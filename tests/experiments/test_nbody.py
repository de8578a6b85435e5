"""The n-body experiment on a tiny generated data set: fit, equivariance, resume, demo."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

import probsym
from nbody_runs import tiny_nbody_config as tiny_config
from probsym.data.nbody import generate_nbody
from probsym.errors import ConfigError, ProbsymError
from probsym.experiments import get
from probsym.experiments.nbody import build_group, needed_sizes
from probsym.train import checkpoint
from probsym.train.config import TrainConfig
from probsym.train.loop import fit
from probsym.train.restore import restore

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def nbody_dir(tmp_path_factory) -> Path:
    """A tiny data set: 24 / 12 / 12 simulations, short trajectories (49 frames of 10 steps)."""
    directory = tmp_path_factory.mktemp("nbody")
    return generate_nbody(
        directory, sizes=(24, 12, 12), progress=False, num_steps=500, sample_freq=10
    )


def example_batch(config: TrainConfig, count: int = 6) -> dict[str, torch.Tensor]:
    test = get("nbody").build_data(config)["test"]
    return {k: v[:count] for k, v in test.items() if k != "target"}


@pytest.mark.parametrize(
    ("method", "backbone"),
    [
        ("ps", "transformer"),
        ("ga", "transformer"),
        ("canonical", "transformer"),
        ("ps", "gnn"),
        ("ps", "pair-bias"),
        ("ga", "pair-transformer"),
    ],
)
def test_fit_writes_metrics_and_trained_model_is_equivariant(nbody_dir, tmp_path, method, backbone):
    torch.manual_seed(0)
    config = tiny_config(nbody_dir, tmp_path / "run", method=method, backbone=backbone)
    metrics = fit(get("nbody"), config)
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["test"]["mse"] == pytest.approx(metrics["test"]["mse"])
    assert 0 < saved["test"]["mse"] < 10
    assert saved["epochs"] == 2 and saved["test_samples"] == 4

    model = restore(config.run_dir, "best").model
    assert not model.training
    expected = "E(3)" if backbone == "gnn" else "S_n × E(3)"
    assert repr(model.group) == expected
    report = probsym.testing.assert_equivariant(
        model, example_batch(config), generator=torch.Generator().manual_seed(1)
    )
    assert report.max_abs <= 1e-5
    if backbone == "gnn":  # symmetrized over E(3); S_n-equivariance comes from the GNN itself
        assert_permutation_equivariant(model, example_batch(config))


def assert_permutation_equivariant(model, batch) -> None:
    """phi(σ·x, σ·ε) == σ·phi(x, ε) for a random relabelling σ, with the noise moved along."""
    generator = torch.Generator().manual_seed(2)
    sigma = probsym.groups.Sn().sample(
        len(batch["pos"]), n=batch["pos"].shape[1], generator=generator
    )
    noise = model.sampler.sample_noise(batch, 3, generator)
    moved = probsym.testing.transform_inputs(sigma, batch, model.signature)
    with torch.no_grad():
        out = model(**batch, noise=noise, num_samples=3).value
        out_moved = model(
            **moved, noise=model.sampler.transform_noise(sigma, noise, None), num_samples=3
        ).value
    expected = sigma.act(out, probsym.fields.node_point)
    assert (out_moved - expected).abs().max() <= 1e-5


def test_resume_matches_uninterrupted_run(nbody_dir, tmp_path):
    # The interruption is emulated by a run with epochs=1, which validates at its last epoch; so
    # validate every epoch, or the two runs would draw different random numbers at epoch 1.
    straight = tiny_config(nbody_dir, tmp_path / "straight", epochs=2)
    fit(get("nbody"), straight)
    interrupted = tiny_config(nbody_dir, tmp_path / "resumed", epochs=1)
    fit(get("nbody"), interrupted)
    resumed = tiny_config(nbody_dir, tmp_path / "resumed", epochs=2)
    fit(get("nbody"), resumed, resume=True)

    a = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    b = json.loads((tmp_path / "resumed" / "metrics.json").read_text())
    assert a["test"] == b["test"] and a["val_best"] == b["val_best"]
    for name in ("best.pt", "last.pt"):
        weights_a = checkpoint.load(tmp_path / "straight" / name)["model"]
        weights_b = checkpoint.load(tmp_path / "resumed" / name)["model"]
        assert weights_a.keys() == weights_b.keys()
        for key in weights_a:
            assert torch.equal(weights_a[key], weights_b[key]), key


def test_groups_and_sizes():
    config = TrainConfig(experiment="nbody", backbone="gnn", group="Sn*E3")
    with pytest.raises(ProbsymError, match="permutation-equivariant"):
        build_group(config)
    assert (
        repr(build_group(TrainConfig(experiment="nbody", backbone="transformer", group="Sn*SO3")))
        == "S_n × SO(3)"
    )
    assert needed_sizes(TrainConfig(experiment="nbody", max_train=3000)) == (10000, 2000, 2000)
    assert needed_sizes(TrainConfig(experiment="nbody", max_train=3000, limit=50)) == (50, 50, 50)


def test_demo_small_writes_picture(tmp_path, monkeypatch):
    # A private cache: the demo generates its small data set there instead of in ~/.cache.
    monkeypatch.setenv("PROBSYM_DATA", str(tmp_path / "cache"))
    spec = importlib.util.spec_from_file_location("nbody_demo", EXAMPLES / "nbody_demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    picture = tmp_path / "demo.png"
    summary = demo.main(small=True, picture=picture, runs=tmp_path / "runs")
    assert picture.stat().st_size > 10_000
    assert set(summary) >= {"ps", "canonical", "equivariance_error"}
    assert summary["equivariance_error"] <= 1e-5


@pytest.mark.parametrize("options", [{"noise_at": "heads"}, {"antithetic": True}])
def test_noise_options_reach_the_sampler_and_stay_exact(nbody_dir, tmp_path, options):
    config = tiny_config(nbody_dir, tmp_path / "run", epochs=1, **options)
    fit(get("nbody"), config)
    model = restore(config.run_dir, "best").model
    for name, value in options.items():
        assert getattr(model.sampler, name) == value
    report = probsym.testing.assert_equivariant(
        model, example_batch(config), generator=torch.Generator().manual_seed(1)
    )
    assert report.max_abs <= 1e-5


def test_unknown_noise_entry_is_a_config_error():
    with pytest.raises(ConfigError, match="--noise-at"):
        TrainConfig(experiment="nbody", noise_at="middle")
