"""Long-range graph benchmarks (Dwivedi et al. 2022): Peptides-func, -struct, PCQM-Contact.

Read through PyTorch Geometric's ``LRGBDataset`` (its standard files and splits). On disk, under
a root folder: ``<root>/<name>/raw/{train,val,test}.pt`` (the extracted LRGB zip, each a
``torch.save``-d list of per-graph tuples) and ``<root>/<name>/processed/{train,val,test}.pt``
(PyG's collated ``InMemoryDataset`` files, written by PyG from the raw ones on first use).
Per graph: ``x`` (n, 9) int64 OGB atom codes, ``edge_index`` (2, e) int64 with both directions,
``edge_attr`` (e, 3) int64 OGB bond codes; Peptides ``y`` (1, 10) or (1, 11) float;
PCQM-Contact ``edge_label_index`` (2, m) candidate pairs with ``edge_label`` (m,) in {0, 1}.

The code vocabularies are OGB's (``ogb.utils.features``), read from the installed library.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor
from torch_geometric.data import Data, InMemoryDataset

from probsym.errors import DataError, MissingDataError, ProbsymError, UnknownNameError

__all__ = [
    "CONTACT_CODES",
    "NAMES",
    "SPLITS",
    "ContactRows",
    "OneHotNodes",
    "atom_vocab",
    "bond_vocab",
    "ensure_lrgb",
    "load_lrgb",
    "lrgb_dir",
]

SPLITS = ("train", "val", "test")
#: Benchmark name -> (graph targets per graph or 0 for link prediction, the LRGB zip).
NAMES: dict[str, tuple[int, str]] = {
    "peptides-func": (10, "https://www.dropbox.com/s/ycsq37q8sxs1ou8/peptidesfunc.zip?dl=1"),
    "peptides-struct": (11, "https://www.dropbox.com/s/zgv4z8fcpmknhs8/peptidesstruct.zip?dl=1"),
    "pcqm-contact": (0, "https://www.dropbox.com/s/qdag867u6h6i60y/pcqmcontact.zip?dl=1"),
}
#: The zip's top folder, which PyG renames to ``raw``.
ZIP_FOLDERS = {
    "peptides-func": "peptidesfunc",
    "peptides-struct": "peptidesstruct",
    "pcqm-contact": "pcqmcontact",
}
#: Codes of a PCQM-Contact label row (:class:`ContactRows`): 0 is what padding collates to.
CONTACT_CODES = {"padding": 0, "other": 1, "negative": 2, "positive": 3}


def atom_vocab() -> list[int]:
    """OGB's atom feature vocabulary sizes (``get_atom_feature_dims()``; 9 features)."""
    return list(_ogb_features().get_atom_feature_dims())


def bond_vocab() -> list[int]:
    """OGB's bond feature vocabulary sizes (``get_bond_feature_dims()``; 3 features)."""
    return list(_ogb_features().get_bond_feature_dims())


def _ogb_features() -> ModuleType:
    try:
        from ogb.utils import features
    except ImportError as err:
        raise ProbsymError(
            "the LRGB benchmarks read OGB's atom and bond vocabularies from the ogb package: "
            "pip install 'probsym[lrgb]' (or pip install --no-deps ogb)"
        ) from err
    return features


def _check_name(name: str) -> None:
    if name not in NAMES:
        raise UnknownNameError("LRGB data set", name, NAMES)


def lrgb_dir(root: str | os.PathLike[str], name: str) -> Path:
    """``root/<name>``: the folder ``LRGBDataset(root, name)`` uses."""
    _check_name(name)
    return Path(root) / name


def _missing_message(root: Path, name: str) -> str:
    directory = lrgb_dir(root, name)
    raw = ", ".join(str(directory / "raw" / f"{s}.pt") for s in SPLITS)
    message = (
        f"{name} not found: expected the raw files {raw}. Download {NAMES[name][1]}, unzip it "
        f"and rename its folder {ZIP_FOLDERS[name]}/ to {directory / 'raw'} (PyG's LRGBDataset "
        f"layout; PyG writes {directory / 'processed'} from it), then pass --data-dir {root}"
    )
    if (root / ZIP_FOLDERS[name]).is_dir():
        message += f". Found {root / ZIP_FOLDERS[name]}: rename it to {directory / 'raw'}"
    return message


def ensure_lrgb(root: str | os.PathLike[str], name: str, download: bool = False) -> Path:
    """Make ``root/<name>/raw`` hold the three raw files and return ``root/<name>``.

    Args:
        root: Root folder (as for ``LRGBDataset``).
        name: ``peptides-func``, ``peptides-struct`` or ``pcqm-contact``.
        download: Let PyG fetch the standard zip when the files are absent.

    Raises:
        UnknownNameError: For an unknown name.
        MissingDataError: The files are absent and download is off or failed (offline); the
            message names the zip and where its files go.
    """
    _check_name(name)
    root = Path(root)
    directory = lrgb_dir(root, name)
    if all((directory / "raw" / f"{s}.pt").is_file() for s in SPLITS):
        return directory
    if not download:
        raise MissingDataError(_missing_message(root, name))
    from torch_geometric.datasets import LRGBDataset

    try:
        LRGBDataset(str(root), name, split="train")
    except OSError as err:  # URLError (offline) is an OSError
        raise MissingDataError(f"{_missing_message(root, name)} (download failed: {err})") from err
    return directory


def load_lrgb(
    root: str | os.PathLike[str],
    name: str,
    split: str,
    *,
    download: bool = False,
    transform: Callable[[Data], Data] | None = None,
    validate: bool = True,
) -> InMemoryDataset:
    """One split of an LRGB benchmark, as PyG's ``LRGBDataset`` (compact sparse storage).

    Args:
        root: Root folder (as for ``LRGBDataset``).
        name: ``peptides-func``, ``peptides-struct`` or ``pcqm-contact``.
        split: ``train``, ``val`` or ``test``.
        download: Let PyG download the standard files when absent.
        transform: PyG transform applied on access (e.g. :class:`ContactRows`).
        validate: Check the collated tensors (vectorised): code ranges within OGB's
            vocabularies, shapes, edge ids inside their graph, labels.

    Raises:
        UnknownNameError: For an unknown name or split.
        MissingDataError: The files are absent (see :func:`ensure_lrgb`).
        DataError: A file is unreadable or fails validation.
    """
    if split not in SPLITS:
        raise UnknownNameError("LRGB split", split, SPLITS)
    ensure_lrgb(root, name, download=download)
    from torch_geometric.datasets import LRGBDataset

    try:
        dataset = LRGBDataset(str(root), name, split=split, transform=transform)
    except Exception as err:  # torch / pickle raise many types on corrupt input
        raise DataError(f"{lrgb_dir(root, name)}: PyG could not read {split} ({err})") from err
    if validate:
        _validate(dataset, name, lrgb_dir(root, name) / "processed" / f"{split}.pt")
    return dataset


def _validate(dataset: InMemoryDataset, name: str, path: Path) -> None:
    """Vectorised checks over the collated storage (no per-graph Python loop)."""
    store, slices = dataset._data, dataset.slices
    if slices is None or len(dataset) == 0:
        raise DataError(f"{path}: holds no collated graphs")
    keys = ["x", "edge_index", "edge_attr"]
    keys += ["edge_label_index", "edge_label"] if NAMES[name][0] == 0 else ["y"]
    for key in keys:
        if key not in slices:
            raise DataError(f"{path}: missing field {key!r}; has {sorted(slices)}")
    _check_codes(path, "x", store.x, atom_vocab())
    _check_codes(path, "edge_attr", store.edge_attr, bond_vocab())
    nodes = slices["x"].diff()
    _check_pairs(path, "edge_index", store.edge_index, slices["edge_index"], nodes)
    if store.edge_attr.size(0) != store.edge_index.size(1):
        raise DataError(f"{path}: edge_attr needs one row per edge of edge_index")
    targets = NAMES[name][0]
    if targets:
        y = store.y
        if y.dim() != 2 or y.size(1) != targets or y.size(0) != len(nodes):
            raise DataError(
                f"{path}: y must be ({len(nodes)}, {targets}), one row per graph, "
                f"got {tuple(y.shape)}"
            )
        return
    _check_pairs(
        path, "edge_label_index", store.edge_label_index, slices["edge_label_index"], nodes
    )
    label = store.edge_label
    if label.shape != (store.edge_label_index.size(1),) or not bool(
        ((label == 0) | (label == 1)).all()
    ):
        raise DataError(f"{path}: edge_label must be one 0/1 label per candidate pair")


def _check_codes(path: Path, key: str, codes: Tensor, vocab: Sequence[int]) -> None:
    if codes.dim() != 2 or codes.size(1) != len(vocab) or codes.is_floating_point():
        raise DataError(
            f"{path}: {key} must hold integer OGB codes (rows, {len(vocab)}), got "
            f"{codes.dtype} {tuple(codes.shape)}"
        )
    if codes.numel() and bool(((codes < 0) | (codes >= torch.tensor(vocab))).any()):
        raise DataError(f"{path}: {key} has codes outside OGB's vocabulary sizes {list(vocab)}")


def _check_pairs(path: Path, key: str, pairs: Tensor, offsets: Tensor, nodes: Tensor) -> None:
    if pairs.dim() != 2 or pairs.size(0) != 2:
        raise DataError(f"{path}: {key} must be (2, m), got {tuple(pairs.shape)}")
    graph = torch.repeat_interleave(torch.arange(len(nodes)), offsets.diff())
    if pairs.numel() and bool(((pairs < 0) | (pairs >= nodes[graph])).any()):
        raise DataError(f"{path}: {key} has node ids outside their graph")


class OneHotNodes:
    """Per-batch transform of a dense batch: OGB atom codes ``x`` -> concatenated one-hots.

    Padded rows stay zero. Picklable (for ``DataLoader`` workers).

    Shapes:
        ``x (b, n, len(vocab))`` codes -> ``(b, n, sum(vocab))`` float32.
    """

    def __init__(self, vocab: Sequence[int]) -> None:
        self.vocab = list(vocab)

    def __call__(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:  # noqa: D102
        codes, mask = batch["x"].long(), batch["mask"]
        parts = [
            torch.nn.functional.one_hot(codes[..., j], size) for j, size in enumerate(self.vocab)
        ]
        onehot = torch.cat(parts, dim=-1).to(torch.float32) * mask.unsqueeze(-1)
        return {**batch, "x": onehot}


class ContactRows:
    """PyG transform: PCQM-Contact's candidate pairs as one label row per node, ``y (n, width)``.

    ``y[u, w]`` is :data:`CONTACT_CODES`: 3 for a positive pair ``(u, w)``, 2 for a negative,
    1 for any other node of the graph, 0 for ``w ≥ n`` (so that node-level padding, which is
    zeros, means "not a pair"). Repeated candidate pairs count once; a pair listed both as
    positive and negative is positive.

    Args:
        width: Row length, at least the largest graph (the dense batch's fixed ``N``).
    """

    def __init__(self, width: int) -> None:
        self.width = width

    def __call__(self, graph: Data) -> Data:  # noqa: D102
        n = graph.num_nodes
        if n > self.width:
            raise DataError(f"a graph has {n} nodes, more than the label rows' width {self.width}")
        rows = torch.zeros(n, self.width, dtype=torch.int8)
        rows[:, :n] = CONTACT_CODES["other"]
        pairs, label = graph.edge_label_index, graph.edge_label.long()
        for value in (0, 1):  # positives last, so they win over a duplicate negative
            chosen = pairs[:, label == value]
            rows[chosen[0], chosen[1]] = CONTACT_CODES["negative"] + value
        out = Data(x=graph.x, edge_index=graph.edge_index, edge_attr=graph.edge_attr, y=rows)
        return out
