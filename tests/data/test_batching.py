from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Data

from probsym.data.batching import add_degree_feature, collate_dense, split_dense
from probsym.errors import DataError, MaskError, ShapeError


def path_graph(n: int, channels: int = 1, label: int | None = None) -> Data:
    """0 - 1 - ... - (n-1), both directions, x = node index repeated over channels."""
    src = torch.arange(n - 1)
    edge_index = torch.stack([torch.cat([src, src + 1]), torch.cat([src + 1, src])])
    x = torch.arange(n, dtype=torch.float32).unsqueeze(1).repeat(1, channels)
    graph = Data(x=x, edge_index=edge_index)
    if label is not None:
        graph.y = torch.tensor([label])
    return graph


def random_graph(generator: torch.Generator, n_max: int) -> Data:
    n = int(torch.randint(1, n_max + 1, (1,), generator=generator))
    upper = torch.triu(torch.rand(n, n, generator=generator) < 0.4, diagonal=1)
    i, j = upper.nonzero(as_tuple=True)
    edge_index = torch.stack([torch.cat([i, j]), torch.cat([j, i])])
    return Data(x=torch.randn(n, 3, generator=generator), edge_index=edge_index)


def edge_set(graph: Data) -> set[tuple[int, int]]:
    return set(map(tuple, graph.edge_index.t().tolist()))


def test_collate_shapes_dtypes_and_padding():
    batch = collate_dense([path_graph(3, label=1), path_graph(5, label=0)])
    assert batch["x"].shape == (2, 5, 1) and batch["x"].dtype == torch.float32
    assert batch["adj"].shape == (2, 5, 5, 1) and batch["adj"].dtype == torch.float32
    assert batch["mask"].dtype == torch.bool
    assert batch["mask"].tolist() == [[True] * 3 + [False] * 2, [True] * 5]
    assert batch["y"].tolist() == [1, 0]
    # real nodes first, in their original order; padding is zero
    assert batch["x"][0, :, 0].tolist() == [0, 1, 2, 0, 0]
    expected = torch.zeros(5, 5)
    expected[[0, 1, 1, 2], [1, 0, 2, 1]] = 1.0
    assert torch.equal(batch["adj"][0, ..., 0], expected)
    assert batch["adj"][0, 3:].abs().sum() == 0 and batch["adj"][0, :, 3:].abs().sum() == 0


def test_collate_fixed_n_max_pads_further():
    batch = collate_dense([path_graph(3), path_graph(4)], n_max=6)
    assert batch["x"].shape == (2, 6, 1) and batch["adj"].shape == (2, 6, 6, 1)
    assert batch["mask"].sum(1).tolist() == [3, 4]
    assert "y" not in batch


def test_collate_graph_larger_than_n_max_raises():
    with pytest.raises(ShapeError, match=r"graph 1 has 5 nodes, more than n_max=4"):
        collate_dense([path_graph(3), path_graph(5)], n_max=4)


def test_collate_empty_graph_raises_mask_error():
    empty = Data(x=torch.zeros(0, 1), edge_index=torch.zeros(2, 0, dtype=torch.long))
    with pytest.raises(MaskError, match="graph 1 has no nodes"):
        collate_dense([path_graph(2), empty])


def test_collate_empty_list_raises():
    with pytest.raises(DataError, match="empty list"):
        collate_dense([])


def test_collate_duplicate_edges_give_indicator():
    graph = Data(x=torch.ones(2, 1), edge_index=torch.tensor([[0, 0, 1], [1, 1, 0]]))
    adj = collate_dense([graph])["adj"][0, ..., 0]
    assert adj.tolist() == [[0.0, 1.0], [1.0, 0.0]]


@pytest.mark.parametrize(
    ("graphs", "error", "match"),
    [
        ([path_graph(3, channels=1), path_graph(3, channels=2)], ShapeError, "channel count"),
        ([path_graph(3, label=1), path_graph(3)], DataError, "present on 1 of 2"),
        ([Data(edge_index=torch.zeros(2, 0, dtype=torch.long), num_nodes=2)], DataError, "x"),
        (
            [Data(x=torch.ones(2, 1), edge_index=torch.tensor([[0], [2]]))],
            DataError,
            r"\[0, 2\)",
        ),
        (
            [Data(x=torch.ones(2, 1), edge_index=torch.zeros(3, 1, dtype=torch.long))],
            ShapeError,
            "(2, e)",
        ),
        (
            [Data(x=torch.ones(2), edge_index=torch.zeros(2, 0, dtype=torch.long))],
            ShapeError,
            "(n, c)",
        ),
    ],
)
def test_collate_bad_input(graphs, error, match):
    with pytest.raises(error, match=match):
        collate_dense(graphs)


def test_collate_node_level_labels_are_padded():
    graphs = [path_graph(2), path_graph(3)]
    graphs[0].y, graphs[1].y = torch.tensor([1, 2]), torch.tensor([3, 4, 5])
    batch = collate_dense(graphs, label_level="node")
    assert batch["y"].tolist() == [[1, 2, 0], [3, 4, 5]]
    back = split_dense(batch, label_level="node")
    assert [g.y.tolist() for g in back] == [[1, 2], [3, 4, 5]]
    with pytest.raises(ShapeError, match="graph-level y needs leading size 1"):
        collate_dense(graphs)


def test_collate_graph_labels_keep_trailing_shape():
    graphs = [path_graph(2), path_graph(3)]
    graphs[0].y, graphs[1].y = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 4.0]])
    batch = collate_dense(graphs)
    assert batch["y"].shape == (2, 2)
    assert [g.y.tolist() for g in split_dense(batch)] == [[[1.0, 2.0]], [[3.0, 4.0]]]


@pytest.mark.parametrize("seed", range(5))
def test_split_dense_inverts_collate(seed):
    generator = torch.Generator().manual_seed(seed)
    graphs = [random_graph(generator, n_max=7) for _ in range(6)]
    batch = collate_dense(graphs, n_max=9)
    back = split_dense(batch)
    assert len(back) == len(graphs)
    for original, restored in zip(graphs, back, strict=True):
        assert torch.equal(original.x, restored.x)
        assert edge_set(original) == edge_set(restored)


def test_split_dense_rejects_non_prefix_mask():
    batch = collate_dense([path_graph(3)], n_max=4)
    batch["mask"] = torch.tensor([[True, False, True, False]])
    with pytest.raises(MaskError, match="real nodes first"):
        split_dense(batch)


def test_add_degree_feature_appends_degree_without_mutating():
    graph = path_graph(4)
    graph.x = graph.x.to(torch.int64)
    out = add_degree_feature(graph)
    assert out.x.dtype == torch.float32 and out.x.shape == (4, 2)
    assert out.x[:, 1].tolist() == [1.0, 2.0, 2.0, 1.0]
    assert out.x[:, 0].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert graph.x.shape == (4, 1) and graph.x.dtype == torch.int64
    assert out.edge_index is graph.edge_index


def test_add_degree_feature_counts_isolated_nodes():
    graph = Data(x=torch.ones(3, 1), edge_index=torch.tensor([[0, 1], [1, 0]]))
    assert add_degree_feature(graph).x[:, 1].tolist() == [1.0, 1.0, 0.0]


def test_add_degree_feature_needs_x():
    with pytest.raises(DataError, match="x and edge_index"):
        add_degree_feature(Data(edge_index=torch.zeros(2, 0, dtype=torch.long), num_nodes=2))


def test_collate_edge_attr_lands_on_pairs_and_validates():
    graph = path_graph(3)
    graph.edge_attr = torch.arange(4, dtype=torch.float32)  # one channel, (e,) form
    other = path_graph(2)
    other.edge_attr = torch.tensor([7.0, 8.0])
    batch = collate_dense([graph, other], edge_attr=True)
    assert batch["edge_attr"].shape == (2, 3, 3, 1)
    for k, (u, v) in enumerate(graph.edge_index.t().tolist()):
        assert batch["edge_attr"][0, u, v, 0] == k
    assert batch["edge_attr"][1, ..., 0].tolist() == [[0, 7, 0], [8, 0, 0], [0, 0, 0]]
    assert "edge_attr" not in collate_dense([graph, other])
    other.edge_attr = torch.ones(2, 2)
    with pytest.raises(ShapeError, match="edge_attr: all graphs need the same channel count"):
        collate_dense([graph, other], edge_attr=True)
    other.edge_attr = torch.ones(3, 1)
    with pytest.raises(ShapeError, match=r"graph 1: edge_attr must have shape \(2, e\)"):
        collate_dense([graph, other], edge_attr=True)
    with pytest.raises(DataError, match="graph 0 has no edge_attr"):
        collate_dense([path_graph(2)], edge_attr=True)
