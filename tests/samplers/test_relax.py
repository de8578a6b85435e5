"""Post-processing: soft permutations, their entropy, score normalisation, safe Gram–Schmidt."""

from __future__ import annotations

import pytest
import torch

from probsym import fields, groups
from probsym.groups import Permutation
from probsym.groups.permutation import order_by_keys
from probsym.samplers.relax import (
    gram_schmidt,
    normalize_scores,
    orthogonal_from_vectors,
    permutation_entropy,
    slot_mask,
    soft_permutation,
)

MASK = torch.tensor([[True] * 5, [True, True, True, False, False], [False, True, True, True, True]])


def separated_scores(dtype) -> torch.Tensor:
    """Normalised scores with gaps of at least 0.05 between real nodes (no near-ties)."""
    gen = torch.Generator().manual_seed(0)
    ranks = torch.stack([torch.randperm(5, generator=gen) for _ in range(3)]).to(dtype)
    return normalize_scores(ranks, MASK)


def real_block(mask: torch.Tensor) -> torch.Tensor:
    """Real nodes (rows) against real slots (columns: the first n_i, real nodes come first)."""
    return mask.unsqueeze(2) & slot_mask(mask).unsqueeze(1)


@pytest.mark.parametrize("tau", [1e-3, 0.1, 1.0])
def test_soft_permutation_is_doubly_stochastic_on_the_real_block(float_tolerance, tau):
    scores = separated_scores(float_tolerance.dtype)
    index = order_by_keys(scores, MASK)
    p = soft_permutation(scores, index, MASK, tau, iterations=50)
    block = real_block(MASK)
    assert bool((p[~block] == 0).all()), "padded rows and columns are zero"
    assert bool((p >= 0).all())
    # the last Sinkhorn step normalises columns exactly; rows converge
    torch.testing.assert_close(p.sum(1), slot_mask(MASK).to(p.dtype), atol=1e-5, rtol=0)
    torch.testing.assert_close(p.sum(2), MASK.to(p.dtype), atol=1e-3, rtol=0)


def test_soft_permutation_approaches_the_hard_matrix_and_shares_its_orientation(float_tolerance):
    scores = separated_scores(float_tolerance.dtype)
    index = order_by_keys(scores, MASK)
    hard = Permutation(index).matrix(float_tolerance.dtype) * real_block(MASK)
    soft = soft_permutation(scores, index, MASK, tau=1e-3)
    assert float((soft - hard).abs().max()) <= 1e-6
    # orientation: rows are nodes, columns are slots (H[index[r], r] = 1), not the transpose
    assert not torch.equal(index, torch.argsort(index, dim=1)), "index must not be an involution"
    assert float((soft - hard.transpose(1, 2)).abs().max()) > 0.5
    # P x ≈ H x = g·x: the relaxation acts like the element it relaxes
    x = torch.randn(3, 5, 2, dtype=float_tolerance.dtype) * MASK.unsqueeze(-1)
    expected = Permutation(index).act(x, fields.node) * MASK.unsqueeze(-1)
    torch.testing.assert_close(soft @ x, expected)


def test_permutation_entropy_is_zero_for_hard_and_positive_for_soft(float_tolerance):
    scores = separated_scores(float_tolerance.dtype)
    index = order_by_keys(scores, MASK)
    hard = Permutation(index).matrix(float_tolerance.dtype) * real_block(MASK)
    assert 0.0 <= float(permutation_entropy(hard, MASK)) <= 1e-8
    sharp = permutation_entropy(soft_permutation(scores, index, MASK, tau=0.01), MASK)
    soft = permutation_entropy(soft_permutation(scores, index, MASK, tau=1.0), MASK)
    assert 0.0 <= float(sharp) < float(soft)
    assert float(soft) > 0.5
    assert bool(torch.isfinite(soft)) and soft.ndim == 0


def test_permutation_entropy_does_not_depend_on_where_the_padding_sits(float_tolerance):
    """Rows are nodes (masked by node), columns slots (masked by slot): moving padded nodes
    between real ones permutes the rows only, and the penalty must not change (it did while
    columns were masked by the node mask)."""
    scores = separated_scores(float_tolerance.dtype)
    index = order_by_keys(scores, MASK)
    p = soft_permutation(scores, index, MASK, tau=0.3)
    move = torch.tensor([[3, 0, 4, 1, 2], [4, 0, 3, 1, 2], [2, 3, 4, 0, 1]])  # g·x = x[move]
    moved_p, moved_mask = p.gather(1, move.unsqueeze(-1).expand_as(p)), MASK.gather(1, move)
    assert not torch.equal(moved_mask, MASK)
    torch.testing.assert_close(
        permutation_entropy(moved_p, moved_mask), permutation_entropy(p, MASK)
    )


def test_soft_permutation_gradients_are_finite_with_padding():
    scores = separated_scores(torch.float64).requires_grad_(True)
    index = order_by_keys(scores.detach(), MASK)
    p = soft_permutation(scores, index, MASK, tau=0.1)
    (p.square().sum() + permutation_entropy(p, MASK)).backward()
    assert bool(torch.isfinite(scores.grad).all())
    assert float(scores.grad[MASK].abs().sum()) > 0


def test_normalize_scores_centres_scales_and_keeps_order():
    gen = torch.Generator().manual_seed(1)
    raw = torch.randn(3, 5, generator=gen, dtype=torch.float64) + 7.0  # a shared offset
    out = normalize_scores(raw, MASK)
    assert bool((out[~MASK] == 0).all())
    for row in range(3):
        real = out[row][MASK[row]]
        assert abs(float(real.sum())) < 1e-12
        assert abs(float(real.norm()) - 1) < 1e-12
        assert torch.equal(torch.argsort(real), torch.argsort(raw[row][MASK[row]]))


# --- Gram–Schmidt -------------------------------------------------------------------------------


def assert_orthogonal(q: torch.Tensor, atol: float) -> None:
    assert bool(torch.isfinite(q).all())
    eye = torch.eye(q.shape[-1], dtype=q.dtype)
    assert float((q.transpose(1, 2) @ q - eye).abs().max()) <= atol


@pytest.mark.parametrize("d", [2, 3])
def test_gram_schmidt_is_orthogonal_and_equivariant(float_tolerance, d):
    gen = torch.Generator().manual_seed(d)
    # 20,000 Gaussian matrices include condition numbers of 1e4-1e5: a single Gram–Schmidt pass
    # lost orthogonality (1e-2) on about 1% of float32 draws
    m = torch.randn(20_000, d, d, generator=gen, dtype=float_tolerance.dtype)
    q = gram_schmidt(m)
    assert_orthogonal(q, float_tolerance.matrix)
    m, q = m[:64], q[:64]
    # the first column is the normalised first vector; GS(R M) = R GS(M)
    first = m[:, :, 0] / m[:, :, 0].norm(dim=1, keepdim=True)
    assert float((q[:, :, 0] - first).abs().max()) <= float_tolerance.matrix
    r = groups.O(d).sample(64, generator=gen, dtype=float_tolerance.dtype).matrix
    # well-conditioned draws only: GS amplifies rounding by the condition number
    good = torch.linalg.cond(m) < 100
    error = (gram_schmidt(r @ m) - r @ q)[good]
    assert float(error.abs().max()) <= 100 * float_tolerance.matrix  # 100: condition number bound


DEGENERATE = {
    "zero": lambda v: torch.zeros_like(v),
    "collinear": lambda v: v[:, :, :1] * torch.arange(1.0, v.shape[2] + 1, dtype=v.dtype),
    "coplanar": lambda v: torch.cat([v[:, :, :2], v[:, :, :1] + 2 * v[:, :, 1:2]], dim=2),
    "tiny": lambda v: v * 1e-30,
    "repeated_first": lambda v: torch.cat([v[:, :, :1], v[:, :, :1], v[:, :, 2:]], dim=2),
}


@pytest.mark.parametrize("proper", [False, True], ids=["O", "SO"])
@pytest.mark.parametrize("kind", list(DEGENERATE))
def test_gram_schmidt_on_degenerate_vectors_is_finite_and_orthogonal(float_tolerance, kind, proper):
    gen = torch.Generator().manual_seed(0)
    v = DEGENERATE[kind](torch.randn(8, 3, 3, generator=gen, dtype=float_tolerance.dtype))
    q = orthogonal_from_vectors(v, proper)
    assert_orthogonal(q, float_tolerance.matrix)
    det = torch.linalg.det(q)
    if proper:
        assert float((det - 1).abs().max()) <= float_tolerance.matrix
    else:
        assert float((det.abs() - 1).abs().max()) <= float_tolerance.matrix


def test_gram_schmidt_gradients_are_finite_for_degenerate_inputs():
    v = torch.zeros(4, 3, 3, dtype=torch.float64)
    v[:, :, 0] = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    v[:, :, 1] = 2 * v[:, :, 0]
    v.requires_grad_(True)
    orthogonal_from_vectors(v, proper=True).sum().backward()
    assert bool(torch.isfinite(v.grad).all())


def test_determinant_fix_maps_into_so():
    q = groups.O(3).sample(256, generator=torch.Generator().manual_seed(0)).matrix
    fixed = orthogonal_from_vectors(q, proper=True)
    torch.testing.assert_close(torch.linalg.det(fixed), torch.ones(256), atol=1e-5, rtol=0)
    positive = torch.linalg.det(q) > 0
    torch.testing.assert_close(fixed[positive], q[positive], atol=1e-5, rtol=0)


def _reference_soft_permutation(scores, index, mask, tau, iterations=20):
    """The relaxation written as a plain autograd loop, in the log domain (the reference's form)."""
    slot_scores = torch.gather(scores, 1, index)
    logits = -(scores.unsqueeze(2) - slot_scores.unsqueeze(1)).abs() / tau
    pair = real_block(mask)
    logits = logits.masked_fill(~pair, float("-inf"))
    for _ in range(iterations):
        logits = logits - torch.logsumexp(logits, dim=2, keepdim=True)
        logits = torch.where(pair, logits, float("-inf"))
        logits = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        logits = torch.where(pair, logits, float("-inf"))
    return logits.exp()


@pytest.mark.parametrize("tau", [0.01, 0.1, 1.0])
def test_soft_permutation_matches_the_log_domain_loop_in_value_and_gradient(tau):
    """The probability-domain Sinkhorn with its hand-written backward equals the plain loop."""
    gen = torch.Generator().manual_seed(3)
    raw = torch.randn(3, 5, generator=gen, dtype=torch.float64)
    scores = normalize_scores(raw, MASK).requires_grad_(True)
    index = order_by_keys(scores.detach(), MASK)
    weights = torch.randn(3, 5, 5, generator=gen, dtype=torch.float64)
    fast = soft_permutation(scores, index, MASK, tau)
    (fast_grad,) = torch.autograd.grad((fast * weights).sum(), scores)
    slow = _reference_soft_permutation(scores, index, MASK, tau)
    (slow_grad,) = torch.autograd.grad((slow * weights).sum(), scores)
    torch.testing.assert_close(fast, slow, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(fast_grad, slow_grad, rtol=1e-7, atol=1e-9)


def test_soft_permutation_backward_passes_gradcheck():
    gen = torch.Generator().manual_seed(4)
    scores = normalize_scores(torch.randn(3, 5, generator=gen, dtype=torch.float64), MASK)
    index = order_by_keys(scores, MASK)
    scores.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda s: soft_permutation(s, index, MASK, 0.5, iterations=5), (scores,)
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_soft_permutation_has_no_subnormal_entries_at_small_tau(dtype):
    """Entries far below the diagonal are exact zeros, never subnormal (slow on x86), and the
    relaxation and its gradient stay finite."""
    scores = separated_scores(dtype).requires_grad_(True)
    index = order_by_keys(scores.detach(), MASK)
    p = soft_permutation(scores, index, MASK, tau=1e-3)
    tiny = torch.finfo(dtype).tiny
    assert bool(((p == 0) | (p.abs() >= tiny)).all())
    assert bool((p == 0).any()), "the cut must be exercised"
    (p.square().sum() + permutation_entropy(p, MASK)).backward()
    assert bool(torch.isfinite(scores.grad).all())


def test_soft_permutation_under_autocast_keeps_its_dtype_and_backpropagates():
    """``--precision bf16``: the Sinkhorn ran its products in bf16 and its backward then failed
    on the mixed dtypes (issue 12's paper commands); it now runs in the scores' dtype."""
    scores = separated_scores(torch.float32).requires_grad_(True)
    index = order_by_keys(scores.detach(), MASK)
    expected = soft_permutation(scores, index, MASK, 0.5, iterations=5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        soft = soft_permutation(scores, index, MASK, 0.5, iterations=5)
    assert soft.dtype == torch.float32
    torch.testing.assert_close(soft, expected)
    (soft * 2).sum().backward()
    assert scores.grad.dtype == torch.float32 and bool(torch.isfinite(scores.grad).all())
