"""A fully connected message-passing network for particle systems (the frame-averaging GCL).

The n-body GNN of Puny et al.'s frame averaging, which the LPS paper symmetrizes over O(3)
(PAPER-NOTES §3.5). Messages and updates are MLPs shared over nodes and summed over neighbours,
so it is permutation-equivariant by construction; it reads raw coordinates, so it is not
rotation-equivariant: symmetrize it over E(3) / O(3).

Shapes: ``B`` batch · ``n`` nodes (padded) · ``h`` hidden channels.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class GCLNet(nn.Module):
    """Embedding, ``depth`` graph convolution layers (GCL), decoder; predicts positions.

    Node input ``[pos - centroid, vel]``, edge input ``[q_i q_j, |pos_i - pos_j|²]`` on all
    ordered pairs ``i ≠ j``. Each layer computes ``m_ij = φ_e([h_i, h_j, e_ij])``,
    ``h_i ← φ_h([h_i, Σ_j m_ij])`` (no residual, as in the reference). The output is the decoded
    position plus the centroid, so translations pass through exactly.

    Args:
        hidden: Width (the paper: 60).
        depth: Layers (the paper: 4).

    Shapes:
        pos, vel: ``(B, n, 3)``; charge: ``(B, n, 1)``; mask: ``(B, n)``; returns ``(B, n, 3)``.
    """

    def __init__(self, hidden: int = 60, depth: int = 4) -> None:
        super().__init__()
        self.embed = nn.Linear(6, hidden)
        self.edge_mlps = nn.ModuleList(
            nn.Sequential(
                nn.Linear(2 * hidden + 2, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU()
            )
            for _ in range(depth)
        )
        self.node_mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(2 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
            for _ in range(depth)
        )
        self.decode = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 3))

    def forward(
        self, pos: Tensor, vel: Tensor, charge: Tensor, mask: Tensor | None = None
    ) -> Tensor:
        """Predicted positions."""
        b, n, _ = pos.shape
        real = pos.new_ones(b, n) if mask is None else mask.to(pos.dtype)
        weights = (real / real.sum(1, keepdim=True).clamp_min(1)).unsqueeze(-1)
        centroid = (pos * weights).sum(1, keepdim=True)  # (B, 1, 3)
        h = self.embed(torch.cat([pos - centroid, vel], dim=-1))  # (B, n, h)
        q = charge.reshape(b, n)
        # Explicit differences, not cdist: exact in float32 and no sqrt (NaN gradient at 0).
        distance2 = (pos[:, :, None] - pos[:, None, :]).square().sum(-1)
        edges = torch.stack([q[:, :, None] * q[:, None, :], distance2], dim=-1)  # (B, n, n, 2)
        # Messages j -> i on ordered pairs of distinct real nodes only.
        links = (
            real[:, :, None]
            * real[:, None, :]
            * (1 - torch.eye(n, dtype=pos.dtype, device=pos.device))
        )
        for edge_mlp, node_mlp in zip(self.edge_mlps, self.node_mlps, strict=True):
            pair = torch.cat(
                [h[:, :, None].expand(-1, -1, n, -1), h[:, None].expand(-1, n, -1, -1), edges],
                dim=-1,
            )  # (B, n, n, 2h + 2)
            messages = edge_mlp(pair) * links.unsqueeze(-1)
            h = node_mlp(torch.cat([h, messages.sum(dim=2)], dim=-1))
        return self.decode(h) + centroid
