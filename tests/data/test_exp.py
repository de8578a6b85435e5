from __future__ import annotations

import os
import pickle
import sys
import types
import urllib.error
import urllib.request
import warnings
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.storage
from torch_geometric.data import Data

from probsym.data import exp
from probsym.data.batching import collate_dense
from probsym.data.exp import EXP_URL, exp_classify_splits, load_exp, read_legacy_data_list
from probsym.errors import DataError, MissingDataError

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="module")
def shared_data() -> Path:
    if not (SHARED_DATA / "EXP" / "GRAPHSAT.pkl").is_file():
        pytest.skip(f"shared data absent: {SHARED_DATA / 'EXP' / 'GRAPHSAT.pkl'}")
    return SHARED_DATA


@pytest.fixture(scope="module")
def exp_graphs(shared_data: Path) -> list[Data]:
    return load_exp(shared_data / "EXP", download=False)


# --- a tiny file in the old PyG format ---------------------------------------------------------


def cycle(n: int, start: int = 0) -> torch.Tensor:
    src = torch.arange(n) + start
    dst = (torch.arange(n) + 1) % n + start
    return torch.stack([torch.cat([src, dst]), torch.cat([dst, src])])


def path(n: int) -> torch.Tensor:
    """The cycle without its closing edge (n-1, 0): same node count, different degrees."""
    keep = torch.cat([torch.arange(n - 1), torch.arange(n, 2 * n - 1)])
    return cycle(n)[:, keep]


def old_record(edge_index: torch.Tensor, n: int, label: int) -> dict:
    """The ``__dict__`` of a PyG 1.x ``Data``: flat fields, unused ones None."""
    return {
        "x": torch.ones(n, 1, dtype=torch.long),
        "edge_index": edge_index,
        "edge_attr": None,
        "y": torch.tensor([label]),
        "pos": None,
        "norm": None,
        "face": None,
    }


def tiny_records() -> list[dict]:
    """Two EXP-like pairs: C_32 vs two C_16 (1-WL cannot tell them apart), labels 1 then 0."""
    c32 = old_record(cycle(32), 32, 1)
    two_c16 = old_record(torch.cat([cycle(16), cycle(16, start=16)], dim=1), 32, 0)
    return [c32, two_c16, dict(c32), dict(two_c16)]


def write_old_pickle(path: Path, records: list[dict], monkeypatch) -> None:
    """Pickle stub objects under the old class name ``torch_geometric.data.data.Data``."""
    module = types.ModuleType("torch_geometric.data.data")

    class OldData:
        pass

    OldData.__module__, OldData.__qualname__, OldData.__name__ = module.__name__, "Data", "Data"
    module.Data = OldData
    objects = []
    for record in records:
        obj = OldData()
        obj.__dict__.update(record)
        objects.append(obj)
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, module.__name__, module)
        path.write_bytes(pickle.dumps(objects, protocol=3))


@pytest.fixture
def tiny_exp(tmp_path, monkeypatch) -> Path:
    write_old_pickle(tmp_path / "GRAPHSAT.pkl", tiny_records(), monkeypatch)
    return tmp_path


def test_tiny_old_pickle_references_only_the_expected_names(tiny_exp):
    import pickletools

    data = (tiny_exp / "GRAPHSAT.pkl").read_bytes()
    names = {arg for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"}
    assert names == {
        "torch_geometric.data.data Data",
        "torch._utils _rebuild_tensor_v2",
        "torch.storage _load_from_bytes",
        "collections OrderedDict",
    }


def test_read_legacy_data_list_tiny(tiny_exp):
    records = read_legacy_data_list(tiny_exp / "GRAPHSAT.pkl")
    assert len(records) == 4
    assert set(records[0]) == {"x", "edge_index", "y"}  # None fields dropped
    assert torch.equal(records[0]["edge_index"], cycle(32))
    assert records[1]["y"].tolist() == [0]


def test_read_legacy_data_list_new_pyg_format(tmp_path):
    graph = Data(x=torch.ones(3, 1), edge_index=cycle(3), y=torch.tensor([1]))
    (tmp_path / "new.pkl").write_bytes(pickle.dumps([graph], protocol=3))
    (record,) = read_legacy_data_list(tmp_path / "new.pkl")
    assert set(record) == {"x", "edge_index", "y"}
    assert torch.equal(record["edge_index"], cycle(3))


def test_load_exp_tiny(tiny_exp, monkeypatch):
    with pytest.raises(DataError, match="expected 1200 graphs"):
        load_exp(tiny_exp, download=False)
    monkeypatch.setattr(exp, "EXP_COUNT", 4)
    graphs = load_exp(tiny_exp, download=False)
    assert [g.y.tolist() for g in graphs] == [[1], [0], [1], [0]]
    x = graphs[1].x
    assert x.dtype == torch.float32 and x.shape == (32, 2)
    assert x[:, 0].tolist() == [1.0] * 32 and x[:, 1].tolist() == [2.0] * 32
    assert set(graphs[0].keys()) == {"x", "edge_index", "y"}


def corrupt(records: list[dict], index: int, **fields) -> list[dict]:
    records[index] = {**records[index], **fields}
    return records


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda r: corrupt(r, 1, y=torch.tensor([1])), "pair 0 .* both labelled 1"),
        (lambda r: corrupt(r, 2, y=torch.tensor([2])), "graph 2: y must be one binary label"),
        (lambda r: corrupt(r, 0, edge_index=cycle(32)[:, :32]), "graph 0: .*not undirected"),
        (lambda r: corrupt(r, 0, edge_index=cycle(32) + 1), r"graph 0: .*outside \[0, 32\)"),
        (lambda r: corrupt(r, 3, x=torch.ones(32, 3)), r"graph 3: x must have shape \(n, 1\)"),
        (lambda r: corrupt(r, 0, x=torch.ones(31, 1)), "graph 0: 31 nodes, expected 32..64"),
        (lambda r: corrupt(r, 1, edge_index=path(32)), "pair 0 .*degree multisets"),
        (lambda r: corrupt(r, 0, y=None), r"graph 0: missing tensor field\(s\) \['y'\]"),
    ],
)
def test_load_exp_validation(tmp_path, monkeypatch, change, match):
    monkeypatch.setattr(exp, "EXP_COUNT", 4)
    write_old_pickle(tmp_path / "GRAPHSAT.pkl", change(tiny_records()), monkeypatch)
    with pytest.raises(DataError, match=match):
        load_exp(tmp_path, download=False)


# --- refusing unsafe or malformed pickles -----------------------------------------------------


class RunsCommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class NestedStorageAttack:
    """A storage whose inner torch.save bytes are themselves a malicious pickle."""

    def __init__(self, marker: Path) -> None:
        self.payload = pickle.dumps(RunsCommand(marker), protocol=2)

    def __reduce__(self):
        return (torch.storage._load_from_bytes, (self.payload,))


class OutOfBoundsView:
    """A tensor view of 100 elements over a storage of 4."""

    def __reduce__(self):
        storage = torch.zeros(4, dtype=torch.long).storage()
        return (torch._utils._rebuild_tensor_v2, (storage, 0, (100,), (1,), False, OrderedDict()))


def test_refuses_out_of_bounds_tensor_view(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # TypedStorage is deprecated
        data = pickle.dumps([OutOfBoundsView()], protocol=3)
    (tmp_path / "oob.pkl").write_bytes(data)
    with pytest.raises(DataError, match="reaches element 99, storage has 4"):
        read_legacy_data_list(tmp_path / "oob.pkl")


def test_refuses_arbitrary_globals(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps([RunsCommand(marker)], protocol=3))
    with pytest.raises(DataError, match=r"refusing to unpickle (posix|os|nt)\.system"):
        read_legacy_data_list(tmp_path / "evil.pkl")
    assert not marker.exists()


def test_refuses_malicious_nested_storage(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps([NestedStorageAttack(marker)], protocol=3))
    with pytest.raises(DataError, match="tensor storage could not be read safely"):
        read_legacy_data_list(tmp_path / "evil.pkl")
    assert not marker.exists()


def test_malformed_pickles(tiny_exp, tmp_path):
    data = (tiny_exp / "GRAPHSAT.pkl").read_bytes()
    (tmp_path / "cut.pkl").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cut.pkl: not a readable pickle"):
        read_legacy_data_list(tmp_path / "cut.pkl")
    (tmp_path / "dict.pkl").write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(DataError, match="expected a pickled list, got dict"):
        read_legacy_data_list(tmp_path / "dict.pkl")
    (tmp_path / "ints.pkl").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(DataError, match="item 0 is int, expected a torch_geometric Data"):
        read_legacy_data_list(tmp_path / "ints.pkl")


def test_missing_file_offline_names_path(tmp_path):
    with pytest.raises(MissingDataError) as info:
        load_exp(tmp_path, download=False)
    assert str(tmp_path / "GRAPHSAT.pkl") in str(info.value) and EXP_URL in str(info.value)


def test_missing_file_failed_download_names_path_and_url(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    with pytest.raises(MissingDataError) as info:
        load_exp(tmp_path / "EXP")
    message = str(info.value)
    assert str(tmp_path / "EXP" / "GRAPHSAT.pkl") in message and EXP_URL in message
    assert "network disabled" in message


def test_splits_need_1200_graphs():
    with pytest.raises(DataError, match="needs the 1200 EXP graphs, got 3"):
        exp_classify_splits([Data()] * 3)


# --- the shared EXP file ---------------------------------------------------------------------


@pytest.mark.needs_data
def test_shared_exp_contents(exp_graphs):
    assert len(exp_graphs) == 1_200
    sizes = torch.tensor([g.num_nodes for g in exp_graphs])
    assert int(sizes.min()) == 32 and int(sizes.max()) == 64
    edges = torch.tensor([g.edge_index.size(1) for g in exp_graphs])
    assert int(edges.min()) == 78 and int(edges.max()) == 158
    labels = torch.cat([g.y for g in exp_graphs])
    assert labels.dtype == torch.long and int(labels.sum()) == 600  # balanced
    assert labels[0::2].tolist() == [1] * 600 and labels[1::2].tolist() == [0] * 600
    for graph in exp_graphs[::37]:
        assert graph.x.dtype == torch.float32 and graph.x.shape == (graph.num_nodes, 2)
        assert set(graph.x[:, 0].tolist()) <= {0.0, 1.0}
        degree = torch.bincount(graph.edge_index[0], minlength=graph.num_nodes)
        assert torch.equal(graph.x[:, 1], degree.float())


@pytest.mark.needs_data
def test_shared_exp_splits(exp_graphs):
    splits = exp_classify_splits(exp_graphs)
    assert {k: len(v) for k, v in splits.items()} == {"train": 800, "val": 200, "test": 200}
    assert splits["val"][0] is exp_graphs[0] and splits["test"][0] is exp_graphs[200]
    assert splits["train"][0] is exp_graphs[400] and splits["train"][-1] is exp_graphs[-1]


@pytest.mark.needs_data
def test_shared_exp_collates_to_n_max_64(exp_graphs):
    batch = collate_dense(exp_graphs[:100], n_max=64)
    assert batch["x"].shape == (100, 64, 2) and batch["adj"].shape == (100, 64, 64, 1)
    assert torch.equal(batch["adj"], batch["adj"].transpose(1, 2))
    sizes = torch.tensor([g.num_nodes for g in exp_graphs[:100]])
    assert torch.equal(batch["mask"].sum(1), sizes)
    assert batch["y"].shape == (100,)
