"""Graph separation (GRAPH8c, EXP) and EXP-classify (Kim et al. 2023, §4.1-4.3 of PAPER-NOTES).

Inputs are dense padded graphs: node features ``x`` (``[1 or original, degree]``), adjacency ``adj``
and ``mask``; the group is S_n. Separation uses untrained models: a pair of non-isomorphic graphs
is *indistinguishable* when, for every one of ``seeds`` random initialisations, the L1 distance of
their outputs is at most ``tolerance`` (0.001, the paper's). EXP-classify trains to predict SAT.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional

from probsym import Signature, Symmetrize, fields, groups, samplers
from probsym.data import cache_dir
from probsym.data.batching import collate_dense
from probsym.data.loader import GraphSplit
from probsym.errors import UnknownNameError
from probsym.experiments.base import Experiment, Split, limit_split
from probsym.models import FlatMLP
from probsym.train.config import TrainConfig

log = logging.getLogger(__name__)

SIGNATURE = Signature({"x": fields.node, "adj": fields.pair}, fields.scalar)
#: Test-time samples per method in the separation protocol (the paper: PS 10, canonical 1).
SEPARATION_SAMPLES = {"ps": 10, "ga": 10, "fa": 10, "canonical": 1}


def load_graphs(name: str, data_dir: str = "") -> list:
    """GRAPH8c or EXP graphs with their node features (downloads when online and missing)."""
    if name == "graph8c":
        from probsym.data.graph8c import load_graph8c

        return load_graph8c(data_dir or cache_dir("graph8c"))
    if name == "exp":
        from probsym.data.exp import load_exp

        return load_exp(data_dir or cache_dir("EXP"))
    raise UnknownNameError("separation benchmark", name, ["graph8c", "exp"])


def dense(graphs: Sequence, n_max: int) -> Split:
    """Collate graphs to ``x``, ``adj``, ``mask`` (and ``target`` from labels)."""
    batch = collate_dense(graphs, n_max=n_max)
    split = {"x": batch["x"], "adj": batch["adj"], "mask": batch["mask"]}
    if "y" in batch:
        split["target"] = batch["y"].reshape(len(graphs), -1).float()
    return split


def build_base(backbone: str, n_max: int, channels: int, task: str) -> torch.nn.Module:
    """The paper's base models: MLPs on the flattened graph, or GIN with node identifiers."""
    if backbone == "mlp":
        if task == "graph8c":  # vec(P^T A P) only, 64 -> 128 -> 64 -> 10, tanh everywhere
            return FlatMLP(["adj"], n_max * n_max, [128, 64], (10,), "tanh", True)
        in_dim = n_max * channels + n_max * n_max
        if task == "exp":
            return FlatMLP(["x", "adj"], in_dim, [2048, 4096, 2048], (10,), "tanh", True)
        return FlatMLP(["x", "adj"], in_dim, [2048, 4096, 2048, 10], (1,), "relu")
    if backbone == "mlp-small":  # CPU-budget variant: same layout, 512-wide, ~2.4M parameters
        in_dim = n_max * channels + n_max * n_max
        return FlatMLP(["x", "adj"], in_dim, [512, 512, 10], (1,), "relu")
    if backbone == "gin-id":
        from probsym.models.gin import GINWithIDs

        activation = "relu" if task == "exp-classify" else "tanh"
        return GINWithIDs(
            channels, n_max, 64, 1 if task == "exp-classify" else 10, activation=activation
        )
    raise UnknownNameError("backbone", backbone, ["mlp", "mlp-small", "gin-id"])


def build_sampler(
    method: str,
    noise_scale: float = 1.0,
    tau: float = 0.01,
    hidden: int = 64,
    layers: int = 3,
    noise_at: str = "input",
    antithetic: bool = False,
) -> samplers.Sampler:
    """The S_n sampler for ``method`` with the paper's interface settings."""
    group = groups.Sn()
    if method == "ps":
        return samplers.Learned(
            group,
            SIGNATURE,
            hidden,
            layers,
            noise_scale=noise_scale,
            tau=tau,
            noise_at=noise_at,
            antithetic=antithetic,
        )
    if method == "canonical":
        return samplers.Canonical(group, SIGNATURE, hidden_dim=hidden, num_layers=layers, tau=tau)
    return samplers.resolve(method, group, SIGNATURE)


@dataclass(frozen=True)
class SeparationRule:
    """When one random model counts two graphs as separated.

    ``mc_samples=None`` is the paper's rule: one Monte Carlo estimate per graph (the method's
    :data:`SEPARATION_SAMPLES`), separated when the L1 distance exceeds ``tolerance``. Two
    estimates of the *same* expectation differ by their sampling noise, so this rule also
    "separates" isomorphic copies.

    ``mc_samples=M`` is the sound rule: ``M`` per-sample outputs per graph give the mean and its
    standard error per output entry; a pair is separated when the L1 distance of the means
    exceeds ``tolerance`` *and* some entry's difference exceeds ``se_factor`` standard errors of
    that difference (``sqrt(se_a² + se_b²)``). With ``se_factor`` 5 a false separation has
    probability about 6e-7 per entry under a normal approximation of the mean.
    """

    tolerance: float = 1e-3
    mc_samples: int | None = None
    se_factor: float = 5.0

    def __post_init__(self) -> None:
        if self.mc_samples is not None and self.mc_samples < 2:
            raise ValueError(f"mc_samples must be >= 2 (a standard error), got {self.mc_samples}")
        if not self.se_factor > 0 or not self.tolerance >= 0:
            raise ValueError("se_factor must be > 0 and tolerance >= 0")

    @property
    def sound(self) -> bool:
        """Whether pairs are compared against their Monte Carlo standard error."""
        return self.mc_samples is not None


@torch.no_grad()
def embed(model: Symmetrize, split: Split, batch_size: int = 100) -> Tensor:
    """Outputs of ``model`` (eval mode) for every graph of ``split``."""
    model.eval()
    return torch.cat([model(**batch).value for batch in _batches(split, batch_size)])


def _batches(split: Split, batch_size: int):
    """The model inputs of ``split`` in consecutive batches."""
    for start in range(0, len(split["x"]), batch_size):
        yield {k: split[k][start : start + batch_size] for k in ("x", "adj", "mask")}


@torch.no_grad()
def estimate(
    model: Symmetrize, split: Split, rule: SeparationRule, batch_size: int = 100
) -> tuple[Tensor, Tensor | None]:
    """Per graph, the output estimate and (sound rule) its Monte Carlo standard error.

    Shapes:
        Both ``(graphs, outputs)``, float64; the error is ``None`` under the paper's rule.
    """
    if not rule.sound:
        return embed(model, split, batch_size).double(), None
    model.eval()
    means, errors = [], []
    for batch in _batches(split, batch_size):
        draws = model.sample_outputs(**batch, num_samples=rule.mc_samples).double()
        means.append(draws.mean(1))
        errors.append(draws.std(1) / rule.mc_samples**0.5)
    return torch.cat(means), torch.cat(errors)


def separated(
    mean_a: Tensor,
    error_a: Tensor | None,
    mean_b: Tensor,
    error_b: Tensor | None,
    rule: SeparationRule,
) -> Tensor:
    """Whether each pair ``(a, b)`` is separated under ``rule`` (broadcasting over pairs).

    Shapes:
        means and errors ``(..., outputs)``; returns a bool tensor ``(...)``.
    """
    difference = (mean_a - mean_b).abs()
    far = difference.sum(-1) > rule.tolerance
    if error_a is None or error_b is None:
        return far
    noise = (error_a.square() + error_b.square()).sqrt()
    return far & (difference > rule.se_factor * noise).any(-1)


def indistinguishable_pairs(
    name: str,
    graphs: Sequence,
    method: str,
    backbone: str,
    seeds: int = 100,
    rule: SeparationRule | None = None,
    on_seed=None,
    n_max: int | None = None,
) -> int:
    """Pairs that no untrained random model separates (under ``rule``, the paper's by default).

    GRAPH8c compares all pairs of its 11,117 graphs; EXP compares its 600 pairs (2i, 2i+1).
    Only pairs still undistinguished are re-embedded by later models; the loop stops at 0.
    """
    rule = rule or SeparationRule()
    n_max = n_max or (8 if name == "graph8c" else 64)
    split = dense(graphs, n_max)
    if name == "exp":  # the 600 pairs (2i, 2i+1)
        candidates = torch.arange(len(graphs)).reshape(-1, 2)
    else:
        candidates = None  # all pairs: found by a distance search after the first model
    remaining = 0
    for seed in range(seeds):
        model = _random_model(name, method, backbone, split, n_max, seed)
        if candidates is None:
            candidates = _unseparated_pairs(*estimate(model, split, rule), rule)
        else:
            # Only graphs in still-undistinguished pairs need embedding again.
            used, local = torch.unique(candidates, return_inverse=True)
            mean, error = estimate(model, {k: v[used] for k, v in split.items()}, rule)
            candidates = candidates[~_separated_pairs(local, mean, error, rule)]
        remaining = len(candidates)
        if on_seed is not None:
            on_seed(seed, remaining)
        if remaining == 0:  # the count can only fall: later models cannot change it
            break
    return remaining


def separated_isomorphic_copies(
    name: str,
    graphs: Sequence,
    method: str,
    backbone: str,
    seed: int = 0,
    rule: SeparationRule | None = None,
    n_max: int | None = None,
    seeds: int = 1,
) -> int:
    """Control for the separation count: graphs "separated" from a relabelled copy of themselves.

    Each graph is compared with one random relabelling of itself (drawn with ``seed``) by the
    random models of seeds ``0 … seeds - 1`` (those of :func:`indistinguishable_pairs`); a copy
    counts once if any model separates it. An invariant model separates none. Under the paper's
    rule a Monte Carlo estimate with fresh noise (GA, PS, FA with ties) separates many: its
    sampling noise alone exceeds the tolerance. The sound rule should separate (almost) none.
    """
    rule = rule or SeparationRule()
    n_max = n_max or (8 if name == "graph8c" else 64)
    split = dense(graphs, n_max)
    generator = torch.Generator().manual_seed(seed)
    g = groups.Sn().sample(len(graphs), mask=split["mask"], generator=generator)
    copies = {
        "x": g.act(split["x"], fields.node, split["mask"]),
        "adj": g.act(split["adj"], fields.pair, split["mask"]),
        "mask": split["mask"],
    }
    apart = torch.zeros(len(graphs), dtype=torch.bool)
    for model_seed in range(seeds):
        model = _random_model(name, method, backbone, split, n_max, model_seed)
        apart |= separated(*estimate(model, split, rule), *estimate(model, copies, rule), rule)
    return int(apart.sum())


def _random_model(
    name: str, method: str, backbone: str, split: Split, n_max: int, seed: int
) -> Symmetrize:
    """The untrained model of one separation seed."""
    torch.manual_seed(seed)
    base = build_base(backbone, n_max, split["x"].shape[-1], name)
    s = SEPARATION_SAMPLES[method]
    return Symmetrize(base, build_sampler(method), num_samples=s, eval_num_samples=s)


def _rows(error: Tensor | None, index) -> Tensor | None:
    """``error[index]``, or ``None`` under the paper's rule (no errors)."""
    return None if error is None else error[index]


def _separated_pairs(
    pairs: Tensor, mean: Tensor, error: Tensor | None, rule: SeparationRule, chunk: int = 1 << 20
) -> Tensor:
    """:func:`separated` for index pairs ``(p, 2)`` into ``mean``, in chunks of pairs.

    GRAPH8c under the sound rule can leave tens of millions of candidates after one model.
    """
    out = []
    for start in range(0, len(pairs), chunk):
        a, b = pairs[start : start + chunk, 0], pairs[start : start + chunk, 1]
        out.append(separated(mean[a], _rows(error, a), mean[b], _rows(error, b), rule))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool)


def _unseparated_pairs(
    mean: Tensor, error: Tensor | None, rule: SeparationRule, budget: int = 1 << 24
) -> Tensor:
    """All pairs ``i < j`` that ``rule`` does not separate (chunked: no n² matrix is kept)."""
    count, width = mean.shape
    chunk = max(1, budget // max(1, count * width))
    found = []
    for start in range(0, count, chunk):
        rows = slice(start, start + chunk)
        apart = separated(
            mean[rows, None], _rows(error, (rows, None)), mean[None], _rows(error, None), rule
        )
        i, j = (~apart).nonzero(as_tuple=True)
        i = i + start
        keep = i < j
        found.append(torch.stack([i[keep], j[keep]], dim=1))
    return torch.cat(found)


# ---- EXP-classify -------------------------------------------------------------------------------


def _float_target(batch: Split) -> Split:
    """SAT labels as the ``(b, 1)`` float targets of the logit loss."""
    return {**batch, "target": batch["target"].reshape(len(batch["target"]), -1).float()}


def _classify_data(config: TrainConfig) -> dict[str, GraphSplit]:
    from probsym.data.exp import exp_classify_splits

    splits = exp_classify_splits(load_graphs("exp", config.data_dir))
    # Sparse graphs, densified per batch at the models' fixed size of 64 nodes.
    data = {k: GraphSplit(v, n_max=64, transform=_float_target) for k, v in splits.items()}
    data["train"] = limit_split(data["train"], config.max_train)
    return {k: limit_split(v, config.limit) for k, v in data.items()}


def _classify_model(config: TrainConfig, example: Split) -> Symmetrize:
    base = build_base(config.backbone, 64, example["x"].shape[-1], "exp-classify")
    sampler = build_sampler(
        config.method,
        config.noise_scale,
        config.tau,
        config.interface_hidden,
        config.interface_layers,
        config.noise_at,
        config.antithetic,
    )
    return Symmetrize(
        base, sampler, num_samples=config.samples, eval_num_samples=config.eval_samples
    )


def _bce(prediction: Tensor, target: Tensor) -> Tensor:
    return functional.binary_cross_entropy_with_logits(prediction, target)


def _accuracy(prediction: Tensor, target: Tensor) -> dict[str, float]:
    return {"accuracy": float(((prediction > 0).float() == target).float().mean())}


EXPERIMENTS = {
    "exp-classify": Experiment(
        name="exp-classify",
        build_data=_classify_data,
        build_model=_classify_model,
        loss=_bce,
        metrics=_accuracy,
        # The paper: Adam lr 1e-3, 200-epoch warm-up, clip 0.1, 2,000 epochs, k = 10 everywhere.
        defaults={
            "epochs": 2000,
            "warmup_epochs": 200,
            "grad_clip": 0.1,
            "samples": 10,
            "eval_samples": 10,
            "batch_size": 100,
        },
        backbones=("mlp", "mlp-small", "gin-id"),
        select=("loss", "min"),
    ),
}
