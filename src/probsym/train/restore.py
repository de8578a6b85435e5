"""Rebuild a finished (or interrupted) run's model from its run directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from probsym.errors import ProbsymError
from probsym.experiments.base import DataSplit, Experiment
from probsym.symmetrize import Symmetrize
from probsym.train import checkpoint
from probsym.train import config as cfg
from probsym.train.config import TrainConfig


@dataclass(frozen=True)
class Restored:
    """A run's experiment, resolved config, data splits and model (weights loaded, eval mode).

    ``ema`` says whether the weights are the run's EMA weights (runs with ``--ema``).
    """

    experiment: Experiment
    config: TrainConfig
    data: dict[str, DataSplit]
    model: Symmetrize
    ema: bool = False


def read_config(run_dir: str | Path) -> TrainConfig:
    """The resolved config a run wrote to ``run_dir/config.toml``.

    Raises:
        ProbsymError: ``run_dir`` holds no ``config.toml``.
    """
    path = Path(run_dir) / "config.toml"
    if not path.exists():
        raise ProbsymError(f"{run_dir} is not a run directory (no config.toml)")
    return cfg.resolve(cfg.load_toml(path))


def restore(
    run_dir: str | Path, which: str = "best", device: str | torch.device | None = None
) -> Restored:
    """Load ``run_dir``'s ``best`` (validation-selected) or ``last`` weights into a fresh model.

    For a run with ``--ema`` both are the EMA weights (what the run validated and tested);
    ``last.pt`` also holds the live weights, for ``--resume``.

    Raises:
        ProbsymError: no config or no such checkpoint in ``run_dir``.
    """
    from probsym import experiments
    from probsym.train.loop import build_model

    if which not in ("best", "last"):
        raise ProbsymError(f"which must be 'best' or 'last', got {which!r}")
    config = read_config(run_dir)
    weights = Path(run_dir) / f"{which}.pt"
    if not weights.exists():
        raise ProbsymError(f"{run_dir} has no {which}.pt checkpoint (did the run save one?)")
    device = torch.device(device or config.device)
    experiment = experiments.get(config.experiment)
    data = experiment.build_data(config)
    model = build_model(experiment, config, data["train"], device)
    saved = checkpoint.load(weights, device)
    if "ema" in saved and not isinstance(saved["ema"], bool):  # last.pt: the averaged model
        model.load_state_dict(checkpoint.averaged_weights(saved["ema"]))
        return Restored(experiment, config, data, model, ema=True)
    model.load_state_dict(saved["model"])  # best.pt holds the EMA weights as "model"
    return Restored(experiment, config, data, model, ema=bool(saved.get("ema", False)))
