"""The sampler protocol: one call for every distribution p(g|x).

A sampler draws ``s`` elements per input, b-major (row ``i*s + j`` is sample j of input i). All of
its randomness is an explicit ``noise`` dict that it can draw itself (``sample_noise``) or receive;
``noise_fields`` declares how every noise tensor transforms, which is what makes the exact
equivariance check possible: transform the input and the noise by ``g`` and the sampled elements
transform by ``g`` exactly (``h(g·x, g·ε) = g @ h(x, ε)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import Tensor, nn

from probsym.errors import InputError, ShapeError
from probsym.fields import Field
from probsym.groups import Group, GroupElement
from probsym.signature import Signature


class Samples(NamedTuple):
    """What a sampler returns.

    Attributes:
        elements: ``b*s`` group elements, b-major.
        regularization: scalar penalty to add to the loss (the permutation entropy for learned
            samplers while training; zero elsewhere).
        relaxed: the relaxed permutation matrices ``(b*s, n, n)`` carrying straight-through
            gradients, or ``None``.
        degenerate: ``(b*s,)`` bool, the rows whose element is not determined by the input at
            working precision (no unique frame: coincident, collinear or symmetric clouds,
            coplanar ones under O(d); node scores tied up to rounding), or ``None`` when every
            row is. Equivariance there holds in distribution at best, not exactly.
    """

    elements: GroupElement
    regularization: Tensor
    relaxed: Tensor | None = None
    degenerate: Tensor | None = None


class Sampler(nn.Module):
    """Base class: a distribution p(g|x) over elements of ``group``.

    Subclasses define ``noise_fields``, :meth:`sample_noise` and :meth:`draw`; :meth:`forward`
    draws fresh noise unless it is given (the exact equivariance check passes transformed noise).
    """

    #: How every noise tensor transforms (names -> fields), for the exact equivariance check.
    noise_fields: Mapping[str, Field] = {}
    #: Whether transformed noise gives exactly ``g @ h`` element by element. False for samplers
    #: that return a whole set (an enumerated frame), which transforms as a set, in another order.
    elements_transform_exactly: bool = True

    def __init__(self, group: Group, signature: Signature | None = None) -> None:
        super().__init__()
        self.group = group
        self.signature = signature

    def samples_per_input(self, num_samples: int) -> int:
        """How many elements :meth:`forward` returns per input for ``num_samples`` requested."""
        return num_samples

    def sample_noise(
        self,
        inputs: Mapping[str, Tensor],
        num_samples: int,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """Draw the noise for ``num_samples`` samples per input, folded b-major."""
        return {}

    def transform_noise(
        self, g: GroupElement, noise: Mapping[str, Tensor], mask: Tensor | None
    ) -> dict[str, Tensor]:
        """Act on the noise with ``g`` (one element per input, repeated over the samples)."""
        if not noise:
            return {}
        batch = g.batch_size
        repeats = next(iter(noise.values())).shape[0] // batch
        g_folded = g.repeat_interleave(repeats)
        mask_folded = None if mask is None else mask.repeat_interleave(repeats, dim=0)
        return {
            name: g_folded.act(x, self.noise_fields[name], mask_folded) for name, x in noise.items()
        }

    def forward(
        self,
        inputs: Mapping[str, Tensor],
        num_samples: int,
        noise: Mapping[str, Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> Samples:
        """Draw ``num_samples`` elements per input (b-major), from ``noise`` when given.

        Raises:
            InputError: ``noise`` is not a dict of tensors with exactly the keys ``noise_fields``.
            ShapeError: a noise tensor does not have ``b * samples_per_input(num_samples)`` rows.
        """
        if noise is None:
            noise = self.sample_noise(inputs, num_samples, generator)
        else:
            self._check_noise(inputs, num_samples, noise)
        return self.draw(inputs, num_samples, noise)

    def _check_noise(
        self, inputs: Mapping[str, Tensor], num_samples: int, noise: Mapping[str, Tensor]
    ) -> None:
        """Given noise must be what :meth:`sample_noise` would draw for this batch and count."""
        name = type(self).__name__
        if not isinstance(noise, Mapping):
            raise InputError(f"noise must be a dict of tensors, got {type(noise).__name__}")
        if set(noise) != set(self.noise_fields):
            missing = sorted(set(self.noise_fields) - set(noise))
            unknown = sorted(set(noise) - set(self.noise_fields))
            raise InputError(
                f"noise for {name} must have the keys {sorted(self.noise_fields)} "
                f"(from sample_noise), got {sorted(noise)}: missing {missing}, unknown {unknown}"
            )
        names = list(self.signature.inputs) if self.signature is not None else list(inputs)
        reference = next((inputs[k] for k in names if isinstance(inputs.get(k), Tensor)), None)
        if reference is None:
            return
        per_input = self.samples_per_input(num_samples)
        rows = reference.shape[0] * per_input
        for key, x in noise.items():
            if not isinstance(x, Tensor):
                raise InputError(f"noise {key!r} must be a torch.Tensor, got {type(x).__name__}")
            if x.ndim == 0 or x.shape[0] != rows:
                raise ShapeError(
                    f"noise {key!r} has {x.shape[0] if x.ndim else 0} rows (shape "
                    f"{tuple(x.shape)}), expected batch {reference.shape[0]} x {per_input} "
                    f"samples per input = {rows}: draw it with sample_noise(inputs, "
                    f"{num_samples}) for this batch"
                )

    def draw(
        self, inputs: Mapping[str, Tensor], num_samples: int, noise: Mapping[str, Tensor]
    ) -> Samples:  # pragma: no cover - abstract
        """The elements for ``inputs`` given the noise: deterministic, so equivariance is exact."""
        raise NotImplementedError

    def extra_repr(self) -> str:  # noqa: D102 - nn.Module hook
        return f"group={self.group!r}"


#: Frame margins (:func:`probsym.samplers.relax.frame_from_vectors`) below which a sampled
#: rotation counts as undetermined by the input (``Samples.degenerate``), per dtype of the inputs.
#: Below ``1e-6`` Gram–Schmidt falls back to an arbitrary direction; every floor sits above that
#: with room for the frame network's gain (docs/design.md has the measurements), float64 too: a
#: fallback column is never a function of the input (a 2-point cloud far from the origin in
#: SO(3) once reached the fallback unflagged at margin 3e-8). Inputs that are merely
#: ill-conditioned at working precision are found by the checker, which perturbs them.
FRAME_MARGIN = {torch.float16: 1e-2, torch.bfloat16: 1e-2, torch.float32: 1e-4, torch.float64: 1e-5}


def rounding_floor(table: Mapping[torch.dtype, float], dtype: torch.dtype) -> float:
    """The margin threshold of ``table`` for inputs of ``dtype`` (integers count as float32)."""
    return table.get(dtype, table[torch.float32])


def zero(reference: Tensor) -> Tensor:
    """A scalar zero on the device and dtype of ``reference`` (the no-regularization value)."""
    return torch.zeros((), device=reference.device, dtype=reference.dtype)


def spatial_factor(group: Group) -> Group | None:
    """The factor acting on the geometric axis (O, SO, E or SE), or ``None``."""
    return next((f for f in group.factors if f.dim is not None), None)


def make_spatial(factor: Group, rotation: Tensor, translation: Tensor | None) -> GroupElement:
    """An element of ``factor``: rotation ``(B, d, d)``, plus translation ``(B, d)`` for E/SE."""
    from probsym.groups import Orthogonal, Rigid

    if not factor.has_translations:
        return Orthogonal(rotation)
    if translation is None:
        raise ValueError(f"{factor!r} needs a point input to place the origin (none declared)")
    return Rigid(rotation, translation.to(rotation.dtype))
