"""The checker is tested (e3nn's test_test.py): it must fail on models that are not equivariant."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import probsym
from cases import Case, FlatMLP, make_batch, make_model, signature
from probsym import fields, groups, samplers
from probsym.samplers.base import Samples, zero
from probsym.testing import (
    EquivarianceReport,
    OutputError,
    assert_equivariant,
    equivariance_error,
    random_element,
    transform_inputs,
)

GENERATOR = lambda: torch.Generator().manual_seed(0)  # noqa: E731 - a fresh one per call
PERMUTATION_ROW = "elements: permutation (fraction differing)"


class IdentitySampler(samplers.Sampler):
    """Ignores g: always returns the identity, so Symmetrize(f) is just f."""

    def forward(self, inputs, num_samples, noise=None, generator=None):
        mask = inputs.get("mask")
        first = next(iter(inputs.values()))
        n = None if mask is None else mask.shape[1]
        element = self.group.identity(first.shape[0] * num_samples, n, dtype=torch.float32)
        return Samples(element, zero(first.float()))


class SumPool(nn.Module):
    """An invariant model: the masked sum of node features and of adjacency rows."""

    def forward(self, x, adj, mask):
        real = mask.unsqueeze(-1).to(x.dtype)
        return torch.cat([(x * real).sum(1), adj.sum(dim=(1, 2))], dim=-1)


def graph_batch():
    return make_batch(groups.Sn(), sizes=(5, 3), num_nodes=5)


def test_assert_equivariant_raises_on_a_plain_mlp_over_the_flattened_adjacency():
    sig = probsym.Signature({"adj": fields.pair}, fields.scalar)
    batch = graph_batch()
    batch = {"adj": batch["adj"], "mask": batch["mask"]}
    mlp = FlatMLP(25, {"": (3,)})
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(mlp, batch, signature=sig, group=groups.Sn(), generator=GENERATOR())
    report = equivariance_error(mlp, batch, signature=sig, group=groups.Sn(), generator=GENERATOR())
    assert report.max_abs > 1e-3


@pytest.mark.parametrize(
    "group", [groups.Sn(), groups.SO(3), groups.Sn() * groups.E(3)], ids=["Sn", "SO3", "Sn*E3"]
)
def test_assert_equivariant_raises_when_the_sampler_ignores_g(group):
    sig = signature(group, "equivariant")
    batch = make_batch(group)
    reference, _ = make_model(Case(group, "ga"), batch=batch)
    model = probsym.Symmetrize(reference.base, IdentitySampler(group, sig), num_samples=2)
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(model, batch, generator=GENERATOR())
    report = equivariance_error(model, batch, generator=GENERATOR())
    if group.acts_on_nodes:  # the elements do not transform either
        rows = {row.name: row.max_abs for row in report.outputs}
        assert rows[PERMUTATION_ROW] > 0
    # with the Haar sampler the same base model passes
    assert_equivariant(reference, batch, generator=GENERATOR())


def test_assert_equivariant_passes_on_equivariant_models():
    batch = graph_batch()
    sig = probsym.Signature({"x": fields.node, "adj": fields.pair}, fields.scalar)
    report = assert_equivariant(SumPool(), batch, signature=sig, group=groups.Sn())
    assert isinstance(report, EquivarianceReport) and report.max_abs <= 1e-5
    model, batch = make_model(Case(groups.Sn() * groups.SO(3), "ps"), "equivariant", "mlp")
    report = assert_equivariant(model, batch, generator=GENERATOR())
    assert report.passed()


def test_report_str_is_a_table_naming_every_output():
    model, batch = make_model(Case(groups.Sn() * groups.E(3), "ps"), "equivariant", "transformer")
    text = str(equivariance_error(model, batch, generator=GENERATOR()))
    lines = text.splitlines()
    assert lines[0] == "equivariance under S_n × E(3)"
    assert lines[1].split() == ["output", "max", "abs", "max", "rel"]
    for name in ("pos", "center", "pair", PERMUTATION_ROW, "elements: rotation/translation"):
        assert any(line.startswith(name) for line in lines[2:]), (name, text)
    # every row: a name, then two numbers in scientific notation
    for line in lines[2:]:
        abs_error, rel_error = line.split()[-2:]
        float(abs_error), float(rel_error)


def test_report_passed_uses_atol_plus_rtol_times_the_reference_scale():
    # max_abs 2e-5 against a reference of size 10 (max_rel 2e-6): 1e-5 + 1e-5 * 10 = 1.1e-4
    report = EquivarianceReport([OutputError("y", 2e-5, 2e-6)], "S_n")
    assert report.passed(atol=1e-5, rtol=1e-5)
    assert not report.passed(atol=1e-5, rtol=0.0)
    assert not EquivarianceReport([OutputError("y", 1.0, 0.1)], "S_n").passed()


def test_frame_report_notes_that_elements_are_compared_as_a_set():
    model, batch = make_model(Case(groups.O(3), "fa"), "invariant", "mlp")
    report = equivariance_error(model, batch, generator=GENERATOR())
    assert any("frame" in note for note in report.notes)
    assert "frame" in str(report)
    assert not any(row.name.startswith("elements") for row in report.outputs)


def test_plain_models_need_signature_and_group():
    with pytest.raises(ValueError, match="signature= and group="):
        equivariance_error(SumPool(), graph_batch())


def test_elements_of_the_wrong_group_are_rejected():
    model, batch = make_model(Case(groups.Sn(), "ga"), "invariant", "mlp")
    wrong = groups.O(3).sample(2)
    with pytest.raises(TypeError, match="Permutation"):
        equivariance_error(model, batch, wrong)


def test_random_element_moves_padding_and_transform_inputs_moves_the_mask():
    group = groups.Sn() * groups.SE(3)
    batch = make_batch(group)
    sig = signature(group)
    g = random_element(group, batch, sig, generator=GENERATOR())
    mask = batch["mask"]
    moved = transform_inputs(g, batch, sig)
    assert set(moved) == set(batch)
    assert torch.equal(moved["mask"], g.parts[0].act(mask, fields.node))
    assert not torch.equal(moved["mask"], mask), "some padding moves (seeded)"
    kept = random_element(group, batch, sig, generator=GENERATOR(), move_padding=False)
    index = kept.parts[0].index
    assert torch.equal(index[~mask], torch.arange(5).expand_as(index)[~mask])
    fixed = transform_inputs(kept, batch, sig)
    assert torch.equal(fixed["mask"], mask)
    assert torch.equal(fixed["pos"][~mask], batch["pos"][~mask])
