"""The tiny n-body run configuration shared by the experiment, analysis and DDP tests."""

from __future__ import annotations

from pathlib import Path

from probsym.experiments import get
from probsym.train.config import TrainConfig, resolve


def tiny_nbody_config(data_dir: Path, out: Path, **options) -> TrainConfig:
    """A depth-1, 16-wide PS run on 12 simulations per split, 2 epochs; ``options`` override."""
    values = dict(
        data_dir=str(data_dir),
        out=str(out),
        limit=12,
        epochs=2,
        batch_size=4,
        eval_batch_size=6,
        samples=2,
        eval_samples=3,
        test_samples=4,
        hidden=16,
        depth=1,
        heads=2,
        interface_hidden=8,
        interface_layers=1,
        threads=1,
        quiet=True,
        eval_every=1,
        seed=3,
    )
    values.update(options)
    return resolve({"experiment": "nbody"}, dict(get("nbody").defaults), values)
