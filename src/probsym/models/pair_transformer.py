"""The paper's n-body transformer over ordered node pairs (PAPER-NOTES §3.4), written for speed.

Token ``(i, j)``, at row-major position ``i·n + j``, carries node ``i``'s features when ``i = j``
and the pair features of ``(i, j)`` otherwise; a linear embedding and a learned position per token
feed ``depth`` pre-norm encoder layers (fused QKV projection, ``scaled_dot_product_attention``,
GELU feed-forward), a final LayerNorm, and a ReLU head read at the ``n`` diagonal tokens. The same
function as the authors' ``nn.TransformerEncoder`` model with the same weights (tested), without
its zero-filled token buffer and per-layer mask and layout conversions.

The token grid follows node order and the raw coordinates follow the frame, so the model is not
equivariant: it is a base model for :class:`~probsym.Symmetrize`.

Shapes: ``B`` batch · ``n`` nodes · ``T = n²`` tokens · ``c`` channels.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

#: Computes pair features ``(B, n, n, c)`` from the inputs (e.g. :func:`nbody_pair_features`).
PairFeatures = Callable[[Mapping[str, Tensor]], Tensor]


def nbody_pair_features(inputs: Mapping[str, Tensor]) -> Tensor:
    """The paper's n-body edge features ``[q_i q_j, |x_i - x_j|²]`` from ``charge`` and ``pos``.

    Shapes:
        charge ``(B, n, 1)``, pos ``(B, n, d)``; returns ``(B, n, n, 2)``.
    """
    charge, pos = inputs["charge"][..., 0], inputs["pos"]
    product = charge.unsqueeze(2) * charge.unsqueeze(1)
    distance = (pos.unsqueeze(2) - pos.unsqueeze(1)).square().sum(-1)
    return torch.stack([product, distance.to(product.dtype)], dim=-1)


class PairTransformer(nn.Module):
    """Pre-norm transformer over the ``n²`` ordered node pairs, read out per node.

    Args:
        node_features: Node-level input names, concatenated per node (vectors flattened) onto
            the diagonal tokens.
        pair_features: Pair-level input names ``(B, n, n, ...)``, concatenated onto the
            off-diagonal tokens, or a function of the inputs that returns them (the n-body model
            uses :func:`nbody_pair_features`).
        num_nodes: ``n``, the (padded) node count: one learned position per token.
        node_dim: Channels of the concatenated node features.
        pair_dim: Channels of the pair features.
        out_dim: Outputs per node.
        dim: Token width (the paper: 64).
        depth: Encoder layers (8).
        heads: Attention heads (4).
        ffn_dim: Feed-forward width (``None``: ``dim``, as in the paper).
        dropout: Dropout on the embedding, attention, residual branches and head (the paper: 0).
        residual: Name of a node input added to the output (``"pos"``: predict displacements).
        autocast: Run the encoder under ``torch.autocast`` in this dtype (``torch.bfloat16`` on
            CPUs with bf16 matrix instructions); the embedding, the head and the residual stay
            in the input's dtype. ``None``: no autocast.

    Shapes:
        Node inputs ``(B, n, ...)``, pair inputs ``(B, n, n, ...)``, mask ``(B, n)``; returns
        ``(B, n, out_dim)`` (plus the residual input's shape when it is ``(B, n, out_dim)``).
    """

    def __init__(
        self,
        node_features: Sequence[str],
        pair_features: Sequence[str] | PairFeatures,
        num_nodes: int,
        node_dim: int,
        pair_dim: int,
        out_dim: int = 3,
        dim: int = 64,
        depth: int = 8,
        heads: int = 4,
        ffn_dim: int | None = None,
        dropout: float = 0.0,
        residual: str | None = None,
        autocast: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be a multiple of heads ({heads})")
        self.node_features = tuple(node_features)
        self.pair_features = pair_features if callable(pair_features) else tuple(pair_features)
        self.num_nodes, self.node_dim, self.residual = num_nodes, node_dim, residual
        self.autocast = autocast
        self.embed = nn.Linear(node_dim + pair_dim, dim)  # the paper's Linear(8, 64)
        self.position = nn.Parameter(torch.randn(num_nodes * num_nodes, dim))
        self.dropout = _dropout(dropout)
        self.layers = nn.ModuleList(
            _EncoderLayer(dim, heads, ffn_dim or dim, dropout) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Sequential(
            nn.ReLU(), _dropout(dropout), nn.Linear(dim, dim), nn.ReLU(), _dropout(dropout),
            nn.Linear(dim, out_dim),
        )  # fmt: skip
        self.register_buffer("diagonal", torch.eye(num_nodes, dtype=torch.bool), persistent=False)

    def forward(self, mask: Tensor | None = None, **inputs: Tensor) -> Tensor:
        """Per-node outputs from the pair tokens."""
        tokens = self.tokens(inputs)  # (B, T, dim)
        b, n = tokens.shape[0], self.num_nodes
        attend = None
        if mask is not None:  # a token is real when both of its nodes are
            real = (mask.unsqueeze(2) & mask.unsqueeze(1)).reshape(b, 1, 1, n * n)
            attend = real
        context = (
            torch.autocast(tokens.device.type, dtype=self.autocast)
            if self.autocast is not None
            else contextlib.nullcontext()
        )
        with context:
            h = tokens
            for layer in self.layers:
                h = layer(h, attend)
        h = h.to(tokens.dtype).reshape(b, n, n, -1).diagonal(dim1=1, dim2=2).transpose(1, 2)
        out = self.head(self.norm(h))  # (B, n, out_dim): only the diagonal tokens are read
        if self.residual is not None:
            out = out + inputs[self.residual].reshape(out.shape).to(out.dtype)
        return out

    def tokens(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """Embedded tokens plus positions, ``(B, T, dim)``.

        ``embed([node features; 0])`` on the diagonal and ``embed([0; pair features])`` off it,
        computed as two products with the two column blocks of the embedding: no zero-filled
        ``(B, T, node_dim + pair_dim)`` buffer.
        """
        first = inputs[self.node_features[0]]
        b, n = first.shape[:2]
        node = torch.cat([inputs[k].reshape(b, n, -1) for k in self.node_features], dim=-1)
        if callable(self.pair_features):
            pair = self.pair_features(inputs)
        else:
            pair = torch.cat([inputs[k].reshape(b, n, n, -1) for k in self.pair_features], -1)
        weight = self.embed.weight
        node_part = F.linear(node.to(weight.dtype), weight[:, : self.node_dim])  # (B, n, dim)
        pair_part = F.linear(pair.to(weight.dtype), weight[:, self.node_dim :])  # (B, n, n, dim)
        h = torch.where(self.diagonal.unsqueeze(-1), node_part.unsqueeze(2), pair_part)
        h = h.reshape(b, n * n, -1) + (self.embed.bias + self.position)
        return self.dropout(h)


class _EncoderLayer(nn.Module):
    """``x + attn(LN(x))``, then ``x + FFN(LN(x))``: ``nn.TransformerEncoderLayer``'s pre-norm.

    One fused QKV projection (that layer's ``self_attn.in_proj``) and
    ``scaled_dot_product_attention`` on ``(B, heads, T, c / heads)`` views.
    """

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout_p = heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_dim), nn.GELU(), _dropout(dropout), nn.Linear(ffn_dim, dim)
        )
        self.drop = _dropout(dropout)

    def forward(self, x: Tensor, attend: Tensor | None) -> Tensor:
        """One layer; ``attend`` ``(B, 1, 1, T)`` marks the tokens that may be attended to."""
        b, t, c = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(b, t, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, T, c / heads)
        p = self.dropout_p if self.training else 0.0
        a = attention(q, k, v, attend, p)
        x = x + self.drop(self.out(a.transpose(1, 2).reshape(b, t, c)))
        return x + self.drop(self.ffn(self.norm2(x)))


def attention(q: Tensor, k: Tensor, v: Tensor, attend: Tensor | None, dropout: float) -> Tensor:
    """``softmax(q kᵀ / sqrt(c) + mask) v`` over ``(B, heads, T, c)``.

    ``scaled_dot_product_attention`` off the CPU; on the CPU, for the short sequences of pair
    tokens (25 for 5 nodes), one ``baddbmm``, a softmax and one ``bmm`` over ``B · heads``
    matrices, which beat its flash kernel forward and backward (measured at B = 1000, T = 25:
    14% faster in float32, 6x in bfloat16, ``benchmarks/README.md``).
    """
    if q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attend, dropout_p=dropout)
    b, h, t, c = q.shape
    q, k, v = (x.reshape(b * h, t, c) for x in (q, k, v))
    empty = torch.empty((), dtype=q.dtype, device=q.device)
    scores = torch.baddbmm(empty, q, k.transpose(1, 2), beta=0.0, alpha=c**-0.5)  # (B·h, T, T)
    if attend is not None:
        blocked = ~attend.expand(b, h, 1, t).reshape(b * h, 1, t)
        scores = scores.masked_fill(blocked, float("-inf"))
    weights = scores.softmax(dim=-1)
    if dropout > 0:
        weights = F.dropout(weights, dropout)
    return torch.bmm(weights, v).reshape(b, h, t, c)


def _dropout(p: float) -> nn.Module:
    """``nn.Dropout(p)``, or the identity for ``p = 0`` (no kernel launched in training)."""
    return nn.Dropout(p) if p > 0 else nn.Identity()
