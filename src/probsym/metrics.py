"""Classification metrics and losses of the benchmarks, written in torch alone.

Each function mirrors the reference implementation named in its docstring, including its edge
cases, so that our numbers compare with published ones. Shapes: N items (nodes), C classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from probsym.errors import ShapeError

__all__ = ["accuracy", "class_weighted_cross_entropy", "weighted_accuracy"]


def _check(logits: Tensor, target: Tensor, *, allow_binary: bool = False) -> None:
    ok_logits = logits.dim() == 2 or (allow_binary and logits.dim() == 1)
    if not ok_logits:
        raise ShapeError(f"logits must be (N, C), got {tuple(logits.shape)}")
    if target.dim() != 1 or target.size(0) != logits.size(0):
        raise ShapeError(f"target must be ({logits.size(0)},), got {tuple(target.shape)}")
    if target.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise ShapeError(f"target must hold integer class ids, got {target.dtype}")


def accuracy(logits: Tensor, target: Tensor) -> Tensor:
    """Plain accuracy in percent: ``100 · mean(argmax(logits) == target)``.

    Args:
        logits: Class scores (any monotone transform of them gives the same argmax).
        target: Class ids.

    Shapes:
        logits: (N, C). target: (N,). Output: scalar float.
    """
    _check(logits, target)
    return 100.0 * (logits.argmax(dim=1) == target).float().mean()


def weighted_accuracy(logits: Tensor, target: Tensor) -> Tensor:
    r"""benchmarking-gnns' ``accuracy_SBM`` for one batch: 100 × the mean per-class recall.

    .. math:: \mathrm{acc} = \frac{100}{K} \sum_{r=0}^{K-1} \frac{M_{rr}}{|\{i: t_i = r\}|}

    mirrored exactly, quirks included: ``M`` is scikit-learn's confusion matrix, whose rows and
    columns are the *sorted distinct labels present in target or prediction*; ``K`` is their
    number. The loop then reads ``M[r, r]`` at position ``r`` but counts the targets equal to the
    class id ``r``, and a class with no target contributes 0 while still counting in ``K``. So
    a batch whose targets and predictions are all 0 scores 100, but one where all are 1 scores
    0 (``K = 1``, and class id 0 has no target); a class that is only predicted halves the
    score. With both classes present among the targets (every PATTERN batch of 128 graphs) it is
    the plain balanced accuracy. The reference takes argmax of softmax(logits); argmax of the
    logits is the same (softmax is monotone; both return the first maximum).

    Args:
        logits: Class scores.
        target: Class ids (non-negative).

    Shapes:
        logits: (N, C). target: (N,). Output: scalar float (float64, as the reference).
    """
    _check(logits, target)
    target = target.long()
    prediction = logits.argmax(dim=1)
    labels = torch.unique(torch.cat([target, prediction]))  # sorted, as sklearn's unique_labels
    k = labels.numel()
    rows = torch.searchsorted(labels, target)
    cols = torch.searchsorted(labels, prediction)
    confusion = torch.bincount(rows * k + cols, minlength=k * k).reshape(k, k)
    counts = torch.bincount(target, minlength=k)[:k]  # targets equal to class id r, r < k
    diagonal = confusion.diagonal().double()
    recall = torch.where(counts > 0, diagonal / counts.clamp(min=1).double(), 0.0)
    return 100.0 * recall.sum() / k


def class_weighted_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    r"""LRGB / GraphGPS ``weighted_cross_entropy``: cross-entropy with per-batch class weights.

    .. math:: w_c = \frac{V - n_c}{V} [n_c > 0], \qquad
              L = \frac{\sum_i w_{t_i} (-\log p_{i, t_i})}{\sum_i w_{t_i}}

    with ``V = N`` items in the batch and ``n_c`` the count of class ``c``: rare classes weigh
    more, and a class absent from the batch gets weight 0. For (N, C) logits this is
    ``nll_loss(log_softmax(logits), target, weight=w)`` (weighted mean, as above); a batch with a
    single class then has all weights 0 and gives NaN, as the reference does. For (N,) logits
    (the reference's binary branch) it is ``binary_cross_entropy_with_logits`` with per-item
    weights ``w_{t_i}`` and the plain mean over the N items, with ``C = 2``.

    Args:
        logits: Class scores (N, C), or one logit per item (N,) for the binary form.
        target: Class ids in ``[0, C)``.

    Shapes:
        logits: (N, C) or (N,). target: (N,). Output: scalar.
    """
    _check(logits, target, allow_binary=True)
    target = target.long()
    num_classes = logits.size(1) if logits.dim() == 2 else 2
    count = torch.bincount(target, minlength=num_classes)
    if count.numel() > num_classes:
        raise ShapeError(f"target has class ids >= {num_classes}, the number of logits")
    total = target.numel()
    weight = (total - count).to(logits.dtype) / total * (count > 0).to(logits.dtype)
    if logits.dim() == 2:
        return F.nll_loss(F.log_softmax(logits, dim=-1), target, weight=weight)
    return F.binary_cross_entropy_with_logits(
        logits, target.to(logits.dtype), weight=weight[target]
    )
