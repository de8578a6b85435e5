"""Equivariant networks used inside samplers (never as base models)."""

from probsym.nn.dense_gin import DenseGIN, MaskedBatchNorm
from probsym.nn.vector_neurons import VectorNeuronEncoder, VectorNeuronLinear, VectorNeuronReLU

__all__ = [
    "DenseGIN",
    "MaskedBatchNorm",
    "VectorNeuronEncoder",
    "VectorNeuronLinear",
    "VectorNeuronReLU",
]
