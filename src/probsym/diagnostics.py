"""Diagnostics computed from samples already drawn: permutation entropy and gradient norms.

The *entropy of the mean sampled permutation* measures how spread p(g|x) is over S_n for one
input (Kim et al. 2023, the EXP-classify interface analysis): average the N hard permutation
matrices sampled for the input, ``M = (1/N) Σ_i H_i``, then add the Shannon entropy of every real
row and every real column of ``M`` and divide by the number of real nodes,

    H(x) = (Σ_{rows r} H(M[r, :]) + Σ_{columns c} H(M[:, c])) / n_real      (natural log).

A deterministic sampler (or N = 1) gives 0; the uniform distribution over all permutations gives
``2 log n_real`` in the limit N → ∞, but only about ``2 log min(n, N)`` at finite N, so the
reference for a uniform sampler is :func:`uniform_permutation_entropy` at the *same* N (for the
EXP validation graphs at N = 100 it is 7.035, the paper's "random permutation" value).

Shapes: ``b`` batch · ``s`` samples · ``n`` nodes (padded).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor

from probsym.groups import Group, GroupElement
from probsym.groups.permutation import order_by_keys
from probsym.groups.product import split_element


def permutation_index(group: Group, elements: GroupElement) -> Tensor | None:
    """The ``(b*s, n)`` index vectors of the S_n part of ``elements`` (``None``: no S_n factor)."""
    if not group.acts_on_nodes:
        return None
    return split_element(group, elements)["permutation"].index


def mean_permutation_matrix(index: Tensor, num_samples: int) -> Tensor:
    """``M = (1/s) Σ_i H_i`` per input, with ``H[index[j], j] = 1`` (:meth:`Permutation.matrix`).

    Built by a scatter, never as ``s`` dense matrices.

    Shapes:
        index: ``(b*s, n)`` long, b-major; returns ``(b, n, n)`` float32.
    """
    rows, n = index.shape
    b = rows // num_samples
    assert b * num_samples == rows, f"{rows} rows are not b x {num_samples} samples"
    columns = torch.arange(n, device=index.device)
    flat = (index * n + columns).reshape(b, num_samples * n)  # position of H[index[j], j]
    m = torch.zeros(b, n * n, device=index.device)
    m.scatter_add_(1, flat, torch.full(flat.shape, 1.0 / num_samples, device=index.device))
    return m.reshape(b, n, n)


def permutation_matrix_entropy(matrix: Tensor, mask: Tensor | None = None) -> Tensor:
    """Row plus column entropy of (averaged) permutation matrices, divided by the real nodes.

    Rows of real nodes (``mask``) are read; the columns are those these rows put mass on, which
    for elements that keep padding in place are the real ones, wherever they sit. Rows and columns
    are normalised to sum to one (they already do for an average of permutation matrices), and
    ``0 · log 0 = 0``.

    Shapes:
        matrix: ``(b, n, n)``; mask: ``(b, n)`` bool or None; returns ``(b,)`` float64.
    """
    m = matrix.double()
    if mask is not None:
        m = m * mask.unsqueeze(2).to(m.dtype)  # real rows only
    row_sums, column_sums = m.sum(2, keepdim=True), m.sum(1, keepdim=True)
    rows = m / torch.where(row_sums > 0, row_sums, torch.ones_like(row_sums))
    columns = m / torch.where(column_sums > 0, column_sums, torch.ones_like(column_sums))
    h_rows = -torch.special.xlogy(rows, rows).sum((1, 2))  # summed over the real rows
    h_columns = -torch.special.xlogy(columns, columns).sum((1, 2))
    if mask is None:
        count = torch.full_like(h_rows, matrix.shape[1])
    else:
        count = mask.sum(1).to(h_rows.dtype)
    return (h_rows + h_columns) / count.clamp_min(1)


def sampled_permutation_entropy(
    group: Group, elements: GroupElement, num_samples: int, mask: Tensor | None = None
) -> Tensor | None:
    """Entropy of the mean of each input's ``num_samples`` sampled permutations.

    Args:
        group: The symmetry group; without an S_n factor there is nothing to measure.
        elements: ``b * num_samples`` sampled elements, b-major (``Symmetrized.samples.elements``;
            ``num_samples`` is ``sampler.samples_per_input(N)``).
        num_samples: Elements per input.
        mask: The inputs' node mask.

    Returns:
        ``(b,)`` float64 entropies (see the module docstring), or ``None`` without S_n.
    """
    index = permutation_index(group, elements)
    if index is None:
        return None
    return permutation_matrix_entropy(mean_permutation_matrix(index, num_samples), mask)


def uniform_permutation_entropy(
    batch: int,
    nodes: int,
    num_samples: int,
    mask: Tensor | None = None,
    generator: torch.Generator | None = None,
    min_draws: int = 256,
) -> Tensor:
    """The same entropy for ``num_samples`` uniform permutations of each input's real nodes.

    The reference a learned sampler's entropy is read against: it depends on N and on the graph
    sizes, not only on n. Each input's value is the mean over ``ceil(min_draws / batch)``
    independent Monte Carlo draws, so that a batch's mean has at least ``min_draws`` draws
    behind it (one draw per input is noisy for small batches). Pass a ``generator`` so that
    logging it does not touch the global RNG stream.

    Shapes:
        mask: ``(batch, nodes)`` or None; returns ``(batch,)`` float64 (on the CPU).
    """
    repeats = max(1, math.ceil(min_draws / max(batch, 1)))
    keys = torch.rand(repeats * batch * num_samples, nodes, generator=generator)
    mask = None if mask is None else mask.cpu().repeat(repeats, 1)  # (repeats * batch, n)
    folded = None if mask is None else mask.repeat_interleave(num_samples, dim=0)
    index = order_by_keys(keys, folded)
    matrix = mean_permutation_matrix(index, num_samples)
    return permutation_matrix_entropy(matrix, mask).reshape(repeats, batch).mean(0)


def uniform_limit_entropy(sizes: Tensor) -> Tensor:
    """``2 log n`` per input of ``n`` real nodes: the uniform distribution's entropy as N → ∞."""
    return 2 * sizes.double().clamp_min(1).log()


def gradient_norm(parameters: Iterable[torch.nn.Parameter]) -> float | None:
    """Euclidean norm of all gradients together (``None`` when no parameter has one).

    Read it after ``backward`` (and ``GradScaler.unscale_``) and before clipping.
    """
    grads = [p.grad.detach() for p in parameters if p.grad is not None]
    if not grads:
        return None
    norms = torch.stack([torch.linalg.vector_norm(g.double()) for g in grads])
    return float(torch.linalg.vector_norm(norms))
