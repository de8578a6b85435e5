"""What a benchmark provides to the training loop: data, model, loss and metrics.

Data are in-memory splits: dicts of tensors sharing the first (example) axis, holding the model's
declared inputs, the ``mask`` when graphs are padded, and the ``target``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from probsym.symmetrize import Symmetrize
from probsym.train.config import TrainConfig

Split = dict[str, Tensor]


@dataclass(frozen=True)
class Experiment:
    """One benchmark, described by plain functions (no base classes to inherit).

    Attributes:
        name: CLI name.
        build_data: ``config -> {"train": Split, "val": Split, "test": Split}``.
        build_model: ``(config, example batch) -> Symmetrize``.
        loss: ``(prediction, target) -> scalar`` task loss (on the averaged prediction).
        metrics: ``(predictions, targets) -> {name: value}`` on a whole split.
        defaults: Config values that differ from :class:`TrainConfig`'s defaults.
        backbones: Allowed ``--backbone`` names (the first is the default).
        select: Validation key and direction (``"min"``/``"max"``) for model selection.
    """

    name: str
    build_data: Callable[[TrainConfig], dict[str, Split]]
    build_model: Callable[[TrainConfig, Split], Symmetrize]
    loss: Callable[[Tensor, Tensor], Tensor]
    metrics: Callable[[Tensor, Tensor], dict[str, float]]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    backbones: tuple[str, ...] = ("mlp",)
    select: tuple[str, str] = ("loss", "min")


def limit_split(split: Split, count: int) -> Split:
    """The first ``count`` examples (``0`` keeps all)."""
    if count <= 0:
        return split
    return {k: v[:count] for k, v in split.items()}
