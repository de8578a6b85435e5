"""A model's transformation law: how every input and output tensor transforms, declared once.

``Signature`` is carried by :class:`~probsym.Symmetrize` and the samplers, and read by
:mod:`probsym.testing`; nothing in probsym guesses a tensor's law from its shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from probsym.errors import InputError, MaskError, NonFiniteError, ShapeError, UnknownNameError
from probsym.fields import Field
from probsym.groups import Group
from probsym.groups.padding import real_entries


class BatchInfo(NamedTuple):
    """Sizes read off a validated batch."""

    batch_size: int
    num_nodes: int | None
    dim: int | None


def _describe(fld: Field) -> str:
    axes = ["b"] + ["n"] * fld.node_axes + ["*c"] + (["d"] if fld.geometry != "scalar" else [])
    return f"({', '.join(axes)})"


@dataclass(frozen=True, eq=False)
class Signature:
    """Declared fields of a model's inputs and outputs.

    Args:
        inputs: name -> :class:`~probsym.fields.Field` for every tensor the base model takes.
        outputs: one field (the model returns a tensor) or name -> field (it returns a dict).
        mask: name of the ``(b, n)`` bool node mask passed with the inputs, or ``None``.

    Example:
        >>> from probsym import fields
        >>> sig = Signature({"x": fields.node, "adj": fields.pair}, fields.scalar)
        >>> sorted(sig.inputs)
        ['adj', 'x']
    """

    inputs: Mapping[str, Field]
    outputs: Field | Mapping[str, Field]
    mask: str | None = "mask"

    def __post_init__(self) -> None:
        for name, fld in {**self.inputs, **self.output_fields}.items():
            if not isinstance(fld, Field):
                raise TypeError(f"field of {name!r} must be a probsym Field, got {fld!r}")
        if self.mask is not None and self.mask in self.inputs:
            raise ValueError(f"the mask name {self.mask!r} is also declared as an input field")

    @property
    def output_fields(self) -> dict[str, Field]:
        """Outputs as a dict (a single output field is keyed ``""``)."""
        if isinstance(self.outputs, Field):
            return {"": self.outputs}
        return dict(self.outputs)

    @property
    def has_nodes(self) -> bool:
        """Whether any input or output has a node axis."""
        return any(f.node_axes for f in {**self.inputs, **self.output_fields}.values())

    def split(self, batch: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], Tensor | None]:
        """Separate the declared tensors from the mask; unknown names raise."""
        allowed = set(self.inputs) | ({self.mask} if self.mask else set())
        for name in batch:
            if name not in allowed:
                raise UnknownNameError("input", name, allowed)
        missing = [name for name in self.inputs if name not in batch]
        if missing:
            raise InputError(
                f"missing declared input(s) {missing}; the signature declares {list(self.inputs)}"
            )
        mask = batch.get(self.mask) if self.mask else None
        return {name: batch[name] for name in self.inputs}, mask

    def check(
        self, batch: Mapping[str, Tensor], group: Group | None = None, finite: bool = True
    ) -> BatchInfo:
        """Validate a batch against the signature (and the group's dimension).

        Raises:
            UnknownNameError: an input name that is not declared.
            InputError: a declared input is missing or not a tensor, or a vector/point input is
                not floating point.
            ShapeError: a tensor has too few axes, sizes disagree (batch, node count, d), or the
                batch is empty.
            MaskError: the mask is not ``(b, n)`` bool, or a graph has no real node.
            NonFiniteError: an input holds NaN or inf (skipped with ``finite=False``).
        """
        tensors, mask = self.split(batch)
        batch_size = num_nodes = dim = None
        dim_source = ""
        if group is not None and group.dim is not None:
            dim, dim_source = group.dim, f"the group {group!r}"
        for name, x in tensors.items():
            fld = self.inputs[name]
            if not isinstance(x, Tensor):
                raise InputError(f"input {name!r} must be a torch.Tensor, got {type(x).__name__}")
            if x.ndim < fld.min_ndim:
                raise ShapeError(
                    f"input {name!r} declared {fld!r} needs shape {_describe(fld)}, "
                    f"got {tuple(x.shape)}"
                )
            if fld.geometry != "scalar" and not x.is_floating_point():
                raise InputError(
                    f"input {name!r} declared {fld!r} is rotated, so it must be a floating-point "
                    f"tensor, got {x.dtype}"
                )
            if batch_size is None:
                batch_size = x.shape[0]
            elif x.shape[0] != batch_size:
                raise ShapeError(
                    f"input {name!r} has batch size {x.shape[0]}, expected "
                    f"{batch_size} like the other inputs"
                )
            for axis in range(1, 1 + fld.node_axes):
                if num_nodes is None:
                    num_nodes = x.shape[axis]
                elif x.shape[axis] != num_nodes:
                    raise ShapeError(
                        f"input {name!r} declared {fld!r} has {x.shape[axis]} nodes "
                        f"on axis {axis}, expected {num_nodes}; shape {tuple(x.shape)}"
                    )
            if fld.geometry != "scalar":
                if dim is None:
                    dim, dim_source = x.shape[-1], f"input {name!r}"
                elif x.shape[-1] != dim:
                    raise ShapeError(
                        f"input {name!r} declared {fld!r} has {x.shape[-1]}-D "
                        f"vectors (last axis), but {dim_source} is {dim}-D; shape "
                        f"{tuple(x.shape)}"
                    )
        if batch_size is None:
            raise InputError("the batch holds no declared input tensor")
        if batch_size == 0:
            raise ShapeError(
                f"the batch is empty: the inputs have batch size 0, expected at least 1; "
                f"shapes {[tuple(x.shape) for x in tensors.values()]}"
            )
        self._check_mask(mask, batch_size, num_nodes)
        if finite:
            self._check_finite(tensors, mask)
        return BatchInfo(batch_size, num_nodes, dim)

    def _check_finite(self, tensors: Mapping[str, Tensor], mask: Tensor | None) -> None:
        """NaN or inf on a real entry raises; padded entries may hold anything."""
        for name, x in tensors.items():
            if not x.is_floating_point():
                continue
            finite = torch.isfinite(x)
            node_axes = self.inputs[name].node_axes
            if mask is not None and node_axes:
                finite = finite | ~real_entries(mask, x.ndim, node_axes)
            if not bool(finite.all()):
                raise NonFiniteError(f"input {name!r} contains NaN or inf on a real node")

    def _check_mask(self, mask: Tensor | None, batch_size: int, num_nodes: int | None) -> None:
        if mask is None:
            if num_nodes == 0:
                raise MaskError("the inputs have 0 nodes: empty graphs cannot be symmetrized")
            return
        if num_nodes is None:
            raise MaskError(f"mask {self.mask!r} given but no input has a node axis")
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
            raise MaskError(f"mask {self.mask!r} must be a bool tensor")
        if tuple(mask.shape) != (batch_size, num_nodes):
            raise MaskError(
                f"mask {self.mask!r} has shape {tuple(mask.shape)}, expected "
                f"(batch, nodes) = ({batch_size}, {num_nodes})"
            )
        empty = (~mask.any(dim=1)).nonzero().flatten()
        if len(empty):
            raise MaskError(
                f"graph(s) {empty[:10].tolist()} in the batch have no real node "
                f"(mask all False): empty graphs cannot be symmetrized"
            )

    def check_outputs(
        self,
        y: Tensor | Mapping[str, Tensor],
        batch_size: int,
        num_nodes: int | None = None,
        dim: int | None = None,
    ) -> None:
        """Validate what the base model returned against the declared outputs.

        Args:
            y: The base model's return value.
            batch_size: Expected leading size (the folded ``b*s``).
            num_nodes: Expected size of every node axis (from the inputs); ``None`` skips it.
            dim: Expected last-axis size of vector/point outputs; ``None`` skips it.

        Raises:
            InputError: ``y`` is not a tensor, or not a dict with the declared keys.
            ShapeError: an output has too few axes, or the wrong batch, node or geometric size.
        """
        if isinstance(self.outputs, Field):
            if not isinstance(y, Tensor):
                raise InputError(
                    f"the base model must return a tensor (declared {self.outputs!r}),"
                    f" got {type(y).__name__}"
                )
            items = {"": y}
        else:
            if not isinstance(y, Mapping) or set(y) != set(self.outputs):
                got = sorted(y) if isinstance(y, Mapping) else type(y).__name__
                raise InputError(
                    f"the base model must return a dict with keys {sorted(self.outputs)}, got {got}"
                )
            items = dict(y)
        for name, out in items.items():
            fld = self.output_fields[name]
            label = f"output {name!r}" if name else "the output"
            if not isinstance(out, Tensor):
                raise InputError(f"{label} must be a torch.Tensor, got {type(out).__name__}")
            if out.ndim < fld.min_ndim or out.shape[0] != batch_size:
                raise ShapeError(
                    f"{label} declared {fld!r} needs shape {_describe(fld)} with batch "
                    f"{batch_size}, got {tuple(out.shape)}"
                )
            if num_nodes is not None:
                for axis in range(1, 1 + fld.node_axes):
                    if out.shape[axis] != num_nodes:
                        raise ShapeError(
                            f"{label} declared {fld!r} has {out.shape[axis]} nodes on axis "
                            f"{axis}, expected {num_nodes} like the inputs; shape "
                            f"{tuple(out.shape)}"
                        )
            if dim is not None and fld.geometry != "scalar" and out.shape[-1] != dim:
                raise ShapeError(
                    f"{label} declared {fld!r} has {out.shape[-1]}-D vectors (last axis), "
                    f"expected {dim}-D like the inputs; shape {tuple(out.shape)}"
                )
