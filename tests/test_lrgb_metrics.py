"""LRGB metrics against hand-computed values (and torchmetrics where it agrees)."""

from __future__ import annotations

import math

import pytest
import torch

from probsym.errors import ShapeError
from probsym.metrics import link_ranking, mean_absolute_error, multilabel_average_precision

NAN = float("nan")


def test_average_precision_by_hand():
    # label 0: order 1,0,1,0 -> P = 1, 1/2, 2/3, 1/2 and R = .5, .5, 1, 1: AP = .5 + .5 * 2/3
    # label 1: scores tie at 0.5 (one positive among them): thresholds 0.5, 0.2, 0.1 give
    #          P = 1/2, 2/3, 1/2 and R = .5, 1, 1: AP = .5 * .5 + .5 * 2/3
    # label 2: no positive -> skipped
    scores = torch.tensor([[0.9, 0.5, 0.3], [0.8, 0.5, 0.1], [0.7, 0.2, 0.2], [0.6, 0.1, 0.0]])
    target = torch.tensor([[1.0, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    expected = ((0.5 + 0.5 * 2 / 3) + (0.25 + 0.5 * 2 / 3)) / 2
    assert float(multilabel_average_precision(scores, target)) == pytest.approx(expected, abs=1e-12)


def test_average_precision_leaves_unlabelled_entries_out():
    scores = torch.tensor([[0.9], [0.8], [0.7]])
    target = torch.tensor([[0.0], [NAN], [1.0]])  # without the NaN row: order 0, 1 -> AP 1/2
    assert float(multilabel_average_precision(scores, target)) == pytest.approx(0.5)
    assert math.isnan(float(multilabel_average_precision(scores, torch.zeros(3, 1))))


def test_average_precision_equals_torchmetrics_when_every_label_has_a_positive():
    functional = pytest.importorskip("torchmetrics.functional.classification")
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(200, 10, generator=generator).round(decimals=1)  # with ties
    target = (torch.rand(200, 10, generator=generator) < 0.3).long()
    reference = functional.multilabel_average_precision(scores, target, num_labels=10)
    ours = multilabel_average_precision(scores, target.float())
    assert float(ours) == pytest.approx(float(reference), abs=1e-6)


def test_mae_is_the_mean_over_all_entries():
    prediction = torch.tensor([[1.0, 2.0], [3.0, 5.0]])
    target = torch.tensor([[1.5, 2.0], [1.0, 5.0]])
    assert float(mean_absolute_error(prediction, target)) == pytest.approx(2.5 / 4)
    with pytest.raises(ShapeError):
        mean_absolute_error(prediction, target[:1])


def ranking_case():
    """Two graphs padded to 4 nodes: graph 0 has 3 nodes and positives (0,1), (0,2); graph 1
    has 2 nodes and no positive (it scores 0, LRGB's NaN -> 0)."""
    scores = torch.zeros(2, 4, 4)
    scores[0, 0, :3] = torch.tensor([5.0, 1.0, 3.0])  # row 0: self 5, pos 1, pos 3
    scores[0, 0, 3] = 100.0  # padding: never a rival
    positive = torch.zeros(2, 4, 4, dtype=torch.bool)
    positive[0, 0, 1] = positive[0, 0, 2] = True
    nodes = torch.zeros(2, 4, 4, dtype=torch.bool)
    nodes[0, :3, :3] = True
    nodes[1, :2, :2] = True
    return scores, positive, nodes


def test_link_ranking_by_hand_in_all_three_protocols():
    out = link_ranking(*ranking_case())
    # raw: (0,1) with score 1 is below self (5) and (0,2) (3): rank 3; (0,2): below self: rank 2
    assert out["mrr"] == pytest.approx((1 / 3 + 1 / 2) / 2 / 2)
    assert out["hits@1"] == 0.0
    assert out["hits@3"] == pytest.approx((1 + 1) / 2 / 2)
    # filtered: the other positive leaves row 0: (0,1) rank 2 (self), (0,2) rank 2 (self)
    assert out["mrr_filtered"] == pytest.approx((1 / 2 + 1 / 2) / 2 / 2)
    # noself: only the positive remains in each case: rank 1
    assert out["mrr_filtered_noself"] == pytest.approx(1 / 2)
    assert out["hits@1_filtered_noself"] == pytest.approx(1 / 2)
    assert out["hits@10"] == out["hits@10_filtered"] == pytest.approx(1 / 2)


def test_link_ranking_ties_count_for_the_positive():
    scores, positive, nodes = ranking_case()
    scores[0, 0, :3] = 2.0
    out = link_ranking(scores[:1], positive[:1], nodes[:1])
    assert out["mrr"] == out["hits@1"] == 1.0


def test_link_ranking_rejects_mismatched_shapes():
    scores, positive, nodes = ranking_case()
    with pytest.raises(ShapeError, match="link_ranking"):
        link_ranking(scores, positive[:, :3], nodes)
