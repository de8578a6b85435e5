from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Batch, Data

from probsym.data.batching import collate_dense
from probsym.data.pyg import from_pyg, node_outputs_to_pyg, pair_outputs_to_pyg
from probsym.errors import DataError, MaskError, ShapeError


def random_graph(generator: torch.Generator, n: int, edge_channels: int = 2) -> Data:
    """Distinct directed edges (no duplicates), so dense edge attributes are the sparse ones."""
    pairs = (torch.rand(n, n, generator=generator) < 0.4).nonzero().t()
    return Data(
        x=torch.randn(n, 3, generator=generator),
        edge_index=pairs,
        edge_attr=torch.randn(pairs.size(1), edge_channels, generator=generator),
    )


def graphs(seed: int = 0, sizes=(3, 7, 1, 5)) -> list[Data]:
    generator = torch.Generator().manual_seed(seed)
    return [random_graph(generator, n) for n in sizes]


def test_batch_and_list_give_the_same_dense_inputs():
    data = graphs()
    from_batch = from_pyg(Batch.from_data_list(data), edge_attr=True)
    from_list = from_pyg(data, edge_attr=True)
    assert set(from_batch) == {"x", "adj", "mask", "edge_attr"}
    for key, value in from_list.items():
        assert torch.equal(from_batch[key], value), key
    assert from_batch["x"].shape == (4, 7, 3) and from_batch["adj"].shape == (4, 7, 7, 1)
    assert from_batch["edge_attr"].shape == (4, 7, 7, 2)
    assert from_batch["mask"].sum(1).tolist() == [3, 7, 1, 5]


def test_single_data_and_fixed_n_max():
    graph = graphs(sizes=(4,))[0]
    out = from_pyg(graph, n_max=6)
    assert out["x"].shape == (1, 6, 3) and out["mask"].tolist() == [[True] * 4 + [False] * 2]
    with pytest.raises(ShapeError, match="more than n_max=3"):
        from_pyg(Batch.from_data_list([graph]), n_max=3)


def test_node_outputs_round_trip_in_batch_order():
    batch = Batch.from_data_list(graphs())
    dense = from_pyg(batch)
    assert torch.equal(node_outputs_to_pyg(dense["x"], dense["mask"]), batch.x)
    per_node = torch.randn(4, 7, 2, 5)  # trailing dimensions are kept
    flat = node_outputs_to_pyg(per_node, dense["mask"])
    assert flat.shape == (batch.num_nodes, 2, 5)
    assert torch.equal(flat[batch.ptr[1] + 6], per_node[1, 6])


def test_edge_values_land_on_their_pairs():
    batch = Batch.from_data_list(graphs())
    dense = from_pyg(batch, edge_attr=True)
    for layout in (batch, batch.ptr, batch.batch):
        values = pair_outputs_to_pyg(dense["edge_attr"], layout, batch.edge_index)
        assert torch.equal(values, batch.edge_attr)
        assert torch.equal(
            pair_outputs_to_pyg(dense["adj"], layout, batch.edge_index),
            torch.ones(batch.num_edges, 1),
        )


def test_candidate_pairs_need_not_be_edges():
    batch = Batch.from_data_list(graphs())
    y_pair = torch.arange(4 * 7 * 7, dtype=torch.float32).reshape(4, 7, 7)
    # graph 3 holds global nodes 11..15: local (4, 0), then graph 1's local (6, 6)
    candidates = torch.tensor([[15, 9], [11, 9]])
    assert pair_outputs_to_pyg(y_pair, batch.ptr, candidates).tolist() == [
        y_pair[3, 4, 0].item(),
        y_pair[1, 6, 6].item(),
    ]


def test_empty_edge_sets():
    empty = Data(x=torch.ones(3, 2), edge_index=torch.zeros(2, 0, dtype=torch.long))
    batch = Batch.from_data_list([empty, Data(x=torch.ones(2, 2), edge_index=empty.edge_index)])
    dense = from_pyg(batch)
    assert dense["adj"].abs().sum() == 0 and dense["mask"].sum().item() == 5
    values = pair_outputs_to_pyg(torch.randn(2, 3, 3, 4), batch, batch.edge_index)
    assert values.shape == (0, 4)


def test_ptr_of_single_node_graphs_is_not_a_batch_vector():
    # ptr [0, 1, 2] (two one-node graphs) vs batch vector [0, 1]: both must give the same result
    y_pair = torch.tensor([[[1.0]], [[2.0]]])
    pairs = torch.tensor([[1], [1]])
    assert pair_outputs_to_pyg(y_pair, torch.tensor([0, 1, 2]), pairs).tolist() == [2.0]
    assert pair_outputs_to_pyg(y_pair, torch.tensor([0, 1]), pairs).tolist() == [2.0]


def test_from_pyg_matches_collate_dense_on_lists():
    data = graphs(seed=3)
    expected = collate_dense(data, n_max=8)
    out = from_pyg(Batch.from_data_list(data), n_max=8)
    for key in ("x", "adj", "mask"):
        assert torch.equal(out[key], expected[key])


def test_errors_name_what_was_expected():
    batch = Batch.from_data_list(graphs())
    dense = from_pyg(batch)
    with pytest.raises(
        ShapeError, match=r"expected shape \(b, n, \.\.\.\) with \(b, n\) = \(4, 7\)"
    ):
        node_outputs_to_pyg(torch.zeros(4, 6), dense["mask"])
    with pytest.raises(MaskError, match="bool"):
        node_outputs_to_pyg(dense["x"], dense["mask"].float())
    with pytest.raises(MaskError, match="real nodes first"):
        node_outputs_to_pyg(dense["x"], dense["mask"].flip(1))
    with pytest.raises(ShapeError, match=r"y_pair: expected shape \(b, n, n"):
        pair_outputs_to_pyg(torch.zeros(4, 7, 6), batch, batch.edge_index)
    with pytest.raises(ShapeError, match="more than y_pair's n=5"):
        pair_outputs_to_pyg(torch.zeros(4, 5, 5), batch, batch.edge_index)
    with pytest.raises(DataError, match="joins graphs 0 and 1"):
        pair_outputs_to_pyg(dense["adj"], batch, torch.tensor([[0], [3]]))
    with pytest.raises(DataError, match=r"\[0, 16\)"):
        pair_outputs_to_pyg(dense["adj"], batch, torch.tensor([[0], [16]]))
    with pytest.raises(ShapeError, match=r"\(2, E\)"):
        pair_outputs_to_pyg(dense["adj"], batch, torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(ShapeError, match=r"graph ids in \[0, 4\)"):
        pair_outputs_to_pyg(dense["adj"], batch.batch + 1, batch.edge_index)
    with pytest.raises(DataError, match="sorted"):
        pair_outputs_to_pyg(dense["adj"], batch.batch.flip(0), batch.edge_index)
    crossing = Batch.from_data_list(graphs())
    crossing.edge_index = torch.tensor([[0], [3]])
    with pytest.raises(DataError, match="joins graphs"):
        from_pyg(crossing)
    with pytest.raises(DataError, match="edge_attr"):
        from_pyg(
            Batch.from_data_list(
                [Data(x=torch.ones(2, 1), edge_index=torch.zeros(2, 0, dtype=torch.long))]
            ),
            edge_attr=True,
        )
