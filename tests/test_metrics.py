"""Metrics and losses against hand-computed values and the references' edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from probsym.errors import ShapeError
from probsym.metrics import accuracy, class_weighted_cross_entropy, weighted_accuracy


def logits_for(prediction, num_classes=2):
    """Logits whose argmax is ``prediction``."""
    return torch.nn.functional.one_hot(torch.tensor(prediction), num_classes).float() * 3.0 - 1.0


def reference_accuracy_sbm(target, prediction):
    """benchmarking-gnns accuracy_SBM restated with numpy (sklearn's confusion-matrix labels)."""
    target, prediction = np.asarray(target), np.asarray(prediction)
    labels = np.union1d(target, prediction)
    k = len(labels)
    position = {label: i for i, label in enumerate(labels)}
    confusion = np.zeros((k, k))
    for t, p in zip(target, prediction, strict=True):
        confusion[position[t], position[p]] += 1
    recall = [
        confusion[r, r] / (target == r).sum() if (target == r).any() else 0.0 for r in range(k)
    ]
    return 100.0 * sum(recall) / k


@pytest.mark.parametrize(
    "target, prediction, expected",
    [
        ([0, 0, 0, 1, 1], [0, 0, 1, 1, 0], 100 * (2 / 3 + 1 / 2) / 2),
        ([0, 1, 1, 0], [0, 1, 1, 0], 100.0),  # all correct
        ([0, 0, 1], [1, 1, 0], 0.0),  # all wrong
        ([0, 0, 0, 0], [0, 0, 1, 0], 100 * (3 / 4) / 2),  # class 1 absent from target
        ([1, 1, 1, 1], [1, 0, 1, 1], 100 * (3 / 4) / 2),  # class 0 absent from target
        ([0, 0, 0], [0, 0, 0], 100.0),  # one class, K = 1
        ([1, 1, 1], [1, 1, 1], 0.0),  # the reference's index quirk: K = 1, class id 0 empty
        ([0, 1, 2, 2, 1, 0], [0, 2, 2, 1, 1, 0], 100 * (1 + 1 / 2 + 1 / 2) / 3),
        ([0, 1, 1, 0], [0, 1, 2, 0], 100 * (1 + 1 / 2 + 0) / 3),  # class 2 only predicted
    ],
)
def test_weighted_accuracy_hand_values(target, prediction, expected):
    classes = max(max(target), max(prediction)) + 1
    value = weighted_accuracy(logits_for(prediction, max(classes, 2)), torch.tensor(target))
    assert value.item() == pytest.approx(expected, abs=1e-9)
    assert reference_accuracy_sbm(target, prediction) == pytest.approx(expected, abs=1e-9)


def test_weighted_accuracy_matches_the_reference_on_random_batches():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n, c = int(rng.integers(1, 30)), int(rng.integers(2, 5))
        # sparse label sets exercise the position-vs-id quirk
        pool = rng.choice(c, size=int(rng.integers(1, c + 1)), replace=False)
        target = rng.choice(pool, size=n)
        logits = torch.from_numpy(rng.normal(size=(n, c)))
        prediction = logits.argmax(1).numpy()
        got = weighted_accuracy(logits, torch.from_numpy(target)).item()
        assert got == pytest.approx(reference_accuracy_sbm(target, prediction), abs=1e-9)


def test_accuracy():
    target = torch.tensor([0, 0, 1, 1, 1])
    assert accuracy(logits_for([0, 1, 1, 1, 0]), target).item() == pytest.approx(60.0)
    assert accuracy(logits_for([0, 0, 1, 1, 1]), target).item() == pytest.approx(100.0)
    assert accuracy(logits_for([1, 1, 0, 0, 0]), target).item() == 0.0


def test_weighted_cross_entropy_hand_value():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    target = torch.tensor([0, 0, 1])
    # V = 3, counts (2, 1): weights (1/3, 2/3)
    nll = [math.log(1 + math.exp(-2)), math.log(1 + math.exp(1)), math.log(2)]
    expected = (nll[0] / 3 + nll[1] / 3 + 2 * nll[2] / 3) / (1 / 3 + 1 / 3 + 2 / 3)
    assert class_weighted_cross_entropy(logits, target).item() == pytest.approx(expected, rel=1e-12)


def test_weighted_cross_entropy_absent_class_weighs_zero():
    logits = torch.tensor([[1.0, 0.0, 2.0], [0.0, 3.0, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 0.0]])
    target = torch.tensor([0, 1, 1, 1])  # class 2 absent: weights (3/4, 1/4, 0)
    log_p = torch.log_softmax(logits.double(), dim=1)
    nll = -log_p[torch.arange(4), target]
    w = torch.tensor([0.75, 0.25, 0.25, 0.25], dtype=torch.float64)
    expected = (w * nll).sum() / w.sum()
    got = class_weighted_cross_entropy(logits, target)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_weighted_cross_entropy_single_class_is_nan_as_the_reference():
    # every weight is (V - V) / V = 0: nll_loss divides 0 by 0
    assert torch.isnan(class_weighted_cross_entropy(torch.randn(4, 2), torch.zeros(4).long()))


def test_weighted_cross_entropy_binary_form():
    logits = torch.tensor([0.5, -1.0, 2.0, 0.0], dtype=torch.float64)
    target = torch.tensor([1, 0, 0, 0])  # weights: class 0 -> 1/4, class 1 -> 3/4
    bce = [
        math.log(1 + math.exp(-0.5)),  # target 1
        math.log(1 + math.exp(-1.0)),  # target 0: -log(1 - sigmoid(-1))
        math.log(1 + math.exp(2.0)),
        math.log(2.0),
    ]
    expected = (0.75 * bce[0] + 0.25 * (bce[1] + bce[2] + bce[3])) / 4  # plain mean over N
    assert class_weighted_cross_entropy(logits, target).item() == pytest.approx(expected, rel=1e-12)


def test_weighted_cross_entropy_balanced_batch_is_plain_cross_entropy():
    logits = torch.randn(6, 2, dtype=torch.float64)
    target = torch.tensor([0, 1, 0, 1, 1, 0])  # equal counts: equal weights 1/2
    plain = torch.nn.functional.cross_entropy(logits, target)
    assert torch.allclose(class_weighted_cross_entropy(logits, target), plain, atol=1e-12)


def test_weighted_cross_entropy_has_gradients():
    logits = torch.randn(5, 2, requires_grad=True)
    class_weighted_cross_entropy(logits, torch.tensor([0, 1, 1, 1, 0])).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_bad_shapes():
    with pytest.raises(ShapeError, match="logits"):
        weighted_accuracy(torch.randn(4), torch.zeros(4).long())
    with pytest.raises(ShapeError, match="target"):
        accuracy(torch.randn(4, 2), torch.zeros(3).long())
    with pytest.raises(ShapeError, match="integer"):
        accuracy(torch.randn(4, 2), torch.zeros(4))
    with pytest.raises(ShapeError, match="class ids"):
        class_weighted_cross_entropy(torch.randn(3, 2), torch.tensor([0, 1, 2]))
