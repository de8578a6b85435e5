"""probsym: learned probabilistic symmetrization for architecture-agnostic equivariance.

``phi(x) = E_{g ~ p(g|x)}[g · f(g⁻¹ · x)]`` for any PyTorch model ``f`` (Kim et al., NeurIPS 2023).
"""

from __future__ import annotations

from probsym import errors, fields, groups, samplers, testing
from probsym.fields import Field
from probsym.signature import Signature
from probsym.symmetrize import Prediction, Symmetrize, Symmetrized

__version__ = "0.1.0"

__all__ = [
    "Field",
    "Prediction",
    "Signature",
    "Symmetrize",
    "Symmetrized",
    "errors",
    "fields",
    "groups",
    "samplers",
    "testing",
]
