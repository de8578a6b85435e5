"""Data parallelism under ``torchrun``: batch shards, shared sampler noise, synchronised BatchNorm.

Every rank draws the same shuffle and the same global-RNG stream, and trains on rows
``rank::world`` of each batch. A DDP step then equals the single-process step on the whole batch
up to float rounding, because

- the sampler noise is drawn for the *whole* batch on every rank (the single process's draws) and
  each rank keeps its rows, instead of every rank drawing the first rows' noise for its share;
- each rank's loss is weighted by its share of the batch's loss rows (DDP averages gradients,
  which is the batch mean only for equal shares);
- BatchNorm statistics are sums over all ranks (:class:`DistributedBatchNorm` on CPU, where
  ``torch.nn.SyncBatchNorm`` is not supported; ``SyncBatchNorm`` on CUDA).

Dropout masks are the exception: each rank draws them for its own rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

Split = dict[str, Tensor]


@dataclass(frozen=True)
class Shard:
    """One rank's part of a global batch.

    Attributes:
        index: Rows of the global batch this rank trains on (``rank::world``). A rank left
            without rows (a batch smaller than the world) gets row 0 with ``real = False``: it
            still runs the forward and backward pass that DDP's collectives need, at weight 0.
        real: Whether the rows are this rank's own.
        examples: Examples in the global batch.
    """

    index: Tensor
    real: bool
    examples: int

    @classmethod
    def of(cls, examples: int, rank: int, world: int) -> Shard:
        """Rows ``rank::world`` of a batch of ``examples`` (row 0 at weight 0 when none)."""
        index = torch.arange(rank, examples, world)
        if len(index):
            return cls(index, True, examples)
        return cls(torch.zeros(1, dtype=torch.long), False, examples)

    def rows(self, batch: Mapping[str, Tensor]) -> Split:
        """This rank's rows of every tensor in ``batch`` (first axis)."""
        return {k: v[self.index.to(v.device)] for k, v in batch.items()}

    def noise(self, noise: Mapping[str, Tensor], per_input: int) -> dict[str, Tensor]:
        """This rank's rows of b-major folded noise: ``(b*s, ...)`` -> ``(len(index)*s, ...)``."""
        out = {}
        for key, value in noise.items():
            unfolded = value.reshape(self.examples, per_input, *value.shape[1:])  # (b, s, ...)
            out[key] = unfolded[self.index.to(value.device)].reshape(-1, *value.shape[1:])
        return out

    @property
    def example_weight(self) -> float:
        """``world · local examples / examples``: this rank's gradient weight for batch means."""
        if not self.real:
            return 0.0
        return dist.get_world_size() * len(self.index) / self.examples


def all_reduce_sum(values: Sequence[float], device: torch.device) -> list[float]:
    """Elementwise sums of ``values`` over ranks (one collective for the whole list)."""
    tensor = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def from_rank_zero(value: float) -> float:
    """``value`` on rank 0, else 0: summed over ranks (:func:`all_reduce_sum`), rank 0's value."""
    return value if dist.get_rank() == 0 else 0.0


class _SumOverRanks(torch.autograd.Function):
    """``all_reduce(SUM)`` with its gradient: the sum over ranks of the output gradients.

    (``torch.distributed.nn.functional.all_reduce`` does the same and is deprecated in torch 2.13
    in favour of a private module.)
    """

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:  # noqa: D102 - autograd hook
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # noqa: D102 - autograd hook
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def sum_over_ranks(tensor: Tensor) -> Tensor:
    """The elementwise sum of ``tensor`` over ranks, differentiable (every rank gets it)."""
    return _SumOverRanks.apply(tensor)


class DistributedBatchNorm(_BatchNorm):
    """BatchNorm whose training statistics are over the rows of every rank (any backend).

    ``mean = Σ_r Σ x / Σ_r count``, ``var = Σ_r Σ (x - mean)² / Σ_r count`` (two differentiable
    all-reduces, so the backward pass sums the statistics' gradients over ranks, as
    ``SyncBatchNorm`` does). Evaluation and single-process use are plain BatchNorm; the state
    dict is BatchNorm's, so checkpoints load into an unconverted model.

    Shapes:
        input: ``(B, C)`` or ``(B, C, *)``; output: the same.
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: Tensor) -> Tensor:
        """Normalise with all ranks' batch statistics in training, running ones in eval."""
        self._check_input_dim(input)
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(input)
        dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        count = input.new_tensor([input.numel() / max(input.shape[1], 1)])
        totals = sum_over_ranks(torch.cat([input.sum(dims), count]))  # (C + 1,)
        total = totals[-1]
        mean = totals[:-1] / total
        centred = input - mean.view(shape)
        var = sum_over_ranks((centred * centred).sum(dims)) / total  # biased, for normalising
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                if self.momentum is None:  # cumulative moving average
                    factor = 1.0 / float(self.num_batches_tracked)
                else:
                    factor = self.momentum
                unbiased = var.detach() * total / torch.clamp(total - 1, min=1)
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), factor)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)
        return out


def convert_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm in ``module`` by :class:`DistributedBatchNorm` (same tensors).

    The replacement shares the parameters and buffers of the original, so an optimizer built
    later, an EMA copy made earlier and the state dict all see the same tensors and names.
    """
    if isinstance(module, _BatchNorm) and not isinstance(
        module, (DistributedBatchNorm, nn.SyncBatchNorm)
    ):
        new = DistributedBatchNorm(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
        )
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        if module.track_running_stats:
            new.running_mean, new.running_var = module.running_mean, module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        module.add_module(name, convert_batchnorm(child))
    return module
