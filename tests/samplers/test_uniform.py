"""Group averaging (Uniform): no parameters, ignores x, Haar over real nodes, centroid origin."""

from __future__ import annotations

import pytest
import torch

import probsym
from cases import CASES, Case, assert_valid_element, make_batch, signature
from probsym import fields, groups, samplers

UNIFORM = [c for c in CASES if c.method == "ga"]


@pytest.mark.parametrize("case", UNIFORM, ids=[c.id for c in UNIFORM])
def test_uniform_has_no_parameters_and_ignores_x(case: Case):
    sig = signature(case.group)
    sampler = case.sampler(sig)
    assert list(sampler.parameters()) == []
    a = make_batch(case.group, seed=0)
    b = make_batch(case.group, seed=1)  # same sizes, other values
    noise = sampler.sample_noise(a, 3, generator=torch.Generator().manual_seed(0))
    ga, gb = sampler(a, 3, noise=noise), sampler(b, 3, noise=noise)
    parts_a = ga.elements.parts if len(case.group.factors) > 1 else (ga.elements,)
    parts_b = gb.elements.parts if len(case.group.factors) > 1 else (gb.elements,)
    for pa, pb in zip(parts_a, parts_b, strict=True):
        if isinstance(pa, groups.Rigid):  # the translation is x's centroid; the rotation is not x's
            assert torch.equal(pa.rotation, pb.rotation)
        else:
            for x, y in zip(pa.tensors(), pb.tensors(), strict=True):
                assert torch.equal(x, y)
    assert float(ga.regularization) == 0.0 and ga.relaxed is None


def test_uniform_permutations_are_uniform_over_real_nodes():
    """Chi-square over S_3 acting on the 3 real nodes of a padded graph (2,400 draws)."""
    sig = probsym.Signature({"x": fields.node}, fields.scalar)
    mask = torch.tensor([[False, True, True, False, True]])
    batch = {"x": torch.zeros(1, 5, 1), "mask": mask}
    out = samplers.Uniform(groups.Sn(), sig)(
        batch, 2400, generator=torch.Generator().manual_seed(5)
    )
    index = out.elements.index  # slot r of g⁻¹·x holds node index[r]: real nodes first
    assert bool((index[:, 3:] == torch.tensor([0, 3])).all()), "padded nodes last, in order"
    codes = (index[:, :3] * torch.tensor([25, 5, 1])).sum(1)
    counts = torch.bincount(codes, minlength=125).double()
    counts = counts[counts > 0]
    assert counts.numel() == 6 and counts.sum() == 2400
    chi2 = float(((counts - 400) ** 2 / 400).sum())
    p_value = float(torch.special.gammaincc(torch.tensor(2.5), torch.tensor(chi2 / 2)))
    assert p_value > 1e-6


@pytest.mark.parametrize("group", [groups.E(3), groups.SE(2)], ids=repr)
def test_uniform_translation_is_the_masked_centroid(group):
    batch = make_batch(group)
    out = samplers.Uniform(group, signature(group))(batch, 2)
    w = batch["mask"].unsqueeze(-1).float()
    centroid = (batch["pos"] * w).sum(1) / w.sum(1)
    torch.testing.assert_close(out.elements.translation, centroid.repeat_interleave(2, dim=0))


def test_uniform_euclidean_needs_a_point_input():
    sig = probsym.Signature({"vel": fields.node_vector}, fields.scalar)
    with pytest.raises(ValueError, match="point input"):
        samplers.Uniform(groups.E(3), sig)
    samplers.Uniform(groups.O(3), sig)  # rotations alone need no origin


@pytest.mark.parametrize("group", [groups.O(3), groups.SO(3), groups.SE(2)], ids=repr)
def test_uniform_rotations_are_orthogonal_in_float32(group):
    """Ill-conditioned Gaussian frames (about 1% of draws) must still give orthogonal R."""
    sig = probsym.Signature({"pos": fields.point}, fields.scalar, mask=None)
    batch = {"pos": torch.zeros(10_000, group.dim)}
    out = samplers.Uniform(group, sig)(batch, 1, generator=torch.Generator().manual_seed(0))
    assert_valid_element(group, out.elements, None, 1e-5)


@pytest.mark.parametrize("group", [groups.O(3), groups.SE(2), groups.Sn() * groups.SO(3)], ids=str)
def test_spatial_group_without_a_vector_or_point_input_is_rejected(group):
    sig = probsym.Signature({"x": fields.node, "adj": fields.pair}, fields.scalar)
    with pytest.raises(
        ValueError, match=r"needs at least one vector or point input .* declares none"
    ):
        samplers.Uniform(group, sig)
