"""A transformer over node tokens with learned per-slot position embeddings.

The position embeddings make it depend on node order (and raw coordinates make it depend on the
frame), so it is not equivariant by itself; symmetrized, it is.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class NodeTransformer(nn.Module):
    """Pre-norm transformer encoder over ``n`` node tokens.

    Each token is the concatenation of the node's features from ``keys`` (vectors flattened),
    projected to ``dim``; a learned embedding per slot is added; padded nodes are masked out of
    attention. A linear head maps every token to ``out_dim`` outputs, or the masked mean of the
    tokens to a graph-level output when ``pooled``.

    Args:
        keys: Node-level input names, concatenated per node in this order.
        in_dim: Channels per token after concatenation.
        out_dim: Outputs per node (or per graph when ``pooled``).
        max_nodes: Number of position embeddings (the padded node count).
        dim, depth, heads, dropout: Transformer size (the paper's n-body model: 64, 8, 4, 0).
        residual_key: If set, add this input to the output (predict displacements of positions).
        pooled: Graph-level output.
        pair_key, pair_dim: If set, the pair input of this name, ``(B, n, n, pair_dim)``, becomes
            a learned additive attention bias per head (shared by all layers), as in Graphormer:
            pairwise information (distances, charge products) at the cost of n² tiny MLPs
            instead of n² tokens.

    Shapes:
        Inputs ``(B, n, ...)``; returns ``(B, n, out_dim)``, ``(B, n, 3)`` with a residual of
        shape ``(B, n, 3)``, or ``(B, out_dim)`` when pooled.
    """

    def __init__(
        self,
        keys: Sequence[str],
        in_dim: int,
        out_dim: int,
        max_nodes: int,
        dim: int = 64,
        depth: int = 8,
        heads: int = 4,
        dropout: float = 0.0,
        residual_key: str | None = None,
        pooled: bool = False,
        pair_key: str | None = None,
        pair_dim: int = 0,
    ) -> None:
        super().__init__()
        if (pair_key is None) != (pair_dim == 0):
            raise ValueError("pair_key and pair_dim > 0 go together")
        self.keys, self.residual_key, self.pooled = tuple(keys), residual_key, pooled
        self.pair_key, self.heads = pair_key, heads
        self.pair_bias = None
        if pair_key is not None:
            self.pair_bias = nn.Sequential(
                nn.Linear(pair_dim, dim), nn.GELU(), nn.Linear(dim, heads)
            )
        self.embed = nn.Linear(in_dim, dim)
        self.position = nn.Parameter(torch.randn(max_nodes, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(
            dim,
            heads,
            dim_feedforward=dim * 2,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(
            layer, depth, norm=nn.LayerNorm(dim), enable_nested_tensor=False
        )
        self.head = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, out_dim))
        if self.pair_bias is not None:
            # torch 2.13's inference fast path returns NaN for a per-head float mask of shape
            # (B·heads, n, n) (the training path is right); a module with a hook never takes it.
            for block in self.encoder.layers:
                block.register_forward_pre_hook(_keep_reference_path)

    def forward(self, mask: Tensor | None = None, **inputs: Tensor) -> Tensor:
        """Encode node tokens and read out per node (or pooled)."""
        first = inputs[self.keys[0]]
        b, n = first.shape[:2]
        tokens = torch.cat([inputs[k].reshape(b, n, -1) for k in self.keys], dim=-1)
        h = self.embed(tokens) + self.position[:n]
        padding = None if mask is None else ~mask
        bias = None
        if self.pair_bias is not None:
            bias = self.pair_bias(inputs[self.pair_key].to(h.dtype))  # (B, n, n, heads)
            bias = bias.permute(0, 3, 1, 2).reshape(b * self.heads, n, n)
            if padding is not None:  # one float mask: padded keys get -inf
                keys = padding.repeat_interleave(self.heads, dim=0).unsqueeze(1)
                bias, padding = bias.masked_fill(keys, float("-inf")), None
        h = self.encoder(h, mask=bias, src_key_padding_mask=padding)
        if self.pooled:
            if mask is None:
                return self.head(h.mean(dim=1))
            real = mask.unsqueeze(-1).to(h.dtype)
            return self.head((h * real).sum(1) / real.sum(1).clamp_min(1))
        out = self.head(h)
        if self.residual_key is not None:
            out = out + inputs[self.residual_key]
        return out


def _keep_reference_path(module: nn.Module, args: tuple) -> None:
    """A no-op pre-hook: its presence keeps ``TransformerEncoderLayer`` off its fast path."""
