"""log.csv's diagnostics: permutation entropy, the sampler penalty and gradient norms per epoch."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_runs import read_log, tiny_config, tiny_experiment
from torch import nn
from torch.nn import functional

from probsym import Signature, Symmetrize, fields, groups, samplers
from probsym.experiments.base import Experiment
from probsym.train import loop

COLUMNS = (
    "train_regularization",
    "train_perm_entropy",
    "train_perm_entropy_uniform",
    "grad_norm_base",
    "grad_norm_sampler",
    "val_perm_entropy",
    "val_perm_entropy_uniform",
)


def values(rows, key):
    return [float(r[key]) for r in rows]


@pytest.mark.parametrize("method", ["ps", "canonical"])
def test_learned_samplers_log_every_column_finite(tmp_path, method):
    loop.fit(tiny_experiment(), tiny_config(tmp_path, method=method, grad_clip=0.05))
    rows = read_log(tmp_path)
    assert len(rows) == 3
    for key in COLUMNS:
        assert all(math.isfinite(v) for v in values(rows, key)), key
    assert all(v > 0 for v in values(rows, "grad_norm_sampler"))
    # the norms are read before clipping at 0.05
    assert max(values(rows, "grad_norm_base")) > 0.05
    # N = 2 samples of 4 nodes: entropy <= 2 log 2; the uniform reference lies inside that too
    for key in ("train_perm_entropy", "val_perm_entropy", "val_perm_entropy_uniform"):
        assert all(0 <= v <= 2 * math.log(2) + 1e-9 for v in values(rows, key)), key
    if method == "canonical":  # one deterministic element per input
        assert values(rows, "val_perm_entropy") == [0.0] * 3
    assert all(v > 0 for v in values(rows, "train_regularization"))


def test_group_averaging_has_no_sampler_gradient_and_the_uniform_entropy(tmp_path):
    loop.fit(tiny_experiment(), tiny_config(tmp_path, method="ga", samples=50, eval_samples=50))
    rows = read_log(tmp_path)
    assert [r["grad_norm_sampler"] for r in rows] == [""] * 3
    assert values(rows, "train_regularization") == [0.0] * 3
    # a uniform sampler's entropy is its own reference, up to Monte Carlo error
    for measured, reference in zip(
        values(rows, "val_perm_entropy"), values(rows, "val_perm_entropy_uniform"), strict=True
    ):
        assert measured == pytest.approx(reference, abs=0.05)


def test_diagnostics_do_not_change_the_run(tmp_path):
    with_probes = loop.fit(tiny_experiment(), tiny_config(tmp_path / "a"))
    without = loop.fit(tiny_experiment(), tiny_config(tmp_path / "b", diagnostic_batches=0))
    assert with_probes["test"] == without["test"]
    rows_a, rows_b = read_log(tmp_path / "a"), read_log(tmp_path / "b")
    assert [r["train_loss"] for r in rows_a] == [r["train_loss"] for r in rows_b]
    assert [r["grad_norm_base"] for r in rows_b] == [""] * 3
    assert [r["train_perm_entropy"] for r in rows_b] == [""] * 3
    # validation's entropy is read from the samples validation draws anyway
    assert all(r["val_perm_entropy"] for r in rows_b)


class VectorNorms(nn.Module):
    """A toy base over O(3): a linear map of the components (invariant once symmetrized)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 1)

    def forward(self, v):
        return self.lin(v)


def rotation_experiment() -> Experiment:
    signature = Signature({"v": fields.vector}, fields.scalar)

    def build_data(config):
        generator = torch.Generator().manual_seed(0)
        data = {}
        for name in ("train", "val", "test"):
            v = torch.randn(16, 3, generator=generator)
            data[name] = {"v": v, "target": v.norm(dim=1, keepdim=True)}
        return data

    def build_model(config, example):
        sampler = samplers.resolve(config.method, groups.O(3), signature)
        return Symmetrize(VectorNorms(), sampler, num_samples=config.samples)

    def mse(prediction, target):
        return functional.mse_loss(prediction, target)

    return Experiment("rot", build_data, build_model, mse, lambda p, t: {"mse": float(mse(p, t))})


def test_groups_without_permutations_leave_the_entropy_columns_empty(tmp_path):
    loop.fit(rotation_experiment(), tiny_config(tmp_path, method="ga", experiment="rot"))
    rows = read_log(tmp_path)
    for key in ("train_perm_entropy", "train_perm_entropy_uniform", "val_perm_entropy"):
        assert [r[key] for r in rows] == [""] * 3, key
    assert all(math.isfinite(v) and v > 0 for v in values(rows, "grad_norm_base"))
