"""Data sets and batching: loaders, generators and collation. No models, no losses."""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable naming the folder where downloaded or generated data sets are cached.
DATA_ENV = "PROBSYM_DATA"


def cache_dir(name: str) -> Path:
    """``$PROBSYM_DATA/<name>``, or ``~/.cache/probsym/<name>``: where a data set is cached.

    One root for every data set, so that a user moves all of them with one variable.
    """
    root = os.environ.get(DATA_ENV)
    return (Path(root) if root else Path.home() / ".cache" / "probsym") / name
