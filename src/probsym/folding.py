"""Fold Monte Carlo samples into the batch axis, b-major: row ``i * s + j`` is sample j of item i.

This is the only place where a sample axis is reshaped; everything else sees ``(b*s, ...)`` tensors.
"""

from __future__ import annotations

from torch import Tensor


def fold_samples(x: Tensor, num_samples: int) -> Tensor:
    """Repeat every batch item ``num_samples`` times: ``(b, ...) -> (b*s, ...)``, b-major."""
    if num_samples == 1:
        return x
    return x.repeat_interleave(num_samples, dim=0)


def unfold_samples(x: Tensor, num_samples: int) -> Tensor:
    """Split the folded batch axis: ``(b*s, ...) -> (b, s, ...)``."""
    return x.reshape(x.shape[0] // num_samples, num_samples, *x.shape[1:])
