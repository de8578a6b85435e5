"""EXP: 600 pairs of 1-WL-indistinguishable graphs encoding planar SAT formulas (Abboud et al.).

``GRAPHSAT.pkl`` is a pickle of PyG ``Data`` objects from an old PyG release. It is read with a
restricted unpickler that never imports PyG's classes: PyG names map to inert stubs that keep the
pickled state, tensors go through torch's own rebuild function with the storage bytes loaded by
``torch.load(weights_only=True)``, and any other name is refused (a pickle can otherwise run
arbitrary code). The records become fresh ``Data(x, edge_index, y)`` with ``x = [x, degree]``.

Graphs ``2i`` and ``2i+1`` form pair ``i``; EXP-classify uses the fixed splits of LPS.
"""

from __future__ import annotations

import collections
import io
import logging
import os
import pickle
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import Data

from probsym.data.batching import add_degree_feature
from probsym.data.graph8c import ensure_file
from probsym.errors import DataError

__all__ = [
    "EXP_FILE",
    "EXP_URL",
    "exp_classify_splits",
    "load_exp",
    "read_legacy_data_list",
]

log = logging.getLogger(__name__)

EXP_FILE = "GRAPHSAT.pkl"
EXP_URL = "https://raw.githubusercontent.com/ralphabb/GNN-RNI/main/Data/EXP/raw/GRAPHSAT.pkl"
EXP_COUNT = 1_200
EXP_MIN_NODES, EXP_MAX_NODES = 32, 64  # the public file spans exactly 32..64 nodes


# ---------------------------------------------------------------------------------------------
# restricted unpickling


class _Stub:
    """Inert stand-in for a pickled PyG class: records constructor args and state, runs nothing."""

    source = ""  # "module.Name" of the class it replaces; set on each per-name subclass
    # Class-level defaults: NEWOBJ creates instances with __new__ alone, skipping __init__.
    args: tuple[Any, ...] = ()
    state: Any = None

    def __init__(self, *args: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state


_STUBS: dict[str, type[_Stub]] = {}


def _stub_class(module: str, name: str) -> type[_Stub]:
    """One stub subclass per PyG name, so the record still says what it was."""
    source = f"{module}.{name}"
    if source not in _STUBS:
        _STUBS[source] = type(name, (_Stub,), {"source": source})
    return _STUBS[source]


def _load_storage(data: bytes) -> Any:
    """Replacement for ``torch.storage._load_from_bytes`` that refuses arbitrary classes.

    The bytes are a nested legacy ``torch.save`` file; torch's original calls ``torch.load`` with
    ``weights_only=False``, which would let that inner pickle import anything.
    """
    if not isinstance(data, bytes):
        raise DataError(f"tensor storage: expected bytes, got {type(data).__name__}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "TypedStorage is deprecated"
        try:
            storage = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises several types for corrupt or refused input
            raise DataError(f"tensor storage could not be read safely: {err}") from err
    if not isinstance(storage, torch.TypedStorage):
        raise DataError(f"tensor storage: expected a torch storage, got {type(storage).__name__}")
    return storage


def _rebuild_tensor(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    *rest: Any,
) -> Tensor:
    """Torch's ``_rebuild_tensor_v2``, after checking its storage and that the view fits in it.

    Torch itself does not bound-check ``size``/``stride`` here, so a crafted pickle could build a
    view that reads past the end of its storage.
    """
    if not isinstance(storage, torch.TypedStorage):
        raise DataError(f"tensor rebuild: expected a torch storage, got {type(storage).__name__}")
    view_ok = (
        isinstance(size, tuple)
        and isinstance(stride, tuple)
        and len(size) == len(stride)
        and all(type(v) is int and v >= 0 for v in (storage_offset, *size, *stride))
    )
    if not view_ok:
        raise DataError(f"tensor rebuild: bad view offset={storage_offset!r} size={size!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "TypedStorage is deprecated"
        numel = storage.size()
        if all(size):  # a view with a zero-size axis touches no element
            last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
            if last >= numel:
                raise DataError(
                    f"tensor rebuild: view size={size} stride={stride} offset={storage_offset} "
                    f"reaches element {last}, storage has {numel}"
                )
        return torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, *rest)


# Everything the pickle may reference besides PyG's classes (found with pickletools).
_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("collections", "OrderedDict"): collections.OrderedDict,  # tensor backward hooks (empty)
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the whitelist and stubs for ``torch_geometric.data.*``."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch_geometric.data" or module.startswith("torch_geometric.data."):
            return _stub_class(module, name)
        raise DataError(f"refusing to unpickle {module}.{name}: not on the whitelist")

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"refusing persistent id {pid!r}: not used by PyG data pickles")


def read_legacy_data_list(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a pickled list of PyG ``Data`` objects from any PyG version, without PyG's classes.

    Old ``Data`` pickles its ``__dict__`` flat (``{"x": ..., "edge_index": ...}``); PyG >= 2.0
    nests the fields under ``_store`` (a ``GlobalStorage`` whose state holds ``_mapping``). Both
    are read; private keys (leading ``_``) and ``None`` fields are dropped.

    Args:
        path: The pickle file.

    Returns:
        One dict of fields (tensors or plain values) per graph, in file order.

    Raises:
        DataError: If the file is not such a pickle, or references anything outside the
            whitelist (torch's tensor rebuild, ``collections.OrderedDict``, PyG data classes).
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            obj = _RestrictedUnpickler(f).load()
    except DataError as err:
        raise DataError(f"{path}: {err}") from err
    except Exception as err:  # pickle raises many types on corrupt input; name them all one way
        raise DataError(f"{path}: not a readable pickle ({type(err).__name__}: {err})") from err
    if not isinstance(obj, list):
        raise DataError(f"{path}: expected a pickled list, got {type(obj).__name__}")
    return [_fields(i, record, path) for i, record in enumerate(obj)]


def _fields(i: int, record: Any, path: Path) -> dict[str, Any]:
    """The public fields of one stubbed ``Data``, flat or nested under ``_store``."""
    if not (isinstance(record, _Stub) and record.source.endswith(".Data")):
        kind = getattr(record, "source", type(record).__name__)
        raise DataError(f"{path}: item {i} is {kind}, expected a torch_geometric Data")
    state = record.state
    if isinstance(state, tuple) and len(state) == 2:  # (dict, slots) form of __reduce_ex__
        state = state[0]
    if not isinstance(state, dict):
        raise DataError(f"{path}: item {i} has no field dict (state is {type(state).__name__})")
    store = state.get("_store")
    if isinstance(store, _Stub):
        state = store.state.get("_mapping") if isinstance(store.state, dict) else None
        if not isinstance(state, dict):
            raise DataError(f"{path}: item {i}: _store holds no _mapping dict")
    return {k: v for k, v in state.items() if not k.startswith("_") and v is not None}


# ---------------------------------------------------------------------------------------------
# loading and validation


def load_exp(data_dir: str | os.PathLike[str], *, download: bool = True) -> list[Data]:
    """Load and validate EXP from ``<data_dir>/GRAPHSAT.pkl``.

    Args:
        data_dir: Directory that holds (or will receive) ``GRAPHSAT.pkl``.
        download: Fetch the public file into ``data_dir`` when it is missing.

    Returns:
        1,200 graphs in file order (pair ``i`` is graphs ``2i, 2i+1``), each with ``x``
        ``(n, 2)`` = ``[original feature, degree]`` float32, undirected ``edge_index``
        ``(2, e)`` int64 and ``y`` ``(1,)`` int64 in {0, 1}.

    Raises:
        MissingDataError: If the file is absent and cannot be downloaded; names the path and URL.
        DataError: If the pickle is unreadable or unsafe, or a graph fails validation (count,
            node range, feature shape, edge indices, undirectedness, labels, pair structure).
    """
    path = ensure_file(Path(data_dir) / EXP_FILE, EXP_URL, download=download)
    records = read_legacy_data_list(path)
    graphs = [_to_data(i, r, path) for i, r in enumerate(records)]
    _validate_pairs(graphs, path)
    positives = sum(int(g.y) for g in graphs)
    log.info(
        "EXP: %d graphs, label 1: %d, label 0: %d", len(graphs), positives, len(graphs) - positives
    )
    return [add_degree_feature(g) for g in graphs]


def exp_classify_splits(graphs: Sequence[Data]) -> dict[str, list[Data]]:
    """The fixed EXP-classify splits of LPS: val ``[0:200]``, test ``[200:400]``, train the rest.

    Args:
        graphs: The 1,200 EXP graphs in file order, as from :func:`load_exp`.

    Returns:
        ``{"train": graphs[400:1200], "val": graphs[0:200], "test": graphs[200:400]}``.

    Raises:
        DataError: If there are not exactly 1,200 graphs.
    """
    if len(graphs) != EXP_COUNT:
        raise DataError(f"exp_classify_splits needs the {EXP_COUNT} EXP graphs, got {len(graphs)}")
    graphs = list(graphs)
    return {"train": graphs[400:1200], "val": graphs[0:200], "test": graphs[200:400]}


def _to_data(i: int, fields: dict[str, Any], path: Path) -> Data:
    """Validate one record and rebuild it as a fresh ``Data(x, edge_index, y)``."""
    where = f"{path}: graph {i}"
    missing = [k for k in ("x", "edge_index", "y") if not isinstance(fields.get(k), Tensor)]
    if missing:
        raise DataError(f"{where}: missing tensor field(s) {missing}; has {sorted(fields)}")
    x, edge_index, y = fields["x"], fields["edge_index"], fields["y"]
    n = x.size(0)
    if x.dim() != 2 or x.size(1) != 1:
        raise DataError(f"{where}: x must have shape (n, 1), got {tuple(x.shape)}")
    if not EXP_MIN_NODES <= n <= EXP_MAX_NODES:
        raise DataError(f"{where}: {n} nodes, expected {EXP_MIN_NODES}..{EXP_MAX_NODES}")
    if edge_index.dim() != 2 or edge_index.size(0) != 2 or edge_index.dtype != torch.long:
        raise DataError(
            f"{where}: edge_index must be int64 of shape (2, e), "
            f"got {edge_index.dtype} {tuple(edge_index.shape)}"
        )
    if edge_index.numel() and (edge_index.min() < 0 or edge_index.max() >= n):
        raise DataError(f"{where}: edge_index has entries outside [0, {n})")
    if bool((edge_index[0] == edge_index[1]).any()):
        raise DataError(f"{where}: edge_index has self-loops")
    forward = set(map(tuple, edge_index.t().tolist()))
    if len(forward) != edge_index.size(1):
        raise DataError(f"{where}: edge_index has repeated edges")
    if any((v, u) not in forward for u, v in forward):
        raise DataError(f"{where}: edge_index is not undirected (an edge lacks its reverse)")
    if y.numel() != 1 or int(y) not in (0, 1):
        raise DataError(f"{where}: y must be one binary label, got {y.tolist()}")
    return Data(x=x.clone(), edge_index=edge_index.clone(), y=y.reshape(1).to(torch.long).clone())


def _validate_pairs(graphs: list[Data], path: Path) -> None:
    """Count, and per pair: equal node counts, equal degree multisets, opposite labels."""
    if len(graphs) != EXP_COUNT:
        raise DataError(f"{path}: expected {EXP_COUNT} graphs (600 pairs), found {len(graphs)}")
    for p in range(EXP_COUNT // 2):
        a, b = graphs[2 * p], graphs[2 * p + 1]
        where = f"{path}: pair {p} (graphs {2 * p}, {2 * p + 1})"
        if a.num_nodes != b.num_nodes:
            raise DataError(f"{where}: node counts differ ({a.num_nodes} vs {b.num_nodes})")
        # 1-WL-indistinguishable graphs share their degree multiset; a cheap necessary check.
        deg_a = torch.bincount(a.edge_index[0], minlength=a.num_nodes).sort().values
        deg_b = torch.bincount(b.edge_index[0], minlength=b.num_nodes).sort().values
        if not torch.equal(deg_a, deg_b):
            raise DataError(f"{where}: degree multisets differ, so the pair is 1-WL separable")
        if int(a.y) == int(b.y):
            raise DataError(f"{where}: both labelled {int(a.y)}; a pair is one SAT, one UNSAT")
