"""Actions are actions, for every group and field kind; padding stays padding; gathers = matrices.

``act(e, x) == x``, ``g·(h·x) == (g @ h)·x`` and ``g⁻¹·(g·x) == x``: exactly when only
permutations act (gathers do no arithmetic), within the matrix tolerance otherwise.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from probsym import fields, groups
from probsym.fields import Field
from probsym.groups import Orthogonal, Permutation, Rigid
from probsym.groups.padding import zero_padded
from probsym.testing.strategies import (
    PaddedGraphs,
    all_groups,
    padded_graphs,
    sample_element,
    sizes,
)

GROUPS = all_groups()
GROUP_IDS = [repr(g).replace(" × ", "*") for g in GROUPS]
FIELDS = {
    "scalar": fields.scalar,
    "node": fields.node,
    "pair": fields.pair,
    "vector": fields.vector,
    "point": fields.point,
    "node_vector": fields.node_vector,
    "node_point": fields.node_point,
}
SEEDS = st.integers(0, 2**32 - 1)


def make_field(
    fld: Field, mask: torch.Tensor, d: int, channels: tuple[int, ...], seed: int, dtype
) -> torch.Tensor:
    """A random tensor of the field, ``(b, [n]*node_axes, *channels, [d])``; padding is noise."""
    b, n = mask.shape
    shape = (b,) + (n,) * fld.node_axes + channels + ((d,) if fld.geometry != "scalar" else ())
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen, dtype=dtype) * 2 + 1


def padded_entries(fld: Field, mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Bool, broadcastable to ``x``: True where every node index of the entry is padded."""
    pad = ~mask
    if fld.node_axes == 1:
        return pad.reshape(*pad.shape, *([1] * (x.ndim - 2)))
    if fld.node_axes == 2:
        both = pad.unsqueeze(2) & pad.unsqueeze(1)
        return both.reshape(*both.shape, *([1] * (x.ndim - 3)))
    return torch.zeros((), dtype=torch.bool)


def real_entries(fld: Field, mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Bool, broadcastable to ``x``: True where every node index of the entry is real."""
    if fld.node_axes == 1:
        return mask.reshape(*mask.shape, *([1] * (x.ndim - 2)))
    if fld.node_axes == 2:
        both = mask.unsqueeze(2) & mask.unsqueeze(1)
        return both.reshape(*both.shape, *([1] * (x.ndim - 3)))
    return torch.ones((), dtype=torch.bool)


def close(a: torch.Tensor, b: torch.Tensor, group, tol) -> bool:
    """Exact equality when only permutations act; otherwise within the scaled matrix tolerance."""
    assert a.shape == b.shape and a.dtype == b.dtype
    if group.dim is None:
        return torch.equal(a, b)
    scale = 1.0 + float(b.abs().max())  # points move by O(|t|); rotations are relative
    return float((a - b).abs().max()) <= tol.matrix * scale


def mask_from(shape: tuple[tuple[int, ...], int], scatter: bool, seed: int) -> torch.Tensor:
    graph_sizes, n = shape
    return PaddedGraphs(graph_sizes, n, seed, scatter=scatter).mask()


@pytest.mark.parametrize("group", GROUPS, ids=GROUP_IDS)
@given(
    shape=sizes(max_batch=3, max_nodes=5),
    scatter=st.booleans(),
    seeds=st.tuples(SEEDS, SEEDS, SEEDS),
    channels=st.sampled_from([(), (2,)]),
)
@example(shape=((1,), 1), scatter=False, seeds=(0, 1, 2), channels=())  # a single node
@example(shape=((3, 3), 3), scatter=False, seeds=(0, 1, 2), channels=(2,))  # no padding
def test_action_laws_and_padding(group, float_tolerance, shape, scatter, seeds, channels):
    """For every field kind: identity, compatibility, inverse; padding stays padding."""
    tol = float_tolerance
    mask = mask_from(shape, scatter, seeds[0])
    b, n = mask.shape
    d = group.dim or 3
    g = sample_element(group, b, seeds[1], mask=mask, dtype=tol.dtype)
    h = sample_element(group, b, seeds[2], mask=mask, dtype=tol.dtype)
    e = group.identity(b, n, dtype=tol.dtype)
    gh = g @ h
    g_inverse = g.inverse()
    for name, fld in FIELDS.items():
        c = channels or ((1,) if fld.node_axes == 0 and fld.geometry == "scalar" else ())
        x = make_field(fld, mask, d, c, seeds[0], tol.dtype)

        assert torch.equal(group.act(e, x, fld, mask), x), name
        gx = group.act(g, x, fld, mask)
        assert gx.shape == x.shape and gx.dtype == x.dtype, name
        assert close(
            group.act(g, group.act(h, x, fld, mask), fld, mask),
            group.act(gh, x, fld, mask),
            group,
            tol,
        ), name
        assert close(group.act(g_inverse, gx, fld, mask), x, group, tol), name

        # padding stays padding: entries whose node indices are all padded are untouched ...
        pad = padded_entries(fld, mask, x).expand_as(x)
        assert torch.equal(gx[pad], x[pad]), name
        # ... and the real block of g·x is computed from the real block of x alone
        real = real_entries(fld, mask, x).expand_as(x)
        noisy = torch.where(real, x, x + 100.0)
        assert torch.equal(group.act(g, noisy, fld, mask)[real], gx[real]), name
        if not group.acts_on_nodes:
            # rotations leave every entry with a padded node index untouched (permutations move
            # the entries (padded i, real j) of pair fields among themselves: still padding)
            assert torch.equal(gx[~real], x[~real]), name


def test_field_laws_of_each_group_factor():
    """Which axes each group touches: S_n node axes only; O/E the last axis (E moves points)."""
    mask = torch.ones(2, 4, dtype=torch.bool)
    for group in GROUPS:
        x = torch.randn(2, 4, group.dim or 3)
        g = sample_element(group, 2, seed=1, mask=mask)
        scalar = torch.randn(2, 3)
        assert torch.equal(group.act(g, scalar, fields.scalar, mask), scalar)
        if group.dim is None:
            assert torch.equal(
                group.act(g, x, fields.vector, mask), x
            )  # (b, c, d) has no node axis
        if not group.acts_on_nodes:
            node = torch.randn(2, 4, 2)
            assert torch.equal(group.act(g, node, fields.node, mask), node)
        if not group.has_translations and group.dim is not None:
            assert torch.equal(
                group.act(g, x, fields.point, mask), group.act(g, x, fields.vector, mask)
            )


@given(spec=padded_graphs(max_batch=3, max_nodes=6), seed=SEEDS)
@example(spec=PaddedGraphs((1,), 1, 0), seed=0)
@example(spec=PaddedGraphs((2, 5, 3), 6, 0, scatter=True), seed=0)
def test_gather_action_equals_permutation_matrix(float_tolerance, spec, seed):
    batch = spec.build(dtype=float_tolerance.dtype, padding="noise")
    mask, x, adj = batch["mask"], batch["x"], batch["adj"]
    g = sample_element(groups.Sn(), mask.shape[0], seed, mask=mask)
    h = g.matrix(float_tolerance.dtype)  # H[index[j], j] = 1
    # gathers do no arithmetic; H x sums exact zeros, so both are exactly equal
    assert torch.equal(g.act(x, fields.node, mask), h @ x)
    dense_pair = torch.einsum("bij,bjkc,blk->bilc", h, adj, h)  # H A Hᵀ per channel
    assert torch.equal(g.act(adj, fields.pair, mask), dense_pair)
    assert torch.equal(g.inverse().matrix(float_tolerance.dtype), h.transpose(1, 2))
    assert torch.equal((g @ g).matrix(float_tolerance.dtype), h @ h)


def test_permutation_moves_node_j_to_slot_index_j():
    g = Permutation(torch.tensor([[2, 0, 1]]))
    x = torch.tensor([[[10.0], [11.0], [12.0]]])
    # node 0 goes to slot 2, node 1 to slot 0, node 2 to slot 1
    assert g.act(x, fields.node).flatten().tolist() == [11.0, 12.0, 10.0]


def test_orthogonal_and_rigid_act_on_row_vectors():
    r = torch.tensor([[[0.0, -1.0], [1.0, 0.0]]])  # rotation by +90 degrees
    v = torch.tensor([[[1.0, 0.0]]])
    assert Orthogonal(r).act(v, fields.vector).tolist() == [[[0.0, 1.0]]]
    motion = Rigid(r, torch.tensor([[5.0, 0.0]]))
    assert motion.act(v, fields.point).tolist() == [[[5.0, 1.0]]]
    assert motion.act(v, fields.vector).tolist() == [[[0.0, 1.0]]]


@pytest.mark.parametrize("field_name", ["node", "pair"])
def test_straight_through_term_is_zero_with_the_gradient_of_the_matrix_action(field_name):
    """With ``relaxed``, the value is the gather and d/dP is that of ``P x`` / ``P x Pᵀ``."""
    fld = FIELDS[field_name]
    gen = torch.Generator().manual_seed(0)
    mask = torch.tensor([[True] * 4, [True, True, True, False]])
    g = sample_element(groups.Sn(), 2, seed=3, mask=mask)
    x = torch.randn((2, 4) + (4,) * (fld.node_axes - 1) + (2,), generator=gen, dtype=torch.float64)
    w = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    hard = g.matrix(torch.float64)
    relaxed = hard.clone().requires_grad_(True)
    y = Permutation(g.index, relaxed).act(x, fld, mask)
    assert torch.equal(y, g.act(x, fld, mask))
    (y * w).sum().backward()
    p = hard.clone().requires_grad_(True)
    real = zero_padded(x, mask, fld.node_axes)  # the term reads real entries only
    dense = p @ real if fld.node_axes == 1 else torch.einsum("bij,bjkc,blk->bilc", p, real, p)
    (dense * w).sum().backward()
    torch.testing.assert_close(relaxed.grad, p.grad, atol=1e-12, rtol=0)


@pytest.mark.parametrize("field_name", ["node", "pair"])
def test_straight_through_term_never_reads_padded_entries(field_name):
    """NaN / inf in padded slots (a base model's garbage) reach neither values nor gradients."""
    fld = FIELDS[field_name]
    mask = torch.tensor([[True] * 4, [True, False, True, False]])
    g = sample_element(groups.Sn(), 2, seed=3, mask=mask)
    x = torch.randn((2, 4) + (4,) * (fld.node_axes - 1) + (2,), dtype=torch.float64)
    garbage = x.clone()
    padded = ~mask
    garbage[padded] = float("nan")
    if fld.node_axes == 2:
        garbage[:, :, 1][padded[:, 1]] = float("inf")
    relaxed = (g.matrix(torch.float64) * 0.9 + 0.025).requires_grad_(True)
    y = Permutation(g.index, relaxed).act(garbage, fld, mask)
    real = zero_padded(torch.ones_like(x), mask, fld.node_axes).bool()
    moved = g.act(real.double(), fld).bool()
    assert bool(torch.isfinite(y[moved]).all())
    y[moved].sum().backward()
    assert bool(torch.isfinite(relaxed.grad).all())
