"""Padded dense batches from lists of PyTorch Geometric graphs, and back.

Shape legend: b graphs · n nodes (padded) · c node channels. Real nodes come first in each row and
padded nodes have ``mask == False``; ``adj`` has one channel that is 1.0 for an edge, so it is a
``pair`` field. Graph-level labels stack to ``(b, ...)``; node-level labels pad to ``(b, n, ...)``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.utils import degree, dense_to_sparse, to_dense_adj, to_dense_batch

from probsym.errors import DataError, MaskError, ShapeError

__all__ = ["add_degree_feature", "collate_dense", "split_dense"]


def add_degree_feature(graph: Data) -> Data:
    """Append each node's degree to its features: ``x -> [x, deg]`` as float32.

    The degree counts entries of ``edge_index[0]``, so an undirected graph must store each edge in
    both directions (PyG's convention). The input graph is not modified.

    Args:
        graph: A graph with ``x`` of shape ``(n, c)`` and ``edge_index`` of shape ``(2, e)``.

    Returns:
        A shallow copy of ``graph`` whose ``x`` has shape ``(n, c + 1)`` and dtype float32.

    Raises:
        DataError: If ``graph.x`` or ``graph.edge_index`` is missing.
        ShapeError: If ``x`` is not 2-D.
    """
    if graph.x is None or graph.edge_index is None:
        raise DataError("add_degree_feature needs a graph with both x and edge_index")
    if graph.x.dim() != 2:
        raise ShapeError(f"x: expected shape (n, c), got {tuple(graph.x.shape)}")
    num_nodes = graph.x.size(0)
    deg = degree(graph.edge_index[0], num_nodes=num_nodes, dtype=torch.float32)
    out = copy.copy(graph)
    out.x = torch.cat([graph.x.to(torch.float32), deg.unsqueeze(-1)], dim=-1)
    return out


def collate_dense(
    graphs: Sequence[Data],
    n_max: int | None = None,
    label_level: Literal["graph", "node"] = "graph",
    edge_attr: bool = False,
) -> dict[str, Tensor]:
    """Batch graphs into padded dense tensors.

    Args:
        graphs: Non-empty graphs, each with ``x`` ``(n_i, c)`` (same ``c`` for all) and
            ``edge_index`` ``(2, e_i)``; ``y`` on all graphs or on none.
        n_max: Padded node count; defaults to the largest ``n_i`` in the batch. Fix it when
            batches must share a shape (e.g. ``n_max=64`` for EXP).
        label_level: ``"graph"``: each ``y`` has leading size 1 (or is a scalar) and the labels
            concatenate to ``(b, ...)``. ``"node"``: each ``y`` has leading size ``n_i`` and is
            padded with zeros to ``(b, n, ...)``. Declared, never guessed from shapes.
        edge_attr: Also densify each graph's ``edge_attr`` (``(e_i,)`` or ``(e_i, e)``) into a
            pair tensor; entries of duplicated edges add up, non-edges are zero.

    Returns:
        A dict with ``x`` float32, ``adj`` float32 (1.0 for an edge, also for duplicated edges),
        ``mask`` bool, ``y`` when the graphs carry labels, and ``edge_attr`` float32 when asked.

    Shapes:
        x: ``(b, n, c)`` · adj: ``(b, n, n, 1)`` · mask: ``(b, n)`` · y: ``(b, ...)`` or
        ``(b, n, ...)`` · edge_attr: ``(b, n, n, e)``.

    Raises:
        DataError: If the list is empty, a graph lacks ``x``/``edge_index``, only some graphs have
            ``y``, or an edge index is out of range.
        MaskError: If a graph has no nodes.
        ShapeError: If a graph has more than ``n_max`` nodes or the shapes of ``x``, ``y`` or
            ``edge_index`` are inconsistent, or (with ``edge_attr``) an ``edge_attr`` is missing or
            does not have one row per edge and the same channels on every graph.
    """
    if len(graphs) == 0:
        raise DataError("collate_dense got an empty list of graphs")
    if label_level not in ("graph", "node"):
        raise ValueError(f"label_level must be 'graph' or 'node', got {label_level!r}")
    sizes = [_check_graph(i, g) for i, g in enumerate(graphs)]
    channels = {g.x.size(1) for g in graphs}
    if len(channels) > 1:
        raise ShapeError(f"x: all graphs need the same channel count, found {sorted(channels)}")
    largest = max(sizes)
    if n_max is None:
        n_max = largest
    elif largest > n_max:
        i = sizes.index(largest)
        raise ShapeError(f"graph {i} has {largest} nodes, more than n_max={n_max}")

    b = len(graphs)
    counts = torch.tensor(sizes)
    batch = torch.repeat_interleave(torch.arange(b), counts)  # (sum n_i,) graph id of each node
    offsets = torch.cumsum(counts, 0) - counts
    x = torch.cat([g.x for g in graphs]).to(torch.float32)
    edge_index = torch.cat([g.edge_index + offsets[i] for i, g in enumerate(graphs)], dim=1)

    x_dense, mask = to_dense_batch(x, batch, max_num_nodes=n_max, batch_size=b)  # (b, n, c)
    adj = to_dense_adj(edge_index, batch, max_num_nodes=n_max, batch_size=b)  # (b, n, n)
    # to_dense_adj sums duplicate edges; the field is an indicator.
    out = {"x": x_dense, "adj": adj.clamp_(max=1.0).unsqueeze(-1), "mask": mask}
    if edge_attr:
        attrs = [_edge_channels(i, g) for i, g in enumerate(graphs)]
        widths = {a.size(1) for a in attrs}
        if len(widths) > 1:
            raise ShapeError(
                f"edge_attr: all graphs need the same channel count, found {sorted(widths)}"
            )
        attr = torch.cat(attrs).to(torch.float32)
        # (b, n, n, e); to_dense_adj sums the attributes of duplicated edges
        out["edge_attr"] = to_dense_adj(edge_index, batch, attr, max_num_nodes=n_max, batch_size=b)
    y = _collate_labels(graphs, sizes, batch, n_max, label_level)
    if y is not None:
        out["y"] = y
    return out


def split_dense(
    batch: dict[str, Tensor], label_level: Literal["graph", "node"] = "graph"
) -> list[Data]:
    """Invert :func:`collate_dense`: one ``Data`` per row, padding removed.

    Args:
        batch: A dict with ``x`` ``(b, n, c)``, ``adj`` ``(b, n, n, 1)``, ``mask`` ``(b, n)`` and
            optionally ``y``; other keys are ignored.
        label_level: How ``y`` was collated: ``"graph"`` ``(b, ...)`` or ``"node"``
            ``(b, n, ...)``.

    Returns:
        Graphs with ``x`` ``(n_i, c)``, ``edge_index`` ``(2, e_i)`` and, if present, ``y`` of
        shape ``(1, ...)`` (graph) or ``(n_i, ...)`` (node).

    Raises:
        MaskError: If a row of ``mask`` is not real nodes first, then padding.
        ShapeError: If ``x``, ``adj`` and ``mask`` disagree on ``b`` or ``n``.
    """
    x, adj, mask = batch["x"], batch["adj"], batch["mask"]
    b, n = mask.shape
    if x.shape[:2] != (b, n) or adj.shape != (b, n, n, 1):
        raise ShapeError(
            f"expected x (b, n, c) and adj (b, n, n, 1) with (b, n) = {(b, n)}, "
            f"got x {tuple(x.shape)} and adj {tuple(adj.shape)}"
        )
    counts = mask.sum(dim=1)
    prefix = torch.arange(n, device=mask.device) < counts.unsqueeze(1)
    if not torch.equal(prefix, mask):
        raise MaskError("mask: each row must hold its real nodes first, then padding")
    graphs = []
    for i, n_i in enumerate(counts.tolist()):
        edge_index, _ = dense_to_sparse(adj[i, :n_i, :n_i, 0])
        graph = Data(x=x[i, :n_i], edge_index=edge_index, num_nodes=n_i)
        if "y" in batch:
            graph.y = batch["y"][i : i + 1] if label_level == "graph" else batch["y"][i, :n_i]
        graphs.append(graph)
    return graphs


def _check_graph(i: int, graph: Data) -> int:
    """Validate one graph for collation and return its node count."""
    if graph.x is None or graph.edge_index is None:
        raise DataError(f"graph {i} needs both x and edge_index")
    x, edge_index = graph.x, graph.edge_index
    if x.dim() != 2:
        raise ShapeError(f"graph {i}: x must have shape (n, c), got {tuple(x.shape)}")
    n = x.size(0)
    if n == 0:
        raise MaskError(f"graph {i} has no nodes; every graph needs at least one real node")
    declared = graph.num_nodes  # a PyG property that walks the graph's stores: read it once
    if declared is not None and declared != n:
        raise ShapeError(f"graph {i}: x has {n} rows but num_nodes is {declared}")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ShapeError(
            f"graph {i}: edge_index must have shape (2, e), got {tuple(edge_index.shape)}"
        )
    if edge_index.numel() and (edge_index.min() < 0 or edge_index.max() >= n):
        raise DataError(
            f"graph {i}: edge_index must lie in [0, {n}), found range "
            f"[{int(edge_index.min())}, {int(edge_index.max())}]"
        )
    return n


def _edge_channels(i: int, graph: Data) -> Tensor:
    """``graph.edge_attr`` as ``(e_i, e)``, validated against ``edge_index``."""
    attr = graph.edge_attr
    if attr is None:
        raise DataError(f"graph {i} has no edge_attr; edge_attr=True needs it on every graph")
    if attr.dim() == 1:
        attr = attr.unsqueeze(1)
    if attr.dim() != 2 or attr.size(0) != graph.edge_index.size(1):
        raise ShapeError(
            f"graph {i}: edge_attr must have shape ({graph.edge_index.size(1)}, e) "
            f"(one row per edge), got {tuple(graph.edge_attr.shape)}"
        )
    return attr


def _collate_labels(
    graphs: Sequence[Data],
    sizes: list[int],
    batch: Tensor,
    n_max: int,
    label_level: str,
) -> Tensor | None:
    """Stack graph-level or pad node-level labels; None when no graph has ``y``."""
    has_y = [g.y is not None for g in graphs]
    if not any(has_y):
        return None
    if not all(has_y):
        raise DataError(f"y: present on {sum(has_y)} of {len(graphs)} graphs; need all or none")
    ys = [g.y.reshape(1) if g.y.dim() == 0 else g.y for g in graphs]
    lead = 1 if label_level == "graph" else None
    for i, (y, n) in enumerate(zip(ys, sizes, strict=True)):
        expected = lead if lead is not None else n
        if y.size(0) != expected:
            raise ShapeError(
                f"graph {i}: {label_level}-level y needs leading size {expected}, "
                f"got shape {tuple(y.shape)}"
            )
    if len({y.shape[1:] for y in ys}) > 1:
        raise ShapeError(f"y: trailing shapes differ across graphs: {[tuple(y.shape) for y in ys]}")
    stacked = torch.cat(ys)
    if label_level == "graph":
        return stacked  # (b, ...)
    padded, _ = to_dense_batch(stacked, batch, max_num_nodes=n_max, batch_size=len(graphs))
    return padded  # (b, n, ...)
