"""Base models f: deliberately unconstrained (not equivariant); probsym makes them equivariant.

Each takes the inputs of its signature as keyword tensors plus an optional ``mask``.
"""

from probsym.models.graph_tokens import GraphTokenModel, TokenGeometry, token_geometry
from probsym.models.mlp import MLP, FlatMLP
from probsym.models.pair_transformer import PairTransformer, nbody_pair_features
from probsym.models.transformer import NodeTransformer
from probsym.models.vit import CONFIGS as VIT_CONFIGS
from probsym.models.vit import (
    ViT,
    ViTConfig,
    resample_pos_embed,
    vit_from_hf_state_dict,
    vit_from_npz,
)
from probsym.models.weights import MissingWeightsError, WeightsError

__all__ = [
    "MLP",
    "VIT_CONFIGS",
    "FlatMLP",
    "GraphTokenModel",
    "MissingWeightsError",
    "NodeTransformer",
    "PairTransformer",
    "TokenGeometry",
    "ViT",
    "ViTConfig",
    "WeightsError",
    "nbody_pair_features",
    "resample_pos_embed",
    "token_geometry",
    "vit_from_hf_state_dict",
    "vit_from_npz",
]
