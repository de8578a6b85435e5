"""Post-processing that turns equivariant network outputs into group elements.

* Permutations: hard argsort of node scores in the forward pass; a SoftSort + Sinkhorn
  relaxation (temperature ``tau``) carries straight-through gradients; an entropy penalty pushes the
  relaxation towards a hard permutation (Kim et al. 2023, §2.1 of PAPER-NOTES).
* Rotations: Gram–Schmidt on the columns of a matrix of equivariant vectors, safe when the vectors
  are (nearly) dependent.

Shapes: ``B`` batch (samples folded in) · ``n`` nodes (padded) · ``d`` space.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from probsym.groups.orthogonal import fix_determinant


def normalize_scores(scores: Tensor, mask: Tensor | None, eps: float = 1e-6) -> Tensor:
    """Centre, then L2-normalise scores over each graph's real nodes.

    Normalising sets the scale the relaxation's ``tau`` sees. Centring first (a deviation from the
    reference, which only normalises) removes an offset shared by all nodes: such an offset leaves
    the argsort unchanged but, after normalisation, squeezes all score gaps towards zero, which
    makes the relaxation uninformative and float32 ties likely. Both steps are permutation-
    equivariant and keep the order of the scores. Graphs whose centred scores are below ``eps``
    times their raw scores (every node alike, up to rounding) are divided by that floor instead,
    so that their rounding residue stays below the tie-break noise.
    """
    raw = scores if mask is None else scores * mask.to(scores.dtype)
    if mask is None:
        scores = scores - scores.mean(dim=1, keepdim=True)
    else:
        real = mask.to(scores.dtype)
        mean = (scores * real).sum(1, keepdim=True) / real.sum(1, keepdim=True).clamp_min(1)
        scores = (scores - mean) * real
    # Nodes whose scores agree up to rounding (all nodes alike) must stay tied: dividing their
    # rounding residue by its own tiny norm would blow it up past the tie-break noise.
    floor = (eps * raw.detach().norm(dim=1, keepdim=True)).clamp_min(eps)
    return scores / torch.maximum(scores.norm(dim=1, keepdim=True), floor)


#: Logits this far above ``log(tiny)`` of their dtype are kept; smaller ones give exact zeros
#: (float32: ``exp(-47)`` ≈ 3e-21), so that no Sinkhorn product nor gradient reaches the subnormal
#: range (a margin of 20 left a tenth of the slowdown, 40 almost none: ``benchmarks/README.md``).
SUBNORMAL_MARGIN = 40.0


def soft_permutation(
    scores: Tensor, index: Tensor, mask: Tensor | None, tau: float, iterations: int = 20
) -> Tensor:
    """Differentiable relaxation of the permutation that sorts ``scores`` (SoftSort + Sinkhorn).

    ``P[i, r] ∝ exp(-|s_i - s_(r)| / tau)`` where ``s_(r)`` is the r-th sorted score, balanced by
    ``iterations`` Sinkhorn steps (rows first). Rows are nodes, columns are slots, the orientation
    of :meth:`Permutation.matrix` (``H[index[r], r] = 1``): slot r holds node ``index[r]``, whose
    score is the r-th sorted score. ``index`` must be that sort, with padded nodes in the last
    slots (as :func:`order_by_keys` gives): real nodes fill the first slots.

    Sinkhorn runs on probabilities, not logits: each node's own slot has logit 0, so every real
    row and column keeps an entry of at least about 1/n and no sum vanishes, and a half-step is
    one batched matrix-vector product on the row or column scalings (``_Sinkhorn``) where a
    log-domain ``logsumexp`` step costs six full-matrix kernels. Kernel entries below ``e^40``
    times the dtype's smallest normal number (float32: about 3e-21) are exactly 0
    (``SUBNORMAL_MARGIN``). ``iterations=0`` is the row-unnormalised SoftSort kernel itself.

    Shapes:
        scores, index, mask: ``(B, n)``; returns ``(B, n, n)``.
    """
    slot_scores = torch.gather(scores, 1, index)  # score of the node placed in each slot
    logits = -(scores.unsqueeze(2) - slot_scores.unsqueeze(1)).abs() / tau  # (B, nodes, slots)
    # Entries that would fall near or below the dtype's normal range become exact zeros: they
    # carry nothing, and subnormal arithmetic is ~100x slower on x86 (at tau = 0.01 in float32
    # it was half of the relaxation's time).
    floor = math.log(torch.finfo(logits.dtype).tiny) + SUBNORMAL_MARGIN
    p = torch.where(logits < floor, float("-inf"), logits).exp()
    pair_mask = None
    if mask is not None:
        # Real nodes fill the first slots (order_by_keys). Padded nodes and padded slots form
        # their own block (ones among themselves, zeros against real ones), so that Sinkhorn
        # balances the two blocks separately and no sum is zero.
        slots = slot_mask(mask)
        pair_mask = mask.unsqueeze(2) & slots.unsqueeze(1)
        padded = ~mask.unsqueeze(2) & ~slots.unsqueeze(1)
        p = torch.where(pair_mask, p, padded.to(p.dtype))
    if iterations > 0:
        # The loop's products run in p's dtype even under autocast (``--precision bf16``): in
        # bf16 the scalings lose the balance they exist for, and the saved bf16 scalings broke
        # the backward pass's products.
        with torch.autocast(p.device.type, enabled=False):
            p = _Sinkhorn.apply(p, iterations)
    return p if pair_mask is None else p * pair_mask


class _Sinkhorn(torch.autograd.Function):
    """``iterations`` x (normalise rows, then columns), kept as scalings, with its own backward.

    Every iterate is ``diag(r) K diag(c)``: a row step sets ``r = 1 / (K c)``, a column step
    ``c = 1 / (Kᵀ r)``. So the loop runs on the ``(B, n)`` scalings, with one batched
    matrix-vector product per half-step, and only they are kept for the backward pass (not the
    ``(B, n, n)`` iterates: 40 of them at 20 iterations were 0.7 GB for a PATTERN batch). The
    backward pass runs the loop in reverse on vectors too, and collects the gradient of ``K``
    (a sum of one outer product per half-step) in two batched products at the end. Values and
    gradients are those of the plain loop up to rounding (``tests/samplers/test_relax.py``
    compares them with a log-domain autograd loop); 1.8x (n = 5) to 2.7x (n = 64) faster than
    normalising the whole matrix in every half-step (``benchmarks/README.md``).
    """

    @staticmethod
    def forward(ctx, k: Tensor, iterations: int) -> Tensor:  # noqa: D102 - autograd hook
        k_t = k.transpose(1, 2)
        c = torch.ones_like(k[:, :, :1])  # (B, n, 1)
        rows, cols = [], [c]
        for _ in range(iterations):
            r = torch.bmm(k, c).reciprocal_()  # (B, n, 1): 1 / row sums of K diag(c)
            c = torch.bmm(k_t, r).reciprocal_()  # 1 / column sums of diag(r) K
            rows.append(r)
            cols.append(c)
        ctx.save_for_backward(k, *rows, *cols)
        return k * rows[-1] * cols[-1].transpose(1, 2)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # noqa: D102 - autograd hook
        k, *saved = ctx.saved_tensors
        grad = grad.to(k.dtype)  # a gradient from an autocast region may arrive in bf16 / fp16
        steps = len(saved) // 2
        rows, cols = saved[:steps], saved[steps:]  # cols[0] is the initial all-ones scaling
        k_t = k.transpose(1, 2)
        weighted = grad * k
        d_r_out = torch.bmm(weighted, cols[-1])  # (B, n, 1): the output's own use of r
        d_c = torch.bmm(weighted.transpose(1, 2), rows[-1])
        d_u, d_v = [], []
        for step in reversed(range(steps)):
            u = -d_c * cols[step + 1].square()  # through c = 1 / (Kᵀ r)
            d_r = torch.bmm(k, u) if step < steps - 1 else torch.baddbmm(d_r_out, k, u)
            v = -d_r * rows[step].square()  # through r = 1 / (K c)
            d_c = torch.bmm(k_t, v)
            d_u.append(u)
            d_v.append(v)
        # dK = G ∘ r cᵀ + Σ_steps (r u ᵀ + v c_prevᵀ): the outer products as two bmm
        r_all, u_all = torch.cat(rows[::-1], 2), torch.cat(d_u, 2)  # (B, n, steps)
        v_all, c_all = torch.cat(d_v, 2), torch.cat(cols[-2::-1], 2)
        d_k = grad * (rows[-1] * cols[-1].transpose(1, 2))
        d_k = d_k.baddbmm_(r_all, u_all.transpose(1, 2)).baddbmm_(v_all, c_all.transpose(1, 2))
        return d_k, None


def slot_mask(mask: Tensor) -> Tensor:
    """The real slots of the base model's layout: the first ``n_i`` of graph ``i`` (a prefix)."""
    counts = mask.sum(dim=1, keepdim=True)
    return torch.arange(mask.shape[1], device=mask.device).unsqueeze(0) < counts


def permutation_entropy(soft: Tensor, mask: Tensor | None) -> Tensor:
    """Row plus column entropy of a relaxed permutation, mean over real nodes, then batch.

    Rows and columns are normalised separately (not Sinkhorn-exact); entries are clamped at 1e-12
    and logs at -100 so that the penalty is finite everywhere. Zero for a hard permutation. Rows
    are nodes (real where ``mask``), columns slots (the first ``n_i`` are real).

    Shapes:
        soft: ``(B, n, n)``; mask: ``(B, n)``; returns a scalar.
    """
    p = soft.clamp_min(1e-12)
    if mask is not None:
        slots = slot_mask(mask)
        pair_mask = mask.unsqueeze(2) & slots.unsqueeze(1)
        p = torch.where(pair_mask, p, torch.ones_like(p))
        p_rows = torch.where(pair_mask, p / (p * pair_mask).sum(2, keepdim=True), p)
        p_cols = torch.where(pair_mask, p / (p * pair_mask).sum(1, keepdim=True), p)
    else:
        p_rows, p_cols = p / p.sum(2, keepdim=True), p / p.sum(1, keepdim=True)
    h_rows = -(p_rows * p_rows.log().clamp_min(-100)).sum(2)  # (B, n), per node
    h_cols = -(p_cols * p_cols.log().clamp_min(-100)).sum(1)  # (B, n), per slot
    if mask is None:
        return (h_rows + h_cols).mean()
    # rows are masked by node, columns by slot: the two differ when padding is not a suffix
    counts = mask.sum(1).clamp_min(1)
    return (((h_rows * mask).sum(1) + (h_cols * slots).sum(1)) / counts).mean()


def gram_schmidt(vectors: Tensor, eps: float = 1e-6) -> Tensor:
    """Orthonormalise the columns of ``vectors`` in order; equivariant: ``GS(R M) = R GS(M)``.

    A column that is (nearly) dependent on the previous ones is replaced by the standard basis
    vector with the largest component orthogonal to them, so degenerate inputs (coincident or
    collinear points) still give a valid orthogonal matrix, never NaN. That fallback is not
    equivariant, which is honest: degenerate inputs have no unique frame.

    Shapes:
        vectors: ``(B, d, d)`` (columns are vectors); returns ``(B, d, d)`` orthogonal.
    """
    return _gram_schmidt(vectors, eps)[0]


def _gram_schmidt(vectors: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Gram–Schmidt and each column's residual norm relative to ``‖vectors‖_F``, ``(B, d)``."""
    b, d, _ = vectors.shape
    # Rotation-invariant scale, so that the degeneracy threshold is relative and equivariant.
    scale = _length(vectors.flatten(1)).clamp_min(1e-30)  # (B, 1)
    columns: list[Tensor] = []
    residuals: list[Tensor] = []
    for k in range(d):
        v = vectors[:, :, k] / scale
        u = _orthogonalize(v, columns)
        norm = _length(u)
        residuals.append(norm[:, 0])
        u = torch.where(norm < eps, _fallback(columns, b, d, vectors), u)
        # A second pass ("twice is enough", Parlett–Kahan): one pass leaves errors of the order of
        # rounding times the condition number, which for Gaussian (Haar) draws in float32 exceed
        # 1e-5 about 1% of the time.
        u = _orthogonalize(u, columns)
        columns.append(u / _length(u).clamp_min(1e-12))
    return torch.stack(columns, dim=2), torch.stack(residuals, dim=1)


def _length(v: Tensor) -> Tensor:
    """``‖v‖`` over the last axis, kept: ``(B, 1)``.

    A root of summed squares, several times faster on CPU than ``norm`` over a short axis;
    ``tiny`` keeps its gradient finite at zero.
    """
    return torch.sqrt((v * v).sum(-1, keepdim=True) + torch.finfo(v.dtype).tiny)


def _orthogonalize(v: Tensor, columns: list[Tensor]) -> Tensor:
    for u in columns:  # columns are unit vectors
        v = v - (v * u).sum(1, keepdim=True) * u
    return v


def _fallback(columns: list[Tensor], b: int, d: int, like: Tensor) -> Tensor:
    """The standard basis vector with the largest component orthogonal to ``columns``, projected.

    With the projector ``P = I - Σ u uᵀ`` onto their complement, ``‖P e_i‖² = P_ii =
    1 - Σ_u u_i²``: the best ``e_i`` is the one least covered by the columns, and its projection
    is ``e_i - Σ_u u_i u`` (no ``d × d`` candidates needed).
    """
    basis = torch.zeros(b, d, dtype=like.dtype, device=like.device)
    if not columns:
        basis[:, 0] = 1.0
        return basis
    stacked = torch.stack(columns, dim=2)  # (B, d, k)
    best = stacked.square().sum(2).argmin(dim=1, keepdim=True)  # (B, 1)
    components = stacked.gather(1, best.unsqueeze(2).expand(-1, 1, stacked.shape[2]))  # (B, 1, k)
    return basis.scatter_(1, best, 1.0) - (stacked * components).sum(2)


def frame_from_vectors(vectors: Tensor, proper: bool) -> tuple[Tensor, Tensor]:
    """An orthogonal matrix from d equivariant column vectors, and how well it is determined.

    Gram–Schmidt in column order. For SO(d) the last column is then flipped where ``det = -1``:
    once d-1 columns are fixed, the last is the unique unit vector completing a right-handed
    basis, so SO(d) frames need only d-1 independent vectors (a coplanar cloud in 3-D has a
    unique frame in SO(3), none in O(3)).

    Returns:
        ``(R, margin)``: ``R`` ``(B, d, d)`` orthogonal (det +1 when ``proper``), and ``margin``
        ``(B,)``, the smallest relative residual of the columns that determine ``R`` (d for O(d),
        d-1 for SO(d); ``inf`` when none do). The rotation's error is about the vectors' rounding
        error divided by the margin; below ``1e-6`` a column came from the fallback.
    """
    q, residuals = _gram_schmidt(vectors, 1e-6)
    d = vectors.shape[-1]
    if proper:
        q = fix_determinant(q, column=-1)
        residuals = residuals[:, : d - 1]
    if residuals.shape[1] == 0:
        return q, torch.full(q.shape[:1], float("inf"), dtype=q.dtype, device=q.device)
    return q, residuals.min(dim=1).values


def orthogonal_from_vectors(vectors: Tensor, proper: bool) -> Tensor:
    """:func:`frame_from_vectors` without the margin."""
    return frame_from_vectors(vectors, proper)[0]
