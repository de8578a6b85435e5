"""What the learned frame network reads: scale-normalised vectors, noise channels, moments.

Kept apart from the sampler so that each construction is one small function with its reason
(docs/design.md, "What the frame network reads").

Shapes: ``b`` batch · ``B = b*s`` · ``n`` nodes (padded) · ``c`` vector channels · ``d`` space.
"""

from __future__ import annotations

import torch
from torch import Tensor


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
