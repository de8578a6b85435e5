"""Symmetrize.predict: adaptive Monte Carlo inference with error bars.

The toy model has a known variance: group averaging over S_n with a base that returns the
features of the node in slot 0, which is a uniformly random real node, so each per-sample output
has mean ``mean(x)`` and variance ``var(x)`` (over the item's real nodes, ``ddof=0``).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import probsym
from cases import Case, make_model
from probsym import fields, groups, samplers, testing

SIGNATURE = probsym.Signature({"x": fields.node}, fields.scalar)


class FirstNode(nn.Module):
    """The features of slot 0; records the rows of every call."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[int] = []

    def forward(self, x, mask=None):
        self.rows.append(x.shape[0])
        return x[:, 0]


def first_node_model() -> probsym.Symmetrize:
    return probsym.Symmetrize(FirstNode(), samplers.Uniform(groups.Sn(), SIGNATURE))


def toy_batch(spreads: list[float], n: int = 6) -> dict[str, torch.Tensor]:
    """Item i: 2 channels, node values ``± spreads[i]`` (variance ``spreads[i]²``), 5 real nodes."""
    signs = torch.tensor([1.0, -1.0, 1.0, -1.0, 0.0, 0.0])[:n]
    x = torch.stack([torch.stack([s * signs, 3 + 0.5 * s * signs], 1) for s in spreads])
    mask = torch.ones(len(spreads), n, dtype=torch.bool)
    mask[:, 4] = False  # node 4 is padding (its zero value must not count), node 5 is real
    x[:, 4] = 7.0
    return {"x": x, "mask": mask}


def known_moments(batch):
    real = batch["x"][batch["mask"]].reshape(len(batch["x"]), -1, 2)
    return real.mean(1), real.var(1, unbiased=False)


def test_each_item_stops_at_the_tolerance_and_easy_items_stop_first():
    model = first_node_model()
    batch = toy_batch([0.0, 0.2, 1.0])
    tol = 0.02
    out = model.predict(
        **batch, tol=tol, max_samples=20_000, generator=torch.Generator().manual_seed(0)
    )
    mean, variance = known_moments(batch)
    needed = variance.amax(1) / tol**2  # samples at which the largest entry's error is tol
    counts = out.num_samples.tolist()
    assert counts[0] == 10  # no variance: the first check (min_samples) stops it
    assert torch.equal(out.stderr[0], torch.zeros(2))
    for i in (1, 2):
        assert 0.8 * needed[i] <= counts[i] <= 1.5 * needed[i], (i, counts[i], float(needed[i]))
        assert out.stderr[i].max() <= tol
    assert counts[0] < counts[1] < counts[2]
    assert (out.mean - mean).abs().max() <= 5 * tol
    torch.testing.assert_close(
        out.stderr[1:], (variance[1:] / out.num_samples[1:, None]).sqrt(), rtol=0.1, atol=0
    )


@pytest.mark.parametrize("chunk", [1, 3, 7, 1024])
def test_never_exceeds_the_cap_nor_the_chunk(chunk):
    model = first_node_model()
    batch = toy_batch([1.0, 2.0, 0.5, 1.5, 0.0])
    out = model.predict(**batch, tol=1e-6, max_samples=23, min_samples=4, chunk=chunk)
    assert out.num_samples.tolist() == [23, 23, 23, 23, 4]
    assert max(model.base.rows) <= chunk
    assert sum(model.base.rows) == 4 * 23 + 4


def test_tol_zero_uses_max_samples_unless_nothing_varies():
    model = first_node_model()
    out = model.predict(**toy_batch([1.0, 0.0]), tol=0, max_samples=40)
    assert out.num_samples.tolist() == [40, 10]
    batch = toy_batch([1.0])
    one_call = dict(tol=0, max_samples=40, min_samples=40)
    out = model.predict(**batch, **one_call, generator=torch.Generator().manual_seed(3))
    forward = model(**batch, num_samples=40, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(out.mean, forward.value)  # the same noise: the plain average


@pytest.mark.parametrize("tol", [0.0, 0.1])
def test_the_reported_error_matches_the_spread_over_repeated_calls(tol):
    model = first_node_model()
    batch = toy_batch([1.0])
    generator = torch.Generator().manual_seed(1)
    repeats = [
        model.predict(**batch, tol=tol, max_samples=64 if tol == 0 else 1000, generator=generator)
        for _ in range(400)
    ]
    means = torch.stack([r.mean[0] for r in repeats])  # (400, 2)
    reported = torch.stack([r.stderr[0] for r in repeats]).mean(0)
    empirical = means.std(0)
    # the std of a std estimate over 400 draws is about 1/sqrt(800) = 3.5% of it
    torch.testing.assert_close(reported, empirical, rtol=0.15, atol=0)
    if tol:  # adaptive: the largest variance is 0.8, so about 80 samples for 0.1
        counts = torch.tensor([r.num_samples.item() for r in repeats], dtype=torch.float)
        assert 70 <= counts.mean() <= 95, counts.mean()


def test_the_mean_stays_equivariant():
    case = Case(groups.Sn(), "ps")
    model, batch = make_model(case, "equivariant", "transformer", num_samples=4)
    generator = torch.Generator().manual_seed(5)
    g = testing.random_element(model.group, batch, model.signature, generator)
    moved = testing.transform_inputs(g, batch, model.signature)
    options = dict(tol=0.02, max_samples=3000, generator=generator)
    a, b = model.predict(**batch, **options), model.predict(**moved, **options)
    for name, law in model.signature.output_fields.items():
        expected = g.act(a.mean[name], law, batch["mask"])
        error = g.act(a.stderr[name], law, batch["mask"])
        se = (error.square() + b.stderr[name].square()).sqrt()
        z = (b.mean[name] - expected) / se.clamp_min(1e-12)
        real = se > 0  # padded entries are exactly zero on both sides
        assert real.any()
        assert z[real].abs().max() <= 5, name
        assert torch.equal(b.mean[name][~real], expected[~real]), name


def test_without_symmetrization_the_same_check_fails():
    # negative control: the identity sampler leaves the (non-equivariant) base as it is
    case = Case(groups.Sn(), "ps")
    model, batch = make_model(case, "invariant", "transformer", num_samples=4)
    plain = probsym.Symmetrize(model.base, samplers.Identity(groups.Sn(), model.signature))
    g = testing.random_element(
        model.group, batch, model.signature, torch.Generator().manual_seed(0)
    )
    moved = testing.transform_inputs(g, batch, model.signature)
    a, b = plain.predict(**batch), plain.predict(**moved)
    assert a.num_samples.tolist() == [1] * len(a.num_samples)  # deterministic: one sample
    assert torch.equal(a.stderr, torch.zeros_like(a.stderr))
    torch.testing.assert_close(a.mean, plain(**batch).value)
    assert (a.mean - b.mean).abs().max() > 1e-3


def test_dict_outputs_and_whole_frames():
    case = Case(groups.Sn() * groups.E(3), "fa")  # PCA frames: 8 sign choices per sample
    model, batch = make_model(case, "equivariant", "mlp", num_samples=2)
    out = model.predict(
        **batch, tol=1e-3, max_samples=50, generator=torch.Generator().manual_seed(0)
    )
    reference = model(**batch, num_samples=50, generator=torch.Generator().manual_seed(0)).value
    assert set(out.mean) == set(out.stderr) == set(reference)
    for key, value in reference.items():
        assert out.mean[key].shape == out.stderr[key].shape == value.shape
        assert out.mean[key].dtype == value.dtype
        assert torch.isfinite(out.stderr[key]).all()
    assert (out.num_samples >= 10).all() and (out.num_samples <= 50).all()


def test_mode_is_restored_and_bad_arguments_are_named():
    model = first_node_model()
    model.train()
    batch = toy_batch([1.0])
    model.predict(**batch, max_samples=10)
    assert model.training
    with pytest.raises(ValueError, match="tol"):
        model.predict(**batch, tol=-1.0)
    with pytest.raises(ValueError, match="at least 2 samples"):
        model.predict(**batch, max_samples=1)
    with pytest.raises(ValueError, match="chunk"):
        model.predict(**batch, chunk=0)
    with pytest.raises(probsym.errors.InputError, match="keyword"):
        model.predict(batch)
    assert math.isfinite(float(model.predict(**batch, max_samples=2).stderr.max()))


def test_sample_outputs_in_chunks_and_sample_elements_match_forward():
    case = Case(groups.Sn(), "ps")
    model, batch = make_model(case, "equivariant", "mlp", num_samples=4)
    model.eval()
    forward = model(
        **batch, num_samples=6, keep_samples=True, generator=torch.Generator().manual_seed(2)
    )
    whole = model.sample_outputs(**batch, num_samples=6, generator=torch.Generator().manual_seed(2))
    for key, value in forward.per_sample.items():
        torch.testing.assert_close(whole[key], value)
    b = batch["mask"].shape[0]
    chunked = model.sample_outputs(**batch, num_samples=25, chunk=4)
    assert all(v.shape[:2] == (b, 25) for v in chunked.values())
    elements = model.sample_elements(
        **batch, num_samples=6, generator=torch.Generator().manual_seed(2)
    ).elements
    assert torch.equal(elements.index, forward.samples.elements.index)
