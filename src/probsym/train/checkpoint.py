"""Atomic checkpoints: write to a temporary file in the same folder, then ``os.replace``.

A kill during a write leaves the previous checkpoint intact. ``last.pt`` holds the model,
optimizer, EMA (``"ema"``: the ``AveragedModel`` state), epoch, step, clocks, best-so-far state and
every RNG state, so that a resumed run continues exactly where the interrupted one stopped (the lr
and N schedules are functions of the step and the clocks). ``best.pt`` holds the selected weights
(``"model"``: the EMA weights when ``"ema"`` is true), the epoch and the ``"ema"`` flag.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def atomic_write_bytes(path: Path, write) -> None:
    """Call ``write(handle)`` on a temporary file, then move it over ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(path: Path, state: dict[str, Any]) -> None:
    """Save a checkpoint dict atomically."""
    atomic_write_bytes(path, lambda handle: torch.save(state, handle))


def load(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save`."""
    return torch.load(path, map_location=map_location, weights_only=False)


def averaged_weights(state: dict[str, Any]) -> dict[str, Any]:
    """The averaged module's state dict inside an ``AveragedModel`` state dict (``module.*``)."""
    prefix = "module."
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (metrics files)."""
    text = json.dumps(data, indent=2, sort_keys=True).encode()
    atomic_write_bytes(path, lambda handle: handle.write(text))


def write_text(path: Path, text: str) -> None:
    """Write text atomically."""
    atomic_write_bytes(path, lambda handle: handle.write(text.encode()))


def rng_state() -> dict[str, Any]:
    """Every RNG state a run depends on."""
    import random

    import numpy as np

    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    import random

    import numpy as np

    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
