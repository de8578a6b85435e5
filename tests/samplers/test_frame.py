"""Frame averaging: frame sizes, PCA frames, spectral keys, sampled signs; degenerate geometry."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import probsym
from cases import CASES, Case, assert_valid_element, make_batch, make_model, signature
from probsym import fields, groups, samplers
from probsym.samplers.frame import spectral_key
from probsym.testing import equivariance_error
from probsym.testing.strategies import PointClouds, point_clouds, sample_element


@pytest.mark.parametrize(
    ("group", "size"),
    [(groups.O(2), 4), (groups.SO(2), 2), (groups.O(3), 8), (groups.SE(3), 4), (groups.Sn(), 1)],
    ids=repr,
)
def test_enumerated_frame_sizes(group, size):
    sig = signature(group)
    frame = samplers.Frame(group, sig)
    assert frame.samples_per_input(3) == 3 * size
    assert samplers.Frame(group, sig, signs="sample").samples_per_input(3) == 3
    model, batch = make_model(Case(group, "fa"), num_samples=3)
    out = model(**batch, keep_samples=True)
    first = next(iter(out.per_sample.values()))
    assert first.shape[:2] == (3, 3 * size)


@pytest.mark.parametrize("group", [groups.O(3), groups.SO(3), groups.E(2)], ids=repr)
def test_pca_frame_diagonalises_the_second_moment(group):
    batch = make_batch(group)
    sig = signature(group)
    out = samplers.Frame(group, sig)(batch, 1)
    g = out.elements
    r = (g.matrix if isinstance(g, groups.Orthogonal) else g.rotation).double()
    assert_valid_element(group, g, None, 1e-5)
    mask = batch["mask"]
    origin = 0.0
    if group.has_translations:
        w = mask.unsqueeze(-1).double()
        origin = ((batch["pos"] * w).sum(1) / w.sum(1)).unsqueeze(1)
    v = torch.stack([batch["pos"] - origin, batch["vel"]], dim=2).double()
    v = v * mask[:, :, None, None]
    moment = torch.einsum("bncd,bnce->bde", v, v)
    frames = r.reshape(3, -1, r.shape[-1], r.shape[-1])
    rotated = frames.transpose(-1, -2) @ moment.unsqueeze(1) @ frames  # Rᵀ M R
    off_diagonal = rotated - torch.diag_embed(torch.diagonal(rotated, dim1=-2, dim2=-1))
    assert float(off_diagonal.abs().max()) <= 1e-4 * float(moment.abs().max())


@pytest.mark.parametrize("group", [groups.O(3), groups.SE(2), groups.Sn() * groups.E(3)], ids=repr)
def test_sampled_signs_transform_exactly(group):
    """``signs="sample"`` draws one sign choice per sample; axes are oriented by their third
    moment, so the exact check (elements compared one by one) applies."""
    sig = signature(group, "equivariant")
    batch = make_batch(group)
    sampler = samplers.Frame(group, sig, signs="sample")
    assert sampler.elements_transform_exactly
    base_model, _ = make_model(Case(group, "fa"), batch=batch)
    model = probsym.Symmetrize(base_model.base, sampler, num_samples=4)
    report = equivariance_error(model, batch, generator=torch.Generator().manual_seed(0))
    assert any(row.name.startswith("elements: rotation") for row in report.outputs), report
    assert report.passed(atol=1e-5, rtol=1e-5), report


def test_spectral_key_is_permutation_equivariant_and_padding_free():
    gen = torch.Generator().manual_seed(0)
    n = 6
    upper = torch.triu(torch.rand(2, n, n, generator=gen) < 0.5, diagonal=1)
    adj = (upper | upper.transpose(1, 2)).double()
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    adj = adj * (mask.unsqueeze(1) & mask.unsqueeze(2))
    key = spectral_key(adj, mask)
    g = sample_element(groups.Sn(), 2, seed=1, mask=mask)
    permuted = g.act(adj.unsqueeze(-1), fields.pair, mask).squeeze(-1)
    torch.testing.assert_close(spectral_key(permuted, mask), g.act(key, fields.node, mask))
    # the eigenspace projectors' diagonals: each real node's row sums to 1
    torch.testing.assert_close(key.square().sum(-1)[mask], torch.ones(10, dtype=key.dtype))


def test_spectral_key_of_a_single_node():
    key = spectral_key(torch.zeros(3, 1, 1), torch.ones(3, 1, dtype=torch.bool))
    assert key.shape == (3, 1, 1) and torch.equal(key, torch.ones(3, 1, 1))


def test_frame_permutation_sorts_distinct_keys_and_ignores_tie_noise():
    """A path graph has a mirror automorphism; node features break it: the frame is one element."""
    n = 5
    adj = torch.zeros(1, n, n, 1)
    i = torch.arange(n - 1)
    adj[0, i, i + 1, 0] = adj[0, i + 1, i, 0] = 1.0
    x = torch.tensor([[[0.3], [0.1], [0.5], [0.2], [0.4]]])
    sig = probsym.Signature({"x": fields.node, "adj": fields.pair}, fields.node)
    frame = samplers.Frame(groups.Sn(), sig)
    batch = {"x": x, "adj": adj, "mask": torch.ones(1, n, dtype=torch.bool)}
    g = frame(batch, 4, generator=torch.Generator().manual_seed(0)).elements
    assert bool((g.index == g.index[:1]).all()), "distinct keys: every sample is the same"
    # g⁻¹·keys lists the nodes in ascending lexicographic key order
    keys = g.inverse().act(frame.node_keys(batch).repeat(4, 1, 1), fields.node)[0]
    for a, b in zip(keys[:-1], keys[1:], strict=True):
        differ = (a != b).nonzero()
        assert len(differ) and a[differ[0, 0]] < b[differ[0, 0]], (a, b)


def test_frame_breaks_exact_ties_uniformly():
    """On the 4-cycle every node is equivalent: the frame is all of S_4, drawn uniformly."""
    n = 4
    adj = torch.zeros(1, n, n, 1)
    i = torch.arange(n)
    adj[0, i, (i + 1) % n, 0] = adj[0, (i + 1) % n, i, 0] = 1.0
    sig = probsym.Signature({"adj": fields.pair}, fields.scalar)
    batch = {"adj": adj, "mask": torch.ones(1, n, dtype=torch.bool)}
    index = samplers.Frame(groups.Sn(), sig)(
        batch, 2400, generator=torch.Generator().manual_seed(0)
    )
    codes = (index.elements.index * torch.tensor([64, 16, 4, 1])).sum(1)
    counts = torch.bincount(codes, minlength=256)
    assert int((counts > 0).sum()) == 24
    assert int(counts.max()) < 160 and int(counts[counts > 0].min()) > 50  # ~100 each


# --- degenerate geometry: no unique frame, so no equivariance claim; outputs stay finite ----------

SPATIAL = [c for c in CASES if c.group.dim is not None and not c.group.acts_on_nodes]
DEGENERATE = [
    (case, kind)
    for case in SPATIAL
    for kind in ("equal", "collinear", "coplanar")
    if not (kind == "coplanar" and case.group.dim == 2)  # every 2-D cloud is coplanar
]


@pytest.mark.parametrize(("case", "kind"), DEGENERATE, ids=[f"{c.id}-{k}" for c, k in DEGENERATE])
def test_degenerate_clouds_give_finite_outputs_and_valid_elements(case: Case, kind):
    batch = PointClouds((5, 3, 1), 5, case.group.dim, seed=0, kind=kind).build()
    model, batch = make_model(case, "equivariant", "mlp", batch=batch, num_samples=2)
    for mode in (model.train, model.eval):
        mode()
        out = model(**batch, keep_samples=True)
        s = out.samples.elements.batch_size // 3
        with torch.no_grad():
            assert_valid_element(case.group, out.samples.elements.detach(), None, 1e-5)
        for name, value in out.value.items():
            assert bool(torch.isfinite(value).all()), (name, mode)
        assert bool(torch.isfinite(out.regularization).all())
        assert s >= 2


@given(
    spec=point_clouds(degenerate=True, max_batch=3, max_nodes=5),
    method=st.sampled_from(["ga", "fa", "ps", "canonical"]),
    group_class=st.sampled_from([groups.O, groups.SO, groups.E, groups.SE]),
)
def test_degenerate_clouds_property(spec, method, group_class):
    group = group_class(spec.dim)
    torch.manual_seed(spec.seed % 2**31)
    model, batch = make_model(Case(group, method), "invariant", "mlp", batch=spec.build())
    with torch.no_grad():
        out = model(**batch, keep_samples=True)
    assert_valid_element(group, out.samples.elements, None, 1e-5)
    assert bool(torch.isfinite(out.value).all())
