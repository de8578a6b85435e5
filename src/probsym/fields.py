"""How a tensor transforms: its node axes and its geometry.

A :class:`Field` is the declaration e3nn calls ``irreps`` and escnn a ``FieldType``, cut down to
what symmetrization needs. Every input and output of a symmetrized model carries one, and it is
the only place where an action is defined; nothing is guessed from shapes.

Axis order (fixed everywhere): batch first, then ``node_axes`` node axes of equal padded size ``n``,
then channels, then the geometric axis of size ``d`` last when ``geometry`` is not ``"scalar"``.

    scalar       (b, *c)              invariant
    node         (b, n, *c)           permuted on the node axis
    pair         (b, n, n, *c)        permuted on both node axes (adjacency, edge features)
    vector       (b, *c, d)           rotated
    point        (b, *c, d)           rotated and translated
    node_vector  (b, n, *c, d)        permuted and rotated
    node_point   (b, n, *c, d)        permuted, rotated and translated
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Geometry = Literal["scalar", "vector", "point"]


@dataclass(frozen=True)
class Field:
    """The transformation law of one tensor.

    Args:
        node_axes: How many node axes follow the batch axis (0, 1 or 2).
        geometry: ``"scalar"`` (no geometric axis), ``"vector"`` (last axis rotates) or
            ``"point"`` (last axis rotates and translates).
    """

    node_axes: int = 0
    geometry: Geometry = "scalar"

    def __post_init__(self) -> None:
        if self.node_axes not in (0, 1, 2):
            raise ValueError(f"Field.node_axes must be 0, 1 or 2, got {self.node_axes}")
        if self.geometry not in ("scalar", "vector", "point"):
            raise ValueError(
                f"Field.geometry must be 'scalar', 'vector' or 'point', got {self.geometry!r}"
            )

    @property
    def min_ndim(self) -> int:
        """Smallest number of dimensions a tensor of this field can have (batch included)."""
        return 1 + self.node_axes + (self.geometry != "scalar")

    def __repr__(self) -> str:
        return _NAMES.get(self, f"Field({self.node_axes}, {self.geometry!r})")


scalar = Field(0, "scalar")
node = Field(1, "scalar")
pair = Field(2, "scalar")
vector = Field(0, "vector")
point = Field(0, "point")
node_vector = Field(1, "vector")
node_point = Field(1, "point")

_NAMES = {
    scalar: "scalar",
    node: "node",
    pair: "pair",
    vector: "vector",
    point: "point",
    node_vector: "node_vector",
    node_point: "node_point",
}

__all__ = [
    "Field",
    "Geometry",
    "node",
    "node_point",
    "node_vector",
    "pair",
    "point",
    "scalar",
    "vector",
]
