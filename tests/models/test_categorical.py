"""Pair codes one-hot inside the base: values, gating by the edge indicator, permutations."""

from __future__ import annotations

import pytest
import torch

from probsym.errors import ShapeError
from probsym.models.categorical import OneHotPairs, one_hot_pairs


def test_codes_become_gated_one_hots():
    pair = torch.zeros(1, 2, 2, 3)
    pair[0, 0, 1] = torch.tensor([1.0, 2.0, 1.0])  # an edge with codes (2, 1)
    pair[0, 1, 0] = torch.tensor([0.0, 1.0, 1.0])  # not an edge: its codes are ignored
    out = one_hot_pairs(pair, [3, 2])
    assert out.shape == (1, 2, 2, 1 + 3 + 2)
    assert out[0, 0, 1].tolist() == [1, 0, 0, 1, 0, 1]
    assert out[0, 1, 0].abs().sum() == 0 and out[0, 0, 0].abs().sum() == 0
    with pytest.raises(ShapeError, match="indicator"):
        one_hot_pairs(pair, [3])


def test_the_encoding_commutes_with_node_permutations():
    generator = torch.Generator().manual_seed(0)
    pair = torch.randint(0, 3, (2, 5, 5, 3), generator=generator).float()
    sigma = torch.randperm(5, generator=generator)
    permuted = pair[:, sigma][:, :, sigma]
    expected = one_hot_pairs(pair, [3, 3])[:, sigma][:, :, sigma]
    assert torch.equal(one_hot_pairs(permuted, [3, 3]), expected)


class Recorder(torch.nn.Module):
    def forward(self, **inputs):
        self.seen = inputs
        return inputs["adj"].sum()


def test_the_wrapper_passes_every_input_by_name():
    model = OneHotPairs(Recorder(), [2])
    model(x=torch.ones(1, 2, 4), adj=torch.ones(1, 2, 2, 2), mask=torch.ones(1, 2).bool())
    seen = model.base.seen
    assert seen["adj"].shape == (1, 2, 2, 3) and set(seen) == {"x", "adj", "mask"}
    assert model.channels == 3
