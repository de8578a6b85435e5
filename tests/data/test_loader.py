from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Data, InMemoryDataset

from probsym.data.batching import collate_dense
from probsym.data.loader import GraphSplit, bucket_batches, graph_sizes, padding_fraction
from probsym.errors import DataError, ShapeError


class Stored(InMemoryDataset):
    """Graphs collated into PyG's compact in-memory storage (no files)."""

    def __init__(self, graphs: list[Data]) -> None:
        super().__init__(None)
        self.data, self.slices = self.collate(graphs)


def random_graphs(count: int, n_max: int, seed: int = 0, node_labels: bool = False) -> list[Data]:
    generator = torch.Generator().manual_seed(seed)
    out = []
    for i in range(count):
        n = int(torch.randint(1, n_max + 1, (1,), generator=generator))
        edge_index = (torch.rand(n, n, generator=generator) < 0.3).nonzero().t()
        y = torch.randint(0, 3, (n,), generator=generator) if node_labels else torch.tensor([i])
        out.append(
            Data(
                x=torch.randn(n, 2, generator=generator),
                edge_index=edge_index,
                edge_attr=torch.randn(edge_index.size(1), 3, generator=generator),
                y=y,
            )
        )
    return out


def test_sizes_come_from_slices_without_materializing():
    graphs = random_graphs(30, 9)
    stored = Stored(graphs)
    expected = torch.tensor([g.num_nodes for g in graphs])
    assert torch.equal(graph_sizes(stored), expected)
    assert stored._data_list is None  # no graph was separated out of the storage
    assert torch.equal(graph_sizes(stored[5:12]), expected[5:12])
    assert torch.equal(graph_sizes(stored[[3, 1]]), expected[[3, 1]])


@pytest.mark.parametrize("batch_size", [1, 7, 10])
@pytest.mark.parametrize("seeded", [True, False])
def test_every_graph_once_per_epoch(batch_size, seeded):
    sizes = graph_sizes(random_graphs(103, 20))
    generator = torch.Generator().manual_seed(3) if seeded else None
    batches = bucket_batches(sizes, batch_size, generator, chunk_batches=4)
    assert sorted(i for b in batches for i in b) == list(range(103))
    assert len(batches) == -(-103 // batch_size)
    assert sum(len(b) < batch_size for b in batches) <= 1


def test_order_is_determined_by_the_generator():
    sizes = graph_sizes(random_graphs(200, 30))
    first = bucket_batches(sizes, 8, torch.Generator().manual_seed(5))
    again = bucket_batches(sizes, 8, torch.Generator().manual_seed(5))
    other = bucket_batches(sizes, 8, torch.Generator().manual_seed(6))
    assert first == again and first != other
    # without a generator: the same fixed order on every call, sorted by size within chunks
    fixed = bucket_batches(sizes, 8, chunk_batches=5)
    assert fixed == bucket_batches(sizes, 8, chunk_batches=5)
    assert sorted(fixed[0] + fixed[1] + fixed[2] + fixed[3] + fixed[4]) == list(range(40))
    assert torch.equal(sizes[fixed[0]], sizes[fixed[0]].sort().values)


def test_bucketing_reduces_padding():
    # The measurement quoted in the loader's module docstring.
    sizes = torch.randint(1, 65, (2000,), generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(0)
    random_batches = bucket_batches(sizes, 50, generator, chunk_batches=1)  # no sorting
    bucketed = bucket_batches(sizes, 50, generator, chunk_batches=50)
    before, after = padding_fraction(sizes, random_batches), padding_fraction(sizes, bucketed)
    assert before == pytest.approx(0.66, abs=0.01)
    assert after == pytest.approx(0.035, abs=0.005)


def test_split_batches_match_collate_dense_on_the_same_graphs():
    graphs = random_graphs(40, 12)
    split = GraphSplit(Stored(graphs), edge_attr="adj")
    seen = []
    for batch in split.batches(6, torch.Generator().manual_seed(1)):
        ids = batch["target"].tolist()  # y is the graph's index
        expected = collate_dense([graphs[i] for i in ids], edge_attr=True)
        assert torch.equal(batch["x"], expected["x"])
        assert torch.equal(batch["mask"], expected["mask"])
        assert batch["adj"].shape[-1] == 4
        assert torch.equal(batch["adj"][..., :1], expected["adj"])
        assert torch.equal(batch["adj"][..., 1:], expected["edge_attr"])
        seen += ids
    assert sorted(seen) == list(range(40)) and len(split) == 40


def test_separate_edge_attr_fixed_n_max_and_node_labels():
    graphs = random_graphs(20, 8, node_labels=True)
    split = GraphSplit(graphs, n_max=10, label_level="node", edge_attr="separate")
    batch = next(split.batches(4))
    assert batch["adj"].shape == (4, 10, 10, 1) and batch["edge_attr"].shape == (4, 10, 10, 3)
    assert batch["target"].shape == (4, 10)
    assert (batch["target"][~batch["mask"]] == 0).all()


def test_workers_give_the_same_batches():
    graphs = random_graphs(24, 8)
    single = list(GraphSplit(graphs).batches(5, torch.Generator().manual_seed(2)))
    workers = list(GraphSplit(graphs, num_workers=2).batches(5, torch.Generator().manual_seed(2)))
    assert len(single) == len(workers)
    for a, b in zip(single, workers, strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_iterating_leaves_the_global_stream_alone():
    split = GraphSplit(random_graphs(10, 5))
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    list(split.batches(3, torch.Generator().manual_seed(0)))
    assert torch.equal(torch.rand(3), expected)


def test_head_and_transform():
    def as_float(batch):
        return {**batch, "target": batch["target"].reshape(-1, 1).float()}

    split = GraphSplit(random_graphs(10, 5), transform=as_float).head(4)
    assert len(split) == 4
    batch = next(split.batches(10))
    assert batch["target"].shape == (4, 1) and batch["target"].dtype == torch.float32


def test_bad_splits_are_named():
    graphs = random_graphs(5, 9, seed=1)
    big = int(graph_sizes(graphs).max())
    with pytest.raises(ShapeError, match=f"{big} nodes, more than n_max=1"):
        GraphSplit(graphs, n_max=1)
    with pytest.raises(ShapeError, match=r"sizes: expected shape \(5,\)"):
        GraphSplit(graphs, sizes=torch.ones(4, dtype=torch.long))
    with pytest.raises(DataError, match="no graphs"):
        GraphSplit([])
    with pytest.raises(ValueError, match="edge_attr must be"):
        GraphSplit(graphs, edge_attr="concat")
