"""No symmetrization: the identity element, for base models that are equivariant by design.

``Symmetrize(gnn, Identity(group, signature))`` is the plain model behind the same interface
(the training loop, the checker and the CLI's ``--method none``), so an equivariant baseline such
as a message-passing GNN runs and is checked exactly like the symmetrized models. It is *not* a
symmetrization: with a non-equivariant base the result is not equivariant, and the checker says
so. It is therefore deliberately absent from :data:`probsym.samplers.METHODS`.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from probsym.samplers import features
from probsym.samplers.base import Sampler, Samples, zero


class Identity(Sampler):
    """One identity element per input, whatever ``num_samples`` is asked for."""

    #: The identity does not move with the input, so only the outputs can be checked.
    elements_transform_exactly = False

    def samples_per_input(self, num_samples: int) -> int:
        """Always 1: every sample would be the same element."""
        return 1

    def draw(
        self, inputs: Mapping[str, Tensor], num_samples: int, noise: Mapping[str, Tensor]
    ) -> Samples:
        """The identity of the group for every input."""
        reference = inputs[next(iter(self.signature.inputs))]
        b = features.batch_size(self.signature, inputs)
        n = features.node_count(self.signature, inputs) if self.group.acts_on_nodes else None
        dtype = features.geometric_dtype(self.signature, inputs)
        element = self.group.identity(b, n, device=reference.device, dtype=dtype)
        return Samples(element, zero(reference.float()))
