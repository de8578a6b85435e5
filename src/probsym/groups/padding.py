"""Padded node axes: which entries of a tensor are real, and zeroing the others.

``mask`` is ``(B, n)`` bool, ``True`` on real nodes. A tensor of a field with ``node_axes`` node
axes after the batch axis has a real entry where every one of its node indices is real. This is
the one place that broadcasts a node mask onto a tensor; actions, validation, the symmetrizer and
the checker all use it.
"""

from __future__ import annotations

import torch
from torch import Tensor


def real_entries(mask: Tensor, ndim: int, node_axes: int) -> Tensor:
    """Bool mask broadcastable to a tensor of ``ndim`` dimensions: True where it is real.

    Shapes:
        mask: ``(B, n)``; returns ``(B, n, 1, ...)`` (one node axis) or ``(B, n, n, 1, ...)``.
    """
    real = mask.reshape(*mask.shape, *([1] * (ndim - 2)))
    if node_axes == 2:
        real = real & mask.reshape(mask.shape[0], 1, mask.shape[1], *([1] * (ndim - 3)))
    return real


def zero_padded(x: Tensor, mask: Tensor | None, node_axes: int) -> Tensor:
    """``x`` with every entry on a padded node set to zero, by selection.

    Selection (``torch.where``), not multiplication: ``0 * nan`` is ``nan``.
    """
    if mask is None or node_axes == 0:
        return x
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    return torch.where(real_entries(mask, x.ndim, node_axes), x, zero)
