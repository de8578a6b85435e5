"""A run's ``log.csv`` as numbers: one dict per epoch, empty cells as ``None``."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from probsym.errors import ProbsymError

#: The permutation-entropy columns (``probsym.train.loop``; empty for groups without S_n).
ENTROPY_COLUMNS = (
    "samples",  # the training N of the epoch
    "train_perm_entropy",
    "train_perm_entropy_uniform",
    "val_perm_entropy",
    "val_perm_entropy_uniform",
)
#: Gradient norms before clipping, on the first ``--diagnostic-batches`` batches of each epoch.
GRADIENT_COLUMNS = ("grad_norm_base", "grad_norm_sampler", "train_regularization")


def read_log(run_dir: str | Path) -> list[dict[str, float | None]]:
    """The rows of ``run_dir/log.csv`` with every cell a float (``None`` when empty).

    Raises:
        ProbsymError: the run has no ``log.csv``.
    """
    path = Path(run_dir) / "log.csv"
    if not path.exists():
        raise ProbsymError(f"{run_dir} has no log.csv (has it trained an epoch?)")
    with path.open() as handle:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def curve_rows(
    rows: list[dict[str, float | None]],
    columns: tuple[str, ...],
    label: str,
    constants: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """``run, epoch``, ``constants`` and ``columns`` of every epoch (``None`` where missing)."""
    constants = constants or {}
    return [
        {"run": label, "epoch": int(r["epoch"]), **constants, **{c: r.get(c) for c in columns}}
        for r in rows
    ]


def _number(text: str | None) -> float | None:
    if text is None or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        return None
