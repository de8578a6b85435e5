"""S_n: permutations of a padded node axis, stored as index vectors and applied by gathering.

An element is an index vector ``index`` of shape ``(B, n)`` for the map σ: j ↦ index[j]. It moves
the node in slot j to slot σ(j), so ``(g·x)[σ(j)] = x[j]``, i.e. ``g·x = x[g⁻¹.index]`` and
``g⁻¹·x = x[g.index]``. Composition is ``(g @ h).index = g.index[h.index]``.

The optional ``relaxed`` matrix ``(B, n, n)`` is a differentiable stand-in for the hard permutation
matrix ``H`` (``H[index[j], j] = 1``, so ``g·x = H x`` on the node axis). Actions then add a
straight-through term whose value is exactly zero and whose gradient is that of ``relaxed``: the
forward pass stays a gather, the backward pass is that of ``H x`` with
``H = relaxed + sg(H - relaxed)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from probsym.fields import Field
from probsym.groups.base import Group, GroupElement
from probsym.groups.padding import zero_padded


def _batch_index(index: Tensor) -> Tensor:
    return torch.arange(index.shape[0], device=index.device).unsqueeze(1)


def invert_index(index: Tensor) -> Tensor:
    """Inverse of a batch of index vectors ``(B, n)``: ``inv[index[j]] = j``."""
    positions = torch.arange(index.shape[1], device=index.device).expand_as(index)
    return torch.empty_like(index).scatter_(1, index, positions)


def gather_nodes(x: Tensor, index: Tensor, node_axes: int) -> Tensor:
    """``x[index]`` on each of the first ``node_axes`` axes after the batch axis.

    ``torch.gather`` rather than advanced indexing: half the time forward and backward on CPU
    (a scatter-add instead of an accumulating index-put).
    """
    if node_axes == 0 or x.numel() == 0:
        return x if node_axes == 0 else x.clone()
    batch, n = index.shape
    if node_axes == 1:
        flat = x.reshape(batch, n, -1)
        out = flat.gather(1, index[:, :, None].expand(-1, -1, flat.shape[2]))
    else:
        flat = x.reshape(batch, n, n, -1)
        c = flat.shape[3]
        rows = flat.gather(1, index[:, :, None, None].expand(-1, -1, n, c))
        out = rows.gather(2, index[:, None, :, None].expand(-1, n, -1, c))
    return out.reshape(x.shape)


def slots_to_index(order: Tensor, mask: Tensor | None) -> Tensor:
    """Turn a node order with padded nodes last into a permutation that fixes padded slots.

    ``order`` lists real nodes first (in the order they should be placed) and padded nodes last
    (ascending). Real nodes fill the real slots of ``mask`` in ascending slot order, so a padded
    node never lands in a real slot even when the mask is not a prefix.

    Shapes:
        order, mask: ``(B, n)``; returns ``(B, n)``.
    """
    if mask is None:
        return order
    slots = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)  # real slots, then padded
    return torch.empty_like(order).scatter_(1, slots, order)


def order_by_keys(keys: Tensor, mask: Tensor | None, descending: bool = True) -> Tensor:
    """Index vector that puts the real nodes first, sorted by ``keys``, and padded nodes last.

    The resulting element ``g`` satisfies ``g⁻¹·x = x[g.index]``: slot ``r < n_i`` of ``g⁻¹·x``
    holds the real node of rank ``r``, whatever slots the real nodes occupy in ``x``, so a base
    model always sees its real nodes first (``g⁻¹·mask`` is a prefix mask). Padded nodes follow in
    their input order. Ties are broken by node index (stable sort), so callers add tie-break noise.

    Shapes:
        keys: ``(B, n)``; mask: ``(B, n)`` bool or None; returns ``(B, n)`` long.
    """
    if mask is not None:
        fill = float("-inf") if descending else float("inf")
        keys = keys.masked_fill(~mask, fill)
    return torch.argsort(keys, dim=1, descending=descending, stable=True)


@dataclass(frozen=True, eq=False)
class Permutation(GroupElement):
    """A batch of permutations of ``n`` slots (see the module docstring for the convention).

    Args:
        index: ``(B, n)`` long; ``index[j]`` is the slot node j is moved to.
        relaxed: optional ``(B, n, n)`` differentiable relaxation of the permutation matrix
            ``H[index[j], j] = 1``; used only for straight-through gradients.
    """

    index: Tensor
    relaxed: Tensor | None = None

    def compose(self, other: Permutation) -> Permutation:
        """``(self @ other).index = self.index[other.index]`` (relaxations are dropped)."""
        return Permutation(torch.gather(self.index, 1, other.index))

    def inverse(self) -> Permutation:
        """Inverse permutation; the relaxation is transposed."""
        relaxed = None if self.relaxed is None else self.relaxed.transpose(1, 2)
        return Permutation(invert_index(self.index), relaxed)

    def act(self, x: Tensor, field: Field, mask: Tensor | None = None) -> Tensor:
        """``g·x = x[g⁻¹.index]`` on every node axis of ``field``.

        ``mask`` is the node mask of ``x``'s layout. It only matters for the straight-through term,
        which reads ``x`` on real nodes only: whatever padded slots hold (NaN, inf, garbage), no
        arithmetic reaches a real entry. Integer and bool tensors carry no gradient and get no
        straight-through term.
        """
        if field.node_axes == 0:
            return x
        inverse_index = invert_index(self.index)
        y = gather_nodes(x, inverse_index, field.node_axes)
        if (
            self.relaxed is not None
            and self.relaxed.requires_grad
            and torch.is_grad_enabled()
            and x.is_floating_point()
        ):
            x_real = x.detach() if mask is None else zero_padded(x.detach(), mask, field.node_axes)
            y = y + _straight_through_term(self.relaxed, x_real, y, inverse_index, field.node_axes)
        return y

    def matrix(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """Dense permutation matrix ``H`` with ``H[index[j], j] = 1`` (for tests and plots only)."""
        batch, n = self.index.shape
        h = torch.zeros(batch, n, n, dtype=dtype, device=self.index.device)
        columns = torch.arange(n, device=self.index.device).expand(batch, n)
        return h.index_put_(
            (_batch_index(self.index).expand(batch, n), self.index, columns),
            torch.ones((), dtype=dtype, device=self.index.device),
        )


def _straight_through_term(
    relaxed: Tensor, x: Tensor, y: Tensor, inverse_index: Tensor, node_axes: int
) -> Tensor:
    """Zero-valued term with the gradient of ``P x`` (or ``P x Pᵀ``) with respect to ``P`` at ``H``.

    With ``D = relaxed - sg(relaxed)`` (exactly zero): node fields get ``D x``; pair fields get
    ``D (x Hᵀ) + (H x) Dᵀ``, the derivative of ``P x Pᵀ`` at ``P = H``.
    """
    delta = relaxed - relaxed.detach()  # (B, n, n), value 0
    x = x.detach()
    if node_axes == 1:
        flat = x.reshape(x.shape[0], x.shape[1], -1)
        return torch.bmm(delta.to(flat.dtype), flat).reshape(y.shape)
    batch, n = inverse_index.shape
    flat = x.reshape(batch, n, n, -1)
    index = inverse_index[:, None, :, None].expand(-1, n, -1, flat.shape[3])
    c = flat.gather(2, index)  # x Hᵀ: columns moved
    r = flat.gather(1, index.transpose(1, 2))  # H x: rows moved
    delta = delta.to(c.dtype)
    term = torch.einsum("bik,bkjc->bijc", delta, c) + torch.einsum("bikc,bjk->bijc", r, delta)
    return term.reshape(y.shape)


class Sn(Group):
    """The symmetric group S_n acting on node axes (``n`` is taken from the data).

    Elements are :class:`Permutation` index vectors. With a mask, elements permute each graph's real
    nodes only.
    """

    acts_on_nodes = True

    def identity(self, batch_size, n=None, device=None, dtype=torch.float32) -> Permutation:
        """Identity permutations of ``n`` slots."""
        if n is None:
            raise ValueError("Sn.identity needs the padded node count n")
        return Permutation(torch.arange(n, device=device).expand(batch_size, n).clone())

    def sample(
        self, batch_size, n=None, mask=None, generator=None, device=None, dtype=torch.float32
    ) -> Permutation:
        """Uniform permutations of each graph's real nodes (argsort of i.i.d. uniform keys).

        With a mask, padded slots are fixed points; without one, all ``n`` slots are permuted.
        """
        if n is None:
            if mask is None:
                raise ValueError("Sn.sample needs n or mask")
            n = mask.shape[1]
        if mask is not None:
            device = mask.device
        keys = torch.rand(batch_size, n, generator=generator, device=device)
        return Permutation(slots_to_index(order_by_keys(keys, mask), mask))

    def check_element(self, g: GroupElement) -> None:
        """Raise ``TypeError`` unless ``g`` is a :class:`Permutation`."""
        if not isinstance(g, Permutation):
            raise TypeError(f"S_n expects a Permutation element, got {type(g).__name__}")

    def __repr__(self) -> str:
        return "S_n"
