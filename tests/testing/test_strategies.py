"""The public hypothesis strategies build what they promise."""

from __future__ import annotations

import pytest
import torch
from hypothesis import Phase, assume, find, given, settings
from hypothesis import strategies as st

import probsym
from probsym import fields, groups
from probsym.groups import split_element
from probsym.testing import strategies, transform_inputs
from probsym.testing.strategies import (
    PaddedGraphs,
    ZooInput,
    padded_graphs,
    point_clouds,
    zoo_inputs,
)


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


# --- the input zoo ---------------------------------------------------------------------------


def _centred_rank(spec: ZooInput, batch, i: int, velocities: bool = True) -> int:
    """Rank of item ``i``'s centred positions (together with its velocities)."""
    real = batch["mask"][i]
    pos = batch["pos"][i][real]
    parts = [pos - pos.mean(0)] + ([batch["vel"][i][real]] if velocities else [])
    centred = torch.cat(parts) / spec.scale
    return int(torch.linalg.matrix_rank(centred, atol=1e-9 * (1 + abs(spec.offset))))


@given(group=strategies.groups(), data=st.data())
def test_zoo_inputs_fit_the_group(group, data):
    spec = data.draw(zoo_inputs(group, max_nodes=12))
    names = spec.fields()
    batch = spec.build()
    assert set(batch) == {*names, "mask"} and names
    if group.dim is not None:
        assert spec.dim == group.dim and names["pos"] == fields.node_point
    if not group.acts_on_nodes:
        assert "adj" not in names
    assert spec.dim is not None or spec.kind not in strategies.GEOMETRIC_KINDS
    b, n = spec.batch_size, spec.num_nodes
    assert batch["mask"].shape == (b, n) and batch["mask"].sum(1).tolist() == list(spec.sizes)
    for name, fld in names.items():
        x = batch[name]
        assert x.shape[: 1 + fld.node_axes] == (b, *[n] * fld.node_axes)
        assert x.shape[-1] == (spec.dim if fld.geometry != "scalar" else x.shape[-1])
        assert bool(torch.isfinite(x).all())


@pytest.mark.parametrize("kind", strategies.SHAPE_KINDS)
def test_zoo_kinds_are_all_reachable(kind):
    quick = settings(database=None, phases=[Phase.generate], max_examples=300, derandomize=True)
    spec = find(zoo_inputs(groups.E(3)), lambda s: s.kind == kind, settings=quick)
    assert spec.degenerate == (kind != "random")


@given(
    kind=st.sampled_from(strategies.SHAPE_KINDS),
    dim=st.sampled_from([2, 3]),
    size=st.integers(1, 10),
    scale=st.sampled_from(strategies.SCALES),
    offset=st.sampled_from(strategies.OFFSETS),
    seed=st.integers(0, 2**32 - 1),
)
def test_zoo_kinds_have_the_promised_rank(kind, dim, size, scale, offset, seed):
    assume(kind != "coplanar" or dim == 3)
    spec = ZooInput(kind, (size, size), 10, dim, scale, offset, has_vectors=True, seed=seed)
    batch = spec.build(torch.float64)
    # coincident: one position and one common velocity (rank 1 with it, 0 without)
    expected = {"coincident": 1, "collinear": 1, "coplanar": 2}.get(kind)
    for i in range(spec.batch_size):
        rank = _centred_rank(spec, batch, i)
        if kind == "coincident":
            assert _centred_rank(spec, batch, i, velocities=False) == 0
        if expected is not None:
            assert rank <= expected, (kind, rank)
        elif kind == "random":  # generic: full rank as soon as there are d vectors
            assert rank == min(dim, 2 * size - 1), (rank, size)
    if kind == "coincident":  # every node equal, not merely the positions
        real = batch["mask"][0]
        assert bool((batch["pos"][0][real] == batch["pos"][0][real][0]).all())
        assert bool((batch["vel"][0][real] == batch["vel"][0][real][0]).all())


@given(
    dim=st.sampled_from([None, 2, 3]),
    sizes=st.lists(st.integers(1, 10), min_size=1, max_size=3),
    scatter=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_symmetric_clouds_are_invariant_under_their_symmetry(dim, sizes, scatter, seed):
    spec = ZooInput(
        "symmetric",
        tuple(sizes),
        10,
        dim,
        offset=3.0,
        has_vectors=dim is not None,
        has_scalars=True,
        has_adjacency=True,
        scatter=scatter,
        seed=seed,
    )
    batch = spec.build(torch.float64)
    g = spec.symmetry()
    group = groups.Sn() if dim is None else groups.Sn() * groups.E(dim)
    group.check_element(g)
    signature = probsym.Signature(spec.fields(), fields.scalar)
    moved = transform_inputs(g, batch, signature)
    for name in spec.fields():
        assert torch.allclose(moved[name], batch[name], atol=1e-12, rtol=0), name
    parts = split_element(group, g)
    index, mask = parts["permutation"].index, batch["mask"]
    slots = torch.arange(10).expand_as(index)
    assert torch.equal(index[~mask], slots[~mask]), "padding stays in place"
    for i, k in enumerate(sizes):  # a non-trivial symmetry whenever the item has 2 nodes
        if k >= 2:
            moves_nodes = not torch.equal(index[i], slots[i])
            if dim is None:
                assert moves_nodes
            else:
                rotation = parts["spatial"].rotation[i]
                assert moves_nodes or not torch.allclose(rotation, torch.eye(dim))


def test_only_symmetric_recipes_have_a_symmetry():
    with pytest.raises(ValueError, match="symmetric"):
        ZooInput("random", (3,), 3, 3).symmetry()


@given(
    sizes=st.lists(st.integers(1, 8), min_size=1, max_size=4),
    extra=st.integers(0, 4),
    seed=st.integers(0, 2**32 - 1),
)
def test_scattered_masks_are_not_prefixes_and_keep_the_content(sizes, extra, seed):
    n = max(sizes) + extra
    common = dict(has_vectors=True, has_scalars=True, has_adjacency=True, seed=seed)
    first = ZooInput("random", tuple(sizes), n, 3, **common)
    scattered = ZooInput("random", tuple(sizes), n, 3, scatter=True, **common)
    a, b = first.build(torch.float64), scattered.build(torch.float64)
    prefix = torch.arange(n) < torch.tensor(sizes).unsqueeze(1)
    assert torch.equal(a["mask"], prefix)
    assert b["mask"].sum(1).tolist() == sizes
    for i, k in enumerate(sizes):
        if k < n:
            assert not torch.equal(b["mask"][i], prefix[i]), "a scattered mask is never a prefix"
        ra, rb = a["mask"][i], b["mask"][i]
        for name in ("pos", "vel", "h"):  # the same nodes, in the same order, at other slots
            assert torch.equal(a[name][i][ra], b[name][i][rb])
        assert torch.equal(a["adj"][i][ra][:, ra], b["adj"][i][rb][:, rb])
    # nor does the content depend on the padded size or the other items
    wider = ZooInput("random", tuple(sizes), n + 3, 3, **common).build(torch.float64)
    assert torch.equal(wider["pos"][:, :n], a["pos"])
    alone = ZooInput("random", tuple(sizes[:1]), n, 3, **common).build(torch.float64)
    assert torch.equal(alone["pos"][0], a["pos"][0])


@pytest.mark.parametrize("padding", ["zero", "noise", "huge"])
def test_zoo_padding_holds_garbage_but_real_values_do_not_change(padding):
    spec = ZooInput(
        "random", (2, 5, 1), 6, 3, has_vectors=True, has_scalars=True, has_adjacency=True,
        scatter=True, seed=7,
    )  # fmt: skip
    clean, dirty = spec.build(), spec.build(padding=padding)
    mask = clean["mask"]
    pair = mask.unsqueeze(2) & mask.unsqueeze(1)
    for name, fld in spec.fields().items():
        real = pair if fld.node_axes == 2 else mask
        assert torch.equal(clean[name][real], dirty[name][real])
        assert bool(torch.isfinite(dirty[name]).all())
        padded = dirty[name][~real]
        if padding == "zero":
            assert bool((padded == 0).all())
        elif padding == "huge":
            assert bool((padded.abs() == 1e30).all())
        else:
            assert bool((padded != 0).all())


def test_zoo_scale_offset_and_dtype():
    base = ZooInput("random", (4, 3), 5, 3, has_vectors=True, seed=3)
    unit = base.build(torch.float64)
    moved = ZooInput("random", (4, 3), 5, 3, 1e-6, 1e3, has_vectors=True, seed=3).build(
        torch.float64
    )
    real = unit["mask"].unsqueeze(-1)
    expected = torch.where(real, 1e-6 * (unit["pos"] + 1e3), 0.0)
    assert torch.allclose(moved["pos"], expected, rtol=1e-12, atol=0)
    assert torch.allclose(moved["vel"], 1e-6 * unit["vel"], rtol=1e-12, atol=0)
    single = base.build(torch.float32)
    assert single["pos"].dtype == torch.float32
    assert torch.equal(single["pos"], unit["pos"].float())


def test_zoo_input_rejects_what_it_cannot_build():
    with pytest.raises(ValueError, match="coplanar"):
        ZooInput("coplanar", (3,), 3, 2)
    with pytest.raises(ValueError, match="sizes"):
        ZooInput("random", (4,), 3, 3)
    with pytest.raises(ValueError, match="has_scalars or has_adjacency"):
        ZooInput("random", (3,), 3, None)
    with pytest.raises(ValueError, match="dim"):
        ZooInput("collinear", (3,), 3, None, has_scalars=True)
    with pytest.raises(ValueError, match="padding"):
        ZooInput("random", (3,), 3, 3).build(padding="nan")
