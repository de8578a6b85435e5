"""LRGB data: the fixture loads through PyG's LRGBDataset, validation, errors, dense batches."""

from __future__ import annotations

import pytest
import torch

from lrgb_fixture import write_lrgb_fixture
from probsym.data.lrgb import (
    CONTACT_CODES,
    ContactRows,
    OneHotNodes,
    atom_vocab,
    bond_vocab,
    ensure_lrgb,
    load_lrgb,
)
from probsym.errors import DataError, MissingDataError, UnknownNameError

pytest.importorskip("ogb", reason="LRGB's vocabularies come from ogb: pip install 'probsym[lrgb]'")

NAMES = ("peptides-func", "peptides-struct", "pcqm-contact")


def test_vocabularies_are_ogbs():
    features = pytest.importorskip("ogb.utils.features")
    assert atom_vocab() == features.get_atom_feature_dims() and len(atom_vocab()) == 9
    assert bond_vocab() == features.get_bond_feature_dims() and len(bond_vocab()) == 3


@pytest.mark.parametrize("name", NAMES)
def test_fixture_loads_through_pyg_as_written(tmp_path, name):
    root = write_lrgb_fixture(tmp_path, name)
    raw = torch.load(root / name / "raw" / "test.pt")
    dataset = load_lrgb(root, name, "test")
    assert (root / name / "processed" / "test.pt").is_file()  # PyG's own processing ran
    assert len(dataset) == len(raw)
    graph = dataset[0]
    assert torch.equal(graph.x, raw[0][0]) and torch.equal(graph.edge_index, raw[0][2])
    if name == "pcqm-contact":
        assert torch.equal(graph.edge_label_index, raw[0][3])
    else:
        assert graph.y.shape == (1, 10 if name == "peptides-func" else 11)


def test_missing_files_name_the_zip_and_the_folder(tmp_path):
    with pytest.raises(MissingDataError) as info:
        load_lrgb(tmp_path, "peptides-func", "train")
    message = str(info.value)
    assert "peptidesfunc.zip" in message and str(tmp_path / "peptides-func" / "raw") in message
    (tmp_path / "peptidesfunc").mkdir()  # the zip's folder, not yet renamed
    with pytest.raises(MissingDataError, match="rename it"):
        ensure_lrgb(tmp_path, "peptides-func")


def test_unknown_names_list_the_choices(tmp_path):
    with pytest.raises(UnknownNameError, match="peptides-struct"):
        load_lrgb(tmp_path, "peptides", "train")
    with pytest.raises(UnknownNameError, match="val"):
        load_lrgb(tmp_path, "peptides-func", "valid")


def test_codes_outside_ogbs_vocabulary_are_rejected(tmp_path):
    root = write_lrgb_fixture(tmp_path, "peptides-struct")
    path = root / "peptides-struct" / "raw" / "val.pt"
    graphs = torch.load(path)
    x = graphs[0][0].clone()
    x[0, 0] = atom_vocab()[0]  # one past the last atomic-number code
    graphs[0] = (x, *graphs[0][1:])
    torch.save(graphs, path)
    with pytest.raises(DataError, match="vocabulary"):
        load_lrgb(root, "peptides-struct", "val")


def test_contact_rows_code_every_pair():
    from torch_geometric.data import Data

    pairs = torch.tensor([[0, 0, 1, 0], [1, 2, 0, 1]])  # (0,1) listed twice, once positive
    graph = Data(
        x=torch.zeros(3, 9, dtype=torch.long),
        edge_index=torch.zeros(2, 0, dtype=torch.long),
        edge_attr=torch.zeros(0, 3, dtype=torch.long),
        edge_label_index=pairs,
        edge_label=torch.tensor([0, 0, 1, 1]),
    )
    rows = ContactRows(5)(graph).y
    codes = CONTACT_CODES
    assert rows.shape == (3, 5) and rows.dtype == torch.int8
    assert rows[0, 1] == codes["positive"] and rows[1, 0] == codes["positive"]
    assert rows[0, 2] == codes["negative"] and rows[2, 2] == codes["other"]
    assert bool((rows[:, 3:] == codes["padding"]).all())
    with pytest.raises(DataError, match="width"):
        ContactRows(2)(graph)


def test_one_hot_nodes_keep_padding_zero():
    x = torch.tensor([[[5, 0, 2, 5, 1, 0, 2, 0, 1], [0] * 9]])
    out = OneHotNodes(atom_vocab())({"x": x.float(), "mask": torch.tensor([[True, False]])})
    assert out["x"].shape == (1, 2, sum(atom_vocab()))
    assert out["x"][0, 0].sum() == 9 and out["x"][0, 1].abs().sum() == 0
    assert out["x"][0, 0, 5] == 1  # atomic-number code 5 (carbon) is channel 5


def test_a_failed_download_is_a_missing_data_error(tmp_path, monkeypatch):
    from urllib.error import URLError

    from torch_geometric.datasets import LRGBDataset

    def offline(self):
        raise URLError("no network")

    monkeypatch.setattr(LRGBDataset, "download", offline)
    with pytest.raises(MissingDataError, match="download failed.*no network"):
        ensure_lrgb(tmp_path, "pcqm-contact", download=True)
