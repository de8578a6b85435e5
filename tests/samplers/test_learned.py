"""The Learned sampler (PS) and Canonical: gradients, training/eval behaviour, determinism."""

from __future__ import annotations

import pytest
import torch

from cases import CASES, Case, assert_valid_element, make_batch, make_model, signature
from probsym import fields, groups, samplers
from probsym.signature import Signature

LEARNED = [c for c in CASES if c.method in ("ps", "canonical")]


def loss_of(out) -> torch.Tensor:
    values = out.value.values() if isinstance(out.value, dict) else [out.value]
    return sum(v.square().mean() for v in values) + out.regularization


@pytest.mark.parametrize("case", LEARNED, ids=[c.id for c in LEARNED])
def test_gradients_reach_every_sampler_parameter(case: Case):
    """One backward through Symmetrize in train mode: S_n through the straight-through relaxation,
    O(d)/SO(d)/E(d) through Gram–Schmidt, products through both."""
    model, batch = make_model(case, "equivariant", "mlp", num_samples=3)
    model.train()
    model(**batch)  # materialise the lazy modules before reading parameters
    model.zero_grad()
    out = model(**batch, generator=torch.Generator().manual_seed(0))
    loss_of(out).backward()
    named = dict(model.sampler.named_parameters())
    assert named, "a learned sampler has parameters"
    missing = [k for k, p in named.items() if p.grad is None]
    assert not missing, f"no gradient: {missing}"
    assert all(bool(torch.isfinite(p.grad).all()) for p in named.values())
    # "Non-zero" must mean more than float noise: a parameter that cannot change the output (a
    # bias before a batch norm, or cancelled by centring or a softmax) still gets ~1e-7 relative
    # rounding. Compare with the largest gradient of the same network (scores / vectors).
    largest: dict[str, float] = {}
    for k, p in named.items():
        net = k.split(".")[0]
        largest[net] = max(largest.get(net, 0.0), float(p.grad.abs().max()))
    dead = [
        k for k, p in named.items() if float(p.grad.abs().max()) <= 1e-5 * largest[k.split(".")[0]]
    ]
    assert not dead, f"zero (float-noise) gradient: {dead}"


@pytest.mark.parametrize("group", [groups.Sn(), groups.Sn() * groups.SO(3)], ids=["Sn", "Sn*SO3"])
def test_training_relaxes_permutations_and_eval_does_not(group):
    model, batch = make_model(Case(group, "ps"), "invariant", "mlp", num_samples=2)
    model.train()
    out = model(**batch, keep_samples=True)
    relaxed = out.samples.relaxed
    b, n = batch["mask"].shape
    assert relaxed is not None and relaxed.shape == (b * 2, n, n) and relaxed.requires_grad
    assert out.regularization.ndim == 0 and float(out.regularization.detach()) > 0
    model.eval()
    out = model(**batch, keep_samples=True)
    assert out.samples.relaxed is None and float(out.regularization) == 0.0
    with torch.no_grad():
        model.train()
        assert model(**batch, keep_samples=True).samples.relaxed is None


@pytest.mark.parametrize("case", LEARNED, ids=[c.id for c in LEARNED])
def test_learned_samples_are_valid_elements(case: Case):
    model, batch = make_model(case, "invariant", "mlp")
    model.eval()
    with torch.no_grad():
        out = model(**batch, keep_samples=True, num_samples=3)
    mask = batch["mask"].repeat_interleave(3, dim=0)
    assert_valid_element(case.group, out.samples.elements, mask, 1e-5)
    assert out.samples.elements.batch_size == batch["mask"].shape[0] * 3


@pytest.mark.parametrize(
    "group", [groups.Sn(), groups.SO(3), groups.Sn() * groups.E(2)], ids=["Sn", "SO3", "Sn*E2"]
)
def test_canonical_without_noise_is_deterministic(group):
    model, batch = make_model(Case(group, "canonical"), "equivariant", "transformer")
    assert set(model.sampler.noise_fields) <= {"ties"}  # only the tie-break noise remains
    model.eval()
    with torch.no_grad():
        a = model(**batch, keep_samples=True, generator=torch.Generator().manual_seed(1))
        b = model(**batch, keep_samples=True, generator=torch.Generator().manual_seed(2))
    for x, y in zip(a.samples.elements.tensors(), b.samples.elements.tensors(), strict=True):
        assert torch.equal(x, y)
    for k in a.value:
        assert torch.equal(a.value[k], b.value[k])


def test_learned_noise_makes_samples_differ():
    model, batch = make_model(Case(groups.Sn() * groups.SO(3), "ps"), "invariant", "mlp")
    model.eval()
    with torch.no_grad():
        out = model(**batch, keep_samples=True, num_samples=8)
    rotations = out.samples.elements.parts[1].matrix.reshape(3, 8, 3, 3)
    assert float((rotations[:, 1:] - rotations[:, :1]).abs().amax()) > 1e-2
    index = out.samples.elements.parts[0].index.reshape(3, 8, -1)
    assert bool((index[0, 1:] != index[0, :1]).any())  # 5 real nodes: permutations vary


def test_learned_rejects_bad_options():
    sig = signature(groups.Sn())
    with pytest.raises(ValueError, match="noise_scale"):
        samplers.Learned(groups.Sn(), sig, noise_scale=-1.0)
    with pytest.raises(ValueError, match="tau"):
        samplers.Learned(groups.Sn(), sig, tau=0.0)
    with pytest.raises(ValueError, match="Canonical has no noise"):
        samplers.Canonical(groups.Sn(), sig, noise_scale=1.0)
    with pytest.raises(ValueError, match="adjacency"):
        samplers.Learned(groups.Sn(), sig, adjacency="edges")
    vectors_only = Signature({"vel": fields.node_vector}, fields.scalar)
    with pytest.raises(ValueError, match="point input"):
        samplers.Learned(groups.E(3), vectors_only)
    scalars_only = Signature({"x": fields.node}, fields.scalar)
    with pytest.raises(ValueError, match="vector or point"):
        samplers.Learned(groups.SO(3), scalars_only)


def test_learned_translation_is_the_masked_centroid():
    batch = make_batch(groups.E(3))
    model, _ = make_model(Case(groups.E(3), "ps"), "invariant", "mlp", batch=batch)
    with torch.no_grad():
        out = model(**batch, keep_samples=True, num_samples=2)
    mask = batch["mask"].unsqueeze(-1).float()
    centroid = (batch["pos"] * mask).sum(1) / mask.sum(1)
    translation = out.samples.elements.translation.reshape(3, 2, 3)
    torch.testing.assert_close(translation, centroid.unsqueeze(1).expand(3, 2, 3))


def test_float32_gradient_pass_matches_the_float64_relaxation():
    """Training with float32 inputs runs the float64 score network without autograd (for the
    order) and a float32 copy for the relaxation's gradients: the same order, and a relaxation
    and gradients equal to the all-float64 ones up to float32 rounding."""
    group = groups.Sn() * groups.E(3)
    sig = Signature({"pos": fields.node_point, "vel": fields.node_vector}, fields.node_point)
    sampler = samplers.Learned(group, sig, hidden_dim=16, num_layers=2, tau=0.5).train()
    gen = torch.Generator().manual_seed(0)
    batch32 = {name: torch.randn(4, 6, 3, generator=gen) for name in ("pos", "vel")}
    batch64 = {k: v.double() for k, v in batch32.items()}
    sampler(batch32, 2)  # materialise the lazy layers
    noise = sampler.sample_noise(batch32, 2, gen)
    weights = torch.randn(8, 6, 6, generator=gen, dtype=torch.float64)
    results = []
    for batch in (batch32, batch64):
        sampler.zero_grad()
        out = sampler(batch, 2, noise=noise)
        (out.relaxed.double() * weights).sum().backward()
        grads = [p.grad.clone() for p in sampler.scores.parameters()]
        results.append((out.elements.parts[0].index, out.relaxed.double(), grads))
    (index32, relaxed32, grads32), (index64, relaxed64, grads64) = results
    assert torch.equal(index32, index64)
    torch.testing.assert_close(relaxed32, relaxed64, atol=1e-5, rtol=1e-4)
    for a, b in zip(grads32, grads64, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)
