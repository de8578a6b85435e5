"""Categorical pair features (e.g. OGB bond codes) one-hot encoded inside a base model.

The batch carries the pair tensor compactly, ``[indicator, code_1, …, code_m]`` per node pair
(``(b, n, n, 1 + m)``), so that the ``k``-fold permuted copies the symmetrizer makes stay small;
the base expands it to ``[indicator, indicator · onehot(code_1), …]`` (``(b, n, n, 1 + Σ
vocab)``) just before its own layers. A one-hot followed by a linear patch embedding is a sum of
learned per-code embeddings, so this is an embedding of the codes with the given vocabularies.
Pointwise over pairs, it commutes with every node permutation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from probsym.errors import ShapeError

__all__ = ["OneHotPairs", "one_hot_pairs"]


def one_hot_pairs(pair: Tensor, vocab: Sequence[int]) -> Tensor:
    """``[indicator, codes…]`` -> ``[indicator, indicator · onehot(code_j) for each j]``.

    Codes of non-pairs (indicator 0) are ignored; codes are rounded to integers.

    Shapes:
        pair: ``(b, n, n, 1 + len(vocab))`` -> ``(b, n, n, 1 + sum(vocab))``.

    Raises:
        ShapeError: The channel count is not ``1 + len(vocab)``.
    """
    if pair.dim() != 4 or pair.size(-1) != 1 + len(vocab):
        raise ShapeError(
            f"pair codes: expected (b, n, n, {1 + len(vocab)}) = indicator + {len(vocab)} "
            f"codes, got {tuple(pair.shape)}"
        )
    indicator = pair[..., :1]
    sizes = torch.tensor(list(vocab), device=pair.device)
    start = 1 + torch.cumsum(sizes, 0) - sizes  # first channel of each code's one-hot
    codes = torch.minimum(pair[..., 1:].round().long().clamp(min=0), sizes - 1)
    # one allocation, written by a scatter: the k folded copies make this tensor the largest
    out = pair.new_zeros(*pair.shape[:3], 1 + int(sizes.sum()))  # (b, n, n, 1 + Σ vocab)
    out[..., :1] = indicator
    return out.scatter_(-1, codes + start, indicator.expand_as(codes).to(pair.dtype))


class OneHotPairs(nn.Module):
    """A base model whose pair input arrives as codes: one-hot it, then call ``base``.

    Args:
        base: The model called with the expanded pair input (e.g. a
            :class:`~probsym.models.graph_tokens.GraphTokenModel` with ``pair_channels = 1 +
            sum(vocab)``).
        vocab: Vocabulary size of each pair code channel.
        key: Name of the pair input.

    Shapes:
        ``inputs[key]``: ``(b, n, n, 1 + len(vocab))``; other inputs pass through unchanged.
    """

    def __init__(self, base: nn.Module, vocab: Sequence[int], key: str = "adj") -> None:
        super().__init__()
        self.base, self.vocab, self.key = base, list(vocab), key

    @property
    def channels(self) -> int:
        """Channels of the expanded pair input."""
        return 1 + sum(self.vocab)

    def pretrained_parameters(self) -> list[nn.Parameter]:
        """The base's checkpoint parameters (their own learning rate); empty if none."""
        method = getattr(self.base, "pretrained_parameters", None)
        return list(method()) if method is not None else []

    def forward(self, **inputs: Tensor) -> Tensor:
        """Expand ``inputs[key]`` and call the base with every input as a keyword."""
        inputs[self.key] = one_hot_pairs(inputs[self.key], self.vocab)
        return self.base(**inputs)
