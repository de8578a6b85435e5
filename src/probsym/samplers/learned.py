"""Learned distributions: probabilistic symmetrization (PS) and learned canonicalization.

``g = post(q_w(x, ε))``: a small equivariant network ``q_w`` reads the input plus invariant noise
``ε`` and post-processing turns its output into an element:

* S_n: a masked dense GIN scores the nodes; the argsort of the scores is the permutation (hard in
  the forward pass; SoftSort + Sinkhorn carries straight-through gradients while training).
* O(d)/SO(d): a Vector-Neuron network outputs d equivariant vectors; Gram–Schmidt (plus the
  determinant fix for SO(d)) makes them a rotation.
* E(d)/SE(d): the translation is the masked centroid of the point input.
* Products: one network; its rotation-invariant per-node features feed the node scores.

Noise is i.i.d. per node (uniform on scalars, isotropic Gaussian on vectors), hence invariant in
law, so p(g|x) is equivariant (Kim et al. 2023). ``Canonical`` is the same with no noise.

Shapes: ``b`` batch · ``s`` samples · ``B = b*s`` · ``n`` nodes (padded) · ``c`` channels ·
``d`` space.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from probsym import fields
from probsym.folding import fold_samples
from probsym.groups import Group, Permutation, join_element
from probsym.groups.permutation import order_by_keys
from probsym.nn import DenseGIN, VectorNeuronEncoder
from probsym.samplers import features
from probsym.samplers.base import Sampler, Samples, make_spatial, spatial_factor, zero
from probsym.samplers.relax import (
    normalize_scores,
    orthogonal_from_vectors,
    permutation_entropy,
    soft_permutation,
)
from probsym.signature import Signature


class Learned(Sampler):
    """Probabilistic symmetrization: p_w(g|x) from an equivariant network plus invariant noise.

    Args:
        group: Any supported group (S_n, O/SO/E/SE(d), or a product of S_n with one of those).
        signature: The model's signature (which inputs are nodes, pairs, vectors, points).
        hidden_dim: Width of the score GIN.
        num_layers: GIN layers.
        vector_channels: Vector channels of the Vector-Neuron network.
        noise_scale: Noise amplitude: uniform ``U[0, s]`` on node scalars, ``N(0, s²)`` on vectors.
            ``0`` gives a deterministic (learned) canonicalization.
        tau: Temperature of the permutation relaxation (on L2-normalised scores).
        dropout: Dropout inside the GIN.
        adjacency: Name of the pair input whose channel 0 is the graph for message passing;
            ``"auto"`` takes the first pair input, ``None`` links all nodes.
        sinkhorn_iterations: Log-domain Sinkhorn steps of the relaxation.
        tie_scale: Amplitude of the uniform tie-break noise added to normalised scores; it keeps
            automorphic (exactly tied) nodes from being ordered by their input index.
        frame_dtype: Precision of the vector network and Gram–Schmidt. Random frames are sometimes
            ill-conditioned (condition numbers of 1e3-1e4 occur), and Gram–Schmidt multiplies
            rounding error by the condition number: in float32 that breaks equivariance at the
            1e-4 level, in float64 (the default; the network is tiny) it stays below 1e-6.
    """

    def __init__(
        self,
        group: Group,
        signature: Signature,
        hidden_dim: int = 64,
        num_layers: int = 3,
        vector_channels: int = 16,
        noise_scale: float = 1.0,
        tau: float = 0.01,
        dropout: float = 0.0,
        adjacency: str | None = "auto",
        sinkhorn_iterations: int = 20,
        tie_scale: float = 1e-6,
        frame_dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__(group, signature)
        if noise_scale < 0 or tau <= 0:
            raise ValueError(f"need noise_scale >= 0 and tau > 0, got {noise_scale}, {tau}")
        self.noise_scale, self.tau = float(noise_scale), float(tau)
        self.sinkhorn_iterations, self.tie_scale = sinkhorn_iterations, tie_scale
        self.spatial = spatial_factor(group)
        self.adjacency_name = (
            features.default_adjacency_name(signature) if adjacency == "auto" else adjacency
        )
        if self.adjacency_name is not None and self.adjacency_name not in signature.inputs:
            raise ValueError(f"adjacency {self.adjacency_name!r} is not a declared input")
        self.noise_fields = {}
        self.vectors = self.scores = None
        if self.spatial is not None:
            geometric = [f for f in signature.inputs.values() if f.geometry != "scalar"]
            if not geometric:
                raise ValueError(f"{group!r} needs at least one vector or point input")
            if self.spatial.has_translations and not any(f.geometry == "point" for f in geometric):
                raise ValueError(f"{group!r} needs a point input for the translation")
            has_scalars = any(
                f.node_axes == 1 and f.geometry == "scalar" for f in signature.inputs.values()
            )
            self.vectors = VectorNeuronEncoder(
                None,
                None if has_scalars else 0,
                vector_channels,
                num_layers=2,
                out_vectors=self.spatial.dim,
                dtype=frame_dtype,
            )
            self.frame_dtype = frame_dtype
            if self.noise_scale > 0:
                self.noise_fields["vectors"] = fields.node_vector
        if group.acts_on_nodes:
            self.scores = DenseGIN(None, hidden_dim, num_layers, 1, dropout)
            if self.noise_scale > 0:
                self.noise_fields["scalars"] = fields.node
            self.noise_fields["ties"] = fields.node

    def sample_noise(self, inputs, num_samples, generator=None) -> dict[str, Tensor]:
        """Invariant noise for ``num_samples`` samples per input, folded b-major."""
        b = features.batch_size(self.signature, inputs)
        n = features.node_count(self.signature, inputs)
        device = inputs[next(iter(self.signature.inputs))].device
        rows = b * num_samples
        noise = {}
        if "vectors" in self.noise_fields:
            v = features.node_vectors(self.signature, inputs, None)
            shape = (rows, n, v.shape[2], v.shape[3])
            noise["vectors"] = self.noise_scale * torch.randn(
                shape, generator=generator, device=device
            )
        if "scalars" in self.noise_fields:
            channels = 1 + _scalar_channels(self.signature, inputs)
            noise["scalars"] = self.noise_scale * torch.rand(
                rows, n, channels, generator=generator, device=device
            )
        if "ties" in self.noise_fields:
            noise["ties"] = torch.rand(rows, n, generator=generator, device=device)
        return noise

    def draw(
        self, inputs: Mapping[str, Tensor], num_samples: int, noise: Mapping[str, Tensor]
    ) -> Samples:
        """``num_samples`` elements per input, b-major."""
        sig, s = self.signature, num_samples
        mask = features.get_mask(sig, inputs)
        mask_f = None if mask is None else fold_samples(mask, s)
        b = features.batch_size(sig, inputs)
        n = features.node_count(sig, inputs)
        device = inputs[next(iter(sig.inputs))].device
        scalars = features.node_scalars(sig, inputs)
        ones = torch.ones(b, n, 1, device=device)
        h = ones if scalars is None else torch.cat([ones, scalars], dim=-1)
        h = fold_samples(h, s)  # (B, n, c)
        if "scalars" in noise:
            h = h + noise["scalars"]
        if mask_f is not None:
            h = h * mask_f.unsqueeze(-1)
        permutation = spatial = None
        regularization = zero(h)
        relaxed = None
        if self.spatial is not None:
            centroid = (
                features.point_centroid(sig, inputs) if self.spatial.has_translations else None
            )
            dtype = self.frame_dtype
            v = fold_samples(features.node_vectors(sig, inputs, centroid).to(dtype), s)
            if "vectors" in noise:  # (B, n, c, d)
                v = v + noise["vectors"].to(dtype)
                if mask_f is not None:
                    v = v * mask_f[:, :, None, None]
            gate = h[..., 1:].to(dtype) if scalars is not None else None
            frame, invariants = self.vectors(v, gate, mask_f)
            rotation = orthogonal_from_vectors(frame.transpose(1, 2), self.spatial.proper)
            rotation = rotation.to(inputs[_first_geometric(sig)].dtype)
            invariants = invariants.to(h.dtype)
            translation = None if centroid is None else fold_samples(centroid, s)
            spatial = make_spatial(self.spatial, rotation, translation)
            h = torch.cat([h, invariants], dim=-1)
        if self.scores is not None:
            adjacency = features.adjacency(sig, inputs, self.adjacency_name)
            scores = self.scores(h, adjacency, mask_f).squeeze(-1)  # (B, n)
            scores = normalize_scores(scores, mask_f) + self.tie_scale * noise["ties"]
            index = order_by_keys(scores.detach(), mask_f)
            if self.training and torch.is_grad_enabled():
                relaxed = soft_permutation(
                    scores, index, mask_f, self.tau, self.sinkhorn_iterations
                )
                regularization = permutation_entropy(relaxed, mask_f)
            permutation = Permutation(index, relaxed)
        return Samples(join_element(self.group, permutation, spatial), regularization, relaxed)

    def extra_repr(self) -> str:  # noqa: D102 - nn.Module hook
        return f"group={self.group!r}, noise_scale={self.noise_scale}, tau={self.tau}"


class Canonical(Learned):
    """Learned canonicalization: :class:`Learned` without noise, one deterministic element.

    Only the tie-break noise remains, so that exactly tied (automorphic) nodes are not ordered by
    their input index. Use it with ``num_samples=1``.
    """

    def __init__(self, group: Group, signature: Signature, **kwargs) -> None:
        if kwargs.pop("noise_scale", 0.0) != 0.0:
            raise ValueError("Canonical has no noise; use Learned for noise_scale > 0")
        super().__init__(group, signature, noise_scale=0.0, **kwargs)


def _scalar_channels(signature: Signature, inputs: Mapping[str, Tensor]) -> int:
    scalars = features.node_scalars(signature, inputs)
    return 0 if scalars is None else scalars.shape[-1]


def _first_geometric(signature: Signature) -> str:
    return next(k for k, f in signature.inputs.items() if f.geometry != "scalar")
