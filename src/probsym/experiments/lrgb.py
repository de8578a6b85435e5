"""Long-range graph benchmarks with a symmetrized token transformer (PAPER-NOTES §4.7–4.9).

* ``peptides-func``: 10 binary labels per peptide; BCE on the labelled entries; ``ap``, the
  macro average precision over labels on the concatenated split.
* ``peptides-struct``: 11 regression targets; L1 loss; ``mae`` over all entries.
* ``pcqm-contact``: link prediction (contacts between atoms); BCE on the candidate pairs;
  ``mrr``, ``hits@1/3/10`` in LRGB's raw protocol and in the ``_filtered`` and
  ``_filtered_noself`` variants (:func:`probsym.metrics.link_ranking`).

The graph is embedded as in PATTERN (:mod:`probsym.experiments.pattern`): OGB atom codes one-hot
as node features, the bond codes beside the adjacency as the pair input (one-hot inside the base,
:class:`~probsym.models.categorical.OneHotPairs`), patch tokens, a transformer encoder. Peptides
read the class token (invariant: the same for every node order, averaged over the k samples);
PCQM-Contact reads the order-2 map (``P Y Pᵀ`` per sample, averaged) at the candidate pairs.

Data: ``--data-dir`` holding PyG ``LRGBDataset`` files (``<dir>/<name>/raw/*.pt``), or the cache
(``$PROBSYM_DATA/LRGB``) where PyG downloads them when online.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from probsym import Signature, Symmetrize, fields
from probsym.data import cache_dir
from probsym.errors import ConfigError, ProbsymError
from probsym.experiments.base import DataSplit, Experiment, Split
from probsym.experiments.pattern import TOKEN_MODEL_DEFAULTS
from probsym.train.config import TrainConfig

__all__ = ["EXPERIMENTS", "TASKS", "Task"]

#: Backbones, the first is the default (see :func:`probsym.experiments.pattern.build_encoder`).
BACKBONES = ("transformer", "vit", "minilm", "hf")
#: Backbones with patch dropout (the timm-compatible ViT; ``transformer`` is one from scratch).
PATCH_DROPOUT_BACKBONES = ("transformer", "vit")


class Task(NamedTuple):
    """What differs between the three benchmarks.

    Attributes:
        name: CLI name, also PyG's ``LRGBDataset`` name.
        level: ``"graph"`` (class-token head) or ``"pair"`` (order-2 map).
        out_dim: Outputs per graph (labels, targets) or per pair (1 link logit).
        max_nodes: The benchmark's ``rep_dim`` (largest graph; fixes the token geometry).
        paper: The post-April-2024 config's token settings (PAPER-NOTES §3.1, §4.7–4.9).
    """

    name: str
    level: Literal["graph", "pair"]
    out_dim: int
    max_nodes: int
    paper: Mapping[str, Any]


TASKS = {
    "peptides-func": Task(
        "peptides-func",
        "graph",
        10,
        444,
        {"pad_mode": "reflect", "centering": True, "patch_dropout": 0.5},
    ),
    "peptides-struct": Task(
        "peptides-struct",
        "graph",
        11,
        444,
        {
            "pad_mode": "circular",
            "centering": True,
            "patch_dropout": 0.5,
            "patch_dropout_uniform": True,
        },
    ),
    "pcqm-contact": Task("pcqm-contact", "pair", 1, 53, {"pad_mode": "zero"}),
}


def signature(task: Task) -> Signature:
    """Node features and the pair codes in; an invariant vector or a pair map out."""
    out = fields.scalar if task.level == "graph" else fields.pair
    return Signature({"x": fields.node, "adj": fields.pair}, out)


# ---- data ---------------------------------------------------------------------------------------

SPLITS = ("train", "val", "test")


def data_root(config: TrainConfig) -> tuple[Path, bool]:
    """The ``LRGBDataset`` root, and whether PyG may download there.

    Downloads go only to the cache, never into ``--data-dir`` (read as given; PyG does write its
    ``processed/`` files beside ``raw/`` there on first use, as it does for any root).
    """
    if config.data_dir:
        return Path(config.data_dir), False
    return cache_dir("LRGB"), True


def build_data(task: Task, config: TrainConfig) -> dict[str, DataSplit]:
    """Sparse splits densified per batch (size-bucketed): ``x`` one-hot atoms, ``adj`` codes.

    Batches hold ``x (b, n, Σ atom vocab)``, ``adj (b, n, n, 1 + 3)`` (edge indicator, then the
    three bond codes), ``mask`` and ``target``: ``(b, 10 | 11)`` for Peptides, ``(b, n, N)``
    int8 label rows for PCQM-Contact (:class:`~probsym.data.lrgb.ContactRows`, ``N`` the
    largest graph of any split or ``--max-nodes``).
    """
    from probsym.data.loader import GraphSplit, graph_sizes
    from probsym.data.lrgb import ContactRows, OneHotNodes, atom_vocab, load_lrgb

    root, may_download = data_root(config)
    datasets = {s: load_lrgb(root, task.name, s, download=may_download) for s in SPLITS}
    largest = max(int(graph_sizes(d).max()) for d in datasets.values())
    limit = config.max_nodes or task.max_nodes
    if largest > limit:
        raise ConfigError(
            f"{task.name}: a graph has {largest} nodes, more than --max-nodes {limit}"
        )
    nodes = OneHotNodes(atom_vocab())
    splits = {}
    for split, dataset in datasets.items():
        if task.level == "pair":
            dataset.transform = ContactRows(max(largest, config.max_nodes))
        level = "graph" if task.level == "graph" else "node"
        graph_split = GraphSplit(dataset, label_level=level, edge_attr="adj", transform=nodes)
        # --max-train sizes the training split (it overrides --limit there); --limit the others
        count = config.max_train or config.limit if split == "train" else config.limit
        splits[split] = graph_split.head(count)
    return splits


# ---- model --------------------------------------------------------------------------------------


def build_base(task: Task, config: TrainConfig) -> torch.nn.Module:
    """One-hot pair codes -> graph tokens -> encoder -> class-token or pair-map head."""
    from probsym.data.lrgb import atom_vocab, bond_vocab
    from probsym.experiments.pattern import build_encoder
    from probsym.models.categorical import OneHotPairs
    from probsym.models.graph_tokens import GraphTokenModel

    encoder = build_encoder(config)
    if config.patch_dropout > 0:
        if task.level != "graph":
            raise ConfigError(
                "--patch-dropout drops tokens the pair head reads back; it is for the graph-level "
                "benchmarks (peptides-func, peptides-struct) only"
            )
        if config.backbone not in PATCH_DROPOUT_BACKBONES:
            raise ConfigError(
                f"--patch-dropout needs backbone {' or '.join(PATCH_DROPOUT_BACKBONES)}, "
                f"not {config.backbone!r}; pass --patch-dropout 0"
            )
        encoder.patch_dropout = config.patch_dropout
        encoder.patch_dropout_uniform = config.patch_dropout_uniform
    pair_vocab = bond_vocab()
    model = GraphTokenModel(
        encoder,
        node_channels=sum(atom_vocab()),
        pair_channels=1 + sum(pair_vocab),
        max_nodes=config.max_nodes or task.max_nodes,
        out_dim=task.out_dim,
        level=task.level,
        grid=config.token_grid,
        pad_mode=config.pad_mode,
        centering=config.centering,
    )
    return OneHotPairs(model, pair_vocab)


def build_model(task: Task, config: TrainConfig, example: Split) -> Symmetrize:
    """The symmetrized base for ``config``."""
    from probsym.experiments.pattern import build_sampler

    if config.method == "none":
        raise ProbsymError(f"{task.name} has no equivariant baseline: use ps, ga, fa or canonical")
    return Symmetrize(
        build_base(task, config),
        build_sampler(config, signature(task)),
        num_samples=config.samples,
        eval_num_samples=config.eval_samples,
        eval_chunk_size=config.eval_chunk or None,
    )


# ---- heads, losses and metrics ------------------------------------------------------------------


def pair_readout(value: Tensor, batch: Split) -> tuple[Tensor, Tensor]:
    """Link logits and label codes as fixed-size maps, so that batches concatenate.

    Shapes:
        value: ``(b, n, n, 1)`` · target: ``(b, n, N)`` -> both ``(b, N, N)`` (padding: logit 0,
        code 0).
    """
    codes = batch["target"].to(value.device)
    size = codes.shape[-1]
    n = value.shape[1]
    scores = F.pad(value.squeeze(-1), (0, size - n, 0, size - n))
    return scores, F.pad(codes, (0, 0, 0, size - n))


def contact_loss(scores: Tensor, codes: Tensor) -> Tensor:
    """BCE with logits over the candidate pairs (codes 2 and 3), label 1 for a contact."""
    from probsym.data.lrgb import CONTACT_CODES

    candidate = codes >= CONTACT_CODES["negative"]
    label = (codes[candidate] == CONTACT_CODES["positive"]).to(scores.dtype)
    return F.binary_cross_entropy_with_logits(scores[candidate], label)


def contact_metrics(scores: Tensor, codes: Tensor) -> dict[str, float]:
    """MRR and hits@k, raw, ``_filtered`` and ``_filtered_noself`` (PAPER-NOTES §4.9)."""
    from probsym.data.lrgb import CONTACT_CODES
    from probsym.metrics import link_ranking

    nodes = codes >= CONTACT_CODES["other"]
    return link_ranking(scores, codes == CONTACT_CODES["positive"], nodes)


def labelled_bce(logits: Tensor, target: Tensor) -> Tensor:
    """BCE with logits on the labelled (non-NaN) entries (LRGB's multilabel loss)."""
    labelled = ~torch.isnan(target)
    return F.binary_cross_entropy_with_logits(logits[labelled], target[labelled].to(logits.dtype))


def func_metrics(logits: Tensor, target: Tensor) -> dict[str, float]:
    """``ap``: macro AP over the labels, on the whole split."""
    from probsym.metrics import multilabel_average_precision

    return {"ap": float(multilabel_average_precision(logits, target))}


def l1_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error as the training loss."""
    return F.l1_loss(prediction, target.to(prediction.dtype))


def struct_metrics(prediction: Tensor, target: Tensor) -> dict[str, float]:
    """``mae``: mean over all entries of the whole split."""
    from probsym.metrics import mean_absolute_error

    return {"mae": float(mean_absolute_error(prediction, target))}


# CPU-budget defaults: PATTERN's small transformer from scratch, with smaller batches for the
# 444-node Peptides graphs; the paper's settings are one command per benchmark in docs/lrgb.md.
_COMMON = {**TOKEN_MODEL_DEFAULTS, "batch_size": 32, "eval_batch_size": 32}


def _experiment(
    task: Task,
    loss: Callable[[Tensor, Tensor], Tensor],
    metrics: Callable[[Tensor, Tensor], dict[str, float]],
    select: tuple[str, str],
    **extra: Any,
) -> Experiment:
    return Experiment(
        name=task.name,
        build_data=lambda config: build_data(task, config),
        build_model=lambda config, example: build_model(task, config, example),
        loss=loss,
        metrics=metrics,
        defaults={**_COMMON, **task.paper, **extra},
        backbones=BACKBONES,
        select=select,
        readout=pair_readout if task.level == "pair" else None,
    )


EXPERIMENTS = {
    "peptides-func": _experiment(
        TASKS["peptides-func"], labelled_bce, func_metrics, ("ap", "max"), interface_dropout=0.1
    ),
    "peptides-struct": _experiment(
        TASKS["peptides-struct"], l1_loss, struct_metrics, ("mae", "min"), interface_dropout=0.1
    ),
    "pcqm-contact": _experiment(
        TASKS["pcqm-contact"], contact_loss, contact_metrics, ("loss", "min")
    ),
}
