"""Distributions p(g|x) over group elements, all with one call.

``Uniform`` (group averaging), ``Frame`` (frame averaging), ``Canonical`` (learned, no noise) and
``Learned`` (probabilistic symmetrization). CLI method names map to them through ``METHODS``.
"""

from __future__ import annotations

from probsym.errors import UnknownNameError
from probsym.groups import Group
from probsym.samplers.base import Sampler, Samples
from probsym.samplers.frame import Frame
from probsym.samplers.identity import Identity
from probsym.samplers.learned import Canonical, Learned
from probsym.samplers.uniform import Uniform
from probsym.signature import Signature

#: Method names used by the CLI and configs -> sampler classes.
METHODS: dict[str, type[Sampler]] = {
    "ps": Learned,
    "ga": Uniform,
    "fa": Frame,
    "canonical": Canonical,
}


def resolve(method: str, group: Group, signature: Signature, **kwargs) -> Sampler:
    """Build the sampler named ``method`` (``ps``, ``ga``, ``fa`` or ``canonical``).

    Raises:
        UnknownNameError: ``method`` is not one of the names above.
    """
    if method not in METHODS:
        raise UnknownNameError("method", method, METHODS)
    return METHODS[method](group, signature, **kwargs)


__all__ = [
    "METHODS",
    "Canonical",
    "Frame",
    "Identity",
    "Learned",
    "Sampler",
    "Samples",
    "Uniform",
    "resolve",
]
