"""Message-passing baselines from PyTorch Geometric behind the dense-graph interface.

They are permutation-equivariant by construction, so they run unsymmetrized (``--method none``,
:class:`~probsym.samplers.Identity`) as the reference a symmetrized transformer must beat. The
dense batch (``x (b, n, c)``, ``adj (b, n, n, c_e)`` with the edge indicator in channel 0,
``mask``) becomes PyG's flat sparse batch here, and node outputs go back to ``(b, n, out)``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from probsym.errors import UnknownNameError


class PyGGIN(nn.Module):
    """PyG's GIN (``torch_geometric.nn.models.GIN``) on dense padded graphs.

    Args:
        in_dim: Node feature channels.
        hidden: Width.
        out_dim: Output channels.
        depth: Message-passing layers.
        level: ``"node"`` (``(b, n, out)``, zeros on padding) or ``"graph"`` (sum pooling,
            ``(b, out)``).
        dropout: Dropout between layers.
    """

    def __init__(
        self,
        in_dim: int,
        hidden: int,
        out_dim: int,
        depth: int = 4,
        level: Literal["node", "graph"] = "node",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        from torch_geometric.nn.models import GIN

        if level not in ("node", "graph"):
            raise UnknownNameError("level", level, ["node", "graph"])
        self.level = level
        self.gnn = GIN(in_dim, hidden, depth, out_channels=hidden, dropout=dropout, norm="batch")
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))

    def forward(self, x: Tensor, adj: Tensor, mask: Tensor | None = None) -> Tensor:
        """Node ``(b, n, out)`` or graph ``(b, out)`` outputs of the dense batch."""
        b, n = x.shape[:2]
        if mask is None:
            mask = torch.ones(b, n, dtype=torch.bool, device=x.device)
        edges = (adj[..., 0] != 0) & mask[:, :, None] & mask[:, None, :]
        graph, row, col = edges.nonzero(as_tuple=True)
        # real nodes only, in PyG's flat layout (BatchNorm statistics never see padding)
        flat = torch.cumsum(mask.reshape(-1), 0).view(b, n) - 1
        edge_index = torch.stack([flat[graph, row], flat[graph, col]])
        h = self.gnn(x[mask], edge_index)
        if self.level == "graph":
            batch = torch.arange(b, device=x.device).repeat_interleave(mask.sum(dim=1))
            pooled = torch.zeros(b, h.shape[-1], dtype=h.dtype, device=h.device)
            return self.head(pooled.index_add_(0, batch, h))
        out = self.head(h)
        dense = out.new_zeros(b, n, out.shape[-1])
        dense[mask] = out
        return dense
