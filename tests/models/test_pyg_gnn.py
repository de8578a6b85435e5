"""PyG baselines behind the dense interface: the conversion, equivariance, padding independence."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("torch_geometric")

from torch_geometric.data import Batch, Data  # noqa: E402

from probsym.models.pyg_gnn import GatedGCN, PyGGIN, dense_to_pyg  # noqa: E402

SIZES = [5, 1, 7, 3]  # real nodes per graph (a single-node graph and an unpadded one)
N, C, EDGE_DIM = 7, 4, 2


def random_batch(seed: int = 0):
    """Symmetric random graphs, real nodes first, padding zero; adj = [indicator, features]."""
    generator = torch.Generator().manual_seed(seed)
    b = len(SIZES)
    mask = torch.arange(N)[None] < torch.tensor(SIZES)[:, None]
    pairs = mask[:, :, None] & mask[:, None, :] & ~torch.eye(N, dtype=torch.bool)
    upper = torch.rand(b, N, N, generator=generator).triu(1) < 0.5
    edges = (upper | upper.transpose(1, 2)) & pairs
    features = torch.randn(b, N, N, EDGE_DIM, generator=generator) * edges[..., None]
    adj = torch.cat([edges[..., None].float(), features], dim=-1)
    x = torch.randn(b, N, C, generator=generator) * mask[..., None]
    return dict(x=x, adj=adj, mask=mask)


def models():
    torch.manual_seed(0)
    return {
        "gin-node": PyGGIN(C, 3, hidden=16, readout=None),
        "gin-sum": PyGGIN(C, 3, hidden=16, readout="sum"),
        "gin-mean": PyGGIN(C, 3, hidden=16, readout="mean", norm="batch_norm").eval(),
        "gated-node": GatedGCN(C, 3, hidden=16, edge_dim=EDGE_DIM, readout=None),
        "gated-mean": GatedGCN(C, 3, hidden=16, edge_dim=0, readout="mean"),
    }


MODELS = models()


def permute_real_nodes(batch, seed: int = 1):
    """Relabel the real nodes of every graph (padding stays last); returns batch, index."""
    generator = torch.Generator().manual_seed(seed)
    index = torch.arange(N).repeat(len(SIZES), 1)
    for g, size in enumerate(SIZES):
        index[g, :size] = torch.randperm(size, generator=generator)
    rows = torch.arange(len(SIZES))[:, None]
    x, adj, mask = batch["x"][rows, index], batch["adj"][rows, index], batch["mask"]
    adj = adj[rows, :, index].transpose(1, 2)  # adj[g, index[i], index[j]]
    return dict(x=x, adj=adj, mask=mask), index


def test_permuted_adjacency_is_the_relabelled_graph():
    batch = random_batch()
    permuted, index = permute_real_nodes(batch)
    g, i, j = 0, 1, 3
    assert torch.equal(permuted["adj"][g, i, j], batch["adj"][g, index[g, i], index[g, j]])


def test_conversion_matches_a_pyg_batch():
    batch = random_batch()
    nodes, edge_index, edge_attr, graph = dense_to_pyg(**batch)
    reference = Batch.from_data_list(
        [
            Data(
                x=batch["x"][g, :size],
                edge_index=batch["adj"][g, :size, :size, 0].nonzero().t(),
                edge_attr=batch["adj"][g, :size, :size][batch["adj"][g, :size, :size, 0] != 0],
            )
            for g, size in enumerate(SIZES)
        ]
    )
    assert torch.equal(nodes, reference.x)
    assert torch.equal(edge_index, reference.edge_index)
    assert torch.equal(edge_attr, reference.edge_attr)
    assert torch.equal(graph, reference.batch)


@pytest.mark.parametrize("name", list(MODELS))
def test_permuting_the_nodes_permutes_node_outputs_and_keeps_graph_outputs(name):
    model = MODELS[name]
    batch = random_batch()
    permuted, index = permute_real_nodes(batch)
    with torch.no_grad():
        out, out_permuted = model(**batch), model(**permuted)
    if model.readout is None:
        assert out.shape == (len(SIZES), N, 3)
        out = out[torch.arange(len(SIZES))[:, None], index]
    else:
        assert out.shape == (len(SIZES), 3)
    # sums over neighbours run in another order: float32 rounding only
    torch.testing.assert_close(out_permuted, out, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", list(MODELS))
def test_padded_garbage_does_not_matter(name):
    model = MODELS[name]
    batch = random_batch()
    garbage = random_batch(seed=5)
    mask = batch["mask"]
    pairs = mask[:, :, None] & mask[:, None, :]
    dirty = dict(
        x=torch.where(mask[..., None], batch["x"], 1e3 * garbage["x"].normal_()),
        adj=torch.where(pairs[..., None], batch["adj"], garbage["adj"].uniform_()),
        mask=mask,
    )
    with torch.no_grad():
        clean, noisy = model(**batch), model(**dirty)
    torch.testing.assert_close(noisy, clean, atol=0, rtol=0)  # the same sparse batch exactly
    if model.readout is None:
        assert (clean[~mask] == 0).all()


def test_edge_features_are_read_on_edges_only():
    model = MODELS["gated-node"]
    batch = random_batch()
    edges = batch["adj"][..., :1] != 0
    off_edges = dict(batch, adj=torch.where(edges, batch["adj"], torch.full_like(batch["adj"], 9)))
    off_edges["adj"][..., 0] = batch["adj"][..., 0]
    on_edges = dict(batch, adj=batch["adj"] * torch.tensor([1.0, 2.0, 2.0]))
    with torch.no_grad():
        out = model(**batch)
        torch.testing.assert_close(model(**off_edges), out, atol=0, rtol=0)
        assert not torch.allclose(model(**on_edges), out)


def test_no_mask_means_every_node_is_real_and_gradients_flow():
    model = PyGGIN(C, 1, hidden=8, readout="sum")
    x, adj = torch.randn(2, 4, C), (torch.rand(2, 4, 4, 1) < 0.5).float()
    out = model(x, adj)
    full = torch.ones(2, 4, dtype=torch.bool)
    torch.testing.assert_close(out, model(x, adj, full))
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_unknown_readout_lists_the_choices():
    with pytest.raises(ValueError, match="'sum', 'mean' or None"):
        PyGGIN(C, 1, readout="max")
