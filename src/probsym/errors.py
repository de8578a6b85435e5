"""Exceptions raised at probsym's public boundaries.

Every message names the offending field or option, what was expected and what was found, so that a
user can fix the call without reading the library's source.
"""

from __future__ import annotations

from collections.abc import Iterable


class ProbsymError(Exception):
    """Base class of every error probsym raises on purpose."""


class ShapeError(ProbsymError, ValueError):
    """A tensor's shape does not match its declared field, or two tensors disagree on a size."""


class MaskError(ProbsymError, ValueError):
    """A node mask has the wrong shape or dtype, or marks a graph with no real node."""


class NonFiniteError(ProbsymError, ValueError):
    """An input tensor holds NaN or inf."""


class UnknownNameError(ProbsymError, KeyError):
    """A name (group, sampler, experiment, field, option) is not one of the known choices."""

    def __init__(self, kind: str, name: str, choices: Iterable[str]) -> None:
        self.kind, self.name, self.choices = kind, name, sorted(choices)
        super().__init__(f"unknown {kind} {name!r}; choose one of: {', '.join(self.choices)}")

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class ConfigError(ProbsymError, ValueError):
    """A run option has a value outside its range (e.g. ``--epochs 0``)."""


class DataError(ProbsymError, ValueError):
    """A data file is missing, malformed, or fails validation."""


class MissingDataError(DataError, FileNotFoundError):
    """A data file is absent and cannot be downloaded (offline); the message names the file."""


class InputError(ProbsymError, TypeError):
    """Inputs do not match the declared signature: a declared input is missing or not a tensor."""
