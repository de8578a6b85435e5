"""O(d) and SO(d): orthogonal matrices acting on the last (geometric) axis.

An element is a batch of matrices ``R`` of shape ``(B, d, d)``. Geometric axes hold row vectors, so
``g·v = v Rᵀ`` (i.e. ``R v`` for a column vector). Haar sampling: QR of a Gaussian matrix with the
sign fix of Mezzadri (2007); SO(d) then flips the first column where ``det = -1``, which maps the
other coset of O(d) onto SO(d) and keeps the measure uniform.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from probsym.fields import Field
from probsym.groups.base import Group, GroupElement
from probsym.groups.padding import real_entries


def rotate(x: Tensor, rotation: Tensor) -> Tensor:
    """``x Rᵀ``: rotate the last axis of ``x`` ``(B, ..., d)`` by ``R`` ``(B, d, d)``."""
    flat = x.reshape(x.shape[0], -1, x.shape[-1])
    return torch.bmm(flat, rotation.transpose(1, 2).to(flat.dtype)).reshape(x.shape)


def keep_padding(y: Tensor, x: Tensor, field: Field, mask: Tensor | None) -> Tensor:
    """Restore the padded node entries of ``x`` in ``y`` (actions leave padding untouched)."""
    if mask is None or field.node_axes == 0:
        return y
    return torch.where(real_entries(mask, x.ndim, field.node_axes), y, x)


def haar_orthogonal(
    batch_size: int,
    dim: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    proper: bool = False,
) -> Tensor:
    """Haar-random matrices of O(d) (or SO(d) when ``proper``), ``(B, d, d)``."""
    gaussian = torch.randn(batch_size, dim, dim, generator=generator, device=device, dtype=dtype)
    q, r = torch.linalg.qr(gaussian)
    signs = torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))
    q = q * torch.where(signs == 0, torch.ones_like(signs), signs).unsqueeze(-2)
    return fix_determinant(q) if proper else q


def fix_determinant(q: Tensor, column: int = 0) -> Tensor:
    """Multiply one column (the first by default) by ``sign(det q)``: the result lies in SO(d)."""
    det = torch.linalg.det(q)
    sign = torch.where(det < 0, -torch.ones_like(det), torch.ones_like(det))
    scale = torch.ones_like(q[:, 0, :])
    scale[:, column] = sign
    return q * scale.unsqueeze(1)


@dataclass(frozen=True, eq=False)
class Orthogonal(GroupElement):
    """A batch of orthogonal matrices ``(B, d, d)`` acting as ``v ↦ R v`` on column vectors."""

    matrix: Tensor

    def compose(self, other: Orthogonal) -> Orthogonal:
        """Matrix product."""
        return Orthogonal(torch.bmm(self.matrix, other.matrix))

    def inverse(self) -> Orthogonal:
        """Transpose."""
        return Orthogonal(self.matrix.transpose(1, 2))

    def act(self, x: Tensor, field: Field, mask: Tensor | None = None) -> Tensor:
        """Rotate vectors and points; scalars are invariant."""
        if field.geometry == "scalar":
            return x
        return keep_padding(rotate(x, self.matrix), x, field, mask)


class O(Group):  # noqa: E742 - the group's name
    """The orthogonal group O(d): rotations and reflections of R^d."""

    proper = False

    def __init__(self, dim: int) -> None:
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"{type(self).__name__}(dim) needs a positive integer, got {dim!r}")
        self.dim = dim

    def identity(self, batch_size, n=None, device=None, dtype=torch.float32) -> Orthogonal:
        """Identity matrices."""
        eye = torch.eye(self.dim, device=device, dtype=dtype)
        return Orthogonal(eye.expand(batch_size, self.dim, self.dim).clone())

    def sample(
        self, batch_size, n=None, mask=None, generator=None, device=None, dtype=torch.float32
    ) -> Orthogonal:
        """Haar-random elements."""
        if mask is not None:
            device = mask.device
        q = haar_orthogonal(batch_size, self.dim, generator, device, dtype, proper=self.proper)
        return Orthogonal(q)

    def check_element(self, g: GroupElement) -> None:
        """Raise ``TypeError`` unless ``g`` is an :class:`Orthogonal` of the right size."""
        if not isinstance(g, Orthogonal) or g.matrix.shape[-1] != self.dim:
            raise TypeError(
                f"{self!r} expects Orthogonal {self.dim}x{self.dim} elements, got {g!r}"
            )

    def __repr__(self) -> str:
        return f"O({self.dim})"


class SO(O):
    """The special orthogonal group SO(d): rotations of R^d (det = +1)."""

    proper = True

    def __repr__(self) -> str:
        return f"SO({self.dim})"
