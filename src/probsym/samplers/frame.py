"""Frame averaging: average over a small input-dependent set of elements (a frame).

* S_n: sort the nodes by an equivariant, invariant-valued key (lexicographically over its columns);
  nodes with equal keys are ordered by uniform tie-break noise, so each sample is uniform over the
  sortings consistent with the key. The default key stacks a spectral column per distinct Laplacian
  eigenvalue (the per-node norm of the eigenspace projection: sign- and basis-invariant), the node
  scalars and, with a spatial factor, the node vectors' norms.
* O(d)/E(d): PCA of the (centred) node vectors; the eigenvectors are unique up to sign, and the
  frame is every sign choice (``signs="enumerate"``: 2^d elements, 2^(d-1) for SO/SE) or one random
  choice per sample (``signs="sample"``). Translations come from the centroid.

Keys are rounded to ``decimals`` so that float noise from a permuted input does not reorder them.
Degenerate inputs (repeated PCA eigenvalues) have no unique frame; the sampler stays finite there.

Shapes: ``b`` batch · ``s`` samples · ``n`` nodes (padded) · ``k`` key columns · ``d`` space.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Literal

import torch
from torch import Tensor

from probsym import fields
from probsym.folding import fold_samples
from probsym.groups import Group, Permutation, join_element
from probsym.samplers import features
from probsym.samplers.base import (
    FRAME_MARGIN,
    Sampler,
    Samples,
    make_spatial,
    rounding_floor,
    spatial_factor,
    zero,
)
from probsym.signature import Signature

KeyFunction = Callable[[Mapping[str, Tensor]], Tensor]


def spectral_key(adjacency: Tensor, mask: Tensor | None, tolerance: float = 1e-6) -> Tensor:
    """Per-node invariants of the Laplacian ``L = D - A``: one column per distinct eigenvalue.

    Column ``k`` holds ``sqrt(Σ_{v in eigenspace k} v_i²)``, the diagonal of the projector onto the
    k-th eigenspace (ascending eigenvalues), which does not depend on the chosen eigenbasis.
    Padded nodes are isolated and only enlarge the eigenvalue-0 space, whose projector is
    block-diagonal, so real nodes' values are unchanged.

    Shapes:
        adjacency: ``(b, n, n)``; mask: ``(b, n)``; returns ``(b, n, n)`` (unused columns are 0).
    """
    a = adjacency.double()
    if mask is not None:
        pair = (mask.unsqueeze(2) & mask.unsqueeze(1)).double()
        a = a * pair
    laplacian = torch.diag_embed(a.sum(-1)) - a
    values, vectors = torch.linalg.eigh(laplacian)
    gap = values[:, 1:] - values[:, :-1] > tolerance * values.abs()[:, 1:].clamp_min(1.0)
    first = torch.zeros_like(values[:, :1], dtype=torch.bool)  # gap[:, :1] is empty when n = 1
    group_id = torch.cat([first, gap], dim=1).long().cumsum(1)  # (b, n)
    columns = torch.zeros_like(vectors)
    index = group_id.unsqueeze(1).expand_as(vectors)
    columns.scatter_add_(2, index, vectors.square())
    return columns.sqrt().to(adjacency.dtype if adjacency.is_floating_point() else torch.float32)


def lexicographic_order(keys: Tensor, ties: Tensor, mask: Tensor | None) -> Tensor:
    """Node order sorted ascending by key columns (column 0 first), ties by ``ties``; padding last.

    Shapes:
        keys: ``(B, n, k)``; ties: ``(B, n)``; mask: ``(B, n)``; returns ``(B, n)``.
    """
    inf = torch.tensor(float("inf"), device=keys.device, dtype=keys.dtype)
    if mask is not None:
        ties = ties.masked_fill(~mask, float("inf"))
        keys = torch.where(mask.unsqueeze(-1), keys, inf)
    order = torch.argsort(ties, dim=1, stable=True)
    for column in reversed(range(keys.shape[-1])):
        values = torch.gather(keys[..., column], 1, order)
        order = torch.gather(order, 1, torch.argsort(values, dim=1, stable=True))
    return order


class Frame(Sampler):
    """Frame averaging (see the module docstring).

    Args:
        group: Any supported group.
        signature: The model's signature.
        signs: ``"enumerate"`` every PCA sign choice (each requested sample then yields the whole
            sign frame) or ``"sample"`` one uniform choice per sample.
        key: Optional equivariant node key ``inputs -> (b, n, k)``; the default is described in the
            module docstring.
        decimals: Rounding of key values before sorting.
    """

    def __init__(
        self,
        group: Group,
        signature: Signature,
        signs: Literal["enumerate", "sample"] = "enumerate",
        key: KeyFunction | None = None,
        decimals: int = 4,
    ) -> None:
        super().__init__(group, signature)
        if signs not in ("enumerate", "sample"):
            raise ValueError(f"signs must be 'enumerate' or 'sample', got {signs!r}")
        self.signs, self.key, self.decimals = signs, key, decimals
        self.spatial = spatial_factor(group)
        self.adjacency_name = features.default_adjacency_name(signature)
        self.noise_fields = {}
        if group.acts_on_nodes:
            self.noise_fields["ties"] = fields.node
        if self.spatial is not None:
            if not any(f.geometry != "scalar" for f in signature.inputs.values()):
                raise ValueError(f"{group!r} needs at least one vector or point input for PCA")
            d = self.spatial.dim
            choices = torch.tensor(list(itertools.product([1.0, -1.0], repeat=d)))
            if self.spatial.proper:  # det fixed below by flipping column 0
                choices = choices[choices.prod(dim=1) > 0]
            self.register_buffer("sign_choices", choices, persistent=False)
            self.elements_transform_exactly = signs == "sample"
            if signs == "sample":
                self.noise_fields["signs"] = fields.scalar

    @property
    def frame_size(self) -> int:
        """Elements per requested sample (the number of sign choices when enumerating)."""
        if self.spatial is None or self.signs == "sample":
            return 1
        return self.sign_choices.shape[0]

    def samples_per_input(self, num_samples: int) -> int:
        """``num_samples`` times the sign-frame size."""
        return num_samples * self.frame_size

    def sample_noise(self, inputs, num_samples, generator=None) -> dict[str, Tensor]:
        """Tie-break keys per element and, with ``signs="sample"``, a sign-choice index."""
        b = features.batch_size(self.signature, inputs)
        device = inputs[next(iter(self.signature.inputs))].device
        rows = b * self.samples_per_input(num_samples)
        noise = {}
        if "ties" in self.noise_fields:
            n = features.node_count(self.signature, inputs)
            noise["ties"] = torch.rand(rows, n, generator=generator, device=device)
        if "signs" in self.noise_fields:
            count = self.sign_choices.shape[0]
            noise["signs"] = torch.randint(
                count, (rows,), generator=generator, device=device
            ).float()
        return noise

    def node_keys(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """Equivariant, invariant-valued node keys ``(b, n, k)``, rounded."""
        if self.key is not None:
            keys = self.key(inputs)
        else:
            sig = self.signature
            mask = features.get_mask(sig, inputs)
            b = features.batch_size(sig, inputs)
            n = features.node_count(sig, inputs)
            device = inputs[next(iter(sig.inputs))].device
            # float64: keys of a rotated input then differ only by the input's own rounding
            parts = [torch.zeros(b, n, 1, device=device, dtype=torch.float64)]
            adjacency = features.adjacency(sig, inputs, self.adjacency_name)
            if adjacency is not None:
                parts.append(spectral_key(adjacency.double(), mask))
            scalars = features.node_scalars(sig, inputs)
            if scalars is not None:
                parts.append(scalars.double())
            if self.spatial is not None:
                centroid = features.point_centroid(sig, inputs)
                if not self.spatial.has_translations:
                    centroid = None
                vectors = features.node_vectors(sig, inputs, centroid)
                if vectors is not None:
                    parts.append(vectors.double().norm(dim=-1))
            keys = torch.cat(parts, dim=-1)
        scale = 10.0**self.decimals
        return torch.round(keys * scale) / scale

    def draw(
        self, inputs: Mapping[str, Tensor], num_samples: int, noise: Mapping[str, Tensor]
    ) -> Samples:
        """``samples_per_input(num_samples)`` frame elements per input, b-major."""
        sig = self.signature
        total = self.samples_per_input(num_samples)
        mask = features.get_mask(sig, inputs)
        mask_f = None if mask is None else fold_samples(mask, total)
        permutation = spatial = degenerate = None
        if "ties" in noise:
            keys = fold_samples(self.node_keys(inputs), total)
            order = lexicographic_order(keys, noise["ties"], mask_f)
            permutation = Permutation(order)  # real nodes first, like order_by_keys
        if self.spatial is not None:
            spatial, degenerate = self._spatial_elements(inputs, num_samples, noise)
            degenerate = fold_samples(degenerate, total)
        reference = next(iter(inputs.values()))
        element = join_element(self.group, permutation, spatial)
        return Samples(element, zero(reference.float()), None, degenerate)

    def _spatial_elements(self, inputs, num_samples, noise):
        sig = self.signature
        centroid = features.point_centroid(sig, inputs)
        origin = centroid if self.spatial.has_translations else None
        v = features.node_vectors(sig, inputs, origin).double()  # (b, n, c, d), padding zero
        moment = torch.einsum("bncd,bnce->bde", v, v)
        values, axes = torch.linalg.eigh(moment)  # columns: principal axes, ascending variance
        b, d = axes.shape[0], axes.shape[-1]
        # The axes are unique (up to sign) only where the eigenvalues are distinct.
        dtype = features.geometric_dtype(sig, inputs)
        floor = rounding_floor(FRAME_MARGIN, dtype)
        top = values[:, -1:].clamp_min(0)
        gaps = (values[:, 1:] - values[:, :-1]) / torch.where(top > 0, top, torch.ones_like(top))
        degenerate = features.below_rounding(v, origin, features.get_mask(sig, inputs), dtype)
        if d > 1:
            degenerate |= gaps.min(dim=1).values < floor
        # eigh returns each axis with an arbitrary sign; orient it by the sign of the third moment
        # along it, so that the axes of g·x are g times those of x and sampled sign choices
        # transform exactly (enumerated frames are sets and do not need it). Symmetric clouds
        # (third moment 0) have no unique frame.
        projections = torch.einsum("bncd,bdk->bnck", v, axes)
        skew = projections.pow(3).sum(dim=(1, 2))  # (b, d)
        axes = axes * torch.where(skew < 0, -1.0, 1.0).to(axes.dtype).unsqueeze(1)
        # A sampled sign choice needs every axis oriented; so does an enumerated frame paired with
        # node permutations (each frame element has its own tie-break noise, so the pairing
        # follows the enumeration order, which the orientation sets).
        if self.signs == "sample" or self.group.acts_on_nodes:
            # relative to the cloud's size cubed: the skew of rounding noise is not small
            # relative to its own |projection|³, only relative to the data
            size = values.sum(dim=-1).clamp_min(1e-300).pow(1.5).unsqueeze(1)
            degenerate |= (skew.abs() / size).min(dim=1).values < floor
        if self.spatial.proper:  # choices have product +1; flip column 0 where det(axes) = -1
            det = torch.linalg.det(axes)
            first = torch.ones(b, d, dtype=axes.dtype, device=axes.device)
            first[:, 0] = torch.sign(det)
            axes = axes * first.unsqueeze(1)
        choices = self.sign_choices.to(axes)
        if self.signs == "enumerate":
            rotation = axes.unsqueeze(1) * choices.unsqueeze(0).unsqueeze(2)  # (b, F, d, d)
            rotation = rotation.unsqueeze(1).expand(b, num_samples, *rotation.shape[1:])
            rotation = rotation.reshape(-1, d, d)
        else:
            picked = choices[noise["signs"].long()]  # (b*s, d)
            rotation = fold_samples(axes, num_samples) * picked.unsqueeze(1)
        total = self.samples_per_input(num_samples)
        translation = None if origin is None else fold_samples(origin, total)
        return make_spatial(self.spatial, rotation.to(dtype), translation), degenerate
