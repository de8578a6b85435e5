"""PyG's GIN behind the dense interface: equivariant by itself, blind to padding."""

from __future__ import annotations

import pytest
import torch

from probsym.models.pyg_gnn import PyGGIN


def dense_graphs(sizes=(6, 4, 1), n=7, seed=0):
    torch.manual_seed(seed)
    b = len(sizes)
    mask = torch.arange(n)[None] < torch.tensor(sizes)[:, None]
    x = torch.randn(b, n, 3)
    adj = (torch.rand(b, n, n) < 0.5).float()
    adj = torch.triu(adj, 1)
    adj = (adj + adj.transpose(1, 2))[..., None]
    return x, adj, mask


@pytest.mark.parametrize("level", ["node", "graph"])
def test_gin_is_permutation_equivariant_and_ignores_padding(level):
    x, adj, mask = dense_graphs()
    model = PyGGIN(3, 16, 2, depth=3, level=level).eval()
    out = model(x, adj, mask)
    perm = torch.randperm(7)
    mask_p = mask[:, perm]
    out_p = model(x[:, perm], adj[:, perm][:, :, perm], mask_p)
    garbage = torch.where(mask[..., None], x, torch.full_like(x, 1e6))
    adj_garbage = torch.where((mask[:, :, None] & mask[:, None, :])[..., None], adj, 1.0)
    out_g = model(garbage, adj_garbage, mask)
    if level == "node":
        torch.testing.assert_close(out_p, out[:, perm], atol=1e-5, rtol=1e-5)
        assert (out[~mask] == 0).all()
    else:
        torch.testing.assert_close(out_p, out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_g, out)


def test_gin_learns_on_a_batch():
    x, adj, mask = dense_graphs()
    model = PyGGIN(3, 16, 2, depth=2)
    target = (x[..., 0] > 0).long()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        logits = model(x, adj, mask)[mask]
        loss = torch.nn.functional.cross_entropy(logits, target[mask])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]
