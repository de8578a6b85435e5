"""PyTorch Geometric interop: a PyG batch in, the symmetrizer's dense inputs out, and back.

Shape legend: b graphs · n nodes (padded) · N = sum n_i nodes of the PyG batch · E edges.
Dense rows hold each graph's nodes first, in the batch's node order, so row ``i``, column ``k``
is node ``ptr[i] + k`` of the PyG batch: ``y_dense[mask]`` is PyG's flat node layout again.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch_geometric.data import Batch, Data
from torch_geometric.utils import to_dense_adj, to_dense_batch

from probsym.data.batching import collate_dense
from probsym.errors import DataError, MaskError, ShapeError

__all__ = ["from_pyg", "node_outputs_to_pyg", "pair_outputs_to_pyg"]


def from_pyg(
    graphs: Batch | Data | Sequence[Data], n_max: int | None = None, edge_attr: bool = False
) -> dict[str, Tensor]:
    """The symmetrizer's dense inputs of a PyG ``Batch``, one ``Data`` or a list of them.

    A ``Batch`` is densified from its global ``edge_index`` and ``batch`` vector directly; a list
    goes through :func:`~probsym.data.batching.collate_dense`. Both give the same tensors.

    Args:
        graphs: Graphs with ``x`` ``(n_i, c)`` and ``edge_index``; a ``Batch`` (or a ``Data`` with
            a ``batch`` vector) holds them concatenated.
        n_max: Padded node count; defaults to the largest graph.
        edge_attr: Also return the edge attributes as a pair tensor (duplicated edges add up).

    Returns:
        ``x`` float32, ``adj`` float32 (1.0 for an edge), ``mask`` bool and, when asked,
        ``edge_attr`` float32. Labels are not included.

    Shapes:
        x: ``(b, n, c)`` · adj: ``(b, n, n, 1)`` · mask: ``(b, n)`` · edge_attr: ``(b, n, n, e)``.

    Raises:
        DataError: If a field is missing, the batch vector is not sorted, or an edge index is out
            of range or joins two graphs.
        MaskError: If a graph of the batch has no nodes.
        ShapeError: If a graph exceeds ``n_max`` or a field has the wrong shape.
    """
    if isinstance(graphs, Data) and getattr(graphs, "batch", None) is None:
        graphs = [graphs]
    if not isinstance(graphs, Data):
        out = collate_dense(list(graphs), n_max, edge_attr=edge_attr)
        out.pop("y", None)
        return out
    x, edge_index, batch = graphs.x, graphs.edge_index, graphs.batch
    if x is None or edge_index is None:
        raise DataError("from_pyg needs a batch with both x and edge_index")
    if x.dim() != 2 or batch.shape != (x.size(0),):
        raise ShapeError(
            f"expected x (N, c) and batch (N,), got x {tuple(x.shape)} and "
            f"batch {tuple(batch.shape)}"
        )
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ShapeError(f"edge_index: expected shape (2, E), got {tuple(edge_index.shape)}")
    if batch.numel() and bool((batch.diff() < 0).any()):
        raise DataError("batch: the batch vector must be sorted (each graph's nodes contiguous)")
    if batch.numel() == 0:
        raise MaskError("from_pyg got a batch with no nodes")
    b = int(graphs.num_graphs) if isinstance(graphs, Batch) else int(batch.max()) + 1
    counts = torch.bincount(batch, minlength=b)
    if bool((counts == 0).any()):
        raise MaskError(f"graph {int((counts == 0).nonzero()[0])} has no nodes")
    largest = int(counts.max())
    if n_max is None:
        n_max = largest
    elif largest > n_max:
        raise ShapeError(
            f"graph {int(counts.argmax())} has {largest} nodes, more than n_max={n_max}"
        )
    _check_edges(edge_index, batch)
    x_dense, mask = to_dense_batch(x.to(torch.float32), batch, max_num_nodes=n_max, batch_size=b)
    adj = to_dense_adj(edge_index, batch, max_num_nodes=n_max, batch_size=b)  # (b, n, n)
    out = {"x": x_dense, "adj": adj.clamp_(max=1.0).unsqueeze(-1), "mask": mask}
    if edge_attr:
        attr = graphs.edge_attr
        if attr is None:
            raise DataError("edge_attr=True needs a batch with edge_attr")
        attr = attr.unsqueeze(1) if attr.dim() == 1 else attr
        if attr.dim() != 2 or attr.size(0) != edge_index.size(1):
            raise ShapeError(
                f"edge_attr: expected shape ({edge_index.size(1)}, e), one row per edge, "
                f"got {tuple(graphs.edge_attr.shape)}"
            )
        out["edge_attr"] = to_dense_adj(
            edge_index, batch, attr.to(torch.float32), max_num_nodes=n_max, batch_size=b
        )
    return out


def node_outputs_to_pyg(y_dense: Tensor, mask: Tensor) -> Tensor:
    """Dense node outputs in PyG's flat node layout: ``y_dense[mask]``, in the batch's order.

    Args:
        y_dense: Per-node outputs, e.g. ``Symmetrize(...)(**from_pyg(batch)).value``.
        mask: The dense batch's mask (real nodes first).

    Shapes:
        y_dense: ``(b, n, ...)`` · mask: ``(b, n)`` bool · returns ``(N, ...)``.

    Raises:
        MaskError: If ``mask`` is not bool, or a row is not real nodes first.
        ShapeError: If ``y_dense`` does not start with ``mask``'s ``(b, n)``.
    """
    if mask.dtype != torch.bool or mask.dim() != 2:
        raise MaskError(
            f"mask: expected a (b, n) bool tensor, got {mask.dtype} {tuple(mask.shape)}"
        )
    if y_dense.shape[:2] != mask.shape:
        raise ShapeError(
            f"y_dense: expected shape (b, n, ...) with (b, n) = {tuple(mask.shape)}, "
            f"got {tuple(y_dense.shape)}"
        )
    prefix = torch.arange(mask.size(1), device=mask.device) < mask.sum(1, keepdim=True)
    if not torch.equal(prefix, mask):
        raise MaskError("mask: each row must hold its real nodes first, then padding")
    return y_dense[mask]


def pair_outputs_to_pyg(y_pair: Tensor, batch_or_ptr: Tensor | Batch, edge_index: Tensor) -> Tensor:
    """Dense pair outputs at PyG's global ``edge_index`` (e.g. link scores of candidate pairs).

    ``out[k] = y_pair[i, u - ptr[i], v - ptr[i]]`` for edge ``k = (u, v)`` of graph ``i``.

    Args:
        y_pair: Pair outputs of the dense batch.
        batch_or_ptr: The PyG ``Batch``, its ``batch`` vector ``(N,)`` or its ``ptr`` ``(b + 1,)``.
            A 1-D tensor of length ``b + 1`` whose last entry is at least ``b`` is a ``ptr`` (a
            batch vector's entries are below ``b``, and every graph has a node).
        edge_index: Global node pairs, ``(2, E)``; both ends of a pair in the same graph. It
            need not be the batch's own edges.

    Shapes:
        y_pair: ``(b, n, n, ...)`` · edge_index: ``(2, E)`` · returns ``(E, ...)``.

    Raises:
        DataError: If the batch vector is unsorted, or a pair is out of range or joins two graphs.
        ShapeError: If ``y_pair`` is not ``(b, n, n, ...)``, the batch layout does not have ``b``
            graphs, a graph has more than ``n`` nodes, or ``edge_index`` is not ``(2, E)``.
    """
    if y_pair.dim() < 3 or y_pair.size(1) != y_pair.size(2):
        raise ShapeError(f"y_pair: expected shape (b, n, n, ...), got {tuple(y_pair.shape)}")
    b, n = y_pair.shape[:2]
    ptr = _ptr(batch_or_ptr, b)
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ShapeError(f"edge_index: expected shape (2, E), got {tuple(edge_index.shape)}")
    counts = ptr.diff()
    if int(counts.max()) > n:
        raise ShapeError(
            f"graph {int(counts.argmax())} has {int(counts.max())} nodes, more than y_pair's n={n}"
        )
    edge_index = edge_index.to(ptr.device)
    batch = torch.repeat_interleave(torch.arange(b, device=ptr.device), counts)  # (N,)
    _check_edges(edge_index, batch)
    graph = batch[edge_index[0]]  # (E,)
    local = edge_index - ptr[graph]  # (2, E) node indices within each graph
    return y_pair[graph.to(y_pair.device), local[0].to(y_pair.device), local[1].to(y_pair.device)]


def _ptr(batch_or_ptr: Tensor | Batch, b: int) -> Tensor:
    """The ``(b + 1,)`` node offsets of a ``Batch``, a batch vector or a ptr."""
    if isinstance(batch_or_ptr, Data):
        batch_or_ptr = batch_or_ptr.ptr
    index = batch_or_ptr
    if index.dim() != 1 or index.dtype not in (torch.int32, torch.int64):
        raise ShapeError(
            f"batch_or_ptr: expected a 1-D integer tensor, got {index.dtype} {tuple(index.shape)}"
        )
    if index.numel() and bool((index.diff() < 0).any()):
        raise DataError("batch_or_ptr: must be sorted (each graph's nodes contiguous)")
    index = index.to(torch.long)
    if len(index) == b + 1 and int(index[-1]) >= b:
        ptr = index
        if int(ptr[0]) != 0:
            raise DataError(f"ptr: must start at 0, got {int(ptr[0])}")
    else:
        if index.numel() and (int(index[0]) < 0 or int(index[-1]) >= b):
            raise ShapeError(
                f"batch: expected graph ids in [0, {b}) for y_pair's b={b}, "
                f"got range [{int(index[0])}, {int(index[-1])}]"
            )
        counts = torch.bincount(index, minlength=b)
        ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    if bool((ptr.diff() == 0).any()):
        raise MaskError(f"graph {int((ptr.diff() == 0).nonzero()[0])} has no nodes")
    return ptr


def _check_edges(edge_index: Tensor, batch: Tensor) -> None:
    """Every pair lies in ``[0, N)`` and joins two nodes of the same graph."""
    if edge_index.numel() == 0:
        return
    total = batch.numel()
    if int(edge_index.min()) < 0 or int(edge_index.max()) >= total:
        raise DataError(
            f"edge_index: entries must lie in [0, {total}), found range "
            f"[{int(edge_index.min())}, {int(edge_index.max())}]"
        )
    crossing = batch[edge_index[0]] != batch[edge_index[1]]
    if bool(crossing.any()):
        k = int(crossing.nonzero()[0])
        u, v = edge_index[:, k].tolist()
        raise DataError(
            f"edge_index: pair {k} ({u}, {v}) joins graphs {int(batch[u])} and {int(batch[v])}"
        )
