"""What a sampler reads from a batch: the node mask, adjacency, invariant scalars, and vectors.

These helpers turn a signature-typed batch into the few tensors the equivariant networks take,
in one place, so that every sampler reads the data the same way.

Shapes: ``b`` batch · ``n`` nodes (padded) · ``c`` channels · ``d`` space.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from probsym.groups import masked_centroid
from probsym.groups.padding import zero_padded
from probsym.signature import Signature


def node_count(signature: Signature, inputs: Mapping[str, Tensor]) -> int:
    """Padded node count (1 when no input has a node axis)."""
    for name, fld in signature.inputs.items():
        if fld.node_axes:
            return inputs[name].shape[1]
    return 1


def batch_size(signature: Signature, inputs: Mapping[str, Tensor]) -> int:
    """Batch size of the declared inputs."""
    return inputs[next(iter(signature.inputs))].shape[0]


def get_mask(signature: Signature, inputs: Mapping[str, Tensor]) -> Tensor | None:
    """The node mask, or ``None``."""
    return inputs.get(signature.mask) if signature.mask else None


def adjacency(
    signature: Signature, inputs: Mapping[str, Tensor], name: str | None
) -> Tensor | None:
    """Channel 0 of the pair input ``name`` as a ``(b, n, n)`` adjacency (``None``: no graph)."""
    if name is None:
        return None
    pair = inputs[name]
    return pair.reshape(*pair.shape[:3], -1)[..., 0]


def default_adjacency_name(signature: Signature) -> str | None:
    """The first scalar pair input, used as the graph for message passing."""
    for name, fld in signature.inputs.items():
        if fld.node_axes == 2 and fld.geometry == "scalar":
            return name
    return None


def node_scalars(signature: Signature, inputs: Mapping[str, Tensor]) -> Tensor | None:
    """Invariant per-node scalars (scalar node fields) as ``(b, n, c)``, or ``None``.

    Integer and bool features become float32 (other dtypes are kept); padded nodes are zero.
    """
    parts = [
        inputs[name].reshape(*inputs[name].shape[:2], -1)
        for name, fld in signature.inputs.items()
        if fld.node_axes == 1 and fld.geometry == "scalar"
    ]
    if not parts:
        return None
    scalars = torch.cat([p.to(torch.promote_types(p.dtype, torch.float32)) for p in parts], dim=-1)
    return zero_padded(scalars, get_mask(signature, inputs), 1)


def point_centroid(signature: Signature, inputs: Mapping[str, Tensor]) -> Tensor | None:
    """Masked centroid ``(b, d)`` of the first point input (node points first), or ``None``."""
    mask = get_mask(signature, inputs)
    for want_nodes in (1, 0):
        for name, fld in signature.inputs.items():
            if fld.geometry == "point" and fld.node_axes == want_nodes:
                x = inputs[name]
                if want_nodes:
                    return masked_centroid(x, mask)
                return x.reshape(x.shape[0], -1, x.shape[-1]).mean(dim=1)
    return None


def node_vectors(
    signature: Signature, inputs: Mapping[str, Tensor], centroid: Tensor | None
) -> Tensor | None:
    """All geometric inputs as per-node vector channels ``(b, n, c, d)``, or ``None``.

    Points are taken relative to ``centroid`` (translation-invariant); node-free vectors and points
    are broadcast to every node. Padded nodes are zero, whatever the input holds there.
    """
    mask = get_mask(signature, inputs)
    n = node_count(signature, inputs)
    parts = []
    for name, fld in signature.inputs.items():
        if fld.geometry == "scalar" or fld.node_axes == 2:
            continue
        x = inputs[name]
        d = x.shape[-1]
        if fld.node_axes == 0:
            x = x.reshape(x.shape[0], 1, -1, d).expand(-1, n, -1, -1)
        else:
            x = x.reshape(x.shape[0], n, -1, d)
        if fld.geometry == "point" and centroid is not None:
            x = x - centroid[:, None, None, :].to(x.dtype)
        parts.append(x)
    if not parts:
        return None
    v = torch.cat([p.to(parts[0].dtype) for p in parts], dim=2)
    return zero_padded(v, mask, 1)


def below_rounding(
    vectors: Tensor, centroid: Tensor | None, mask: Tensor | None, dtype: torch.dtype
) -> Tensor:
    """Items whose vectors are no larger than the rounding error of their absolute position.

    Points are known to ``eps·|x|``: a cloud far from the origin whose extent is below that has
    no shape at the inputs' precision (coincident points become rounding noise once moved).
    The RMS vector norm is compared with ``100·eps`` times the centroid's norm (0 without one).

    Shapes:
        vectors: ``(b, n, c, d)``, zero padding; centroid: ``(b, d)``; returns ``(b,)`` bool.
    """
    v = vectors.double()
    nodes = torch.full(v.shape[:1], v.shape[1], dtype=v.dtype, device=v.device)
    if mask is not None:
        nodes = mask.sum(dim=1).to(v.dtype)
    radius = torch.sqrt(v.square().sum(dim=(1, 2, 3)) / (nodes * v.shape[2]).clamp_min(1))
    eps = torch.finfo(dtype).eps if dtype.is_floating_point else torch.finfo(torch.float32).eps
    position = 0.0 if centroid is None else centroid.double().norm(dim=-1)
    return radius <= 100 * eps * position + torch.finfo(torch.float64).tiny


def geometric_dtype(signature: Signature, inputs: Mapping[str, Tensor]) -> torch.dtype:
    """The dtype group elements act in: that of the first floating vector or point input.

    float32 when there is none (geometric inputs are checked to be floating point).
    """
    for name, fld in signature.inputs.items():
        if fld.geometry != "scalar" and inputs[name].is_floating_point():
            return inputs[name].dtype
    return torch.float32


def working_dtype(inputs: Mapping[str, Tensor]) -> torch.dtype:
    """The inputs' working precision: their lowest floating dtype (float32 when none is)."""
    dtypes = [x.dtype for x in inputs.values() if x.is_floating_point()]
    if not dtypes:
        return torch.float32
    return max(dtypes, key=lambda t: torch.finfo(t).eps)
