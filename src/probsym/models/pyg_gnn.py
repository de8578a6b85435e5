"""Message-passing baselines from PyTorch Geometric behind probsym's padded dense interface.

``PyGGIN`` (PyG's ``GIN``: ``GINConv`` layers) and ``GatedGCN`` (``ResGatedGraphConv`` layers with
residuals) take the dense batch every base model takes, convert it to PyG's sparse batch inside
(:func:`dense_to_pyg`), and return node outputs scattered back to the padded layout or pooled
graph outputs. They are permutation-equivariant (node outputs) or invariant (pooled) by
construction: the baselines that need no symmetrization. ``torch_geometric`` is imported when a
model is built, so importing this module does not need it.

Shapes: ``b`` batch · ``n`` nodes (padded) · ``N`` real nodes in the batch · ``E`` edges ·
``c`` node channels · ``c_e`` pair channels (channel 0: the edge indicator).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

__all__ = ["GatedGCN", "PyGGIN", "dense_to_pyg"]

Readout = Literal["sum", "mean"]


def dense_to_pyg(x: Tensor, adj: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Padded dense graphs to PyG's sparse batch (real nodes only, graphs concatenated).

    An edge ``j -> i`` exists where ``adj[g, i, j, 0] != 0`` and both nodes are real; entries on
    padded nodes are ignored, whatever they hold.

    Args:
        x: Node features.
        adj: Pair features; channel 0 is the edge indicator.
        mask: Real nodes (``True``), which come first in each graph.

    Returns:
        ``(nodes, edge_index, edge_attr, batch)``: node features of the real nodes, PyG edge
        index into them, every pair channel of each edge, and the graph of each node.

    Shapes:
        x: ``(b, n, c)``; adj: ``(b, n, n, c_e)``; mask: ``(b, n)``; returns ``(N, c)``,
        ``(2, E)``, ``(E, c_e)``, ``(N,)``.
    """
    from torch_geometric.utils import dense_to_sparse

    pairs = mask[:, :, None] & mask[:, None, :]  # (b, n, n)
    # padded rows and columns are zeroed first: dense_to_sparse drops padded rows only; it
    # views its input, and gathered (permuted) inputs are often not contiguous
    edge_index, _ = dense_to_sparse(((adj[..., 0] != 0) & pairs).contiguous(), mask)
    counts = mask.sum(1)
    batch = torch.repeat_interleave(torch.arange(len(counts), device=x.device), counts)
    start = torch.cumsum(counts, 0) - counts  # first global index of each graph
    column = edge_index[1] - start[batch[edge_index[0]]]  # padded slot of each source node
    edge_attr = adj[mask][edge_index[0], column]  # adj[mask]: (N, n, c_e)
    return x[mask], edge_index, edge_attr, batch


class _DenseGraphModel(nn.Module):
    """Dense batch in, PyG message passing on the real nodes, padded node or pooled graph out."""

    def __init__(self, hidden: int, out_dim: int, readout: Readout | None) -> None:
        super().__init__()
        if readout not in ("sum", "mean", None):
            raise ValueError(f"readout: 'sum', 'mean' or None (node outputs), got {readout!r}")
        self.readout, self.out_dim = readout, out_dim
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))

    def encode(self, nodes: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        """Node embeddings ``(N, hidden)`` of the sparse batch."""
        raise NotImplementedError

    def forward(self, x: Tensor, adj: Tensor, mask: Tensor | None = None) -> Tensor:
        """Node outputs ``(b, n, out_dim)`` (zero on padding), or graph outputs ``(b, out_dim)``."""
        from torch_geometric.nn import global_add_pool, global_mean_pool

        b, n = x.shape[:2]
        if mask is None:
            mask = torch.ones(b, n, dtype=torch.bool, device=x.device)
        nodes, edge_index, edge_attr, batch = dense_to_pyg(x, adj, mask)
        h = self.encode(nodes, edge_index, edge_attr)  # (N, hidden)
        if self.readout is None:
            out = h.new_zeros(b, n, self.out_dim)
            out[mask] = self.head(h)
            return out
        pool = global_add_pool if self.readout == "sum" else global_mean_pool
        return self.head(pool(h, batch, size=b))  # (b, out_dim)


class PyGGIN(_DenseGraphModel):
    """GIN (Xu et al. 2019) from PyG: ``num_layers`` ``GINConv`` layers, then an MLP head.

    ``h_i <- MLP((1 + eps) h_i + sum_{j in N(i)} h_j)``; graph outputs pool the last layer.

    Args:
        in_dim: Node feature channels ``c``.
        out_dim: Outputs per node, or per graph with a readout.
        hidden: Layer width.
        num_layers: GIN layers.
        readout: ``"sum"`` or ``"mean"`` pooling for graph outputs; ``None`` for node outputs.
        dropout: Dropout between layers.
        norm: PyG normalization between layers (e.g. ``"batch_norm"``); ``None``: none.

    Shapes:
        x: ``(b, n, c)``; adj: ``(b, n, n, c_e)`` (channel 0 is read); mask: ``(b, n)``;
        returns ``(b, n, out_dim)`` or ``(b, out_dim)``.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden: int = 64,
        num_layers: int = 3,
        readout: Readout | None = "sum",
        dropout: float = 0.0,
        norm: str | None = None,
    ) -> None:
        from torch_geometric.nn.models import GIN

        super().__init__(hidden, out_dim, readout)
        self.gin = GIN(in_dim, hidden, num_layers, dropout=dropout, norm=norm, train_eps=True)

    def encode(self, nodes: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        """GIN layers (edge features unused)."""
        return self.gin(nodes, edge_index)


class GatedGCN(_DenseGraphModel):
    """Residual gated graph convolutions (Bresson & Laurent 2017) from PyG's ``ResGatedGraphConv``.

    ``h_i <- h_i + ReLU(W_1 h_i + sum_j sigmoid(W_3 h_i + W_4 h_j + W_5 e_ij) * W_2 h_j)``, after
    a linear node embedding; edge features are the pair channels after the indicator.

    Args:
        in_dim: Node feature channels ``c``.
        out_dim: Outputs per node, or per graph with a readout.
        hidden: Layer width.
        num_layers: Gated layers.
        edge_dim: Edge feature channels ``c_e - 1`` (0: the indicator alone, no edge features).
        readout: ``"sum"`` or ``"mean"`` pooling for graph outputs; ``None`` for node outputs.
        dropout: Dropout on each layer's update.

    Shapes:
        x: ``(b, n, c)``; adj: ``(b, n, n, 1 + edge_dim)``; mask: ``(b, n)``;
        returns ``(b, n, out_dim)`` or ``(b, out_dim)``.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden: int = 64,
        num_layers: int = 3,
        edge_dim: int = 0,
        readout: Readout | None = "sum",
        dropout: float = 0.0,
    ) -> None:
        from torch_geometric.nn import ResGatedGraphConv

        super().__init__(hidden, out_dim, readout)
        self.edge_dim = edge_dim
        self.embed = nn.Linear(in_dim, hidden)
        self.convs = nn.ModuleList(
            ResGatedGraphConv(hidden, hidden, edge_dim=edge_dim or None) for _ in range(num_layers)
        )
        self.dropout = nn.Dropout(dropout)

    def encode(self, nodes: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        """Embedding, then residual gated layers."""
        features = edge_attr[:, 1:] if self.edge_dim else None  # (E, edge_dim)
        h = self.embed(nodes)
        for conv in self.convs:
            h = h + self.dropout(torch.relu(conv(h, edge_index, features)))
        return h
