"""Metrics and losses of the benchmarks, written in torch alone.

Each function mirrors the reference implementation named in its docstring, including its edge
cases, so that our numbers compare with published ones. Shapes: N items (nodes, graphs), C
classes or labels; G graphs · n nodes (padded) for the link-ranking metrics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from probsym.errors import ShapeError

__all__ = [
    "RANKING_VARIANTS",
    "accuracy",
    "class_weighted_cross_entropy",
    "link_ranking",
    "mean_absolute_error",
    "multilabel_average_precision",
    "weighted_accuracy",
]


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


def multilabel_average_precision(scores: Tensor, target: Tensor) -> Tensor:
    r"""Macro average precision over labels (LRGB Peptides-func; torchmetrics 1.0's definition).

    .. math:: \mathrm{AP}_j = \sum_k (R_k - R_{k-1}) P_k

    over the distinct scores of label ``j`` taken as thresholds, highest first (``P_k``, ``R_k``:
    precision and recall of "score ≥ threshold k"; ``R_0 = 0``), which is scikit-learn's
    ``average_precision_score`` and ``torchmetrics.functional.multilabel_average_precision``
    (``average="macro"``). Labels with no positive are skipped (their AP is undefined: NaN in
    torchmetrics 1.0, the authors' version, dropped from the mean; later torchmetrics count it
    as 0); NaN targets mark unlabelled entries and are left out (the OGB evaluator's rule).

    Args:
        scores: Logits or probabilities (any monotone map gives the same AP).
        target: 0/1 labels, NaN where unlabelled.

    Shapes:
        scores, target: ``(N, L)``. Output: scalar float64 (NaN if no label has a positive).
    """
    if scores.dim() != 2 or target.shape != scores.shape:
        raise ShapeError(
            f"AP needs scores and target of one shape (N, L), got {tuple(scores.shape)} and "
            f"{tuple(target.shape)}"
        )
    values = []
    for j in range(scores.size(1)):
        labelled = ~torch.isnan(target[:, j].double())
        y, s = target[labelled, j].double(), scores[labelled, j].double()
        if not bool((y == 1).any()):
            continue
        s, order = torch.sort(s, descending=True, stable=True)
        y = y[order]
        true_pos = torch.cumsum(y, 0)
        last = torch.ones_like(s, dtype=torch.bool)  # last entry of each run of equal scores
        last[:-1] = s[1:] != s[:-1]
        true_pos, seen = true_pos[last], (torch.nonzero(last).squeeze(1) + 1).double()
        precision, recall = true_pos / seen, true_pos / true_pos[-1]
        steps = torch.diff(recall, prepend=recall.new_zeros(1))
        values.append((steps * precision).sum())
    if not values:
        return torch.tensor(float("nan"), dtype=torch.float64)
    return torch.stack(values).mean()


def mean_absolute_error(prediction: Tensor, target: Tensor) -> Tensor:
    """Mean of ``|prediction − target|`` over all entries (Peptides-struct's MAE, torchmetrics').

    Shapes:
        prediction, target: the same shape, e.g. ``(N, 11)``. Output: scalar.
    """
    if prediction.shape != target.shape:
        raise ShapeError(
            f"MAE needs one shape, got {tuple(prediction.shape)} and {tuple(target.shape)}"
        )
    return (prediction.double() - target.double()).abs().mean()


#: The link-ranking protocols and the suffix of their metric names (PAPER-NOTES §4.9).
RANKING_VARIANTS = {"raw": "", "filtered": "_filtered", "filtered_noself": "_filtered_noself"}


def link_ranking(scores: Tensor, positive: Tensor, nodes: Tensor) -> dict[str, float]:
    r"""MRR and hits@1/3/10 of LRGB's PCQM-Contact, in the raw, filtered and noself protocols.

    Each positive pair ``(u, v)`` of graph ``g`` is ranked against the other nodes ``w ≠ v`` of
    row ``u``: ``rank = 1 + |{w : s_{uw} > s_{uv}}|`` (ties count in the positive's favour: the
    stable order of LRGB's OGB-style ``argsort``, which lists the positive first). Raw: all
    ``w``. ``_filtered``: the other positives of the graph are removed first (set to −inf).
    ``_filtered_noself``: the diagonal ``w = u`` is removed too. Per graph the mean over its
    positives (a graph with none scores 0: LRGB turns its NaN into 0), then the mean over graphs.

    Args:
        scores: Link logits, one ``(n, n)`` map per graph.
        positive: True at the positive pairs.
        nodes: True at the pairs of two real nodes of the graph (padding False).

    Shapes:
        scores, positive, nodes: ``(G, n, n)``. Output keys ``mrr``, ``hits@1``, ``hits@3``,
        ``hits@10``, each also with the suffixes ``_filtered`` and ``_filtered_noself``.
    """
    if not (scores.dim() == 3 and scores.shape == positive.shape == nodes.shape):
        raise ShapeError(
            f"link_ranking needs scores, positive and nodes of one shape (G, n, n), got "
            f"{tuple(scores.shape)}, {tuple(positive.shape)} and {tuple(nodes.shape)}"
        )
    graphs = scores.size(0)
    g, u, v = torch.nonzero(positive, as_tuple=True)  # one entry per positive pair, (P,)
    rows = scores[g, u].double()  # (P, n): the source row of each positive
    candidate = nodes[g, u].clone()
    candidate[torch.arange(len(v)), v] = False  # the positive's own target is not a rival
    above = rows > scores[g, u, v].double().unsqueeze(1)  # (P, n)
    not_self = torch.arange(scores.size(1)).unsqueeze(0) != u.unsqueeze(1)
    rivals = {
        "raw": candidate,
        "filtered": candidate & ~positive[g, u],
        "filtered_noself": candidate & ~positive[g, u] & not_self,
    }
    count = torch.bincount(g, minlength=graphs).double()  # positives per graph
    out: dict[str, float] = {}
    for variant, suffix in RANKING_VARIANTS.items():
        rank = 1 + (above & rivals[variant]).sum(1).double()  # (P,)
        per_positive = {
            "mrr": 1.0 / rank,
            **{f"hits@{k}": (rank <= k).double() for k in (1, 3, 10)},
        }
        for key, value in per_positive.items():
            total = torch.zeros(graphs, dtype=torch.float64).index_add_(0, g, value)
            per_graph = torch.where(count > 0, total / count.clamp(min=1), 0.0)
            out[key + suffix] = float(per_graph.mean())
    return out
