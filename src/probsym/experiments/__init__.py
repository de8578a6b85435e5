"""The benchmarks, by CLI name: a plain dict, readable in one screen.

Each value is a zero-argument function returning the :class:`Experiment` (so that importing this
package does not import every benchmark's dependencies).
"""

from __future__ import annotations

from collections.abc import Callable

from probsym.errors import UnknownNameError
from probsym.experiments.base import Experiment


def _graphsep(name: str) -> Callable[[], Experiment]:
    def build() -> Experiment:
        from probsym.experiments import graphsep

        return graphsep.EXPERIMENTS[name]

    return build


def _nbody() -> Experiment:
    from probsym.experiments import nbody

    return nbody.EXPERIMENT


def _lrgb(name: str) -> Callable[[], Experiment]:
    def build() -> Experiment:
        from probsym.experiments import lrgb

        return lrgb.EXPERIMENTS[name]

    return build


def _pattern() -> Experiment:
    from probsym.experiments import pattern

    return pattern.EXPERIMENT


EXPERIMENTS: dict[str, Callable[[], Experiment]] = {
    "exp-classify": _graphsep("exp-classify"),
    "nbody": _nbody,
    "pattern": _pattern,
    "peptides-func": _lrgb("peptides-func"),
    "peptides-struct": _lrgb("peptides-struct"),
    "pcqm-contact": _lrgb("pcqm-contact"),
}

#: Untrained separation benchmarks (``probsym separate``).
SEPARATION = ("graph8c", "exp")

#: Named in the CLI but not implemented in this release (their own issues).
PLANNED: tuple[str, ...] = ()


def get(name: str) -> Experiment:
    """The experiment called ``name``.

    Raises:
        UnknownNameError: not a trainable experiment (the message lists the choices).
    """
    if name not in EXPERIMENTS:
        raise UnknownNameError("experiment", name, EXPERIMENTS)
    return EXPERIMENTS[name]()
