"""Identity: the plain model behind the symmetrizer's interface (for equivariant baselines)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import probsym
from probsym import fields, groups, samplers
from probsym.testing import equivariance_error


class SumAggregate(nn.Module):
    """An equivariant one-layer message passing: x + A x (masked)."""

    def forward(self, x, adj, mask):
        return (x + adj[..., 0] @ x) * mask[..., None]


class PositionDependent(nn.Module):
    """Not equivariant: adds the slot index."""

    def forward(self, x, adj, mask):
        return x + torch.arange(x.shape[1], dtype=x.dtype)[None, :, None]


class Passthrough(nn.Module):
    def forward(self, pos, mask=None):
        return pos


SIG = probsym.Signature({"x": fields.node, "adj": fields.pair}, fields.node)


def graph_batch(b=3, n=6):
    torch.manual_seed(0)
    x = torch.randn(b, n, 2)
    adj = (torch.rand(b, n, n, 1) < 0.4).float()
    adj = ((adj + adj.transpose(1, 2)) > 0).float()
    mask = torch.arange(n)[None] < torch.tensor([6, 4, 1])[:, None]
    return {"x": x, "adj": adj, "mask": mask}


def test_identity_returns_the_base_output_unchanged_and_one_sample():
    batch = graph_batch()
    model = probsym.Symmetrize(SumAggregate(), samplers.Identity(groups.Sn(), SIG), num_samples=7)
    out = model(**batch, keep_samples=True)
    assert out.per_sample.shape[1] == 1
    x = batch["x"] * batch["mask"][..., None]
    torch.testing.assert_close(out.value, SumAggregate()(x, batch["adj"], batch["mask"]))
    assert float(out.regularization) == 0.0


def test_identity_is_equivariant_exactly_when_the_base_is():
    batch = graph_batch()
    good = probsym.Symmetrize(SumAggregate(), samplers.Identity(groups.Sn(), SIG))
    bad = probsym.Symmetrize(PositionDependent(), samplers.Identity(groups.Sn(), SIG))
    assert equivariance_error(good, batch).max_abs < 1e-5
    assert equivariance_error(bad, batch).max_abs > 0.1


@pytest.mark.parametrize("group", [groups.O(3), groups.Sn() * groups.E(3)], ids=repr)
def test_identity_works_for_spatial_groups(group):
    sig = probsym.Signature({"pos": fields.node_point}, fields.node_point)
    model = probsym.Symmetrize(Passthrough(), samplers.Identity(group, sig), num_samples=3)
    pos = torch.randn(2, 4, 3, dtype=torch.float64)
    torch.testing.assert_close(model(pos=pos).value, pos)
