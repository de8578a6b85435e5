"""Equivariance checking for any model and group (public API).

``equivariance_error`` / ``assert_equivariant`` (exact, with transformed noise, for symmetrized
models; direct for any callable), ``statistical_equivariance_test`` (fresh noise, z-test), and the
helpers ``random_element`` and ``transform_inputs``. Hypothesis strategies live in
``probsym.testing.strategies``.
"""

from probsym.testing.checker import (
    EquivarianceReport,
    OutputError,
    StatisticalReport,
    assert_equivariant,
    equivariance_error,
    random_element,
    statistical_equivariance_test,
    transform_inputs,
)

__all__ = [
    "EquivarianceReport",
    "OutputError",
    "StatisticalReport",
    "assert_equivariant",
    "equivariance_error",
    "random_element",
    "statistical_equivariance_test",
    "transform_inputs",
]
