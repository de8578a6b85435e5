"""Direct products of groups whose factors act on disjoint axes (S_n × E(3), ...).

S_n acts on node axes and O(d)/SO(d)/E(d)/SE(d) on the geometric axis, so the actions commute and
the product acts factor by factor. A product holds at most one node factor and one spatial factor;
two spatial factors would act on the same axis, which is not a direct product action.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from probsym.fields import Field
from probsym.groups.base import Group, GroupElement
from probsym.groups.permutation import Permutation


@dataclass(frozen=True, eq=False)
class ProductElement(GroupElement):
    """A batch of elements of a product group: one element per factor, in factor order."""

    parts: tuple[GroupElement, ...]

    def compose(self, other: ProductElement) -> ProductElement:
        """Factor-wise product."""
        return ProductElement(tuple(a @ b for a, b in zip(self.parts, other.parts, strict=True)))

    def inverse(self) -> ProductElement:
        """Factor-wise inverse."""
        return ProductElement(tuple(part.inverse() for part in self.parts))

    def act(self, x: Tensor, field: Field, mask: Tensor | None = None) -> Tensor:
        """Each factor acts on its own axes; the node permutation last.

        ``mask`` describes ``x``'s layout. The factors commute, so acting with the spatial parts
        first, while the nodes are still where ``mask`` says, gives the same result and lets
        them read the mask.
        """
        ordered = sorted(self.parts, key=lambda part: isinstance(part, Permutation))
        for part in ordered:
            x = part.act(x, field, mask)
        return x


class ProductGroup(Group):
    """Direct product ``G1 × G2 × ...``; build it with ``G1 * G2``."""

    def __init__(self, factors: tuple[Group, ...]) -> None:
        if len(factors) < 2:
            raise ValueError("a product group needs at least two factors")
        if sum(f.acts_on_nodes for f in factors) > 1:
            raise ValueError(f"at most one node-permuting factor per product, got {factors}")
        if sum(f.dim is not None for f in factors) > 1:
            raise ValueError(
                f"at most one spatial factor per product (they would act on the same axis), "
                f"got {factors}"
            )
        self._factors = tuple(factors)
        self.acts_on_nodes = any(f.acts_on_nodes for f in factors)
        spatial = [f for f in factors if f.dim is not None]
        self.dim = spatial[0].dim if spatial else None
        self.has_translations = any(f.has_translations for f in factors)

    @property
    def factors(self) -> tuple[Group, ...]:
        """The factors, in order."""
        return self._factors

    def identity(self, batch_size, n=None, device=None, dtype=torch.float32) -> ProductElement:
        """Identity in every factor."""
        return ProductElement(tuple(f.identity(batch_size, n, device, dtype) for f in self.factors))

    def sample(
        self, batch_size, n=None, mask=None, generator=None, device=None, dtype=torch.float32
    ) -> ProductElement:
        """Independent random elements of every factor."""
        return ProductElement(
            tuple(f.sample(batch_size, n, mask, generator, device, dtype) for f in self.factors)
        )

    def check_element(self, g: GroupElement) -> None:
        """Raise ``TypeError`` unless ``g`` is a product element with matching factors."""
        if not isinstance(g, ProductElement) or len(g.parts) != len(self.factors):
            raise TypeError(f"{self!r} expects a ProductElement with {len(self.factors)} parts")
        for factor, part in zip(self.factors, g.parts, strict=True):
            factor.check_element(part)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ProductGroup) and self.factors == other.factors

    def __hash__(self) -> int:
        return hash(self.factors)

    def __repr__(self) -> str:
        return " × ".join(repr(f) for f in self.factors)


def split_element(group: Group, g: GroupElement) -> dict[str, GroupElement | None]:
    """The permutation part and the spatial part of ``g`` (``None`` where the group has none)."""
    parts = g.parts if isinstance(g, ProductElement) else (g,)
    out: dict[str, GroupElement | None] = {"permutation": None, "spatial": None}
    for factor, part in zip(group.factors, parts, strict=True):
        out["permutation" if factor.acts_on_nodes else "spatial"] = part
    return out


def join_element(group: Group, permutation: GroupElement | None, spatial: GroupElement | None):
    """Inverse of :func:`split_element`: assemble an element of ``group`` from its parts."""
    parts = tuple(permutation if f.acts_on_nodes else spatial for f in group.factors)
    if any(p is None for p in parts):
        raise ValueError(f"missing a part for {group!r}")
    return parts[0] if len(parts) == 1 else ProductElement(parts)
