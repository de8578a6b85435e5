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

import itertools
from dataclasses import dataclass
from typing import Literal

import torch
from hypothesis import strategies as st
from torch import Tensor

from probsym import fields
from probsym.fields import Field
from probsym.groups import (
    SE,
    SO,
    E,
    Group,
    GroupElement,
    O,
    Permutation,
    Rigid,
    Sn,
    join_element,
)

CloudKind = Literal["random", "equal", "collinear", "coplanar"]
Padding = Literal["zero", "noise", "huge"]

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
    """Fill the entries where ``real`` (broadcastable to ``x``) is False.

    ``"zero"``: zeros; ``"noise"``: ``N(5, 1)``; ``"huge"``: ``±1e30`` (finite in float32, but
    its square is not: catches code that multiplies padding by a zero mask after squaring it).
    """
    if padding == "zero":
        fill = torch.zeros_like(x)
    elif padding == "noise":
        fill = torch.randn(x.shape, generator=gen) + 5.0
    elif padding == "huge":
        sign = torch.randint(0, 2, x.shape, generator=gen) * 2 - 1
        fill = 1e30 * sign.to(torch.float64)
    else:
        raise ValueError(f"padding must be 'zero', 'noise' or 'huge', got {padding!r}")
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


# --- the input zoo ---------------------------------------------------------------------------

ShapeKind = Literal["random", "coplanar", "collinear", "coincident", "symmetric"]

#: Every shape kind of :class:`ZooInput`, simplest first (failures shrink towards ``"random"``).
SHAPE_KINDS: tuple[ShapeKind, ...] = ("random", "coplanar", "collinear", "coincident", "symmetric")
#: Kinds that need a geometric input (``dim``); ``coplanar`` needs ``dim >= 3``.
GEOMETRIC_KINDS: tuple[ShapeKind, ...] = ("coplanar", "collinear")
#: Coordinate scales drawn by :func:`zoo_inputs` (1 first, so failures shrink to unit clouds).
SCALES: tuple[float, ...] = (1.0, 1e-6, 1e-3, 1e3, 1e6)
#: Offsets of positions drawn by :func:`zoo_inputs`, in units of the scale.
OFFSETS: tuple[float, ...] = (0.0, 1e3)
#: Node feature channels of the zoo's scalar input.
ZOO_CHANNELS = 2


@dataclass(frozen=True)
class ZooInput:
    """A recipe for a padded batch of the inputs real users give a symmetrized model.

    Inputs (see :meth:`fields`): ``"pos"`` (``node_point``, whenever ``dim`` is set), ``"vel"``
    (``node_vector``), ``"h"`` (``node``, 2 channels) and ``"adj"`` (``pair``, symmetric 0/1, zero
    diagonal), plus the ``(b, n)`` ``"mask"``. Positions only (``"pos"`` alone) is the most common
    point cloud.

    Shape kinds (per item, on its real nodes):

    * ``"random"``: Gaussian positions, velocities and features, a G(n, 1/2) graph.
    * ``"coplanar"`` / ``"collinear"``: positions and velocities in a random plane / on a random
      line through a random point (rank 2 / 1 after centring); random features and graph.
    * ``"coincident"``: every node equal: one position, one velocity, one feature vector; the
      complete graph.
    * ``"symmetric"``: a cloud with a non-trivial symmetry (:meth:`symmetry`), depending on the
      size ``k``: a regular simplex (``k = d + 1``), a cube (``k = 2^d``), a regular polygon (in a
      random plane; ``d = 2``, or ``k`` in {3, 5}), a centrally symmetric cloud ``x, -x`` (``k``
      even) or that plus its centre (``k`` odd), randomly rotated and shuffled. Velocities are a
      common multiple of the centred positions, features are constant, and the graph is invariant
      (a cycle for polygons, the cube's edges, the antipodal matching, or complete). Without
      ``dim``, a cycle graph with constant features (vertex-transitive).

    The real nodes' values depend on ``kind``, ``sizes``, ``dim``, ``scale``, ``offset``, the
    ``has_*`` flags and ``seed`` only, not on ``num_nodes`` or ``scatter``: the same recipe with
    another layout holds the same graphs, in the same order, at other slots.

    Args:
        kind: One of :data:`SHAPE_KINDS`.
        sizes: Real nodes per item (each in ``1..num_nodes``); ``len(sizes)`` is the batch size.
        num_nodes: Padded node count ``n``.
        dim: Space dimension ``d`` of positions (and velocities), or ``None`` for no geometry
            (then ``has_scalars`` or ``has_adjacency`` must be set).
        scale: Coordinate scale: positions are ``scale * (shape + origin + offset)``, velocities
            ``scale * velocity`` (``origin ~ N(0, I)`` per item).
        offset: Added to every coordinate of the positions, in units of ``scale``. The input then
            carries only ``eps * |offset|`` relative precision: float32 clouds at ``offset=1e3``
            are determined to about 1e-4 of their extent.
        has_vectors: Include ``"vel"``.
        has_scalars: Include ``"h"``.
        has_adjacency: Include ``"adj"``.
        scatter: Place real nodes at random slots, never a prefix when ``size < num_nodes``.
        seed: Seed of the ``torch.Generator`` streams that build the tensors.

    Example:
        >>> spec = ZooInput("coplanar", (5, 3), 6, 3, has_vectors=True, seed=1)
        >>> sorted(spec.build(torch.float64))
        ['mask', 'pos', 'vel']
    """

    kind: ShapeKind
    sizes: tuple[int, ...]
    num_nodes: int
    dim: int | None
    scale: float = 1.0
    offset: float = 0.0
    has_vectors: bool = False
    has_scalars: bool = False
    has_adjacency: bool = False
    scatter: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in SHAPE_KINDS:
            raise ValueError(f"kind must be one of {SHAPE_KINDS}, got {self.kind!r}")
        if not self.sizes or not all(1 <= k <= self.num_nodes for k in self.sizes):
            raise ValueError(f"sizes must be in 1..num_nodes={self.num_nodes}, got {self.sizes}")
        if self.dim is None:
            if self.has_vectors:
                raise ValueError("has_vectors needs a space dimension dim")
            if not (self.has_scalars or self.has_adjacency):
                raise ValueError("an input without dim needs has_scalars or has_adjacency")
            if self.kind in GEOMETRIC_KINDS:
                raise ValueError(f"kind {self.kind!r} needs a space dimension dim")
        elif self.dim < 1 or (self.kind == "coplanar" and self.dim < 3):
            raise ValueError(f"kind {self.kind!r} does not fit dim={self.dim}")
        if not self.scale > 0:
            raise ValueError(f"scale must be positive, got {self.scale}")

    @property
    def batch_size(self) -> int:
        """Number of items."""
        return len(self.sizes)

    @property
    def degenerate(self) -> bool:
        """Whether the kind is one that can lack a unique frame (every kind but ``"random"``).

        Whether a given item really has no unique frame depends on the group: a generic coplanar
        cloud has a unique frame in SO(3) but not in O(3), a regular polygon has none in either.
        """
        return self.kind != "random"

    def fields(self) -> dict[str, Field]:
        """The input fields the batch holds (the mask excluded), positions first."""
        out: dict[str, Field] = {}
        if self.dim is not None:
            out["pos"] = fields.node_point
        if self.has_vectors:
            out["vel"] = fields.node_vector
        if self.has_scalars:
            out["h"] = fields.node
        if self.has_adjacency:
            out["adj"] = fields.pair
        return out

    def mask(self) -> Tensor:
        """The ``(b, n)`` node mask alone (the one :meth:`build` returns)."""
        gen = self._stream(0)  # its own stream: the content does not depend on the layout
        mask = torch.zeros(self.batch_size, self.num_nodes, dtype=torch.bool)
        for i, k in enumerate(self.sizes):
            if not self.scatter or k == self.num_nodes:
                mask[i, :k] = True
                continue
            slots = torch.randperm(self.num_nodes, generator=gen)[:k]
            if bool((slots < k).all()):  # drew the prefix: move one real node to the last slot
                slots[slots.argmax()] = self.num_nodes - 1
            mask[i, slots] = True
        return mask

    def build(
        self, dtype: torch.dtype = torch.float32, padding: Padding = "zero"
    ) -> dict[str, Tensor]:
        """The batch, with the inputs :meth:`fields` lists and the mask.

        Shapes: ``pos``, ``vel`` ``(b, n, d)``; ``h`` ``(b, n, 2)``; ``adj`` ``(b, n, n, 1)``;
        ``mask`` ``(b, n)`` bool. Values are computed in float64 and cast to ``dtype``, so two
        dtypes hold the same clouds. ``padding`` fills padded entries: ``"zero"``, ``"noise"``
        (``N(5, 1)``) or ``"huge"`` (``±1e30``, garbage that code must never read).
        """
        b, n = self.batch_size, self.num_nodes
        mask = self.mask()
        items = [self._item(i) for i in range(b)]
        batch: dict[str, Tensor] = {}
        pad_gen = self._stream(1)
        real = mask.unsqueeze(-1)
        pair = (mask.unsqueeze(2) & mask.unsqueeze(1)).unsqueeze(-1)
        for name, fld in self.fields().items():
            width = ZOO_CHANNELS if name == "h" else (1 if name == "adj" else self.dim)
            x = torch.zeros(b, *([n] * fld.node_axes), width, dtype=torch.float64)
            for i, item in enumerate(items):
                slots = mask[i].nonzero().flatten()
                if fld.node_axes == 2:
                    x[i, slots.unsqueeze(1), slots.unsqueeze(0), 0] = item[name]
                else:
                    x[i, slots] = item[name]
            batch[name] = _pad(x.to(dtype), pair if fld.node_axes == 2 else real, padding, pad_gen)
        batch["mask"] = mask
        return batch

    def symmetry(self, dtype: torch.dtype = torch.float64) -> GroupElement:
        """A non-trivial symmetry of every item of a ``"symmetric"`` recipe.

        An element ``g`` of ``S_n × E(d)`` (``S_n`` without ``dim``) with ``g·x = x`` for every
        input (``transform_inputs(g, batch, signature)`` gives the batch back, to float error);
        it fixes padded slots. Items with one node get the identity.

        Raises:
            ValueError: ``kind`` is not ``"symmetric"``.
        """
        if self.kind != "symmetric":
            raise ValueError(f"only 'symmetric' recipes have a symmetry, not {self.kind!r}")
        b, n = self.batch_size, self.num_nodes
        mask = self.mask()
        index = torch.arange(n).repeat(b, 1)
        rotation = torch.eye(self.dim or 1, dtype=torch.float64).repeat(b, 1, 1)
        centre = torch.zeros(b, self.dim or 1, dtype=torch.float64)
        for i in range(b):
            item = self._item(i)
            slots = mask[i].nonzero().flatten()
            index[i, slots] = slots[item["index"]]
            if self.dim is not None:
                rotation[i] = item["rotation"]
                centre[i] = item["pos"].mean(0)
        permutation = Permutation(index)
        if self.dim is None:
            return permutation
        translation = centre - (rotation @ centre.unsqueeze(-1)).squeeze(-1)
        spatial = Rigid(rotation.to(dtype), translation.to(dtype))
        return join_element(Sn() * E(self.dim), permutation, spatial)

    def _stream(self, index: int) -> torch.Generator:
        """Generator number ``index`` of the recipe: 0 mask, 1 padding, 2 + i item i."""
        return _generator((self.seed << 20) + index)

    def _item(self, i: int) -> dict[str, Tensor]:
        """Item ``i``'s real-node values in float64 (and, for symmetric kinds, its symmetry)."""
        gen = self._stream(2 + i)  # items are independent of each other and of the batch size
        k, d = self.sizes[i], self.dim
        out: dict[str, Tensor] = {}

        def randn(*shape: int) -> Tensor:
            return torch.randn(*shape, generator=gen, dtype=torch.float64)

        features = randn(k, ZOO_CHANNELS)
        upper = torch.triu(torch.rand(k, k, generator=gen) < 0.5, diagonal=1)
        adjacency = (upper | upper.T).double()
        complete = torch.ones(k, k, dtype=torch.float64) - torch.eye(k, dtype=torch.float64)
        if self.kind in ("coincident", "symmetric"):
            features = randn(1, ZOO_CHANNELS).expand(k, ZOO_CHANNELS).clone()
            adjacency = complete
        if d is not None:
            origin = randn(1, d)
            if self.kind == "random":
                shape, velocity = randn(k, d), randn(k, d)
            elif self.kind == "coincident":
                shape, velocity = torch.zeros(k, d, dtype=torch.float64), randn(1, d).expand(k, d)
            elif self.kind in GEOMETRIC_KINDS:
                rank = 1 if self.kind == "collinear" else 2
                basis = _haar(d, gen)[:, :rank]  # (d, rank) orthonormal directions
                shape, velocity = randn(k, rank) @ basis.T, randn(k, rank) @ basis.T
            else:
                shape, rotation, index, adjacency = _symmetric_cloud(k, d, gen)
                velocity = randn(1, 1) * shape
                out.update(rotation=rotation, index=index)
            out["pos"] = self.scale * (shape + origin + self.offset)
            out["vel"] = self.scale * velocity.clone()
        elif self.kind == "symmetric":
            index = (torch.arange(k) + 1) % k
            adjacency = _cycle(k)
            out["index"] = index
        out["h"], out["adj"] = features, adjacency
        return out


def _haar(d: int, gen: torch.Generator) -> Tensor:
    """A Haar-random ``(d, d)`` orthogonal matrix (QR with the sign fix, float64)."""
    q, r = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r)).unsqueeze(0)


def _cycle(k: int) -> Tensor:
    """The cycle graph on ``k`` nodes (an edge for ``k = 2``, none for ``k = 1``)."""
    a = torch.zeros(k, k, dtype=torch.float64)
    if k >= 2:
        nodes = torch.arange(k)
        a[nodes, (nodes + 1) % k] = 1.0
        a = ((a + a.T) > 0).double()
    return a


def _symmetric_cloud(k: int, d: int, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """A centred cloud of ``k`` points with a symmetry, randomly rotated and shuffled.

    Returns ``(points (k, d), R (d, d), index (k,), adjacency (k, k))`` with
    ``R @ points[j] == points[index[j]]`` and ``adjacency[index][:, index] == adjacency``.
    """
    eye = torch.eye(d, dtype=torch.float64)
    complete = torch.ones(k, k, dtype=torch.float64) - torch.eye(k, dtype=torch.float64)
    nodes = torch.arange(k)
    if k == 1:
        points, rotation, index, adjacency = (
            torch.zeros(1, d, dtype=torch.float64),
            eye,
            nodes,
            complete,
        )
    elif k == d + 1 and d >= 2:  # regular simplex: the centred basis of R^(d+1), in d coordinates
        centred = torch.eye(k, dtype=torch.float64) - 1.0 / k
        basis, _ = torch.linalg.qr(centred[:, :d])  # (k, d): the sum-zero hyperplane
        points = centred @ basis
        u = (points[0] - points[1]) / (points[0] - points[1]).norm()
        rotation = eye - 2.0 * torch.outer(u, u)  # the reflection swapping vertices 0 and 1
        index = nodes.clone()
        index[0], index[1] = 1, 0
        adjacency = complete
    elif k == 2**d and d >= 2:  # cube: vertices ±1, the quarter turn in the plane of axes 0, 1
        corners = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=d)), dtype=torch.float64)
        rotation = eye.clone()
        rotation[:2, :2] = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)
        moved = corners @ rotation.T
        index = (moved.unsqueeze(1) == corners.unsqueeze(0)).all(-1).double().argmax(1)
        adjacency = ((corners.unsqueeze(1) != corners.unsqueeze(0)).sum(-1) == 1).double()
        points = corners / d**0.5
    elif d >= 2 and (d == 2 or k in (3, 5)):  # regular polygon in the plane of axes 0, 1
        angles = 2 * torch.pi * nodes.double() / k
        points = torch.zeros(k, d, dtype=torch.float64)
        points[:, 0], points[:, 1] = angles.cos(), angles.sin()
        step = torch.tensor(2 * torch.pi / k, dtype=torch.float64)
        rotation = eye.clone()
        rotation[:2, :2] = torch.stack(
            [torch.stack([step.cos(), -step.sin()]), torch.stack([step.sin(), step.cos()])]
        )
        index = (nodes + 1) % k
        adjacency = _cycle(k)
    else:  # centrally symmetric: x and -x (and the centre when k is odd), under -I
        m = k // 2
        half = torch.randn(m, d, generator=gen, dtype=torch.float64)
        parts = [half, -half] + ([torch.zeros(1, d, dtype=torch.float64)] if k % 2 else [])
        points = torch.cat(parts)
        rotation = -eye
        index = nodes.clone()
        index[:m], index[m : 2 * m] = nodes[m : 2 * m], nodes[:m]
        adjacency = torch.zeros(k, k, dtype=torch.float64)
        adjacency[nodes[:m], nodes[m : 2 * m]] = adjacency[nodes[m : 2 * m], nodes[:m]] = 1.0
        if k % 2:  # the centre is linked to every node
            adjacency[-1, :-1] = adjacency[:-1, -1] = 1.0
    q = _haar(d, gen)
    shuffle = torch.randperm(k, generator=gen)  # new node j is old node shuffle[j]
    position = torch.empty_like(shuffle)
    position[shuffle] = nodes  # old node -> new node
    return (
        points[shuffle] @ q.T,
        q @ rotation @ q.T,
        position[index[shuffle]],
        adjacency[shuffle][:, shuffle],
    )


@st.composite
def zoo_inputs(
    draw,
    group: Group,
    max_batch: int = 4,
    max_nodes: int = 64,
    kinds: tuple[ShapeKind, ...] = SHAPE_KINDS,
    scales: tuple[float, ...] = SCALES,
    offsets: tuple[float, ...] = OFFSETS,
    dims: tuple[int | None, ...] = (None, 2, 3),
) -> ZooInput:
    """A :class:`ZooInput` that fits ``group``.

    ``dim`` is the group's; for ``S_n`` alone it is drawn from ``dims`` (``None``: a graph without
    geometry, features and/or an adjacency). Groups with translations always get positions
    (E(d) needs a point input); an adjacency is drawn for groups that permute nodes only. Kinds
    that do not fit ``dim`` are skipped. Hypothesis shrinks towards one small random item at
    scale 1 without offset, vectors, features, adjacency or scatter.

    Pin the edge cases in tests with ``@example``: one node (``ZooInput("random", (1,), 1, 3)``),
    two nodes, and a 64-point batch.
    """
    dim = group.dim if group.dim is not None else draw(st.sampled_from(dims))
    fitting = [
        k
        for k in kinds
        if (dim is not None or k not in GEOMETRIC_KINDS) and (k != "coplanar" or (dim or 0) >= 3)
    ]
    if not fitting:
        raise ValueError(f"no kind in {kinds} fits dim={dim}")
    kind = draw(st.sampled_from(fitting))
    item_sizes, num_nodes = draw(sizes(max_batch, max_nodes))
    scale = offset = None
    has_vectors = has_scalars = has_adjacency = False
    if dim is not None:
        scale, offset = draw(st.sampled_from(scales)), draw(st.sampled_from(offsets))
        has_vectors = draw(st.booleans())
    if group.acts_on_nodes:
        if dim is None:  # something to permute: features, an adjacency, or both
            choice = draw(st.sampled_from([(True, False), (False, True), (True, True)]))
            has_scalars, has_adjacency = choice
        else:
            has_scalars, has_adjacency = draw(st.booleans()), draw(st.booleans())
    else:
        has_scalars = draw(st.booleans())
    return ZooInput(
        kind,
        item_sizes,
        num_nodes,
        dim,
        scale=1.0 if scale is None else scale,
        offset=0.0 if offset is None else offset,
        has_vectors=has_vectors,
        has_scalars=has_scalars,
        has_adjacency=has_adjacency,
        scatter=draw(st.booleans()),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


__all__ = [
    "DEGENERATE_KINDS",
    "GEOMETRIC_KINDS",
    "OFFSETS",
    "SCALES",
    "SHAPE_KINDS",
    "PaddedGraphs",
    "PointClouds",
    "ShapeKind",
    "ZOO_CHANNELS",
    "ZooInput",
    "all_groups",
    "elements",
    "groups",
    "padded_graphs",
    "point_clouds",
    "sample_element",
    "sizes",
    "zoo_inputs",
]
