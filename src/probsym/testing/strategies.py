"""Hypothesis strategies for testing equivariant models (public: test your own models with them).

Hypothesis draws only small things it can shrink (sizes, dimensions, a group, a **seed**); tensors
are built from ``torch.Generator().manual_seed(seed)`` by the ``build`` methods of the returned
specs, so a failure replays from its printed blob and shrinks to the smallest sizes.

    >>> from hypothesis import given
    >>> @given(spec=padded_graphs(), group=groups())
    ... def test_mine(spec, group):
    ...     batch = spec.build()                     # {"x", "adj", "mask"}

Hypothesis is a development dependency: import this module from tests only (``probsym.testing``
does not import it).

Shapes: ``b`` batch · ``n`` nodes (padded) · ``c`` channels · ``d`` space.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from hypothesis import strategies as st
from torch import Tensor

from probsym.groups import SE, SO, E, Group, GroupElement, O, Sn

CloudKind = Literal["random", "equal", "collinear", "coplanar"]
Padding = Literal["zero", "noise"]

#: Kinds of degenerate point clouds mixed in by ``point_clouds(degenerate=True)``.
DEGENERATE_KINDS: tuple[CloudKind, ...] = ("equal", "collinear", "coplanar")


def all_groups(dims: tuple[int, ...] = (2, 3)) -> list[Group]:
    """Every supported group: S_n, O(d), SO(d), E(d), SE(d) and S_n × each, ``d`` in ``dims``."""
    spatial = [cls(d) for cls in (O, SO, E, SE) for d in dims]
    return [Sn(), *spatial, *(Sn() * g for g in spatial)]


def groups(dims: tuple[int, ...] = (2, 3)) -> st.SearchStrategy[Group]:
    """One of :func:`all_groups` (simpler groups first, so failures shrink towards S_n, O(2))."""
    return st.sampled_from(all_groups(dims))


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _mask(sizes: tuple[int, ...], num_nodes: int, scatter: bool, gen: torch.Generator) -> Tensor:
    """``(b, n)`` bool: ``sizes[i]`` real slots, first ones, or at random slots when ``scatter``."""
    mask = torch.zeros(len(sizes), num_nodes, dtype=torch.bool)
    for i, size in enumerate(sizes):
        slots = torch.randperm(num_nodes, generator=gen)[:size] if scatter else torch.arange(size)
        mask[i, slots] = True
    return mask


def _pad(x: Tensor, real: Tensor, padding: Padding, gen: torch.Generator) -> Tensor:
    """Zero (or fill with noise) the entries where ``real`` (broadcastable to ``x``) is False."""
    fill = torch.zeros_like(x) if padding == "zero" else torch.randn(x.shape, generator=gen) + 5.0
    return torch.where(real, x, fill.to(x.dtype))


@dataclass(frozen=True)
class PaddedGraphs:
    """A recipe for a padded batch of random graphs.

    Args:
        sizes: Real nodes per graph (each in ``1..num_nodes``); ``len(sizes)`` is the batch size.
        num_nodes: Padded node count ``n``.
        seed: Seed of the ``torch.Generator`` that builds the tensors.
        channels: Node feature channels.
        scatter: Place real nodes at random slots instead of first (a non-prefix mask).
    """

    sizes: tuple[int, ...]
    num_nodes: int
    seed: int
    channels: int = 2
    scatter: bool = False

    @property
    def batch_size(self) -> int:
        """Number of graphs."""
        return len(self.sizes)

    def mask(self) -> Tensor:
        """The ``(b, n)`` node mask alone (the one :meth:`build` returns)."""
        return _mask(self.sizes, self.num_nodes, self.scatter, _generator(self.seed))

    def build(
        self, dtype: torch.dtype = torch.float32, padding: Padding = "zero"
    ) -> dict[str, Tensor]:
        """``{"x": (b, n, c), "adj": (b, n, n, 1) symmetric 0/1, "mask": (b, n)}``.

        ``padding="noise"`` fills padded entries with large random values (to catch code that reads
        or moves padding).
        """
        gen = _generator(self.seed)
        b, n = self.batch_size, self.num_nodes
        mask = _mask(self.sizes, n, self.scatter, gen)
        upper = torch.triu(torch.rand(b, n, n, generator=gen) < 0.5, diagonal=1)
        adj = (upper | upper.transpose(1, 2)).to(dtype).unsqueeze(-1)
        x = torch.randn(b, n, self.channels, generator=gen, dtype=dtype)
        pair = (mask.unsqueeze(2) & mask.unsqueeze(1)).unsqueeze(-1)
        return {
            "x": _pad(x, mask.unsqueeze(-1), padding, gen),
            "adj": _pad(adj, pair, padding, gen),
            "mask": mask,
        }


@st.composite
def sizes(draw, max_batch: int = 4, max_nodes: int = 6) -> tuple[tuple[int, ...], int]:
    """Per-graph sizes in ``1..n`` and the padded count ``n`` (``max(sizes) <= n <= max_nodes``)."""
    num_nodes = draw(st.integers(1, max_nodes))
    graph_sizes = draw(st.lists(st.integers(1, num_nodes), min_size=1, max_size=max_batch))
    return tuple(graph_sizes), num_nodes


@st.composite
def padded_graphs(
    draw, max_batch: int = 4, max_nodes: int = 6, channels: int = 2, scatter: bool | None = None
) -> PaddedGraphs:
    """A :class:`PaddedGraphs` recipe; ``scatter=None`` lets hypothesis choose prefix or not.

    Pin single-node and unpadded batches in tests with ``@example(spec=PaddedGraphs((1,), 1, 0))``
    and ``@example(spec=PaddedGraphs((4, 4), 4, 0))``.
    """
    graph_sizes, num_nodes = draw(sizes(max_batch, max_nodes))
    seed = draw(st.integers(0, 2**32 - 1))
    if scatter is None:
        scatter = draw(st.booleans())
    return PaddedGraphs(graph_sizes, num_nodes, seed, channels, scatter)


@dataclass(frozen=True)
class PointClouds:
    """A recipe for a padded batch of point clouds with velocities and charges.

    Args:
        sizes: Real points per cloud; ``len(sizes)`` is the batch size.
        num_nodes: Padded point count ``n``.
        dim: Space dimension ``d``.
        seed: Seed of the ``torch.Generator`` that builds the tensors.
        kind: ``"random"`` (Gaussian), ``"equal"`` (all points equal, velocities zero),
            ``"collinear"`` or ``"coplanar"`` (points and velocities on one line or plane through
            a random point).
    """

    sizes: tuple[int, ...]
    num_nodes: int
    dim: int
    seed: int
    kind: CloudKind = "random"

    @property
    def batch_size(self) -> int:
        """Number of clouds."""
        return len(self.sizes)

    @property
    def degenerate(self) -> bool:
        """Whether the cloud has no unique frame (``kind`` other than random)."""
        return self.kind != "random"

    def build(
        self, dtype: torch.dtype = torch.float32, padding: Padding = "zero"
    ) -> dict[str, Tensor]:
        """``{"pos": (b, n, d), "vel": (b, n, d), "charge": (b, n, 1), "mask": (b, n)}``."""
        gen = _generator(self.seed)
        b, n, d = self.batch_size, self.num_nodes, self.dim
        mask = _mask(self.sizes, n, False, gen)
        origin = torch.randn(b, 1, d, generator=gen, dtype=dtype)
        if self.kind == "random":
            pos = origin + torch.randn(b, n, d, generator=gen, dtype=dtype)
            vel = torch.randn(b, n, d, generator=gen, dtype=dtype)
        elif self.kind == "equal":
            pos = origin.expand(b, n, d).clone()
            vel = torch.zeros(b, n, d, dtype=dtype)
        else:
            rank = 1 if self.kind == "collinear" else min(2, d)
            basis, _ = torch.linalg.qr(torch.randn(b, d, d, generator=gen, dtype=dtype))
            basis = basis[:, :, :rank]  # (b, d, rank) orthonormal directions
            coefficients = torch.randn(b, n, rank, generator=gen, dtype=dtype)
            pos = origin + coefficients @ basis.transpose(1, 2)
            vel = torch.randn(b, n, rank, generator=gen, dtype=dtype) @ basis.transpose(1, 2)
        charge = torch.randn(b, n, 1, generator=gen, dtype=dtype)
        real = mask.unsqueeze(-1)
        return {
            "pos": _pad(pos, real, padding, gen),
            "vel": _pad(vel, real, padding, gen),
            "charge": _pad(charge, real, padding, gen),
            "mask": mask,
        }


@st.composite
def point_clouds(
    draw,
    degenerate: bool = True,
    dims: tuple[int, ...] = (2, 3),
    max_batch: int = 4,
    max_nodes: int = 6,
) -> PointClouds:
    """A :class:`PointClouds` recipe; ``degenerate=True`` mixes in equal, collinear, coplanar."""
    dim = draw(st.sampled_from(dims))
    graph_sizes, num_nodes = draw(sizes(max_batch, max_nodes))
    seed = draw(st.integers(0, 2**32 - 1))
    kinds: tuple[CloudKind, ...] = ("random",)
    if degenerate:
        kinds += DEGENERATE_KINDS if dim > 2 else ("equal", "collinear")
    kind = draw(st.sampled_from(kinds))
    return PointClouds(graph_sizes, num_nodes, dim, seed, kind)


def sample_element(
    group: Group,
    batch_size: int,
    seed: int,
    n: int | None = None,
    mask: Tensor | None = None,
    dtype: torch.dtype = torch.float32,
) -> GroupElement:
    """``group.sample`` seeded by ``seed`` (what :func:`elements` draws)."""
    if n is None and mask is not None:
        n = mask.shape[1]
    if group.acts_on_nodes and n is None:
        raise ValueError(f"{group!r} acts on nodes: pass n or mask")
    return group.sample(batch_size, n=n, mask=mask, generator=_generator(seed), dtype=dtype)


def elements(
    group: Group,
    batch_size: int,
    n: int | None = None,
    mask: Tensor | None = None,
    dtype: torch.dtype = torch.float32,
) -> st.SearchStrategy[GroupElement]:
    """Batched random elements of ``group`` (``batch_size`` of them), built from a drawn seed.

    ``n`` (padded node count) or ``mask`` is needed when the group permutes nodes; with a mask, the
    elements fix padded slots.
    """
    return st.integers(0, 2**32 - 1).map(
        lambda seed: sample_element(group, batch_size, seed, n, mask, dtype)
    )


__all__ = [
    "DEGENERATE_KINDS",
    "PaddedGraphs",
    "PointClouds",
    "all_groups",
    "elements",
    "groups",
    "padded_graphs",
    "point_clouds",
    "sample_element",
    "sizes",
]
