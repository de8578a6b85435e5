"""``Learned(noise_at=..., antithetic=...)``: exact equivariance, shared trunk, mirrored pairs.

Exactness is checked two ways, in float32 and float64, on padded batches: through the checker
(``equivariance_error`` transforms the noise with the input), and on the sampler alone, where
``h(g·x, g·ε) == g @ h(x, ε)`` must hold element by element (permutations as integers) and the
relaxed permutations must move with the nodes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import probsym
from cases import (
    GROUPS,
    Case,
    element_rows,
    group_id,
    make_base,
    make_batch,
    make_model,
    min_gap,
    output_fields,
    signature,
)
from probsym import fields, groups, samplers
from probsym.errors import InputError
from probsym.groups import split_element
from probsym.samplers import learned
from probsym.samplers.relax import slot_mask
from probsym.testing import equivariance_error, statistical_equivariance_test
from probsym.testing.checker import random_element, transform_inputs
from probsym.testing.strategies import ZooInput, all_groups, zoo_inputs

PERMUTATION_ROW = "elements: permutation (fraction differing)"
TIE_GAP = 1e-4  # STYLE: exclude draws whose sorted keys are this close (never loosen atol)
OPTIONS = [
    dict(noise_at="heads"),
    dict(noise_at="heads", antithetic=True),
    dict(noise_at="input", antithetic=True),
]
OPTION_IDS = ["heads", "heads-antithetic", "input-antithetic"]
TAU = 0.1  # a soft relaxation, so that its entries are not all 0 or 1
SMALL = dict(hidden_dim=16, num_layers=2, vector_channels=8)


@contextmanager
def recorded_key_gaps() -> Iterator[list[float]]:
    """The smallest gap between the keys every learned sort sees (noise included).

    With noise at the heads the score network's output is noiseless; the keys that decide the
    order are the noisy, normalised scores passed to ``order_by_keys``.
    """
    gaps: list[float] = []
    original = learned.order_by_keys

    def recording(keys, mask, *args, **kwargs):
        gaps.append(min_gap(keys, mask))
        return original(keys, mask, *args, **kwargs)

    learned.order_by_keys = recording
    try:
        yield gaps
    finally:
        learned.order_by_keys = original


def exact_report(model, batch, seed):
    """The checker's report, or ``None`` when sorted keys nearly tie on either side."""
    with recorded_key_gaps() as gaps:
        report = equivariance_error(model, batch, generator=torch.Generator().manual_seed(seed))
    return None if gaps and min(gaps) <= TIE_GAP else report


@pytest.mark.parametrize("options", OPTIONS, ids=OPTION_IDS)
@pytest.mark.parametrize("group", GROUPS, ids=[group_id(g) for g in GROUPS])
def test_noise_options_are_exactly_equivariant(group, options, float_tolerance):
    tol = float_tolerance
    case = Case(group, "ps")
    for seed in range(3):
        batch = make_batch(group, seed=seed, dtype=tol.dtype)  # sizes 5, 4, 3 padded to 5
        model, batch = make_model(case, "equivariant", "mlp", batch=batch, **options)
        report = exact_report(model, batch, seed)
        if report is not None:
            break
    else:
        pytest.fail(f"sorted keys tied (gap <= {TIE_GAP}) on 3 inputs")
    rows = element_rows(report)
    if group.acts_on_nodes:
        assert rows[PERMUTATION_ROW] == [0.0], report
    if case.permutation_only:
        assert report.max_abs <= tol.exact, report
    else:
        assert report.passed(atol=tol.output, rtol=tol.output), report


@pytest.mark.parametrize("options", OPTIONS, ids=OPTION_IDS)
@pytest.mark.parametrize(
    "group",
    [groups.Sn(), groups.SO(3), groups.Sn() * groups.E(3), groups.Sn() * groups.O(2)],
    ids=["Sn", "SO3", "Sn*E3", "Sn*O2"],
)
def test_sampler_elements_and_relaxations_move_with_input_and_noise(
    group, options, float_tolerance
):
    """On the sampler alone, in training mode: ``h(g·x, g·ε) == g @ h(x, ε)`` and
    ``P(g·x, g·ε)[σ(i), r] == P(x, ε)[i, r]`` (rows are nodes, columns are slots)."""
    tol = float_tolerance
    sig = signature(group)
    sampler = samplers.Learned(group, sig, tau=TAU, **SMALL, **options).train()
    for seed in range(3):
        gen = torch.Generator().manual_seed(seed)
        batch = make_batch(group, seed=seed, dtype=tol.dtype)
        sampler(batch, 4)  # materialise the lazy layers
        g = random_element(group, batch, sig, gen)
        batch_g = transform_inputs(g, batch, sig)
        noise = sampler.sample_noise(batch, 4, gen)
        noise_g = sampler.transform_noise(g, noise, batch["mask"])
        with recorded_key_gaps() as gaps:
            h = sampler(batch, 4, noise=noise)
            h_g = sampler(batch_g, 4, noise=noise_g)
        if min(gaps, default=float("inf")) > TIE_GAP:
            break
    else:
        pytest.fail("sorted keys tied on 3 inputs")
    g_rep = g.repeat_interleave(4)
    expected = split_element(group, g_rep @ h.elements)
    actual = split_element(group, h_g.elements)
    if group.acts_on_nodes:
        # permutations agree on the slots that hold real nodes (padded ones move no data)
        slots = slot_mask(batch["mask"].repeat_interleave(4, dim=0))
        differ = expected["permutation"].index != actual["permutation"].index
        assert not bool((differ & slots).any())
        # the relaxation's rows are nodes, so g moves them; its columns are slots and stay
        sigma = split_element(group, g_rep)["permutation"]
        # exp(-|Δs| / τ): the scores' rounding (rotated inputs) reaches the relaxation times 1/τ
        atol = tol.output / TAU
        torch.testing.assert_close(
            h_g.relaxed, sigma.act(h.relaxed, fields.node), atol=atol, rtol=0
        )
        torch.testing.assert_close(h_g.regularization, h.regularization)
    if group.dim is not None:
        for a, b in zip(actual["spatial"].tensors(), expected["spatial"].tensors(), strict=True):
            torch.testing.assert_close(a.double(), b.double(), atol=tol.output, rtol=tol.output)


@pytest.mark.parametrize("noise_at", ["input", "heads"])
@pytest.mark.parametrize("num_samples", [4, 5])
def test_antithetic_noise_pairs_up(noise_at, num_samples):
    """Sample ``2k + 1`` mirrors sample ``2k``: ``-ε`` (Gaussian), ``scale - u`` (uniform); an odd
    last sample is a fresh draw. Paired samples give different elements."""
    group = groups.Sn() * groups.SO(3)
    sig = signature(group)
    sampler = samplers.Learned(group, sig, noise_scale=0.7, antithetic=True, noise_at=noise_at)
    batch = make_batch(group)
    noise = sampler.sample_noise(batch, num_samples, torch.Generator().manual_seed(0))
    scales = {"vectors": None, "frame": None, "scalars": 0.7, "scores": 0.7, "ties": 1.0}
    pairs = num_samples // 2
    for key, x in noise.items():
        x = x.reshape(3, num_samples, *x.shape[1:])
        even, odd = x[:, 0 : 2 * pairs : 2], x[:, 1 : 2 * pairs : 2]
        mirrored = -even if scales[key] is None else scales[key] - even
        torch.testing.assert_close(odd, mirrored, atol=1e-12, rtol=0)
        assert not torch.equal(odd, even)
        if scales[key] is not None:
            assert bool((x >= 0).all() and (x <= scales[key]).all()), key
        if num_samples % 2:
            last = x[:, -1:]
            assert not torch.allclose(last, -x[:, -2:-1]) and not torch.allclose(last, x[:, -2:-1])
    with torch.no_grad():
        rotations = sampler(batch, num_samples, noise=noise).elements.parts[1].matrix
    rotations = rotations.reshape(3, num_samples, 3, 3)
    assert float((rotations[:, 1::2][:, :pairs] - rotations[:, ::2][:, :pairs]).abs().amax()) > 0.1


def test_antithetic_pairs_reduce_the_variance_of_a_monotone_summary():
    """Where the output is monotone in the noise, mirrored pairs anti-correlate: the variance of
    the mean of a pair is below half a single draw's (the point of the option)."""
    group = groups.SO(3)
    sig = signature(group, "invariant")
    sampler = samplers.Learned(group, sig, noise_at="heads", antithetic=True, noise_scale=0.3)
    batch = make_batch(group, sizes=(5, 5, 5))
    with torch.no_grad():
        rotations = sampler(batch, 4000, generator=torch.Generator().manual_seed(0))
    first = rotations.elements.matrix[:, 0, 0].reshape(3, 2000, 2).double()  # a smooth summary
    single = first[..., 0].var(dim=1)
    paired = first.mean(-1).var(dim=1)
    assert bool((paired < 0.5 * single).all()), (paired, single)


@pytest.mark.parametrize(
    "group", [groups.Sn(), groups.E(3), groups.Sn() * groups.SE(3)], ids=["Sn", "E3", "Sn*SE3"]
)
def test_head_noise_runs_the_networks_once_per_input(group):
    sig = signature(group)
    sampler = samplers.Learned(group, sig, noise_at="heads", **SMALL).train()
    batch = make_batch(group)
    rows: list[int] = []
    networks = [m for m in (sampler.scores, sampler.vectors) if m is not None]
    hooks = [m.register_forward_hook(lambda m, a, o: rows.append(a[0].shape[0])) for m in networks]
    out = sampler(batch, 7)
    for hook in hooks:
        hook.remove()
    assert rows == [3] * len(networks), rows  # b rows, not b * 7
    assert out.elements.batch_size == 21
    if group.acts_on_nodes:
        assert out.relaxed.shape == (21, 5, 5) and out.relaxed.requires_grad  # per sample


@pytest.mark.parametrize("options", OPTIONS, ids=OPTION_IDS)
@pytest.mark.parametrize(
    "group", [groups.Sn(), groups.SO(3), groups.Sn() * groups.E(3)], ids=["Sn", "SO3", "Sn*E3"]
)
def test_gradients_reach_every_sampler_parameter_with_noise_options(group, options):
    model, batch = make_model(Case(group, "ps"), "equivariant", "mlp", num_samples=4, **options)
    model.train()
    model(**batch)  # materialise the lazy modules
    model.zero_grad()
    out = model(**batch, generator=torch.Generator().manual_seed(0))
    values = out.value.values() if isinstance(out.value, dict) else [out.value]
    (sum(v.square().mean() for v in values) + out.regularization).backward()
    named = dict(model.sampler.named_parameters())
    largest: dict[str, float] = {}
    for k, p in named.items():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), k
        largest[k.split(".")[0]] = max(largest.get(k.split(".")[0], 0.0), float(p.grad.abs().max()))
    dead = [
        k for k, p in named.items() if float(p.grad.abs().max()) <= 1e-5 * largest[k.split(".")[0]]
    ]
    assert not dead, f"zero (float-noise) gradient: {dead}"


def test_noise_drawn_for_the_other_entry_point_is_rejected():
    group = groups.Sn() * groups.E(3)
    sig = signature(group)
    heads = samplers.Learned(group, sig, noise_at="heads")
    inputs = samplers.Learned(group, sig)
    batch = make_batch(group)
    assert set(heads.noise_fields) == {"frame", "scores", "ties"}
    assert set(inputs.noise_fields) == {"vectors", "scalars", "ties"}
    with pytest.raises(InputError, match=r"missing \['frame', 'scores'\]"):
        heads(batch, 2, noise=inputs.sample_noise(batch, 2))
    assert "noise_at='heads'" in repr(heads) and "noise_at" not in repr(inputs)


def test_canonical_with_head_noise_keeps_only_the_tie_breaks():
    group = groups.Sn() * groups.SO(3)
    sampler = samplers.Canonical(group, signature(group), noise_at="heads")
    assert set(sampler.noise_fields) == {"ties"}


def test_unknown_noise_entry_lists_the_choices():
    with pytest.raises(ValueError, match=r"noise_at must be one of \('input', 'heads'\)"):
        samplers.Learned(groups.Sn(), signature(groups.Sn()), noise_at="late")


@pytest.mark.parametrize("options", OPTIONS[:2], ids=OPTION_IDS[:2])
def test_head_noise_is_equivariant_in_distribution(options):
    """Fresh noise on each side (``|z| <= 5``, fixed seed), as for the default sampler."""
    model, batch = make_model(
        Case(groups.Sn() * groups.SO(3), "ps"), "equivariant", "transformer", **options
    )
    report = statistical_equivariance_test(
        model, batch, num_draws=2000, generator=torch.Generator().manual_seed(0)
    )
    assert report.max_abs_z <= 5, report.z


def zoo_tolerance(group, spec, dtype) -> float:
    """The zoo's product tolerance (``tests/test_input_zoo.py``): exact for S_n alone, grown by
    100 ulps of an offset (no sampler is more exact than its input)."""
    base = {torch.float32: 1e-6, torch.float64: 1e-12} if group.dim is None else ZOO_TOLERANCE
    eps = torch.finfo(dtype).eps
    extra = 100 * eps * abs(spec.offset)
    if spec.kind == "coincident" and group.has_translations:
        extra = 100 * eps * spec.scale * (1 + abs(spec.offset))
    return base[dtype] + extra


ZOO_TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}


@st.composite
def zoo_case(draw):
    group = draw(st.sampled_from(all_groups()))
    return group, draw(zoo_inputs(group, max_batch=3))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("options", OPTIONS[:2], ids=OPTION_IDS[:2])
@given(case=zoo_case(), base=st.sampled_from(["mlp", "transformer"]))
def test_head_noise_on_the_input_zoo_is_exact_or_flagged(options, dtype, case, base):
    """Degenerate, scaled, offset, padded and scattered inputs (the zoo's recipes): exact on
    every item the sampler does not flag, as for the default sampler."""
    group, spec = case
    batch = spec.build(dtype)
    torch.manual_seed(spec.seed % 2**31)
    sig = probsym.Signature(spec.fields(), output_fields(group, "equivariant", node_outputs=True))
    sampler = samplers.Learned(group, sig, **SMALL, **options)
    model = probsym.Symmetrize(make_base(base, sig, batch), sampler, num_samples=2)
    model = model.double() if dtype == torch.float64 else model
    # no tie exclusion, as in the zoo: the float64 sampler's keys do not tie up to rounding, and
    # the checker flags items whose element moves when the input moves by its rounding error
    report = equivariance_error(model, batch, generator=torch.Generator().manual_seed(spec.seed))
    if len(report.degenerate) == spec.batch_size:
        return
    tol = zoo_tolerance(group, spec, dtype)
    assert report.passed(atol=tol, rtol=tol), report
    rows = element_rows(report)
    if PERMUTATION_ROW in rows:
        assert rows[PERMUTATION_ROW] == [0.0], report


@pytest.mark.parametrize("group", [groups.SO(3), groups.Sn() * groups.E(3)], ids=["SO3", "Sn*E3"])
def test_head_noise_is_exact_and_unflagged_on_frameless_clouds(group):
    """Collinear and coincident clouds have no frame of their own; the head noise supplies full
    rank frame vectors, so (as with noise at the input) the rotation is exact, not flagged."""
    spec = ZooInput("collinear", (5, 4, 6), 6, 3, seed=4)
    batch = spec.build(torch.float64)
    sig = probsym.Signature(spec.fields(), output_fields(group, "equivariant", node_outputs=True))
    torch.manual_seed(0)
    sampler = samplers.Learned(group, sig, noise_at="heads", **SMALL)
    model = probsym.Symmetrize(make_base("mlp", sig, batch), sampler, num_samples=3).double()
    report = exact_report(model, batch, 0)
    assert report is not None and report.passed(atol=1e-10, rtol=1e-10), report


@pytest.mark.slow
def test_compiled_head_noise_sampler_is_exact_and_matches_eager():
    """``sampler.compile()`` (measured in ``benchmarks/overhead.py``, variant heads+compile):
    the same elements as eager mode and the exact check still passes."""
    group = groups.Sn() * groups.E(3)
    model, batch = make_model(Case(group, "ps"), "equivariant", "mlp", noise_at="heads")
    noise = model.sampler.sample_noise(batch, 2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        eager = model.sampler(batch, 2, noise=noise).elements
        model.sampler.compile()
        compiled = model.sampler(batch, 2, noise=noise).elements
    for a, b in zip(eager.tensors(), compiled.tensors(), strict=True):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-6)
    report = exact_report(model, batch, 0)
    assert report is not None and report.passed(atol=1e-5, rtol=1e-5), report
