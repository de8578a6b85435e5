"""E(d) and SE(d): rigid motions ``x ↦ R x + t`` acting on the last (geometric) axis.

Vectors (velocities, forces) only rotate; points (positions) rotate and translate. R^d has no
uniform distribution, so :meth:`E.sample` draws translations from N(0, I) (for tests); samplers take
translations from the masked centroid instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from probsym.fields import Field
from probsym.groups.base import GroupElement
from probsym.groups.orthogonal import O, haar_orthogonal, keep_padding, rotate


def masked_centroid(points: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of the real nodes' points.

    Shapes:
        points: ``(B, n, *c, d)``; mask: ``(B, n)``; returns ``(B, d)`` (mean over real nodes and
        channels).
    """
    flat = points.reshape(points.shape[0], points.shape[1], -1, points.shape[-1])
    if mask is None:
        return flat.mean(dim=(1, 2))
    weights = mask.to(flat.dtype).unsqueeze(-1).unsqueeze(-1)
    count = weights.sum(dim=(1, 2)).clamp_min(1.0) * flat.shape[2]
    return (flat * weights).sum(dim=(1, 2)) / count


@dataclass(frozen=True, eq=False)
class Rigid(GroupElement):
    """A batch of rigid motions: rotation ``(B, d, d)`` and translation ``(B, d)``."""

    rotation: Tensor
    translation: Tensor

    def compose(self, other: Rigid) -> Rigid:
        """``(R1, t1)(R2, t2) = (R1 R2, R1 t2 + t1)``."""
        rotation = torch.bmm(self.rotation, other.rotation)
        translation = rotate(other.translation.unsqueeze(1), self.rotation).squeeze(1)
        return Rigid(rotation, translation + self.translation)

    def inverse(self) -> Rigid:
        """``(R, t)⁻¹ = (Rᵀ, -Rᵀ t)``."""
        rotation = self.rotation.transpose(1, 2)
        return Rigid(rotation, -rotate(self.translation.unsqueeze(1), rotation).squeeze(1))

    def act(self, x: Tensor, field: Field, mask: Tensor | None = None) -> Tensor:
        """Rotate vectors; rotate and translate points; scalars are invariant."""
        if field.geometry == "scalar":
            return x
        y = rotate(x, self.rotation)
        if field.geometry == "point":
            shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],)
            y = y + self.translation.reshape(shape).to(y.dtype)
        return keep_padding(y, x, field, mask)


class E(O):
    """The Euclidean group E(d): rotations, reflections and translations of R^d."""

    has_translations = True

    def identity(self, batch_size, n=None, device=None, dtype=torch.float32) -> Rigid:
        """Identity motions."""
        rotation = torch.eye(self.dim, device=device, dtype=dtype).expand(batch_size, -1, -1)
        return Rigid(
            rotation.clone(), torch.zeros(batch_size, self.dim, device=device, dtype=dtype)
        )

    def sample(
        self, batch_size, n=None, mask=None, generator=None, device=None, dtype=torch.float32
    ) -> Rigid:
        """Haar rotation and N(0, I) translation."""
        if mask is not None:
            device = mask.device
        rotation = haar_orthogonal(batch_size, self.dim, generator, device, dtype, self.proper)
        translation = torch.randn(
            batch_size, self.dim, generator=generator, device=device, dtype=dtype
        )
        return Rigid(rotation, translation)

    def check_element(self, g: GroupElement) -> None:
        """Raise ``TypeError`` unless ``g`` is a :class:`Rigid` motion of the right dimension."""
        if not isinstance(g, Rigid) or g.rotation.shape[-1] != self.dim:
            raise TypeError(f"{self!r} expects Rigid elements in dimension {self.dim}, got {g!r}")

    def __repr__(self) -> str:
        return f"E({self.dim})"


class SE(E):
    """The special Euclidean group SE(d): rotations and translations (det = +1)."""

    proper = True

    def __repr__(self) -> str:
        return f"SE({self.dim})"
