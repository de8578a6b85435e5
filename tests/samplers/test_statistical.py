"""Statistical equivariance (fresh noise on each side), with negative controls that show power.

``statistical_equivariance_test`` compares a fixed random projection of ``φ(g·x)`` pulled back by
``g⁻¹`` with that of ``φ(x)`` over M single-sample draws per side (z-test per batch item). Under
equivariance ``z ~ N(0, 1)``: ``|z| ≤ 5`` has a ~6e-7 false-alarm rate, and the seed is fixed. A
deliberately non-equivariant sampler must give ``|z| > 5``.
"""

from __future__ import annotations

import pytest
import torch

import probsym
from cases import Case, make_batch, make_model, signature
from probsym import groups, samplers
from probsym.testing import statistical_equivariance_test

DRAWS = 2000


class FirstHalfUniform(samplers.Uniform):
    """Negative control: only ever permutes the first half of the slots (not equivariant)."""

    def sample_noise(self, inputs, num_samples, generator=None):
        noise = super().sample_noise(inputs, num_samples, generator)
        keys = noise["keys"]
        n = keys.shape[1]
        half = n // 2
        # keys are sorted descending: negative keys put the second half last, in index order
        keys[:, half:] = -torch.arange(1, n - half + 1, dtype=keys.dtype)
        return noise


class NearIdentityRotations(samplers.Uniform):
    """Negative control: rotations concentrated near the identity instead of Haar."""

    def sample_noise(self, inputs, num_samples, generator=None):
        noise = super().sample_noise(inputs, num_samples, generator)
        frame = noise["frame"]
        noise["frame"] = torch.eye(frame.shape[-1], dtype=frame.dtype) + 0.3 * frame
        return noise


def run(model, batch, seed: int = 0):
    return statistical_equivariance_test(
        model, batch, num_draws=DRAWS, generator=torch.Generator().manual_seed(seed)
    )


@pytest.mark.parametrize(
    "group",
    [groups.Sn(), groups.O(3), groups.Sn() * groups.SO(3)],
    ids=["Sn", "O3", "Sn*SO3"],
)
def test_learned_sampler_is_equivariant_in_distribution(group):
    model, batch = make_model(Case(group, "ps"), "equivariant", "transformer")
    report = run(model, batch)
    assert report.num_draws == DRAWS and len(report.z) == batch["mask"].shape[0]
    assert report.max_abs_z <= 5, report.z


def test_uniform_sampler_is_equivariant_in_distribution():
    group = groups.Sn() * groups.E(3)
    model, batch = make_model(Case(group, "ga"), "equivariant", "mlp")
    assert run(model, batch).max_abs_z <= 5


@pytest.mark.parametrize(
    ("group", "sampler_class"),
    [(groups.Sn(), FirstHalfUniform), (groups.O(3), NearIdentityRotations)],
    ids=["Sn-first-half", "O3-near-identity"],
)
def test_negative_control_non_equivariant_sampler_is_detected(group, sampler_class):
    sig = signature(group, "equivariant")
    batch = make_batch(group, sizes=(5, 5, 5))
    reference, _ = make_model(Case(group, "ga"), "equivariant", "transformer", batch=batch)
    model = probsym.Symmetrize(reference.base, sampler_class(group, sig), num_samples=1)
    report = run(model, batch)
    assert report.max_abs_z > 5, report.z
    # the same base model with the Haar sampler passes: the failure is the sampler's
    assert run(reference, batch).max_abs_z <= 5
