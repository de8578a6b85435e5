"""Graphs as patch tokens for a token encoder (a ViT), and tokens back to graph outputs.

PAPER-NOTES §3.1. The pair tensor ``(b, n, n, c)`` is an image with ``c`` channels: padded to
``grid·P`` (``P = ceil(max_nodes / grid)``), cut into ``P × P`` patches by a strided ``Conv2d``,
raster order. Node features are padded to ``grid²`` slots (or runs of ``ceil(N / grid²)``
nodes when ``N ≥ grid²``) and cut by a ``Conv1d``; the two token sequences are summed. Outputs:
a Linear on the class token (graph level), or a ``ConvTranspose2d`` of the patch tokens cropped
to ``(n, n)`` (pair level) and its diagonal (node level).

The geometry depends on ``max_nodes`` only, never on a batch's padded ``n``, so a graph's output
does not depend on its batch. Padded entries are zeroed before patchifying and in the outputs.

Shapes: ``b`` batch · ``n`` nodes (padded, ≤ N = max_nodes) · ``c`` channels · ``d`` token width
· ``g`` grid side · ``P`` pair patch.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from probsym.errors import InputError, ShapeError, UnknownNameError

Level = Literal["graph", "node", "pair"]
PadMode = Literal["zero", "reflect", "replicate", "circular"]
LEVELS: tuple[str, ...] = ("graph", "node", "pair")
PAD_MODES: dict[str, str] = {
    "zero": "constant",
    "reflect": "reflect",
    "replicate": "replicate",
    "circular": "circular",
}


class TokenEncoder(Protocol):
    """What :class:`GraphTokenModel` needs of its encoder (a :class:`~probsym.models.ViT`)."""

    width: int
    max_tokens: int

    def __call__(self, tokens: Tensor) -> Tensor:
        """``(b, t, d)`` -> ``(b, 1 + t, d)``, the class token first."""
        ...


class TokenGeometry(NamedTuple):
    """Patch sizes and padding of one ``max_nodes``/``grid`` pair (PAPER-NOTES §3.1 table)."""

    pair_patch: int
    pair_pad: int
    node_patch: int
    node_pad: int


def token_geometry(max_nodes: int, grid: int = 14) -> TokenGeometry:
    """Patch geometry: ``P = ceil(N/g)``, pad ``g·P − N``; nodes to ``g²`` slots (runs when larger).

    >>> token_geometry(188)
    TokenGeometry(pair_patch=14, pair_pad=8, node_patch=1, node_pad=8)

    Raises:
        ValueError: ``max_nodes`` or ``grid`` is not positive.
    """
    if max_nodes < 1 or grid < 1:
        raise ValueError(
            f"token geometry needs max_nodes ≥ 1 and grid ≥ 1, got {max_nodes}, {grid}"
        )
    pair_patch = math.ceil(max_nodes / grid)
    tokens = grid * grid
    node_patch = math.ceil(max_nodes / tokens) if max_nodes >= tokens else 1
    return TokenGeometry(
        pair_patch, grid * pair_patch - max_nodes, node_patch, tokens * node_patch - max_nodes
    )


def _split(pad: int, centering: bool) -> tuple[int, int]:
    """(before, after) padding: all after, or symmetric (the odd one after) with centering."""
    before = pad // 2 if centering else 0
    return before, pad - before


class GraphTokenModel(nn.Module):
    """A base model ``f``: dense graph -> tokens -> encoder -> graph, node or pair outputs.

    Args:
        encoder: Token encoder with ``width``, ``max_tokens ≥ grid²`` and
            ``forward(tokens) -> (b, 1 + t, d)``.
        node_channels: Channels of the node input ``node_key`` (0: no node input).
        pair_channels: Channels of the pair input ``pair_key`` (0: no pair input).
        max_nodes: Largest graph ``N``; fixes the patch geometry (:func:`token_geometry`).
        out_dim: Output channels.
        level: ``"graph"`` (Linear on the class token), ``"node"`` (diagonal of the pair map) or
            ``"pair"`` (the ``ConvTranspose2d`` map).
        grid: Token grid side ``g`` (``g²`` patch tokens).
        pad_mode: How the ``N -> g·P`` (and node ``N -> g²·patch``) padding is filled.
        centering: Pad symmetrically instead of at the end; outputs crop the same offset.
        node_key, pair_key: Input names.

    Shapes:
        Inputs ``x (b, n, node_channels)``, ``adj (b, n, n, pair_channels)``, ``mask (b, n)``
        with ``n ≤ max_nodes``. Returns ``(b, out_dim)``, ``(b, n, out_dim)`` or
        ``(b, n, n, out_dim)``; padded node entries of node and pair outputs are 0.

    Raises:
        UnknownNameError: ``level`` or ``pad_mode`` is unknown.
        ShapeError: The encoder takes fewer than ``grid²`` tokens, or ``reflect``/``circular``
            padding is larger than the tensor it pads.
    """

    def __init__(
        self,
        encoder: nn.Module,
        node_channels: int,
        pair_channels: int,
        max_nodes: int,
        out_dim: int,
        level: Level = "graph",
        grid: int = 14,
        pad_mode: PadMode = "zero",
        centering: bool = False,
        node_key: str = "x",
        pair_key: str = "adj",
    ) -> None:
        super().__init__()
        if level not in LEVELS:
            raise UnknownNameError("output level", level, LEVELS)
        if pad_mode not in PAD_MODES:
            raise UnknownNameError("pad mode", pad_mode, PAD_MODES)
        if node_channels < 0 or pair_channels < 0 or node_channels + pair_channels == 0:
            raise ValueError(
                f"GraphTokenModel needs node or pair channels, got {node_channels} and "
                f"{pair_channels}"
            )
        if encoder.max_tokens < grid * grid:
            raise ShapeError(
                f"grid {grid} gives {grid * grid} tokens but the encoder takes at most "
                f"{encoder.max_tokens}; use grid ≤ {math.isqrt(encoder.max_tokens)} or resize "
                "the encoder's position embedding"
            )
        self.geometry = token_geometry(max_nodes, grid)
        geo = self.geometry
        if pad_mode in ("reflect", "circular"):
            limit = max_nodes - 1 if pad_mode == "reflect" else max_nodes
            used = [geo.pair_pad] * bool(pair_channels) + [geo.node_pad] * bool(node_channels)
            if any(max(_split(p, centering)) > limit for p in used):
                raise ShapeError(
                    f"{pad_mode} padding of {max(used)} entries does not fit max_nodes "
                    f"{max_nodes} (at most {limit} per side); use pad_mode='zero' or 'replicate'"
                )
        self.encoder = encoder
        self.width = encoder.width
        self.node_channels, self.pair_channels = node_channels, pair_channels
        self.max_nodes, self.out_dim, self.level, self.grid = max_nodes, out_dim, level, grid
        self.pad_mode, self.centering = pad_mode, centering
        self.node_key, self.pair_key = node_key, pair_key
        d = encoder.width
        self.node_embed = (
            nn.Conv1d(node_channels, d, geo.node_patch, stride=geo.node_patch)
            if node_channels
            else None
        )
        self.pair_embed = (
            nn.Conv2d(pair_channels, d, geo.pair_patch, stride=geo.pair_patch)
            if pair_channels
            else None
        )
        if level == "graph":
            self.readout: nn.Module = nn.Linear(d, out_dim)
        else:
            self.readout = nn.ConvTranspose2d(d, out_dim, geo.pair_patch, stride=geo.pair_patch)

    def pretrained_parameters(self) -> list[nn.Parameter]:
        """The encoder's checkpoint parameters (their own learning rate); empty if none."""
        method = getattr(self.encoder, "pretrained_parameters", None)
        return list(method()) if method is not None else []

    def forward(self, *args: Tensor, mask: Tensor | None = None, **inputs: Tensor) -> Tensor:
        """Tokenize, encode and read out; positional inputs are ``(node, pair)`` in that order.

        Raises:
            InputError: A declared input is missing.
            ShapeError: A graph has more than ``max_nodes`` nodes, or channels disagree.
        """
        names = [
            k
            for k, c in ((self.node_key, self.node_channels), (self.pair_key, self.pair_channels))
            if c
        ]
        inputs = {**dict(zip(names, args, strict=False)), **inputs}
        missing = [k for k in names if k not in inputs]
        if missing:
            raise InputError(f"GraphTokenModel: missing input {', '.join(missing)}")
        first = inputs[names[0]]
        b, n = first.shape[:2]
        if n > self.max_nodes:
            raise ShapeError(
                f"GraphTokenModel: the graph has {n} nodes but max_nodes is {self.max_nodes}; "
                "build the model with a larger max_nodes"
            )
        if mask is None:
            mask = torch.ones(b, n, dtype=torch.bool, device=first.device)
        tokens = self._node_tokens(inputs, mask) + self._pair_tokens(inputs, mask)  # (b, g², d)
        encoded = self.encoder(tokens)  # (b, 1 + g², d)
        if self.level == "graph":
            return self.readout(encoded[:, 0])
        g = self.grid
        image = encoded[:, 1 : 1 + g * g].transpose(1, 2).reshape(b, self.width, g, g)
        start = _split(self.geometry.pair_pad, self.centering)[0]
        pair = self.readout(image)[:, :, start : start + n, start : start + n]  # (b, out, n, n)
        pair = pair.permute(0, 2, 3, 1)
        real = mask.unsqueeze(2) & mask.unsqueeze(1)
        if self.level == "pair":
            return pair * real.unsqueeze(-1).to(pair.dtype)
        node = pair.diagonal(dim1=1, dim2=2).transpose(1, 2)  # (b, n, out)
        return node * mask.unsqueeze(-1).to(node.dtype)

    def _pad(self, x: Tensor, pad: int, dims: int) -> Tensor:
        """Zero-pad the node axes to ``max_nodes``, then ``pad`` more with ``pad_mode``."""
        n = x.shape[-1]
        x = F.pad(x, (0, self.max_nodes - n) * dims)
        before, after = _split(pad, self.centering)
        return F.pad(x, (before, after) * dims, mode=PAD_MODES[self.pad_mode])

    def _node_tokens(self, inputs: dict[str, Tensor], mask: Tensor) -> Tensor | float:
        if self.node_embed is None:
            return 0.0
        x = inputs[self.node_key]
        _check_channels(x, self.node_key, 3, self.node_channels, mask)
        x = (x * mask.unsqueeze(-1).to(x.dtype)).transpose(1, 2)  # (b, c, n)
        x = self._pad(x, self.geometry.node_pad, 1)  # (b, c, g²·patch)
        return self.node_embed(x).transpose(1, 2)  # (b, g², d)

    def _pair_tokens(self, inputs: dict[str, Tensor], mask: Tensor) -> Tensor | float:
        if self.pair_embed is None:
            return 0.0
        adj = inputs[self.pair_key]
        _check_channels(adj, self.pair_key, 4, self.pair_channels, mask)
        real = (mask.unsqueeze(2) & mask.unsqueeze(1)).unsqueeze(-1).to(adj.dtype)
        adj = (adj * real).permute(0, 3, 1, 2)  # (b, c, n, n)
        adj = self._pad(adj, self.geometry.pair_pad, 2)  # (b, c, g·P, g·P)
        return self.pair_embed(adj).flatten(2).transpose(1, 2)  # (b, g², d), raster order


def _check_channels(x: Tensor, name: str, dims: int, channels: int, mask: Tensor) -> None:
    b, n = mask.shape
    expected = (b, n, n, channels) if dims == 4 else (b, n, channels)
    if tuple(x.shape) != expected:
        raise ShapeError(
            f"GraphTokenModel input {name!r}: expected {expected}, got {tuple(x.shape)}"
        )


__all__ = ["GraphTokenModel", "TokenEncoder", "TokenGeometry", "token_geometry"]
