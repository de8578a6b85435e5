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
law, so p(g|x) is equivariant (Kim et al. 2023). It enters at the network's inputs (the paper's
choice, ``noise_at="input"``: the network runs on all ``b*s`` noisy copies) or at its heads
(``noise_at="heads"``: the network runs once per input, and the ``s`` samples differ only by noise
added to the node scores before the sort and to the frame vectors before Gram–Schmidt).
``antithetic=True`` pairs consecutive samples with mirrored noise (``ε, -ε``; ``u, 1 - u``).
``Canonical`` is the same with no noise. Both
networks compute in the sampler's own dtype (float64 by default, see ``Learned``), which
``Symmetrize.to(dtype)`` changes with the rest of the model.

Shapes: ``b`` batch · ``s`` samples · ``B = b*s`` · ``n`` nodes (padded) · ``c`` channels ·
``d`` space.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
from torch import Tensor

from probsym import fields
from probsym.folding import fold_samples, unfold_samples
from probsym.groups import Group, GroupElement, Permutation, join_element
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
from probsym.samplers.frame_inputs import add_vector_noise, geometric_features, normalize_radius
from probsym.samplers.relax import (
    frame_from_vectors,
    normalize_scores,
    permutation_entropy,
    soft_permutation,
)
from probsym.signature import Signature

NoiseEntry = Literal["input", "heads"]
#: Where ``Learned`` adds its noise (see its ``noise_at`` argument).
NOISE_ENTRIES: tuple[str, ...] = ("input", "heads")


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
        noise_at: Where the noise enters. ``"input"`` (the default, the paper's sampler): added
            to the node scalars and vectors the network reads, so the network runs on every one
            of the ``b*s`` noisy copies. ``"heads"``: the network reads the noiseless input once
            per item (``b`` rows), and sample j adds ``noise_scale · U[0, 1]`` per node to the
            raw node scores (before centring, normalisation and the sort) and ``noise_scale ·
            N(0, 1)`` to every coordinate of the d frame vectors (before Gram–Schmidt; the frame
            network reads the input in units of its RMS radius, so the noise is in those units
            too). The noise is invariant in law (i.i.d. per node; isotropic vectors that rotate
            with the input), so p(g|x) stays equivariant and the exact check applies; the network
            sets how concentrated p(g|x) is through the size of its scores and frame vectors.
            About ``s`` times less network work per step; the relaxation still runs per sample.
        antithetic: Pair samples ``2k`` and ``2k + 1`` of every input with mirrored noise:
            ``-ε`` for the Gaussian vector noise and ``1 - u`` for the uniform noise (scalars,
            scores and tie-breaks), which have the same law as ``ε`` and ``u``. Every sample keeps
            its distribution (the average stays unbiased) while the pair is anti-correlated (a
            variance reduction where the output is monotone in the noise); an odd last sample is
            unpaired. Mirroring commutes with the group action, so the exact check applies.
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
        noise_at: NoiseEntry = "input",
        antithetic: bool = False,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__(group, signature)
        if noise_scale < 0 or tau <= 0:
            raise ValueError(f"need noise_scale >= 0 and tau > 0, got {noise_scale}, {tau}")
        if noise_at not in NOISE_ENTRIES:
            raise ValueError(f"noise_at must be one of {NOISE_ENTRIES}, got {noise_at!r}")
        self.noise_scale, self.tau = float(noise_scale), float(tau)
        self.noise_at, self.antithetic = noise_at, bool(antithetic)
        self.sinkhorn_iterations, self.tie_scale = sinkhorn_iterations, tie_scale
        self.dropout = float(dropout)
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
                self.noise_fields[self._vector_noise] = (
                    fields.node_vector if noise_at == "input" else fields.vector
                )
        if group.acts_on_nodes:
            self.scores = DenseGIN(None, hidden_dim, num_layers, 1, dropout)
            if self.noise_scale > 0:
                self.noise_fields[self._scalar_noise] = fields.node
            self.noise_fields["ties"] = fields.node
        self.to(dtype)

    @property
    def dtype(self) -> torch.dtype:
        """The precision the sampler computes in (that of its parameters)."""
        return next(self.parameters()).dtype

    @property
    def _vector_noise(self) -> str:
        """The key of the Gaussian noise: per-node input ``vectors`` or head ``frame`` vectors."""
        return "vectors" if self.noise_at == "input" else "frame"

    @property
    def _scalar_noise(self) -> str:
        """The key of the uniform noise: input node ``scalars`` or head node ``scores``."""
        return "scalars" if self.noise_at == "input" else "scores"

    def sample_noise(self, inputs, num_samples, generator=None) -> dict[str, Tensor]:
        """Invariant noise for ``num_samples`` samples per input, folded b-major.

        ``noise_at="input"``: ``vectors`` ``(b*s, n, c + d, d)`` has one channel per input vector
        channel (added to it) plus d channels of pure noise, so that even one node with fewer
        than d vectors gets d random directions; ``scalars`` ``(b*s, n, 1 + c)``.
        ``noise_at="heads"``: ``frame`` ``(b*s, d, d)``, one noise vector per frame vector, and
        ``scores`` ``(b*s, n)``. Both: tie-breaks ``ties`` ``(b*s, n)``, uniform on [0, 1].
        """
        b = features.batch_size(self.signature, inputs)
        n = features.node_count(self.signature, inputs)
        device = inputs[next(iter(self.signature.inputs))].device
        rows, dtype, s = b * num_samples, self.dtype, num_samples
        options = dict(generator=generator, device=device, dtype=dtype)
        noise = {}
        if "vectors" in self.noise_fields:
            channels = _vector_channels(self.signature, inputs) + self.spatial.dim
            shape = (rows, n, channels, self.spatial.dim)
            noise["vectors"] = self._gaussian(shape, s, options)
        if "frame" in self.noise_fields:
            d = self.spatial.dim
            noise["frame"] = self._gaussian((rows, d, d), s, options)
        if "scalars" in self.noise_fields:
            channels = 1 + _scalar_channels(self.signature, inputs)
            noise["scalars"] = self._uniform((rows, n, channels), s, options, self.noise_scale)
        if "scores" in self.noise_fields:
            noise["scores"] = self._uniform((rows, n), s, options, self.noise_scale)
        if "ties" in self.noise_fields:
            noise["ties"] = self._uniform((rows, n), s, options, 1.0)
        return noise

    def _gaussian(self, shape: tuple[int, ...], s: int, options: dict) -> Tensor:
        """``noise_scale · N(0, 1)``; with ``antithetic``, sample ``2k + 1`` is ``-(sample 2k)``."""
        x = self.noise_scale * torch.randn(shape, **options)
        return mirror_pairs(x, s, lambda a: -a) if self.antithetic else x

    def _uniform(self, shape: tuple[int, ...], s: int, options: dict, scale: float) -> Tensor:
        """``U[0, scale]``; with ``antithetic``, sample ``2k + 1`` is ``scale -`` sample ``2k``."""
        x = scale * torch.rand(shape, **options)
        return mirror_pairs(x, s, lambda a: scale - a) if self.antithetic else x

    def draw(
        self, inputs: Mapping[str, Tensor], num_samples: int, noise: Mapping[str, Tensor]
    ) -> Samples:
        """``num_samples`` elements per input, b-major.

        With ``noise_at="heads"`` the networks run on the ``b`` noiseless inputs, once; their
        outputs (raw node scores ``(b, n)``, frame vectors ``(b, d, d)``) are repeated over the
        samples and the noise is added there. ``h(g·x, g·ε) = g @ h(x, ε)`` holds in both modes:
        the networks are equivariant, and ``g`` acts on the noise as on what it is added to.
        """
        sig, s, dtype = self.signature, num_samples, self.dtype
        heads = self.noise_at == "heads"
        mask = features.get_mask(sig, inputs)
        mask_f = None if mask is None else fold_samples(mask, s)
        b = features.batch_size(sig, inputs)
        n = features.node_count(sig, inputs)
        device = inputs[next(iter(sig.inputs))].device
        input_dtype = features.working_dtype(inputs)
        scalars = features.node_scalars(sig, inputs)
        scalars = None if scalars is None else scalars.to(dtype)
        ones = torch.ones(b, n, 1, device=device, dtype=dtype)
        h = ones if scalars is None else torch.cat([ones, scalars], dim=-1)  # (b, n, c)
        net_mask = mask if heads else mask_f  # the rows the networks see: b or B = b*s
        if not heads:
            h = fold_samples(h, s)  # (B, n, c)
            if "scalars" in noise:
                h = h + noise["scalars"].to(dtype)
        if net_mask is not None:
            h = h * net_mask.unsqueeze(-1)
        permutation = spatial = relaxed = None
        regularization = zero(h)
        degenerate = torch.zeros(b * s, dtype=torch.bool, device=device)
        if self.spatial is not None:
            spatial, invariants, degenerate = self._draw_spatial(
                inputs, s, noise, h, scalars, mask, input_dtype
            )
            h = torch.cat([h, invariants], dim=-1)
        if self.scores is not None:
            permutation, relaxed, regularization = self._draw_permutation(
                inputs, s, noise, h, mask_f, input_dtype
            )
        element = join_element(self.group, permutation, spatial)
        regularization = regularization.to(input_dtype)
        return Samples(element, regularization, relaxed, degenerate)

    def _draw_spatial(
        self,
        inputs: Mapping[str, Tensor],
        s: int,
        noise: Mapping[str, Tensor],
        h: Tensor,
        scalars: Tensor | None,
        mask: Tensor | None,
        input_dtype: torch.dtype,
    ) -> tuple[GroupElement, Tensor, Tensor]:
        """The rotation (and translation) part, the per-node invariants, and degenerate rows.

        The invariants have the network's rows: ``b*s`` (noise at the input) or ``b`` (heads).
        """
        sig, dtype, heads = self.signature, self.dtype, self.noise_at == "heads"
        mask_f = None if mask is None else fold_samples(mask, s)
        centroid = features.point_centroid(sig, inputs) if self.spatial.has_translations else None
        v_raw = features.node_vectors(sig, inputs, centroid).to(dtype)  # (b, n, c, d)
        v = normalize_radius(v_raw, mask)[0]
        net_mask = mask if heads else mask_f
        if not heads:
            v = fold_samples(v, s)
            if "vectors" in noise:
                v = add_vector_noise(v, noise["vectors"].to(dtype), mask_f)  # (B, n, c + d, d)
        v, invariant_gate = geometric_features(v, net_mask)
        gate = invariant_gate if scalars is None else torch.cat([h[..., 1:], invariant_gate], -1)
        frame, invariants = self.vectors(v, gate, net_mask)  # frame: rows are the d vectors
        if heads:
            frame = fold_samples(frame, s)  # (B, d, d)
            if "frame" in noise:
                frame = frame + noise["frame"].to(dtype)
        rotation, margin = frame_from_vectors(frame.transpose(1, 2), self.spatial.proper)
        degenerate = margin < rounding_floor(FRAME_MARGIN, input_dtype)
        degenerate |= fold_samples(features.below_rounding(v_raw, centroid, mask, input_dtype), s)
        rotation = rotation.to(features.geometric_dtype(sig, inputs))
        translation = None if centroid is None else fold_samples(centroid, s)
        return make_spatial(self.spatial, rotation, translation), invariants, degenerate

    def _draw_permutation(
        self,
        inputs: Mapping[str, Tensor],
        s: int,
        noise: Mapping[str, Tensor],
        h: Tensor,
        mask: Tensor | None,
        input_dtype: torch.dtype,
    ) -> tuple[Permutation, Tensor | None, Tensor]:
        """The node order from scores (hard), its relaxation and entropy while training.

        The order comes from scores in the sampler's precision. The relaxation only shapes
        gradients, so while training with float32 inputs and a float64 score network on all
        ``b*s`` rows (noise at the input) the gradient pass runs a float32 copy of the network
        (same weights, same batch statistics) and the float64 pass runs without autograd: about
        a third of the float64 cost. With noise at the heads the network sees ``b`` rows and
        runs once, with autograd. ``mask`` is folded, ``(b*s, n)``.
        """
        dtype, heads = self.dtype, self.noise_at == "heads"
        score_dtype = next(self.scores.parameters()).dtype
        adjacency = features.adjacency(self.signature, inputs, self.adjacency_name)
        net_mask = features.get_mask(self.signature, inputs) if heads else mask
        ties = self.tie_scale * noise["ties"]
        train = self.training and torch.is_grad_enabled()
        # (not with dropout: the two passes would draw different dropout masks)
        fast = (
            train
            and not heads
            and self.dropout == 0
            and torch.finfo(input_dtype).bits < torch.finfo(score_dtype).bits
        )
        with torch.set_grad_enabled(train and not fast):
            scores = self.scores(h.to(score_dtype), adjacency, net_mask)
            scores = scores.squeeze(-1).to(dtype)  # (B, n), or (b, n) with noise at the heads
            if heads:
                scores = fold_samples(scores, s)
                if "scores" in noise:
                    scores = scores + noise["scores"].to(dtype)
            scores = normalize_scores(scores, mask) + ties.to(dtype)
        index = order_by_keys(scores.detach(), mask)
        relaxed, regularization = None, zero(h)
        if train:
            if fast:
                soft = self._scores_in(input_dtype, h, adjacency, mask)
                soft = normalize_scores(soft, mask) + ties.to(input_dtype)
            else:
                soft = scores.to(input_dtype)
            relaxed = soft_permutation(soft, index, mask, self.tau, self.sinkhorn_iterations)
            regularization = permutation_entropy(relaxed, mask)
        return Permutation(index, relaxed), relaxed, regularization

    def _scores_in(
        self, dtype: torch.dtype, h: Tensor, adjacency: Tensor | None, mask: Tensor | None
    ) -> Tensor:
        """The score network in ``dtype``, on cast copies of its weights and buffers.

        Gradients flow back to the original weights; running-statistic updates land on the
        copies and are dropped (the exact pass made them).
        """
        state = {
            name: t.to(dtype) if t.is_floating_point() else t.clone()
            for name, t in [*self.scores.named_parameters(), *self.scores.named_buffers()]
        }
        args = (h.to(dtype), adjacency, mask)
        return torch.func.functional_call(self.scores, state, args).squeeze(-1)

    def extra_repr(self) -> str:  # noqa: D102 - nn.Module hook
        extra = f", noise_at={self.noise_at!r}" if self.noise_at != "input" else ""
        extra += ", antithetic=True" if self.antithetic else ""
        return f"group={self.group!r}, noise_scale={self.noise_scale}, tau={self.tau}{extra}"


class Canonical(Learned):
    """Learned canonicalization: :class:`Learned` without noise, one deterministic element.

    Only the tie-break noise remains, so that exactly tied (automorphic) nodes are not ordered by
    their input index. Use it with ``num_samples=1``.
    """

    def __init__(self, group: Group, signature: Signature, **kwargs) -> None:
        if kwargs.pop("noise_scale", 0.0) != 0.0:
            raise ValueError("Canonical has no noise; use Learned for noise_scale > 0")
        super().__init__(group, signature, noise_scale=0.0, **kwargs)


def mirror_pairs(x: Tensor, num_samples: int, mirror) -> Tensor:
    """Replace sample ``2k + 1`` of every input by ``mirror(sample 2k)`` (antithetic pairs).

    Shapes:
        x: ``(b*s, ...)``, b-major; returns the same shape. An odd last sample is kept.
    """
    if num_samples < 2:
        return x
    y = unfold_samples(x, num_samples).clone()  # (b, s, ...)
    pairs = num_samples // 2
    y[:, 1 : 2 * pairs : 2] = mirror(y[:, 0 : 2 * pairs : 2])
    return y.reshape(x.shape)


def _scalar_channels(signature: Signature, inputs: Mapping[str, Tensor]) -> int:
    scalars = features.node_scalars(signature, inputs)
    return 0 if scalars is None else scalars.shape[-1]


def _vector_channels(signature: Signature, inputs: Mapping[str, Tensor]) -> int:
    vectors = features.node_vectors(signature, inputs, None)
    return 0 if vectors is None else vectors.shape[2]
