"""Group averaging: elements drawn from the Haar measure, independent of the input.

The noise *is* the randomness of the element: i.i.d. uniform keys per node (their argsort is a
uniform permutation) and a Gaussian d×d matrix (its Gram–Schmidt is Haar on O(d), Mezzadri 2007).
Both transform with the input, so the exact check applies. R^d has no uniform measure: for E(d) and
SE(d) the translation is the masked centroid of the point input (the reference implementation
centres positions the same way).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from probsym import fields
from probsym.folding import fold_samples
from probsym.groups import Group, Permutation, join_element
from probsym.groups.permutation import order_by_keys
from probsym.samplers import features
from probsym.samplers.base import Sampler, Samples, make_spatial, spatial_factor, zero
from probsym.samplers.relax import orthogonal_from_vectors
from probsym.signature import Signature


class Uniform(Sampler):
    """Haar-uniform p(g), ignoring x (group averaging).

    Args:
        group: The group.
        signature: Needed to find the node mask and, for E(d)/SE(d), the point input.

    Raises:
        ValueError: a spatial group with no vector or point input (or, for E/SE, no point input).
    """

    def __init__(self, group: Group, signature: Signature) -> None:
        super().__init__(group, signature)
        self.spatial = spatial_factor(group)
        if self.spatial is not None and all(
            f.geometry == "scalar" for f in signature.inputs.values()
        ):
            # the rotation would act on nothing: group averaging would silently be a no-op
            raise ValueError(
                f"{group!r} needs at least one vector or point input (fields.vector, point, "
                f"node_vector or node_point) to act on; the signature declares none"
            )
        if self.spatial is not None and self.spatial.has_translations:
            if not any(f.geometry == "point" for f in signature.inputs.values()):
                raise ValueError(
                    f"{group!r} needs a point input (fields.point or node_point) for "
                    f"the translation; the signature declares none"
                )
        self.noise_fields = {}
        if group.acts_on_nodes:
            self.noise_fields["keys"] = fields.node
        if self.spatial is not None:
            self.noise_fields["frame"] = fields.vector

    def sample_noise(self, inputs, num_samples, generator=None) -> dict[str, Tensor]:
        """Uniform node keys ``(b*s, n)`` and Gaussian frame vectors ``(b*s, d, d)``.

        The frame noise is drawn in the geometric inputs' dtype, so that float64 inputs get
        rotations orthogonal to float64 precision.
        """
        b = features.batch_size(self.signature, inputs)
        device = inputs[next(iter(self.signature.inputs))].device
        dtype = features.geometric_dtype(self.signature, inputs)
        noise = {}
        if "keys" in self.noise_fields:
            n = features.node_count(self.signature, inputs)
            noise["keys"] = torch.rand(b * num_samples, n, generator=generator, device=device)
        if "frame" in self.noise_fields:
            d = self.spatial.dim
            noise["frame"] = torch.randn(
                b * num_samples, d, d, generator=generator, device=device, dtype=dtype
            )
        return noise

    def draw(
        self, inputs: Mapping[str, Tensor], num_samples: int, noise: Mapping[str, Tensor]
    ) -> Samples:
        """``num_samples`` Haar elements per input, b-major."""
        mask = features.get_mask(self.signature, inputs)
        permutation = spatial = None
        if "keys" in noise:
            folded_mask = None if mask is None else fold_samples(mask, num_samples)
            permutation = Permutation(order_by_keys(noise["keys"], folded_mask))
        if self.spatial is not None:
            frame = noise["frame"].to(features.geometric_dtype(self.signature, inputs))
            rotation = orthogonal_from_vectors(frame.transpose(1, 2), self.spatial.proper)
            centroid = features.point_centroid(self.signature, inputs)
            translation = None if centroid is None else fold_samples(centroid, num_samples)
            spatial = make_spatial(self.spatial, rotation, translation)
        reference = next(iter(noise.values()))
        return Samples(join_element(self.group, permutation, spatial), zero(reference))
