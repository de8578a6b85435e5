"""GIN with node identifiers (GIN-ID): a GNN made more expressive by one-hot slot IDs.

Each node gets the one-hot code of its slot as extra features. Alone, that breaks permutation
invariance (the IDs depend on the node order); symmetrized, the slot is the node's rank under the
sampled permutation, as in the paper's GIN-ID base. Uses PyG's dense GIN convolution.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.nn import DenseGINConv


class GINWithIDs(nn.Module):
    """Three dense GIN layers on ``[x, one-hot slot]``, masked sum pooling, MLP head.

    Args:
        in_dim: Node feature channels (without the IDs).
        max_nodes: Padded node count (the ID width).
        hidden: Layer width.
        out_dim: Graph-level outputs.
        num_layers: GIN layers.
        activation: ``"relu"`` or ``"tanh"``.

    Shapes:
        x: ``(B, n, in_dim)``; adj: ``(B, n, n, 1)``; mask: ``(B, n)``; returns ``(B, out_dim)``.
    """

    def __init__(
        self,
        in_dim: int,
        max_nodes: int,
        hidden: int = 64,
        out_dim: int = 1,
        num_layers: int = 3,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        act = nn.ReLU if activation == "relu" else nn.Tanh
        dims = [in_dim + max_nodes] + [hidden] * num_layers
        self.convs = nn.ModuleList(
            DenseGINConv(nn.Linear(a, b), train_eps=True)
            for a, b in zip(dims[:-1], dims[1:], strict=True)
        )
        self.act = act()
        self.head = nn.Sequential(nn.Linear(hidden, 10), act(), nn.Linear(10, out_dim))
        self.max_nodes = max_nodes

    def forward(self, x: Tensor, adj: Tensor, mask: Tensor | None = None) -> Tensor:
        """Graph-level output."""
        b, n = x.shape[:2]
        ids = torch.eye(self.max_nodes, device=x.device, dtype=x.dtype)[:n].expand(b, n, -1)
        if mask is not None:
            ids = ids * mask.unsqueeze(-1)
        h = torch.cat([x, ids], dim=-1)
        a = adj[..., 0]
        for conv in self.convs:
            h = self.act(conv(h, a, mask))
        if mask is not None:
            h = h * mask.unsqueeze(-1)
        return self.head(h.sum(dim=1))
