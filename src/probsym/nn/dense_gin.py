"""A masked dense GIN that scores nodes: permutation-equivariant, padding-aware.

Shapes: ``B`` batch · ``n`` nodes (padded) · ``c`` channels.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class MaskedBatchNorm(nn.Module):
    """BatchNorm over the real nodes of a padded batch; padded rows stay zero.

    Statistics are a sum over the set of real nodes, so they do not depend on node order. A
    training batch with a single real node has no batch variance: it is normalised with the
    running statistics instead (as in eval mode), which are left unchanged.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(channels)

    def forward(self, h: Tensor, mask: Tensor | None) -> Tensor:
        """Normalise ``h`` ``(B, n, c)`` over the real nodes of the whole batch."""
        if mask is None:
            return self._normalize(h.reshape(-1, h.shape[-1])).reshape(h.shape)
        out = torch.zeros_like(h)
        out[mask] = self._normalize(h[mask])
        return out

    def _normalize(self, rows: Tensor) -> Tensor:
        if not (self.training and rows.shape[0] < 2):
            return self.norm(rows)
        norm = self.norm
        return F.batch_norm(
            rows, norm.running_mean, norm.running_var, norm.weight, norm.bias, False, 0.0, norm.eps
        )


class DenseGIN(nn.Module):
    """GIN layers ``h ← ReLU(BN(MLP(A h + (1 + ε) h)))`` on a dense adjacency, then a score head.

    Without an adjacency each node sees the mean of all real nodes (a DeepSets-style set model).
    The head sees each node's features next to the mean over the graph, a cheap stand-in for the
    virtual node of the reference implementation.

    Args:
        in_dim: Node feature channels (``None``: inferred on the first call).
        hidden_dim: Width of every layer.
        num_layers: Message-passing layers.
        out_dim: Outputs per node (1 for scores).
        dropout: Dropout inside each layer's MLP.

    Shapes:
        x: ``(B, n, in_dim)``; adjacency: ``(B, n, n)``, ``(B / s, n, n)`` (shared by s
        consecutive rows, as for folded samples) or None; mask: ``(B, n)`` or None;
        returns ``(B, n, out_dim)`` (zero on padded nodes).
    """

    def __init__(
        self,
        in_dim: int | None,
        hidden_dim: int = 64,
        num_layers: int = 3,
        out_dim: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        dims = [in_dim] + [hidden_dim] * num_layers
        self.mlps = nn.ModuleList(
            nn.Sequential(
                nn.LazyLinear(hidden_dim) if a is None else nn.Linear(a, hidden_dim),
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Linear(hidden_dim, hidden_dim, bias=False),  # the batch norm removes a bias
            )
            for a in dims[:-1]
        )
        self.norms = nn.ModuleList(MaskedBatchNorm(hidden_dim) for _ in range(num_layers))
        self.eps = nn.Parameter(torch.rand(num_layers))
        # No output bias: samplers centre the scores over each graph, which removes any offset
        # shared by all nodes, so a bias would never receive a gradient.
        self.head = nn.Sequential(
            nn.Linear(2 * dims[-1], hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, out_dim, bias=False),
        )

    def forward(self, x: Tensor, adjacency: Tensor | None, mask: Tensor | None) -> Tensor:
        """Per-node outputs."""
        real = None if mask is None else mask.unsqueeze(-1).to(x.dtype)
        h = x if real is None else x * real
        if adjacency is not None:
            adjacency = adjacency.to(x.dtype)  # once, not per layer
        for layer, (mlp, norm) in enumerate(zip(self.mlps, self.norms, strict=True)):
            if adjacency is None:  # mean, not sum: a sum over all nodes drowns each node's own h
                neighbours = _node_mean(h, real).expand_as(h)
            else:
                neighbours = aggregate(adjacency, h)
            h = torch.relu(norm(mlp(neighbours + (1 + self.eps[layer]) * h), mask))
            if real is not None:
                h = h * real
        pooled = _node_mean(h, real)
        out = self.head(torch.cat([h, pooled.expand_as(h)], dim=-1))
        return out if real is None else out * real


def aggregate(adjacency: Tensor, h: Tensor) -> Tensor:
    """``A h`` where ``A`` may be shared by consecutive rows of ``h`` (folded samples).

    Avoids materialising ``s`` copies of a ``(b, n, n)`` adjacency: ``h`` ``(b*s, n, c)`` is viewed
    as ``(b, n, s*c)`` for one batched product.
    """
    b, n = adjacency.shape[:2]
    s = h.shape[0] // b
    if s == 1:
        return torch.bmm(adjacency.to(h.dtype), h)
    c = h.shape[-1]
    grouped = h.reshape(b, s, n, c).transpose(1, 2).reshape(b, n, s * c)
    out = torch.bmm(adjacency.to(h.dtype), grouped)
    return out.reshape(b, n, s, c).transpose(1, 2).reshape(b * s, n, c)


def _node_mean(h: Tensor, real: Tensor | None) -> Tensor:
    """Mean over real nodes, ``(B, 1, c)``."""
    if real is None:
        return h.mean(dim=1, keepdim=True)
    return (h * real).sum(dim=1, keepdim=True) / real.sum(dim=1, keepdim=True).clamp_min(1)
