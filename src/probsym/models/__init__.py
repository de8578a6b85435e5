"""Base models f: deliberately unconstrained (not equivariant); probsym makes them equivariant.

Each takes the inputs of its signature as keyword tensors plus an optional ``mask``.
"""

from probsym.models.mlp import MLP, FlatMLP
from probsym.models.transformer import NodeTransformer

__all__ = ["MLP", "FlatMLP", "NodeTransformer"]
