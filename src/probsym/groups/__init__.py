"""Symmetry groups and their batched elements.

``Sn()`` permutes node axes; ``O(d)``, ``SO(d)``, ``E(d)``, ``SE(d)`` act on the geometric axis;
``Sn() * E(3)`` is their direct product. Elements compose with ``@`` and invert with ``.inverse()``.
"""

from __future__ import annotations

from probsym.errors import UnknownNameError
from probsym.groups.base import Group, GroupElement
from probsym.groups.euclidean import SE, E, Rigid, masked_centroid
from probsym.groups.orthogonal import SO, O, Orthogonal
from probsym.groups.permutation import Permutation, Sn
from probsym.groups.product import ProductElement, ProductGroup, join_element, split_element

_SIMPLE = {"Sn": Sn, "O": O, "SO": SO, "E": E, "SE": SE}


def from_name(name: str) -> Group:
    """Parse a group name such as ``"Sn"``, ``"SO3"``, ``"E(3)"`` or ``"Sn*E3"``.

    Raises:
        UnknownNameError: a factor is not one of Sn, O, SO, E, SE (followed by a dimension).
    """
    factors = []
    for token in name.replace("×", "*").replace("x", "*").split("*"):
        token = token.strip().replace("(", "").replace(")", "").replace("_", "")
        if token in ("Sn", "S"):
            factors.append(Sn())
            continue
        head = token.rstrip("0123456789")
        digits = token[len(head) :]
        if head not in ("O", "SO", "E", "SE") or not digits:
            raise UnknownNameError("group", token, ["Sn", "O<d>", "SO<d>", "E<d>", "SE<d>"])
        factors.append(_SIMPLE[head](int(digits)))
    return factors[0] if len(factors) == 1 else ProductGroup(tuple(factors))


__all__ = [
    "E",
    "SE",
    "SO",
    "Group",
    "GroupElement",
    "O",
    "Orthogonal",
    "Permutation",
    "ProductElement",
    "ProductGroup",
    "Rigid",
    "Sn",
    "from_name",
    "join_element",
    "masked_centroid",
    "split_element",
]
