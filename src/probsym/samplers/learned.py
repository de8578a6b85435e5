"""Learned distributions: probabilistic symmetrization (PS) and learned canonicalization.

``g = post(q_w(x, ε))``: a small equivariant network ``q_w`` reads the input plus invariant noise
``ε`` and post-processing turns its output into an element:

* S_n: a masked dense GIN scores the nodes; the argsort of the scores is the permutation (hard in
  the forward pass; SoftSort + Sinkhorn carries straight-through gradients while training).
* O(d)/SO(d): a Vector-Neuron network outputs d equivariant vectors; Gram–Schmidt (plus the
  determinant fix for SO(d)) makes them a rotation. Its inputs are scale-normalised, enriched
  with second-moment features (:func:`geometric_features`) and, with noise, d extra channels of
  pure noise, so that a frame exists for every input that has one (docs/design.md).
* E(d)/SE(d): the translation is the masked centroid of the point input.
* Products: one network; its rotation-invariant per-node features feed the node scores.

Noise is i.i.d. per node (uniform on scalars, isotropic Gaussian on vectors), hence invariant in
law, so p(g|x) is equivariant (Kim et al. 2023). ``Canonical`` is the same with no noise. Both
networks compute in the sampler's own dtype (float64 by default, see ``Learned``), which
``Symmetrize.to(dtype)`` changes with the rest of the model.

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
from probsym.samplers.base import (
    FRAME_MARGIN,
    Sampler,
    Samples,
    make_spatial,
    rounding_floor,
    spatial_factor,
    zero,
)
from probsym.samplers.relax import (
    frame_from_vectors,
    normalize_scores,
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
        noise_scale: Noise amplitude: uniform ``U[0, s]`` on node scalars, ``N(0, s²)`` on vectors
            (relative to the cloud's RMS radius, so the noise scales with the input). ``0`` gives a
            deterministic (learned) canonicalization.
        tau: Temperature of the permutation relaxation (on L2-normalised scores).
        dropout: Dropout inside the GIN.
        adjacency: Name of the pair input whose channel 0 is the graph for message passing;
            ``"auto"`` takes the first pair input, ``None`` links all nodes.
        sinkhorn_iterations: Sinkhorn steps of the relaxation.
        tie_scale: Amplitude of the uniform tie-break noise added to normalised scores; it keeps
            automorphic (exactly tied) nodes from being ordered by their input index.
        dtype: Precision of the sampler's networks, Gram–Schmidt and sort. float64 (the default;
            the networks are tiny) keeps their own rounding far below the inputs': in float32,
            Gram–Schmidt multiplies rounding error by the frame's condition number and node
            scores computed from rotated inputs tie up to rounding on large sets. ``.to(dtype)``
            on the sampler or on the whole ``Symmetrize`` changes it.
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
        dtype: torch.dtype = torch.float64,
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
            self.vectors = VectorNeuronEncoder(
                None, None, vector_channels, num_layers=2, out_vectors=self.spatial.dim
            )
            if self.noise_scale > 0:
                self.noise_fields["vectors"] = fields.node_vector
        if group.acts_on_nodes:
            self.scores = DenseGIN(None, hidden_dim, num_layers, 1, dropout)
            if self.noise_scale > 0:
                self.noise_fields["scalars"] = fields.node
            self.noise_fields["ties"] = fields.node
        self.to(dtype)

    @property
    def dtype(self) -> torch.dtype:
        """The precision the sampler computes in (that of its parameters)."""
        return next(self.parameters()).dtype

    def sample_noise(self, inputs, num_samples, generator=None) -> dict[str, Tensor]:
        """Invariant noise for ``num_samples`` samples per input, folded b-major.

        ``vectors`` has one channel per input vector channel (added to it) plus d channels of
        pure noise, so that even one node with fewer than d vectors gets d random directions.
        """
        b = features.batch_size(self.signature, inputs)
        n = features.node_count(self.signature, inputs)
        device = inputs[next(iter(self.signature.inputs))].device
        rows, dtype = b * num_samples, self.dtype
        noise = {}
        if "vectors" in self.noise_fields:
            channels = _vector_channels(self.signature, inputs) + self.spatial.dim
            shape = (rows, n, channels, self.spatial.dim)
            noise["vectors"] = self.noise_scale * torch.randn(
                shape, generator=generator, device=device, dtype=dtype
            )
        if "scalars" in self.noise_fields:
            channels = 1 + _scalar_channels(self.signature, inputs)
            noise["scalars"] = self.noise_scale * torch.rand(
                rows, n, channels, generator=generator, device=device, dtype=dtype
            )
        if "ties" in self.noise_fields:
            noise["ties"] = torch.rand(rows, n, generator=generator, device=device, dtype=dtype)
        return noise

    def draw(
        self, inputs: Mapping[str, Tensor], num_samples: int, noise: Mapping[str, Tensor]
    ) -> Samples:
        """``num_samples`` elements per input, b-major."""
        sig, s, dtype = self.signature, num_samples, self.dtype
        mask = features.get_mask(sig, inputs)
        mask_f = None if mask is None else fold_samples(mask, s)
        b = features.batch_size(sig, inputs)
        n = features.node_count(sig, inputs)
        device = inputs[next(iter(sig.inputs))].device
        input_dtype = _input_dtype(sig, inputs)
        scalars = features.node_scalars(sig, inputs)
        scalars = None if scalars is None else scalars.to(dtype)
        ones = torch.ones(b, n, 1, device=device, dtype=dtype)
        h = ones if scalars is None else torch.cat([ones, scalars], dim=-1)
        h = fold_samples(h, s)  # (B, n, c)
        if "scalars" in noise:
            h = h + noise["scalars"].to(dtype)
        if mask_f is not None:
            h = h * mask_f.unsqueeze(-1)
        permutation = spatial = None
        regularization = zero(h)
        relaxed = None
        degenerate = torch.zeros(b * s, dtype=torch.bool, device=device)
        if self.spatial is not None:
            centroid = (
                features.point_centroid(sig, inputs) if self.spatial.has_translations else None
            )
            v_raw = features.node_vectors(sig, inputs, centroid).to(dtype)  # (b, n, c, d)
            v, _ = normalize_radius(v_raw, mask)
            v = fold_samples(v, s)
            if "vectors" in noise:
                v = add_vector_noise(v, noise["vectors"].to(dtype), mask_f)
            v, invariant_gate = geometric_features(v, mask_f)
            gate = (
                invariant_gate if scalars is None else torch.cat([h[..., 1:], invariant_gate], -1)
            )
            frame, invariants = self.vectors(v, gate, mask_f)
            rotation, margin = frame_from_vectors(frame.transpose(1, 2), self.spatial.proper)
            degenerate |= margin < rounding_floor(FRAME_MARGIN, input_dtype)
            shapeless = features.below_rounding(v_raw, centroid, mask, input_dtype)
            degenerate |= fold_samples(shapeless, s)
            rotation = rotation.to(_geometric_dtype(sig, inputs))
            translation = None if centroid is None else fold_samples(centroid, s)
            spatial = make_spatial(self.spatial, rotation, translation)
            h = torch.cat([h, invariants], dim=-1)
        if self.scores is not None:
            score_dtype = next(self.scores.parameters()).dtype
            adjacency = features.adjacency(sig, inputs, self.adjacency_name)
            scores = self.scores(h.to(score_dtype), adjacency, mask_f).squeeze(-1)  # (B, n)
            scores = normalize_scores(scores.to(dtype), mask_f)
            scores = scores + self.tie_scale * noise["ties"].to(dtype)
            keys = scores.detach()
            index = order_by_keys(keys, mask_f)
            if self.training and torch.is_grad_enabled():
                # the relaxation only shapes gradients: the inputs' precision is enough for it
                relaxed = soft_permutation(
                    scores.to(input_dtype), index, mask_f, self.tau, self.sinkhorn_iterations
                )
                regularization = permutation_entropy(relaxed, mask_f)
            permutation = Permutation(index, relaxed)
        element = join_element(self.group, permutation, spatial)
        regularization = regularization.to(input_dtype)
        return Samples(element, regularization, relaxed, degenerate)

    def extra_repr(self) -> str:  # noqa: D102 - nn.Module hook
        return f"group={self.group!r}, noise_scale={self.noise_scale}, tau={self.tau}"


def normalize_radius(v: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """Divide node vectors by their RMS norm over real nodes and channels (invariant, > 0).

    Makes the frame independent of the input's scale (1e-6 and 1e6 clouds alike) and sets the
    scale that the noise is relative to. All-zero inputs (coincident points) keep radius 0.

    Shapes:
        v: ``(b, n, c, d)`` with zero padding; mask ``(b, n)``; returns ``v`` and ``(b,)``.
    """
    nodes = torch.full(v.shape[:1], v.shape[1], dtype=v.dtype, device=v.device)
    if mask is not None:
        nodes = mask.sum(dim=1).to(v.dtype)
    radius = torch.sqrt((v * v).sum(dim=(1, 2, 3)) / (nodes * v.shape[2]).clamp_min(1))
    scale = torch.where(radius > 0, radius, torch.ones_like(radius))
    return v / scale[:, None, None, None], radius


def add_vector_noise(v: Tensor, noise: Tensor, mask: Tensor | None) -> Tensor:
    """Noise added to the c input channels, then its last d channels appended as pure noise.

    Shapes:
        v: ``(B, n, c, d)``; noise: ``(B, n, c + d, d)``; returns ``(B, n, c + d, d)``.
    """
    c = v.shape[2]
    v = torch.cat([v + noise[:, :, :c], noise[:, :, c:]], dim=2)
    return v if mask is None else v * mask[:, :, None, None].to(v.dtype)


def geometric_features(v: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """Second-moment vector channels and per-node invariants that make frames well-conditioned.

    Every Vector-Neuron channel of a node is a combination of that node's input channels, so a
    positions-only cloud gives frame vectors ``Σ_i w_i x_i`` whose weights depend on ``|x_i|``
    alone, nearly parallel at initialisation. With the deviatoric second moment
    ``M = S - tr(S)/d · I`` of ``S = Σ v vᵀ``, scaled to unit Frobenius norm (equivariant:
    ``M(Rx) = R M Rᵀ``), the channels ``v, M v, M² v`` span ``R^d`` for any cloud whose moment
    has distinct eigenvalues (a Krylov basis; removing the trace keeps ``M v`` from being nearly
    ``v / d``, which made that basis ill-conditioned), and the invariants ``|v|`` and ``vᵀ M v``
    per channel let the network weight nodes differently. Each channel also enters weighted by
    ``|v|``, ``|v|²`` and ``vᵀ M v``: centred positions sum to zero, so pooling ``v`` alone
    cancels and the frame becomes a small difference of large terms (a large gain on rounding
    error); the weighted sums do not cancel and point in independent directions.

    Shapes:
        v: ``(B, n, c, d)``, zero on padded nodes; returns vectors ``(B, n, 12c, d)`` and
        invariants ``(B, n, 2c)``.
    """
    # matmul with broadcasting, not einsum: einsum lowers these to a bmm over B tiny matrices
    # whose backward pass is 3-5x slower on CPU (measured)
    moment = torch.matmul(v.transpose(-1, -2), v).sum(dim=1)  # Σ v vᵀ, (B, d, d)
    d = v.shape[-1]
    trace = torch.diagonal(moment, dim1=1, dim2=2).sum(-1)
    eye = torch.eye(d, dtype=v.dtype, device=v.device)
    moment = moment - (trace / d)[:, None, None] * eye  # deviatoric: M v is not ≈ v / d
    size = moment.flatten(1).norm(dim=1)
    moment = moment / torch.where(size > 0, size, torch.ones_like(size))[:, None, None]
    norms = torch.sqrt((v * v).sum(-1) + 1e-24)  # (B, n, c)
    # |v| v does not sum to zero over a centred cloud, so pooled frame vectors do not cancel
    moment_rows = moment.unsqueeze(1)  # (B, 1, d, d); M is symmetric, so v M = (M v)ᵀ
    quadratic = (v * torch.matmul(v, moment_rows)).sum(-1)  # vᵀ M v, (B, n, c)
    weights = torch.stack([norms, norms * norms, quadratic], dim=-1)  # (B, n, c, 3) invariant
    weighted = (weights.unsqueeze(-1) * v.unsqueeze(-2)).flatten(2, 3)  # (B, n, 3c, d)
    base = torch.cat([v, weighted], dim=2)  # (B, n, 4c, d)
    first = torch.matmul(base, moment_rows)  # M v
    second = torch.matmul(first, moment_rows)  # M² v
    return torch.cat([base, first, second], dim=2), torch.cat([norms, quadratic], dim=-1)


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


def _vector_channels(signature: Signature, inputs: Mapping[str, Tensor]) -> int:
    vectors = features.node_vectors(signature, inputs, None)
    return 0 if vectors is None else vectors.shape[2]


def _geometric_dtype(signature: Signature, inputs: Mapping[str, Tensor]) -> torch.dtype:
    """The dtype elements act in: that of the first vector or point input."""
    name = next(k for k, f in signature.inputs.items() if f.geometry != "scalar")
    return inputs[name].dtype


def _input_dtype(signature: Signature, inputs: Mapping[str, Tensor]) -> torch.dtype:
    """The working precision of the inputs: the lowest floating dtype among them."""
    dtypes = [x.dtype for x in inputs.values() if x.is_floating_point()]
    if not dtypes:
        return torch.float32
    return max(dtypes, key=lambda t: torch.finfo(t).eps)
