"""Vector Neurons (Deng et al. 2021): O(d)-equivariant layers on lists of vectors.

A feature is ``c`` channels of d-dimensional vectors. Linear maps mix channels only (``V ↦ W V``),
so they commute with any rotation acting on ``d``; the nonlinearity keeps the component of each
vector along a learned direction when it points the right way.

Layout: the layers hold features channels-last, ``(..., d, c)``. Linear maps then act on the last
axis with no transposes, and reductions over space (dot products, norms) run over a short middle
axis with the channels contiguous, which vectorizes; ``(..., c, d)`` made both several times
slower on CPU (``benchmarks/relaxation.py`` times the encoder inside the sampler). The
encoder's interface stays ``(..., c, d)``, the natural layout of per-node vectors.

Shapes: ``B`` batch · ``n`` nodes (padded) · ``c`` vector channels · ``d`` space.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class VectorNeuronLinear(nn.Module):
    """``V ↦ W V`` on the channel axis, ``(..., d, c_in) -> (..., d, c_out)``, without bias.

    ``in_channels=None`` infers the input width on the first call (a lazy module).
    """

    def __init__(
        self, in_channels: int | None, out_channels: int, dtype: torch.dtype | None = None
    ) -> None:
        super().__init__()
        if in_channels is None:
            self.linear = nn.LazyLinear(out_channels, bias=False, dtype=dtype)
        else:
            self.linear = nn.Linear(in_channels, out_channels, bias=False, dtype=dtype)

    def forward(self, v: Tensor) -> Tensor:
        """Mix channels."""
        return self.linear(v)


class VectorNeuronReLU(nn.Module):
    """Leaky VN nonlinearity: remove the component along a learned direction ``k`` when ``q·k < 0``.

    ``out = q - (1 - slope) · min(q·k, 0) / |k|² · k``, applied per channel; ``(..., d, c)``.
    """

    def __init__(
        self, channels: int, negative_slope: float = 0.2, dtype: torch.dtype | None = None
    ) -> None:
        super().__init__()
        self.direction = VectorNeuronLinear(channels, channels, dtype)
        self.negative_slope = negative_slope

    def forward(self, q: Tensor) -> Tensor:
        """Equivariant nonlinearity."""
        k = self.direction(q)
        dot = (q * k).sum(-2, keepdim=True)
        k_sq = (k * k).sum(-2, keepdim=True).clamp_min(1e-6)
        return q - (1 - self.negative_slope) * dot.clamp_max(0) / k_sq * k


class VectorNeuronEncoder(nn.Module):
    """Per-node VN layers with global context, returning equivariant frame vectors and invariants.

    Each layer maps ``[V_i, mean_j V_j]`` through a VN linear map and nonlinearity; an invariant
    per-node gate (from scalar features) lets charges and other scalars steer the vectors.

    Args:
        in_channels: Input vector channels per node (``None``: inferred on the first call).
        scalar_channels: Invariant scalar features per node (0 for none, ``None``: inferred).
        hidden_channels: Vector channels per layer.
        num_layers: Number of layers.
        out_vectors: Number of equivariant output vectors (d for a frame).
        dtype: Parameter dtype (float64 makes frames robust to float32 rounding, see ``Learned``).

    Shapes:
        vectors: ``(B, n, in_channels, d)``; scalars: ``(B, n, scalar_channels)``; mask ``(B, n)``.
        Returns ``frame (B, out_vectors, d)`` and ``invariants (B, n, hidden * out_vectors)``.
    """

    def __init__(
        self,
        in_channels: int | None,
        scalar_channels: int | None,
        hidden_channels: int = 16,
        num_layers: int = 2,
        out_vectors: int = 3,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        h = hidden_channels
        self.inputs = VectorNeuronLinear(in_channels, h, dtype)
        self.gate = None if scalar_channels == 0 else _linear(scalar_channels, h, dtype)
        self.layers = nn.ModuleList(
            nn.ModuleList([VectorNeuronLinear(2 * h, h, dtype), VectorNeuronReLU(h, dtype=dtype)])
            for _ in range(num_layers)
        )
        # no bias: a per-channel offset is shared by all nodes and cancels in the softmax over nodes
        self.attention = nn.Linear(h, h, bias=False, dtype=dtype)
        self.frame = VectorNeuronLinear(h, out_vectors, dtype)

    def forward(
        self, vectors: Tensor, scalars: Tensor | None, mask: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """Equivariant frame vectors and per-node invariant features."""
        real = None if mask is None else mask.to(vectors.dtype)[:, :, None, None]
        v = self.inputs(vectors.transpose(-1, -2))  # (B, n, d, h)
        if self.gate is not None and scalars is not None:
            v = v * (1 + torch.tanh(self.gate(scalars))).unsqueeze(-2)
        for linear, relu in self.layers:
            context = _node_mean(v, real).expand_as(v)
            v = relu(linear(torch.cat([v, context], dim=-1)))
            if real is not None:
                v = v * real
        frame = self.frame(self._attention_pool(v, mask))  # (B, d, out_vectors)
        # matmul with broadcasting: an einsum here lowers to a bmm over B tiny matrices whose
        # backward pass is about 4x slower on CPU (measured)
        invariants = torch.matmul(v.transpose(-1, -2), frame.unsqueeze(1)).flatten(2)
        return frame.transpose(1, 2), invariants

    def _attention_pool(self, v: Tensor, mask: Tensor | None) -> Tensor:
        """``Σ_i α_ic V_ic`` with per-channel softmax weights from invariant vector norms.

        A plain mean of centred positions is zero, so mean pooling leaves the frame vectors nearly
        dependent (condition numbers in the thousands at initialisation, which float32 rounding
        turns into 1e-4 equivariance errors after Gram–Schmidt). Norm-dependent weights pick up
        higher moments and give well-spread directions.
        """
        # sqrt(|v|² + tiny) rather than norm(): a norm over the short space axis is 10x slower
        # on CPU (measured), and the tiny term keeps the gradient finite at padded zero vectors.
        norms = torch.sqrt((v * v).sum(dim=-2) + 1e-12)  # (B, n, h), invariant
        logits = self.attention(norms)
        if mask is not None:
            logits = logits.masked_fill(~mask.unsqueeze(-1), float("-inf"))
        weights = torch.softmax(logits, dim=1).unsqueeze(-2)  # (B, n, 1, h)
        return (weights * v).sum(dim=1)  # (B, d, h)


def _node_mean(v: Tensor, real: Tensor | None) -> Tensor:
    if real is None:
        return v.mean(dim=1, keepdim=True)
    return (v * real).sum(dim=1, keepdim=True) / real.sum(dim=1, keepdim=True).clamp_min(1)


def _linear(in_features: int | None, out_features: int, dtype: torch.dtype | None) -> nn.Module:
    if in_features is None:
        return nn.LazyLinear(out_features, dtype=dtype)
    return nn.Linear(in_features, out_features, dtype=dtype)
