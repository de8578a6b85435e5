"""Group laws for every group (products included), validity of sampled elements, Haar sampling.

Permutations compare as integers, exactly. Matrices use the tolerance table of STYLE.md:
``‖RᵀR − I‖∞`` and ≤ 3 compositions within 1e-5 (float32) / 1e-12 (float64).
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from cases import assert_valid_element
from probsym import groups
from probsym.groups import Orthogonal, Permutation, ProductElement
from probsym.testing.strategies import PaddedGraphs, all_groups, sample_element, sizes

GROUPS = all_groups()
GROUP_IDS = [repr(g).replace(" × ", "*") for g in GROUPS]
SEEDS = st.integers(0, 2**32 - 1)


def parts(g) -> list:
    return list(g.parts) if isinstance(g, ProductElement) else [g]


def assert_same_element(a, b, atol: float) -> None:
    """Permutations equal as integers; rotations and translations within ``atol``."""
    for x, y in zip(parts(a), parts(b), strict=True):
        assert type(x) is type(y)
        if isinstance(x, Permutation):
            assert x.index.dtype == torch.long
            assert torch.equal(x.index, y.index)
        elif isinstance(x, Orthogonal):
            assert max_abs(x.matrix, y.matrix) <= atol
        else:
            assert max_abs(x.rotation, y.rotation) <= atol
            # translations are O(1)-O(10): the bound is relative to their size
            scale = 1.0 + float(y.translation.abs().max())
            assert max_abs(x.translation, y.translation) <= atol * scale


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape and a.dtype == b.dtype
    return float((a - b).abs().max())


def draw_elements(group, graph_sizes, n, seeds, dtype, scatter=False):
    mask = PaddedGraphs(tuple(graph_sizes), n, seeds[0], scatter=scatter).mask()
    b = len(graph_sizes)
    return mask, [sample_element(group, b, seed, mask=mask, dtype=dtype) for seed in seeds]


@pytest.mark.parametrize("group", GROUPS, ids=GROUP_IDS)
@given(shape=sizes(), seeds=st.tuples(SEEDS, SEEDS, SEEDS), scatter=st.booleans())
@example(shape=((1,), 1), seeds=(0, 1, 2), scatter=False)  # a single node
@example(shape=((4, 4), 4), seeds=(0, 1, 2), scatter=False)  # no padding
def test_group_laws(group, float_tolerance, shape, seeds, scatter):
    """Sampled elements are valid; associativity, identity and inverse hold."""
    tol, dtype = float_tolerance.matrix, float_tolerance.dtype
    graph_sizes, n = shape
    mask, (a, b, c) = draw_elements(group, graph_sizes, n, seeds, dtype, scatter)
    for g in (a, b, c):
        assert_valid_element(group, g, mask, tol)
        assert all(t.dtype in (torch.long, dtype) for t in g.tensors())
    assert_same_element((a @ b) @ c, a @ (b @ c), tol)
    e = group.identity(len(graph_sizes), n, dtype=dtype)
    assert_valid_element(group, e, None, 0.0)
    assert_same_element(e @ a, a, tol)
    assert_same_element(a @ e, a, tol)
    assert_same_element(a @ a.inverse(), e, tol)
    assert_same_element(a.inverse() @ a, e, tol)
    assert_same_element(a.inverse().inverse(), a, tol)
    assert_valid_element(group, a.inverse(), mask, tol)
    assert_valid_element(group, a @ b, mask, tol)


def test_permutation_composition_convention():
    # (g @ h).index = g.index[h.index]: node j goes to h(j), then to g(h(j))
    g = Permutation(torch.tensor([[1, 2, 0]]))
    h = Permutation(torch.tensor([[0, 2, 1]]))
    assert (g @ h).index.tolist() == [[1, 0, 2]]
    assert g.inverse().index.tolist() == [[2, 0, 1]]


@pytest.mark.parametrize("group", GROUPS, ids=GROUP_IDS)
def test_group_repr_round_trips_through_from_name(group):
    assert groups.from_name(repr(group)) == group
    assert hash(groups.from_name(repr(group))) == hash(group)


def test_products_flatten_and_reject_two_factors_on_one_axis():
    g = (groups.Sn() * groups.SO(3)).factors
    assert g == (groups.Sn(), groups.SO(3))
    assert repr(groups.Sn() * groups.E(3)) == "S_n × E(3)"
    assert groups.Sn() * groups.E(3) != groups.Sn() * groups.SE(3)
    assert groups.O(2) != groups.O(3) and groups.O(3) != groups.SO(3)
    with pytest.raises(ValueError, match="node-permuting"):
        groups.Sn() * groups.Sn()
    with pytest.raises(ValueError, match="one spatial factor"):
        groups.O(3) * groups.E(3)


@pytest.mark.parametrize("group", [g for g in GROUPS if len(g.factors) > 1], ids=repr)
def test_split_and_join_element_round_trip(group):
    g = sample_element(group, 2, seed=0, n=4)
    split = groups.split_element(group, g)
    assert isinstance(split["permutation"], Permutation)
    assert split["spatial"] is not None
    again = groups.join_element(group, split["permutation"], split["spatial"])
    assert_same_element(again, g, 0.0)


# --- Haar sampling ---------------------------------------------------------------------------


def chi_square_p_value(counts: torch.Tensor) -> float:
    """Upper tail of the chi-square statistic of uniform ``counts`` (df = bins - 1)."""
    expected = counts.sum() / counts.numel()
    statistic = float(((counts - expected) ** 2 / expected).sum())
    df = counts.numel() - 1
    return float(torch.special.gammaincc(torch.tensor(df / 2.0), torch.tensor(statistic / 2.0)))


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
def test_sn_sampling_is_uniform_chi_square(padded):
    draws = 2400
    gen = torch.Generator().manual_seed(2024)
    if padded:  # 4 real nodes scattered among 6 slots
        mask = torch.tensor([[True, False, True, True, False, True]]).expand(draws, 6)
        index = groups.Sn().sample(draws, mask=mask, generator=gen).index
        assert torch.equal(index[~mask], torch.arange(6).expand(draws, 6)[~mask])
        index = index[mask].reshape(draws, 4)
        index = torch.searchsorted(torch.tensor([0, 2, 3, 5]), index)  # slots -> 0..3
    else:
        index = groups.Sn().sample(draws, n=4, generator=gen).index
    codes = (index * torch.tensor([64, 16, 4, 1])).sum(1)
    counts = torch.bincount(codes, minlength=256).double()
    permutations = [
        p
        for p in range(256)
        if sorted(((p >> 6) & 3, (p >> 4) & 3, (p >> 2) & 3, p & 3)) == [0, 1, 2, 3]
    ]
    assert len(permutations) == 24
    assert counts.sum() == counts[permutations].sum() == draws
    assert chi_square_p_value(counts[permutations]) > 1e-6  # ~ |z| <= 5


def haar_matrices(source: str, group, draws: int, dtype) -> torch.Tensor:
    gen = torch.Generator().manual_seed(7)
    if source == "group":
        g = group.sample(draws, generator=gen, dtype=dtype)
        return g.matrix if isinstance(g, Orthogonal) else g.rotation
    from probsym import fields, samplers
    from probsym.signature import Signature

    sig = Signature({"v": fields.vector}, fields.vector, mask=None)
    sampler = samplers.Uniform(group, sig)
    v = torch.zeros(draws, 1, group.dim, dtype=dtype)
    return sampler({"v": v}, 1, generator=gen).elements.matrix


@pytest.mark.parametrize("source", ["group", "uniform_sampler"])
@pytest.mark.parametrize("group", [groups.O(2), groups.O(3), groups.SO(2), groups.SO(3)], ids=repr)
def test_orthogonal_sampling_moments(group, source, float_tolerance):
    draws = 4000
    r = haar_matrices(source, group, draws, float_tolerance.dtype).double()
    d = group.dim
    # E[R] = 0 and E[R_ij^2] = 1/d, each entry within 5 standard errors
    se_mean = r.std(dim=0) / math.sqrt(draws)
    assert bool((r.mean(dim=0).abs() <= 5 * se_mean).all()), r.mean(dim=0)
    squares = r.square()
    se_square = squares.std(dim=0) / math.sqrt(draws)
    assert bool(((squares.mean(dim=0) - 1 / d).abs() <= 5 * se_square).all()), squares.mean(0)
    det = torch.linalg.det(r)
    if group.proper:
        assert bool(((det - 1).abs() <= float_tolerance.matrix * 10).all())
    else:
        positive = float((det > 0).double().mean())
        assert abs(positive - 0.5) <= 5 * 0.5 / math.sqrt(draws), positive


def test_rigid_sampling_translations_are_standard_normal():
    g = groups.E(3).sample(4000, generator=torch.Generator().manual_seed(3))
    t = g.translation.double()
    assert bool((t.mean(0).abs() <= 5 / math.sqrt(4000)).all())
    assert bool(((t.var(0) - 1).abs() <= 5 * math.sqrt(2 / 4000)).all())
