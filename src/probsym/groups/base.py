"""The group protocol and the element base class.

Conventions, stated once for the whole library:

* **Left action.** ``g·(h·x) == (g @ h)·x``. The base model of a symmetrized model sees
  ``g⁻¹·x`` and its output is mapped back with ``g``.
* **Batched elements.** An element holds tensors with one leading batch axis ``B`` (a batch of
  inputs, or inputs times samples folded b-major). ``g @ h`` and ``g.inverse()`` work row-wise.
* **Padding.** Node axes are padded to a common size ``n``; ``mask`` is ``(B, n)`` bool with
  ``True`` on real nodes, and an action's ``mask`` describes the layout of the tensor it acts on.
  A permutation may move padding (the mask then moves with the nodes, as a node field); the
  samplers' elements put real nodes first for the base model, and ``Sn.sample(mask=...)`` fixes
  padded slots. Rotations and translations leave padded entries untouched.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import torch
from torch import Tensor

from probsym.fields import Field

if TYPE_CHECKING:
    from probsym.groups.product import ProductGroup

E = TypeVar("E", bound="GroupElement")


class GroupElement:
    """A batch of group elements: a frozen dataclass of tensors with a leading batch axis.

    Subclasses implement ``compose``, ``inverse`` and ``act``; ``@`` composes.
    """

    def __matmul__(self: E, other: E) -> E:
        return self.compose(other)

    def compose(self: E, other: E) -> E:  # pragma: no cover - abstract
        """Row-wise product ``self ∘ other``."""
        raise NotImplementedError

    def inverse(self: E) -> E:  # pragma: no cover - abstract
        """Row-wise inverse."""
        raise NotImplementedError

    def act(
        self, x: Tensor, field: Field, mask: Tensor | None = None
    ) -> Tensor:  # pragma: no cover
        """Apply the element to a tensor of the given field: ``g·x``."""
        raise NotImplementedError

    @property
    def batch_size(self) -> int:
        """Number of elements in the batch."""
        return next(iter(self.tensors())).shape[0]

    def tensors(self) -> list[Tensor]:
        """The element's tensors (optional ones that are ``None`` are skipped)."""
        out = []
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, Tensor):
                out.append(value)
            elif isinstance(value, tuple):
                out.extend(t for part in value for t in part.tensors())
        return out

    def map(self: E, fn: Callable[[Tensor], Tensor]) -> E:
        """Apply ``fn`` to every tensor of the element (e.g. indexing, ``repeat_interleave``)."""
        changes = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, Tensor):
                changes[f.name] = fn(value)
            elif isinstance(value, tuple):
                changes[f.name] = tuple(part.map(fn) for part in value)
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def detach(self: E) -> E:
        """The same elements with every tensor detached (no straight-through gradients)."""
        return self.map(Tensor.detach)

    def repeat_interleave(self: E, repeats: int) -> E:
        """Repeat every element ``repeats`` times along the batch axis, b-major."""
        return self.map(lambda t: t.repeat_interleave(repeats, dim=0))


class Group(ABC):
    """A symmetry group acting on node axes and/or a geometric axis.

    Groups are stateless and hashable; ``repr`` is the math (``S_n × E(3)``). Products are built
    with ``*``.
    """

    #: Whether the group permutes node axes.
    acts_on_nodes: bool = False
    #: Dimension ``d`` of the space the group rotates, or ``None``.
    dim: int | None = None
    #: Whether the group contains translations (E(d), SE(d)).
    has_translations: bool = False

    @property
    def factors(self) -> tuple[Group, ...]:
        """The simple groups this group is a direct product of (itself for a simple group)."""
        return (self,)

    def __mul__(self, other: Group) -> ProductGroup:
        from probsym.groups.product import ProductGroup

        return ProductGroup(self.factors + other.factors)

    @abstractmethod
    def identity(
        self,
        batch_size: int,
        n: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> GroupElement:
        """``batch_size`` identity elements (``n`` is the padded node count for S_n)."""

    @abstractmethod
    def sample(
        self,
        batch_size: int,
        n: int | None = None,
        mask: Tensor | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> GroupElement:
        """Random elements: Haar (uniform) on the compact part; translations ~ N(0, I).

        For S_n, a permutation of each graph's real nodes (``mask``), uniform over S_{n_i}.
        """

    def act(self, g: GroupElement, x: Tensor, field: Field, mask: Tensor | None = None) -> Tensor:
        """``g·x`` for a tensor ``x`` transforming as ``field``."""
        return g.act(x, field, mask)

    @abstractmethod
    def check_element(self, g: GroupElement) -> None:
        """Raise ``TypeError`` when ``g`` is not an element of this group's type."""

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.__dict__.items()))))
