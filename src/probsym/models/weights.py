"""Weight files for base models: read a checkpoint, check it against a module, fetch from the hub.

Formats: ``.safetensors``; torch pickles ``.pth``/``.pt``/``.bin`` (a state dict, possibly nested
under ``"model"``, ``"state_dict"`` or ``"module"``); ``.npz`` (arrays by name, returned as numpy
for a model-specific converter). Hub downloads go through ``huggingface_hub`` and fail fast when
offline: the local cache is tried first, then a 3-second reachability probe, never the client's
retry loop.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
from torch import Tensor, nn

from probsym.errors import ProbsymError

#: Keys under which training scripts nest a state dict (tried in this order, repeatedly).
NESTED_KEYS = ("state_dict", "model", "module", "model_state_dict")
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")


class WeightsError(ProbsymError, ValueError):
    """A checkpoint cannot be read, or does not fit the model (keys or shapes)."""


class MissingWeightsError(WeightsError, FileNotFoundError):
    """A checkpoint file is absent and cannot be downloaded; the message names what to supply."""


def read_checkpoint(path: str | os.PathLike) -> dict[str, Tensor] | dict[str, np.ndarray]:
    """Read a weight file into a flat ``{name: tensor}`` dict (numpy arrays for ``.npz``).

    Raises:
        MissingWeightsError: ``path`` does not exist.
        WeightsError: The suffix is unknown or the file holds no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(f"weight file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    if suffix == ".npz":
        with np.load(path) as arrays:
            return {k: arrays[k] for k in arrays.files}
    if suffix in TORCH_SUFFIXES:
        state = torch.load(path, map_location="cpu", weights_only=True)
        return unwrap_state_dict(state, str(path))
    raise WeightsError(
        f"unknown weight file type {suffix!r} for {str(path)!r}; "
        f"use .safetensors, .npz or one of {', '.join(TORCH_SUFFIXES)}"
    )


def unwrap_state_dict(state: object, source: str = "checkpoint") -> dict[str, Tensor]:
    """Descend through ``"state_dict"``/``"model"``/... wrappers to a ``{name: tensor}`` dict."""
    while isinstance(state, Mapping) and not _is_state_dict(state):
        inner = next((state[k] for k in NESTED_KEYS if k in state), None)
        if inner is None:
            keys = ", ".join(map(str, list(state)[:8]))
            raise WeightsError(
                f"{source} holds no state dict: top-level keys {keys}; expected tensors, or one "
                f"of {', '.join(NESTED_KEYS)}"
            )
        state = inner
    if not isinstance(state, Mapping):
        raise WeightsError(f"{source} holds a {type(state).__name__}, not a state dict")
    return dict(state)


def _is_state_dict(state: Mapping) -> bool:
    return bool(state) and all(isinstance(v, Tensor) for v in state.values())


def check_state_dict(
    module: nn.Module, state: Mapping[str, Tensor], source: str = "checkpoint"
) -> None:
    """Raise unless ``state`` has exactly ``module``'s parameter/buffer names and shapes.

    Raises:
        WeightsError: Listing missing keys, unexpected keys and shape mismatches (with shapes).
    """
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    mismatched = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    if not (missing or unexpected or mismatched):
        return
    lines = [f"{source} does not fit {type(module).__name__}:"]
    lines += [f"  shape mismatch {k}: model {expected[k]}, file {found[k]}" for k in mismatched]
    lines += [f"  missing {k} {expected[k]}" for k in _clip(missing)]
    lines += [f"  unexpected {k} {found[k]}" for k in _clip(unexpected)]
    raise WeightsError("\n".join(lines))


def _clip(keys: list[str], limit: int = 20) -> list[str]:
    return keys if len(keys) <= limit else [*keys[:limit], f"... and {len(keys) - limit} more"]


def hub_offline() -> bool:
    """Whether the Hugging Face hub must not be contacted (``HF_HUB_OFFLINE`` and friends).

    The environment is read at call time, as well as ``huggingface_hub``'s import-time constant.
    """
    from huggingface_hub import constants

    flags = (os.environ.get(name, "") for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return constants.HF_HUB_OFFLINE or any(f.upper() in {"1", "ON", "YES", "TRUE"} for f in flags)


def _reachable(endpoint: str, timeout: float = 3.0) -> bool:
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def hub_download(
    repo_id: str,
    filename: str,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Path of ``filename`` from hub repo ``repo_id``: the local cache first, else a download.

    Raises:
        MissingWeightsError: Not cached and offline (``HF_HUB_OFFLINE`` or no route to the hub);
            the message names the repo and file to supply and the ``--pretrained PATH`` option.
    """
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    options = dict(repo_id=repo_id, filename=filename, revision=revision, cache_dir=cache_dir)
    try:
        return Path(hf_hub_download(**options, local_files_only=True))
    except LocalEntryNotFoundError:
        pass
    endpoint = os.environ.get("HF_ENDPOINT", constants.ENDPOINT)
    if hub_offline() or not _reachable(endpoint):
        reason = "HF_HUB_OFFLINE is set" if hub_offline() else f"{endpoint} is unreachable"
        raise MissingWeightsError(_supply(repo_id, filename, reason))
    try:
        return Path(hf_hub_download(**options, etag_timeout=5))
    except Exception as err:  # HTTP, TLS or repo errors: one message that says what to supply
        raise MissingWeightsError(
            _supply(repo_id, filename, f"{type(err).__name__}: {err}")
        ) from err


def _supply(repo_id: str, filename: str, reason: str) -> str:
    return (
        f"cannot download {filename!r} from hub repo {repo_id!r} ({reason}) and it is not in "
        f"the cache. Download https://huggingface.co/{repo_id}/blob/main/{filename} on a "
        "machine with network, then pass the file with --pretrained PATH (or "
        "from_pretrained(PATH)), or copy the hub cache here."
    )
