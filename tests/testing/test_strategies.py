"""The public hypothesis strategies build what they promise."""

from __future__ import annotations

import pytest
import torch
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st

from probsym import groups
from probsym.testing import strategies
from probsym.testing.strategies import PaddedGraphs, padded_graphs, point_clouds


def test_all_groups_lists_every_group_in_both_dimensions():
    names = {repr(g) for g in strategies.all_groups()}
    assert len(names) == 17
    for name in ("S_n", "O(2)", "SO(3)", "E(2)", "SE(3)", "S_n × O(3)", "S_n × SE(2)"):
        assert name in names
    assert strategies.all_groups(dims=(3,))[1:5] == [
        groups.O(3),
        groups.SO(3),
        groups.E(3),
        groups.SE(3),
    ]


@given(spec=point_clouds(degenerate=False))
def test_point_clouds_without_degenerate_kinds_are_random(spec):
    assert spec.kind == "random" and not spec.degenerate


@given(spec=padded_graphs(), data=st.data())
def test_padded_graphs_build_valid_padded_batches(spec, data):
    padding = data.draw(st.sampled_from(["zero", "noise"]))
    batch = spec.build(padding=padding)
    x, adj, mask = batch["x"], batch["adj"], batch["mask"]
    b, n = len(spec.sizes), spec.num_nodes
    assert x.shape == (b, n, spec.channels) and adj.shape == (b, n, n, 1)
    assert mask.dtype == torch.bool and mask.sum(1).tolist() == list(spec.sizes)
    assert torch.equal(mask, spec.mask())
    assert all(1 <= size <= n for size in spec.sizes)
    real = mask.unsqueeze(2) & mask.unsqueeze(1)
    block = adj[..., 0][real]
    assert bool(((block == 0) | (block == 1)).all())
    assert torch.equal(adj[..., 0] * real, (adj[..., 0] * real).transpose(1, 2))
    assert bool((torch.diagonal(adj[..., 0], dim1=1, dim2=2)[mask] == 0).all())
    if padding == "zero":
        assert bool((x[~mask] == 0).all()) and bool((adj[..., 0][~real] == 0).all())
    else:
        assert bool((x[~mask] != 0).all())
    if not spec.scatter:
        assert torch.equal(mask, torch.arange(n) < torch.tensor(spec.sizes).unsqueeze(1))
    # the same recipe builds the same tensors
    again = spec.build(padding=padding)
    assert all(torch.equal(batch[k], again[k]) for k in batch)


@given(spec=point_clouds(degenerate=True))
def test_point_clouds_have_the_promised_rank(spec):
    assert spec.dim in (2, 3) and (spec.kind != "coplanar" or spec.dim == 3)
    batch = spec.build(dtype=torch.float64)
    mask = batch["mask"]
    assert batch["pos"].shape == (len(spec.sizes), spec.num_nodes, spec.dim)
    expected = {"equal": 0, "collinear": 1, "coplanar": 2}.get(spec.kind)
    for i in range(len(spec.sizes)):
        pos = batch["pos"][i][mask[i]]
        centred = torch.cat([pos - pos.mean(0), batch["vel"][i][mask[i]]])
        rank = int(torch.linalg.matrix_rank(centred, atol=1e-8))
        if expected is not None:
            assert rank <= expected, (spec.kind, rank)
        assert bool(torch.isfinite(pos).all())


@pytest.mark.parametrize("kind", ["random", *strategies.DEGENERATE_KINDS])
def test_point_cloud_kinds_are_all_reachable(kind):
    quick = settings(database=None, phases=[Phase.generate], max_examples=200, derandomize=True)
    spec = find(point_clouds(dims=(3,)), lambda s: s.kind == kind, settings=quick)
    assert spec.degenerate == (kind != "random")


@given(group=strategies.groups(), data=st.data())
def test_elements_are_valid_and_reproducible(group, data):
    spec = data.draw(padded_graphs(max_batch=3, max_nodes=5))
    mask = spec.mask()
    g = data.draw(strategies.elements(group, len(spec.sizes), mask=mask))
    group.check_element(g)
    assert g.batch_size == len(spec.sizes)
    for part in g.parts if isinstance(g, groups.ProductElement) else (g,):
        if isinstance(part, groups.Permutation):
            slots = torch.arange(mask.shape[1]).expand_as(part.index)
            assert torch.equal(part.index[~mask], slots[~mask])
    h = strategies.sample_element(group, len(spec.sizes), 123, mask=mask)
    h_again = strategies.sample_element(group, len(spec.sizes), 123, mask=mask)
    assert all(torch.equal(a, b) for a, b in zip(h.tensors(), h_again.tensors(), strict=True))


def test_single_node_and_unpadded_recipes():
    single = PaddedGraphs((1,), 1, seed=0).build()
    assert single["adj"].shape == (1, 1, 1, 1) and bool(single["mask"].all())
    full = PaddedGraphs((4, 4), 4, seed=0).build()
    assert bool(full["mask"].all())
