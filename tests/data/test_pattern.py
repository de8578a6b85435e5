"""PATTERN: generator statistics against the recipe, on-disk layout, offline loading, errors."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch
from torch_geometric.data import Data, InMemoryDataset
from torch_geometric.datasets import GNNBenchmarkDataset

from probsym.data import pattern
from probsym.data.pattern import (
    PROCESSED_FILES,
    RAW_FILE,
    SPLITS,
    SplitSummary,
    generate_pattern,
    generate_splits,
    load_pattern,
    sample_graph,
    sample_pattern,
    split_sizes,
)
from probsym.errors import DataError, MissingDataError, UnknownNameError

TINY = dict(num_instances=2, per_instance=(3, 2, 2))


@pytest.fixture
def offline(monkeypatch):
    """Any attempt by PyG to download fails loudly."""

    def refuse(*args, **kwargs):
        raise AssertionError("PyG tried to download")

    monkeypatch.setattr(GNNBenchmarkDataset, "download", refuse)


@pytest.fixture(scope="module")
def graphs():
    """60 graphs over 12 pattern instances, with their patterns."""
    rng = np.random.default_rng(7)
    out = []
    for _ in range(12):
        p = sample_pattern(rng)
        out += [(p, sample_graph(rng, p)) for _ in range(5)]
    return out


@pytest.fixture(scope="module")
def moderate():
    """300 graphs (50 instances x 6), pooled over the three splits."""
    return generate_splits(11, num_instances=50, per_instance=(4, 1, 1))


# ---------------------------------------------------------------------------------------------
# one graph


def test_sizes_within_the_recipe(graphs):
    for p, g in graphs:
        m = len(p.features)
        assert 5 <= m <= 34
        assert g.community_sizes.shape == (5,)
        assert g.community_sizes.min() >= 5 and g.community_sizes.max() <= 34
        n = int(g.community_sizes.sum()) + m
        assert len(g.features) == len(g.y) == len(g.permutation) == n
        assert 30 <= n <= 204
    # randint(5, 35) reaches both ends over enough draws
    all_sizes = np.concatenate([g.community_sizes for _, g in graphs])
    assert all_sizes.min() <= 7 and all_sizes.max() >= 32


def test_edges_undirected_sorted_no_self_loops(graphs):
    for _, g in graphs:
        row, col = g.edge_index
        assert g.edge_index.dtype == np.int64
        assert not np.any(row == col)
        key = row * 1000 + col
        assert np.all(np.diff(key) > 0)  # row-major sorted, no duplicates
        assert set(zip(row.tolist(), col.tolist(), strict=True)) == set(
            zip(col.tolist(), row.tolist(), strict=True)
        )
        assert row.max() < len(g.y)


def test_labels_features_and_edges_of_the_pattern(graphs):
    for p, g in graphs:
        rest = int(g.community_sizes.sum())
        old = g.permutation
        np.testing.assert_array_equal(g.y, (old >= rest).astype(np.int8))
        # pattern nodes in their pre-shuffle order carry u0 and the pattern's own edges
        new_of_old = np.argsort(old)
        nodes = new_of_old[rest:]
        np.testing.assert_array_equal(g.features[nodes], p.features)
        adjacency = np.zeros((len(g.y), len(g.y)), dtype=bool)
        adjacency[g.edge_index[0], g.edge_index[1]] = True
        np.testing.assert_array_equal(adjacency[np.ix_(nodes, nodes)], p.adjacency)
        assert set(np.unique(g.features)) <= {0, 1, 2}


def test_edge_densities_match_p_and_q(graphs):
    """Pooled over 60 graphs: 0.5 within, 0.35 between communities, 0.5 pattern to rest."""
    counts = np.zeros((3, 2))  # rows: within, between, pattern-rest; cols: edges, pairs
    for _, g in graphs:
        n = len(g.y)
        block = np.repeat(np.arange(6), np.append(g.community_sizes, n - g.community_sizes.sum()))
        block = block[g.permutation]  # block of each (shuffled) node; 5 = pattern
        adjacency = np.zeros((n, n), dtype=bool)
        adjacency[g.edge_index[0], g.edge_index[1]] = True
        upper = np.triu(np.ones((n, n), dtype=bool), k=1)
        a, b = block[:, None], block[None, :]
        kinds = [
            (a == b) & (a < 5),
            (a != b) & (a < 5) & (b < 5),
            (a == 5) != (b == 5),
        ]
        for k, kind in enumerate(kinds):
            counts[k] += adjacency[kind & upper].sum(), (kind & upper).sum()
    density = counts[:, 0] / counts[:, 1]
    # each pool has > 40,000 pairs: standard error < 0.0025, so 0.0125 is 5 of them
    np.testing.assert_allclose(density, [0.5, 0.35, 0.5], atol=0.0125)


def test_pattern_density():
    rng = np.random.default_rng(3)
    patterns = [sample_pattern(rng) for _ in range(200)]
    edges = sum(p.adjacency.sum() / 2 for p in patterns)
    pairs = sum(len(p.features) * (len(p.features) - 1) / 2 for p in patterns)
    assert abs(edges / pairs - 0.5) < 0.01  # ~47,000 pairs: 5 standard errors is 0.0115
    for p in patterns:
        assert np.array_equal(p.adjacency, p.adjacency.T) and not p.adjacency.diagonal().any()


# ---------------------------------------------------------------------------------------------
# splits and statistics


def test_split_sizes_of_the_recipe():
    assert split_sizes() == {"train": 10_000, "val": 2_000, "test": 2_000}
    assert split_sizes(3, (5, 1, 2)) == {"train": 15, "val": 3, "test": 6}
    with pytest.raises(ValueError, match="per_instance"):
        split_sizes(2, (1, 2))


def test_generate_splits_counts_and_order():
    splits = generate_splits(5, **TINY)
    assert {s: len(v.num_nodes) for s, v in splits.items()} == {"train": 6, "val": 4, "test": 4}
    for v in splits.values():
        assert v.features.shape == v.y.shape == (v.num_nodes.sum(),)
        assert v.edge_index.shape == (2, v.num_edges.sum())
        assert v.edge_index.dtype == np.uint8

    # Instance i owns train graphs 3i..3i+2 and val/test graphs 2i, 2i+1: one pattern size each.
    def pattern_sizes(split):
        ends = np.cumsum(split.num_nodes)
        return [int(split.y[e - n : e].sum()) for e, n in zip(ends, split.num_nodes, strict=True)]

    train, val, test = (pattern_sizes(splits[s]) for s in SPLITS)
    for i in range(2):
        assert (
            len({*train[3 * i : 3 * i + 3], *val[2 * i : 2 * i + 2], *test[2 * i : 2 * i + 2]}) == 1
        )


def test_statistics_of_300_graphs(moderate):
    """Tolerances are ~5 standard deviations, measured over 40 seeds of this design."""
    nodes = np.concatenate([v.num_nodes for v in moderate.values()])
    assert len(nodes) == 300
    assert nodes.min() >= 30 and nodes.max() <= 204
    total = nodes.sum()
    label_fraction = sum(int(v.y.sum()) for v in moderate.values()) / total
    mean_degree = sum(int(v.num_edges.sum()) for v in moderate.values()) / total
    assert abs(nodes.mean() - 117.0) < 8.5  # E[n] = 6 x 19.5; sd of the mean 1.7
    assert abs(label_fraction - 19.5 / 117.0) < 0.05  # sd 0.0097
    # E[2 e] / E[n] = 50.2 from p, q and the size law (published set: 51.3); sd 0.86
    assert abs(mean_degree - 50.2) < 4.3


def test_summary(moderate):
    s = SplitSummary.of(moderate["train"])
    assert s.num_graphs == 200
    assert s.min_nodes == moderate["train"].num_nodes.min()
    assert 0 < s.label_fraction < 1 and s.mean_degree > 0


def test_determinism():
    a, b = generate_splits(9, **TINY), generate_splits(9, **TINY)
    c = generate_splits(10, **TINY)
    for s in SPLITS:
        for field in a[s]._fields:
            np.testing.assert_array_equal(getattr(a[s], field), getattr(b[s], field))
    assert not np.array_equal(a["train"].num_nodes, c["train"].num_nodes)


# ---------------------------------------------------------------------------------------------
# on-disk form and loading


@pytest.fixture
def tiny_root(tmp_path):
    root = tmp_path / "data"
    summaries = generate_pattern(root, seed=1, **TINY)
    return root, summaries


def test_generated_files_load_with_pyg_offline(tiny_root, offline):
    root, summaries = tiny_root
    directory = root / "PATTERN"
    for split in SPLITS:
        assert (directory / "processed" / PROCESSED_FILES[split]).is_file()
    assert (directory / "raw" / RAW_FILE).is_file()
    provenance = json.loads((directory / "probsym_generated.json").read_text())
    assert provenance["seed"] == 1
    for split, size in zip(SPLITS, (6, 4, 4), strict=True):
        theirs = GNNBenchmarkDataset(str(root), "PATTERN", split=split)
        ours = load_pattern(root, split)
        assert len(theirs) == len(ours) == size == summaries[split].num_graphs
        for i in range(size):
            t, o = theirs[i], ours[i]
            assert sorted(t.keys()) == ["edge_index", "x", "y"]
            assert t.x.dtype == torch.float32 and t.x.shape == (t.num_nodes, 3)
            assert t.edge_index.dtype == torch.int64 and t.y.dtype == torch.int64
            for key in ("x", "edge_index", "y"):
                assert torch.equal(t[key], o[key])


def test_pyg_process_of_the_raw_file_reproduces_the_processed_files(tiny_root, offline):
    root, _ = tiny_root
    processed = root / "PATTERN" / "processed"
    before = {s: load_pattern(root, s) for s in SPLITS}
    for f in processed.iterdir():
        f.unlink()
    for split in SPLITS:  # the first call runs PyG's process() on our raw file
        after = GNNBenchmarkDataset(str(root), "PATTERN", split=split)
        assert len(after) == len(before[split])
        for i in range(len(after)):
            for key in ("x", "edge_index", "y"):
                assert torch.equal(after[i][key], before[split][i][key])


def test_raw_file_only_is_processed_offline_by_load_pattern(tiny_root, offline):
    root, _ = tiny_root
    for f in (root / "PATTERN" / "processed").iterdir():
        f.unlink()
    assert len(load_pattern(root, "val")) == 4


def _write_standard_fixture(root, graphs_per_split):
    """PATTERN files written with PyG's own API (not our writer): raw list and processed splits."""
    directory = root / "PATTERN"
    (directory / "raw").mkdir(parents=True)
    (directory / "processed").mkdir(parents=True)
    torch.save(
        [[d.to_dict() for d in graphs_per_split[s]] for s in SPLITS], directory / "raw" / RAW_FILE
    )
    for s in SPLITS:
        InMemoryDataset.save(graphs_per_split[s], str(directory / "processed" / PROCESSED_FILES[s]))
    return directory


def _graph(edges, categories, labels):
    edge_index = torch.tensor(edges, dtype=torch.long).t()
    edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)
    x = torch.nn.functional.one_hot(torch.tensor(categories), 3).float()
    return Data(x=x, edge_index=edge_index, y=torch.tensor(labels))


def test_standard_fixture_loads(tmp_path, offline):
    g1 = _graph([(0, 1), (1, 2)], [0, 1, 2], [0, 1, 1])
    g2 = _graph([(0, 3), (1, 2), (2, 3)], [2, 2, 0, 1], [1, 0, 0, 0])
    _write_standard_fixture(tmp_path, {"train": [g1, g2], "val": [g2, g1], "test": [g1, g2]})
    dataset = load_pattern(tmp_path, "val")
    assert len(dataset) == 2 and repr(dataset) == "PATTERN(val, 2)"
    assert torch.equal(dataset[0].edge_index, g2.edge_index)
    assert torch.equal(dataset[1].x, g1.x)
    assert dataset._data.edge_index.shape == (2, 10)  # compact collated storage, not dense


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda g: g.update(edge_index=torch.tensor([[0, 1], [1, 1]])), "self loops"),
        (lambda g: g.update(edge_index=torch.tensor([[0], [1]])), "not undirected"),
        (lambda g: g.update(edge_index=torch.tensor([[0, 3], [3, 0]])), "outside"),
        (lambda g: g.update(x=g["x"] * 2), "one-hot"),
        (lambda g: g.update(x=torch.zeros(3, 2)), r"float \(n, 3\)"),
        (lambda g: g.update(y=torch.tensor([0, 2, 1])), "binary"),
    ],
)
def test_validation_names_the_file(tmp_path, corrupt, message):
    good = _graph([(0, 1), (1, 2)], [0, 1, 2], [0, 1, 1])
    fields = {k: good[k] for k in ("x", "edge_index", "y")}
    corrupt(fields)
    bad = Data(**fields)
    _write_standard_fixture(tmp_path, {"train": [bad, bad], "val": [good, good], "test": [good]})
    with pytest.raises(DataError, match=message) as info:
        load_pattern(tmp_path, "train")
    assert "train_data.pt" in str(info.value)


def test_missing_files_name_what_to_supply(tmp_path):
    with pytest.raises(MissingDataError) as info:
        load_pattern(tmp_path, "test")
    text = str(info.value)
    assert str(tmp_path / "PATTERN" / "processed" / "test_data.pt") in text
    assert str(tmp_path / "PATTERN" / "raw" / RAW_FILE) in text
    assert "generate_pattern" in text and "PATTERN_v2.zip" in text
    with pytest.raises(MissingDataError, match="train_data.pt"):
        pattern.ensure_pattern(tmp_path)


def test_unknown_split(tmp_path):
    with pytest.raises(UnknownNameError, match="valid"):
        load_pattern(tmp_path, "valid")


def test_generate_route(tmp_path, monkeypatch, offline):
    monkeypatch.setattr(pattern, "generate_pattern", functools.partial(generate_pattern, **TINY))
    dataset = load_pattern(tmp_path, "test", generate=True)
    assert len(dataset) == 4
    assert pattern.ensure_pattern(tmp_path) == tmp_path / "PATTERN"  # now present: no-op


@pytest.mark.slow
def test_full_generation(tmp_path, offline):
    summaries = generate_pattern(tmp_path)
    assert {s: v.num_graphs for s, v in summaries.items()} == split_sizes()
    for split in SPLITS:
        assert len(load_pattern(tmp_path, split)) == split_sizes()[split]
    train = summaries["train"]
    assert 30 <= train.min_nodes and train.max_nodes <= 204
    assert abs(train.mean_nodes - 117.0) < 4.0
    assert abs(train.label_fraction - 19.5 / 117.0) < 0.03
    assert abs(train.mean_degree - 50.2) < 2.5
