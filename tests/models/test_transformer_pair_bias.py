"""NodeTransformer's pair bias: it reads the pair input, and eval agrees with training mode."""

from __future__ import annotations

import pytest
import torch

from probsym.models import NodeTransformer


def make(**options) -> NodeTransformer:
    torch.manual_seed(0)
    return NodeTransformer(("x",), 3, 2, 6, dim=16, depth=2, heads=2, **options)


def test_eval_matches_training_mode_without_dropout_and_depends_on_pairs():
    model = make(pair_key="pairs", pair_dim=2)
    x, pairs = torch.randn(4, 6, 3), torch.randn(4, 6, 6, 2)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2, [True] + [False] * 5, [True] * 6])
    train = model(x=x, pairs=pairs, mask=mask)
    model.eval()
    with torch.no_grad():  # the inference fast path gave NaN for per-head float masks
        inference = model(x=x, pairs=pairs, mask=mask)
    assert torch.isfinite(inference).all()
    assert torch.allclose(train, inference, atol=1e-5)
    with torch.no_grad():
        other = model(x=x, pairs=pairs + 1.0, mask=mask)
    assert (other - inference).abs().max() > 1e-3


def test_padded_nodes_do_not_reach_real_ones():
    model = make(pair_key="pairs", pair_dim=2).eval()
    x, pairs = torch.randn(1, 6, 3), torch.randn(1, 6, 6, 2)
    mask = torch.tensor([[True] * 3 + [False] * 3])
    garbage_x, garbage_pairs = x.clone(), pairs.clone()
    garbage_x[:, 3:] = 1e3
    garbage_pairs[:, 3:, :] = -7.0
    garbage_pairs[:, :, 3:] = 5.0
    with torch.no_grad():
        a = model(x=x, pairs=pairs, mask=mask)[:, :3]
        b = model(x=garbage_x, pairs=garbage_pairs, mask=mask)[:, :3]
    assert torch.allclose(a, b, atol=1e-5)


def test_pair_key_and_dim_go_together():
    with pytest.raises(ValueError, match="go together"):
        make(pair_key="pairs")
