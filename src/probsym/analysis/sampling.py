"""Monte Carlo studies of a restored model: sample count, variance, and the sampled permutations.

One pool of ``P`` i.i.d. per-sample outputs is drawn per input (:func:`draw_pool`). For a sample
count ``k`` the pool is cut into ``P // k`` disjoint groups of ``k``; each group's mean is one
independent ``k``-sample estimate of the model's output for every input, i.e. one *trial* (as a
fresh seed would give). Across trials :func:`sample_count_study` reports, per ``k``:

* the split's loss and metrics, mean ± standard deviation over trials;
* ``output_variance``: the variance over trials of each prediction entry, averaged over entries
  (the paper's "output variance", on the experiment's prediction, e.g. EXP's logit);
* ``loss_variance``: the variance over trials of each input's own loss, averaged over inputs
  (when the readout gives one row per input; ``None`` otherwise, e.g. node-level tasks).

Groups of different ``k`` share samples (the estimates are nested), which is fine for curves
whose points are each a valid Monte Carlo study. Shapes: ``b`` inputs · ``P`` draws.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from probsym import diagnostics
from probsym.errors import ProbsymError
from probsym.experiments.base import DataSplit, Experiment, Split
from probsym.symmetrize import Symmetrize
from probsym.train.loop import batches, model_inputs

#: Inference sample counts of the paper's analyses (PAPER-NOTES §4.3).
DEFAULT_COUNTS = (1, 2, 5, 10, 20, 50, 100, 200)


@dataclass(frozen=True)
class Pool:
    """``P`` per-sample outputs of every input of a split, kept per evaluation batch on the CPU.

    Attributes:
        batches: The split's batches (CPU tensors), as the readout needs them.
        draws: Per batch, ``(b, P, ...)`` float32 per-sample outputs ``g_i · f(g_i⁻¹·x)``.
    """

    batches: list[Split]
    draws: list[Tensor]

    @property
    def num_draws(self) -> int:
        """``P``, the draws per input."""
        return self.draws[0].shape[1]

    @property
    def num_inputs(self) -> int:
        """Inputs of the split."""
        return sum(d.shape[0] for d in self.draws)


@torch.no_grad()
def draw_pool(
    model: Symmetrize,
    split: DataSplit,
    num_draws: int,
    batch_size: int,
    device: torch.device,
    chunk: int = 1024,
    generator: torch.Generator | None = None,
) -> Pool:
    """Draw ``num_draws`` per-sample outputs for every input of ``split`` (eval mode).

    Raises:
        ProbsymError: the model has dict outputs (the studies read one prediction tensor).
    """
    model.eval()
    kept, draws = [], []
    for batch in batches(split, batch_size):
        inputs = model_inputs(model, batch, device)
        out = model.sample_outputs(
            **inputs, num_samples=num_draws, chunk=chunk, generator=generator
        )
        if not isinstance(out, Tensor):
            raise ProbsymError("the sampling studies need a model with one output tensor")
        kept.append({k: v.cpu() for k, v in batch.items()})
        draws.append(out.float().cpu())
    if not draws:
        raise ProbsymError("the split is empty")
    return Pool(kept, draws)


def per_input_loss(experiment: Experiment, prediction: Tensor, target: Tensor) -> Tensor:
    """The experiment's loss of every row on its own, ``(rows,)``.

    Vectorised with ``torch.func.vmap`` (a loss of one row is ``loss(p[None], t[None])``), with a
    loop for losses that ``vmap`` cannot trace.
    """

    def one(p: Tensor, t: Tensor) -> Tensor:
        return experiment.loss(p.unsqueeze(0), t.unsqueeze(0))

    try:
        return torch.func.vmap(one)(prediction, target)
    except RuntimeError:  # e.g. data-dependent control flow in the loss
        return torch.stack([one(p, t) for p, t in zip(prediction, target, strict=True)])


def sample_count_study(
    experiment: Experiment,
    pool: Pool,
    counts: Sequence[int] = DEFAULT_COUNTS,
    max_trials: int = 200,
) -> list[dict[str, Any]]:
    """Loss, metrics and variances of ``k``-sample estimates, one row per ``k`` in ``counts``.

    Each row holds ``samples`` (k), ``trials`` (``min(P // k, max_trials)``), ``loss_mean``,
    ``loss_std`` and ``<metric>_mean`` / ``<metric>_std`` over trials (standard deviations with
    ``ddof=1``), ``output_variance`` and ``loss_variance`` (see the module docstring).

    Raises:
        ProbsymError: a count that leaves fewer than 2 trials in the pool.
    """
    rows = []
    for k in counts:
        trials = min(pool.num_draws // k, max_trials)
        if trials < 2:
            raise ProbsymError(
                f"{pool.num_draws} draws per input give fewer than 2 trials of {k} samples"
            )
        means = [
            d[:, : trials * k].reshape(d.shape[0], trials, k, *d.shape[2:]).mean(2)
            for d in pool.draws
        ]  # per batch (b, trials, ...)
        values: dict[str, list[float]] = {}
        predictions, losses = [], []
        for t in range(trials):
            parts = [
                experiment.read(m[:, t], batch)
                for m, batch in zip(means, pool.batches, strict=True)
            ]
            prediction = torch.cat([p for p, _ in parts])
            target = torch.cat([y for _, y in parts])
            scores = {"loss": float(experiment.loss(prediction, target))}
            scores.update(experiment.metrics(prediction, target))
            if experiment.batch_metrics is not None:
                per_batch = [experiment.batch_metrics(p, y) for p, y in parts]
                for key in per_batch[0]:
                    scores[key] = sum(float(m[key]) for m in per_batch) / len(per_batch)
            for key, value in scores.items():
                values.setdefault(key, []).append(float(value))
            predictions.append(prediction.double())
            if prediction.shape[0] == pool.num_inputs:  # one row per input
                losses.append(per_input_loss(experiment, prediction, target).double())
        row: dict[str, Any] = {"samples": k, "trials": trials}
        for key, series in values.items():
            column = torch.tensor(series, dtype=torch.float64)
            row[f"{key}_mean"] = float(column.mean())
            row[f"{key}_std"] = float(column.std())
        row["output_variance"] = float(torch.stack(predictions).var(0).mean())
        row["loss_variance"] = float(torch.stack(losses).var(0).mean()) if losses else None
        rows.append(row)
    return rows


@torch.no_grad()
def checkpoint_entropy(
    model: Symmetrize,
    split: DataSplit,
    num_samples: int,
    device: torch.device,
    chunk: int = 1024,
    generator: torch.Generator | None = None,
) -> dict[str, float] | None:
    """The entropy of each input's mean sampled permutation, over a split (eval mode).

    The paper's interface analysis (PAPER-NOTES §4.3: 100 samples per validation graph), beside
    the same entropy for ``num_samples`` uniform permutations of the same graphs (``uniform``;
    7.035 for EXP's validation graphs at 100 samples) and its limit ``2 log n`` as N → ∞
    (``uniform_limit``). Only the sampler runs (at most ``chunk`` elements per call).

    Returns:
        ``samples``, ``inputs``, ``entropy`` (mean over inputs), ``entropy_std`` (over inputs),
        ``uniform``, ``uniform_limit``; ``None`` for a group without S_n.
    """
    if not model.group.acts_on_nodes:
        return None
    model.eval()
    # a stream of its own: a uniform sampler seeded alike would draw the very same permutations
    reference = torch.Generator().manual_seed(1_000_003)
    sampled, uniform, limit = [], [], []
    per_call = max(1, chunk // num_samples)
    for batch in batches(split, per_call):
        inputs = model_inputs(model, batch, device)
        mask = inputs.get(model.signature.mask) if model.signature.mask else None
        samples = model.sample_elements(**inputs, num_samples=num_samples, generator=generator)
        b = next(iter(inputs.values())).shape[0]
        per_input = samples.elements.batch_size // b
        entropy = diagnostics.sampled_permutation_entropy(
            model.group, samples.elements, per_input, mask
        )
        n = diagnostics.permutation_index(model.group, samples.elements).shape[1]
        sizes = torch.full((b,), n) if mask is None else mask.sum(1).cpu()
        sampled.append(entropy.cpu())
        uniform.append(diagnostics.uniform_permutation_entropy(b, n, per_input, mask, reference))
        limit.append(diagnostics.uniform_limit_entropy(sizes))
    entropy = torch.cat(sampled)
    return {
        "samples": num_samples,
        "inputs": len(entropy),
        "entropy": float(entropy.mean()),
        "entropy_std": float(entropy.std()) if len(entropy) > 1 else 0.0,
        "uniform": float(torch.cat(uniform).mean()),
        "uniform_limit": float(torch.cat(limit).mean()),
    }


def pool_size(counts: Sequence[int], trials: int) -> int:
    """Draws per input so that the largest count gets ``trials`` disjoint trials."""
    if trials < 2:
        raise ProbsymError(f"need at least 2 trials for error bars, got {trials}")
    return max(counts) * trials if counts else 0


def finite(value: float | None) -> bool:
    """Whether ``value`` is a finite number (plots skip the rest)."""
    return value is not None and math.isfinite(value)
