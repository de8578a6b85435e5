"""What a benchmark provides to the training loop: data, model, loss and metrics.

A split is either in memory, a dict of tensors sharing the first (example) axis (the model's
declared inputs, the ``mask`` when graphs are padded, and the ``target``), or any
:class:`BatchSource` (e.g. :class:`probsym.data.loader.GraphSplit`) that builds such dicts one batch
at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from probsym.symmetrize import Symmetrize
from probsym.train.config import TrainConfig

Split = dict[str, Tensor]


@runtime_checkable
class BatchSource(Protocol):
    """A split that makes its own batches: ``len`` examples, dense dicts like :data:`Split`."""

    def __len__(self) -> int: ...

    def batches(self, batch_size: int, generator: torch.Generator | None = None) -> Iterator[Split]:
        """One epoch of batches, shuffled by ``generator`` (a fixed order without)."""
        ...


#: What ``build_data`` may return per split.
DataSplit = Split | BatchSource


def default_readout(value: Tensor, batch: Split) -> tuple[Tensor, Tensor]:
    """``(value, batch["target"])``: the prediction is the model's output as it is."""
    return value, batch["target"]


@dataclass(frozen=True)
class Experiment:
    """One benchmark, described by plain functions (no base classes to inherit).

    Attributes:
        name: CLI name.
        build_data: ``config -> {"train": split, "val": split, "test": split}``, each split a
            :data:`Split` dict or a :class:`BatchSource`.
        build_model: ``(config, example batch) -> Symmetrize``.
        loss: ``(prediction, target) -> scalar`` task loss (on the averaged prediction).
        metrics: ``(predictions, targets) -> {name: value}`` on a whole split.
        defaults: Config values that differ from :class:`TrainConfig`'s defaults.
        backbones: Allowed ``--backbone`` names (the first is the default).
        select: Validation key and direction (``"min"``/``"max"``) for model selection.
        extra_methods: Methods beyond the samplers of ``probsym.samplers.METHODS``, e.g.
            ``"none"`` (no symmetrization) for equivariant baselines.
        readout: ``(out.value, batch) -> (prediction, target)`` before loss and metrics, e.g. the
            real nodes of a node-level task as ``(V, C)`` logits and ``(V,)`` labels; evaluation
            concatenates its outputs over batches. ``None``: :func:`default_readout`.
        batch_metrics: ``(prediction, target) -> {name: value}`` per evaluation batch, averaged
            over batches and reported beside ``metrics`` (e.g. benchmarking-gnns' per-batch
            class-averaged accuracy). ``None``: none.
    """

    name: str
    build_data: Callable[[TrainConfig], dict[str, DataSplit]]
    build_model: Callable[[TrainConfig, Split], Symmetrize]
    loss: Callable[[Tensor, Tensor], Tensor]
    metrics: Callable[[Tensor, Tensor], dict[str, float]]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    backbones: tuple[str, ...] = ("mlp",)
    select: tuple[str, str] = ("loss", "min")
    extra_methods: tuple[str, ...] = ()
    readout: Callable[[Tensor, Split], tuple[Tensor, Tensor]] | None = None
    batch_metrics: Callable[[Tensor, Tensor], dict[str, float]] | None = None

    def read(self, value: Tensor, batch: Split) -> tuple[Tensor, Tensor]:
        """``(prediction, target)`` of one batch through :attr:`readout`."""
        return (self.readout or default_readout)(value, batch)


def split_size(split: DataSplit) -> int:
    """Number of examples in a split."""
    if isinstance(split, dict):
        return len(next(iter(split.values())))
    return len(split)


def limit_split(split: DataSplit, count: int) -> DataSplit:
    """The first ``count`` examples (``0`` keeps all); a batch source needs a ``head(count)``."""
    if count <= 0:
        return split
    if isinstance(split, dict):
        return {k: v[:count] for k, v in split.items()}
    return split.head(count)
