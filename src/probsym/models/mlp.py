"""Multi-layer perceptrons, including one over the flattened padded graph (the paper's MLP base)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

Activation = Literal["relu", "tanh", "gelu", "silu"]
_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU}


class MLP(nn.Sequential):
    """``Linear -> act -> ... -> Linear`` (optionally an activation after the last layer too).

    Args:
        dims: Layer widths, input first: ``[in, hidden..., out]``.
        activation: Nonlinearity between layers.
        final_activation: Also apply it after the last layer (the paper's separation MLPs do).
    """

    def __init__(
        self, dims: Sequence[int], activation: Activation = "relu", final_activation: bool = False
    ) -> None:
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if i < len(dims) - 2 or final_activation:
                layers.append(_ACTIVATIONS[activation]())
        super().__init__(*layers)


class FlatMLP(nn.Module):
    """MLP over the concatenation of flattened inputs: ``[vec(x), vec(adj), ...] -> out``.

    Its input layout follows the node order, so it is not permutation-invariant: exactly the kind
    of model probsym symmetrizes. Inputs are concatenated in ``keys`` order.

    Args:
        keys: Input names to flatten, in order.
        in_dim: Total flattened width.
        hidden: Hidden widths.
        out_shape: Shape of each output row (e.g. ``(1,)`` or ``(n, 3)``).
        activation: Nonlinearity.
        final_activation: Apply the nonlinearity after the last layer.

    Shapes:
        Each input ``(B, ...)``; returns ``(B, *out_shape)``.
    """

    def __init__(
        self,
        keys: Sequence[str],
        in_dim: int,
        hidden: Sequence[int],
        out_shape: Sequence[int],
        activation: Activation = "relu",
        final_activation: bool = False,
    ) -> None:
        super().__init__()
        self.keys, self.out_shape = tuple(keys), tuple(out_shape)
        out_dim = int(torch.tensor(self.out_shape).prod())
        self.net = MLP([in_dim, *hidden, out_dim], activation, final_activation)

    def forward(self, mask: Tensor | None = None, **inputs: Tensor) -> Tensor:
        """Flatten, concatenate, apply the MLP."""
        flat = torch.cat([inputs[k].flatten(1) for k in self.keys], dim=1)
        return self.net(flat).reshape(flat.shape[0], *self.out_shape)
