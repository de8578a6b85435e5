"""PATTERN (Dwivedi et al., "Benchmarking GNNs"): SBM generator and GNNBenchmark-file loader.

The generator follows the benchmark's own notebook (``generate_SBM_PATTERN.ipynb``, the "v4"
parameters; PAPER-NOTES §7) draw for draw in structure, but with a private NumPy ``Generator``
and vectorised per-graph draws, so the graphs are an independent sample of the same law: bit
identity with the published files is impossible (the notebook used the unseeded legacy global
RNG, one ``binomial`` call per node pair).

On disk it writes PyG's ``GNNBenchmarkDataset`` layout under ``root/PATTERN``: the raw file
``raw/PATTERN_v2.pt`` (what PyG's ``process()`` reads; without it PyG tries to download even when
the processed files exist) and ``processed/{train,val,test}_data.pt`` (PyG's collated
``InMemoryDataset`` files). Per graph: ``x`` (n, 3) float32 one-hot of the category in {0, 1, 2},
``edge_index`` (2, e) int64 with both directions, sorted row-major, no self loops, ``y`` (n,)
int64 with 1 on pattern nodes; no ``edge_attr``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data, InMemoryDataset

from probsym.errors import DataError, MissingDataError, UnknownNameError

__all__ = [
    "DEFAULT_SEED",
    "NUM_INSTANCES",
    "PER_INSTANCE",
    "PROCESSED_FILES",
    "RAW_FILE",
    "SPLITS",
    "Pattern",
    "PatternDataset",
    "PatternGraph",
    "PatternSplit",
    "SplitSummary",
    "ensure_pattern",
    "generate_pattern",
    "generate_splits",
    "load_pattern",
    "pattern_dir",
    "sample_graph",
    "sample_pattern",
    "split_sizes",
]

log = logging.getLogger(__name__)

Split = Literal["train", "val", "test"]

NAME = "PATTERN"
SPLITS: tuple[Split, ...] = ("train", "val", "test")
RAW_FILE = "PATTERN_v2.pt"  # the file inside PyG's PATTERN_v2.zip
PROCESSED_FILES = {"train": "train_data.pt", "val": "val_data.pt", "test": "test_data.pt"}
PYG_URL = "https://data.pyg.org/datasets/benchmarking-gnns/PATTERN_v2.zip"
PROVENANCE_FILE = "probsym_generated.json"

#: Seed of the offline generation. Any fixed value gives an equally valid sample of the recipe;
#: this one is the arXiv id of the benchmark paper (2003.00982) without its dot.
DEFAULT_SEED = 200300982
NUM_INSTANCES = 100
PER_INSTANCE = (100, 20, 20)  # train, val, test graphs per pattern instance

# The notebook's "v4" parameters.
NUM_COMMUNITIES = 5
SIZE_LOW, SIZE_HIGH = 5, 35  # randint(5, 35): sizes 5..34, for communities and patterns alike
P_WITHIN, Q_BETWEEN = 0.5, 0.35
P_PATTERN, Q_PATTERN = 0.5, 0.5  # pattern's own edges; pattern-rest links
NUM_CATEGORIES = 3
MAX_NODES = NUM_COMMUNITIES * (SIZE_HIGH - 1) + (SIZE_HIGH - 1)  # 204 < 256: uint8 node ids


class Pattern(NamedTuple):
    """One pattern instance, shared by all 140 graphs drawn for it.

    Shapes:
        adjacency: (m, m) bool, symmetric, zero diagonal. features: (m,) int8 in {0, 1, 2}.
    """

    adjacency: np.ndarray
    features: np.ndarray


class PatternGraph(NamedTuple):
    """One graph: communities, then the pattern, then shuffled.

    ``permutation[k]`` is the pre-shuffle index of node ``k``; before the shuffle the
    communities come first (sizes ``community_sizes``) and the pattern last.

    Shapes:
        features: (n,) int8. edge_index: (2, e) int64, both directions, row-major sorted.
        y: (n,) int8. community_sizes: (5,). permutation: (n,).
    """

    features: np.ndarray
    edge_index: np.ndarray
    y: np.ndarray
    community_sizes: np.ndarray
    permutation: np.ndarray


class PatternSplit(NamedTuple):
    """A split in compact collated form: node and edge arrays concatenated over graphs.

    Edge indices stay local to their graph (PyG's ``InMemoryDataset`` convention) and fit in
    uint8 because a graph has at most 204 nodes.

    Shapes:
        features, y: (N,) int8. edge_index: (2, E) uint8. num_nodes, num_edges: (G,) int64.
    """

    features: np.ndarray
    edge_index: np.ndarray
    y: np.ndarray
    num_nodes: np.ndarray
    num_edges: np.ndarray


class SplitSummary(NamedTuple):
    """Statistics of a split (degrees count both directions once per node, as PyG does)."""

    num_graphs: int
    min_nodes: int
    max_nodes: int
    mean_nodes: float
    label_fraction: float
    mean_degree: float

    @classmethod
    def of(cls, split: PatternSplit) -> SplitSummary:
        """Summarise a generated split."""
        n = split.num_nodes
        return cls(
            num_graphs=len(n),
            min_nodes=int(n.min()),
            max_nodes=int(n.max()),
            mean_nodes=float(n.mean()),
            label_fraction=float(split.y.mean()),
            mean_degree=float(split.num_edges.sum() / n.sum()),
        )


# ---------------------------------------------------------------------------------------------
# generation


def split_sizes(
    num_instances: int = NUM_INSTANCES, per_instance: Sequence[int] = PER_INSTANCE
) -> dict[Split, int]:
    """Graphs per split: ``num_instances × per_instance`` (the recipe: 10,000 / 2,000 / 2,000)."""
    if len(per_instance) != len(SPLITS):
        raise ValueError(f"per_instance needs {len(SPLITS)} counts (train, val, test)")
    return {s: num_instances * int(k) for s, k in zip(SPLITS, per_instance, strict=True)}


def sample_pattern(rng: np.random.Generator) -> Pattern:
    """Draw a pattern: ``m = randint(5, 35)`` nodes, edges with probability 0.5, features."""
    m = int(rng.integers(SIZE_LOW, SIZE_HIGH))
    upper = np.triu(rng.random((m, m)) < P_PATTERN, k=1)
    features = rng.integers(0, NUM_CATEGORIES, size=m).astype(np.int8)
    return Pattern(adjacency=upper | upper.T, features=features)


def sample_graph(rng: np.random.Generator, pattern: Pattern) -> PatternGraph:
    """Draw one graph: five SBM communities, the pattern appended and linked, then shuffled.

    Edge probabilities: 0.5 within a community, 0.35 between communities, 0.5 for each
    pattern-community pair; the pattern's own edges are ``pattern.adjacency``. Features of
    community nodes are uniform in {0, 1, 2}; pattern nodes carry ``pattern.features``.
    """
    sizes = rng.integers(SIZE_LOW, SIZE_HIGH, size=NUM_COMMUNITIES)
    rest = int(sizes.sum())
    m = len(pattern.features)
    n = rest + m
    block = np.repeat(np.arange(NUM_COMMUNITIES + 1), np.append(sizes, m))  # pattern = block 5
    features = np.concatenate(
        [rng.integers(0, NUM_CATEGORIES, size=rest).astype(np.int8), pattern.features]
    )
    same = block[:, None] == block[None, :]
    prob = np.where(same, P_WITHIN, Q_BETWEEN)
    prob[:rest, rest:] = Q_PATTERN  # only the upper triangle is used
    adjacency = np.triu(rng.random((n, n)) < prob, k=1)
    adjacency |= adjacency.T
    adjacency[rest:, rest:] = pattern.adjacency
    perm = rng.permutation(n)  # new node k is old node perm[k]
    adjacency = adjacency[perm][:, perm]
    return PatternGraph(
        features=features[perm],
        edge_index=np.stack(np.nonzero(adjacency)),  # row-major: sorted, both directions
        y=(block[perm] == NUM_COMMUNITIES).astype(np.int8),
        community_sizes=sizes,
        permutation=perm,
    )


def generate_splits(
    seed: int = DEFAULT_SEED,
    *,
    num_instances: int = NUM_INSTANCES,
    per_instance: Sequence[int] = PER_INSTANCE,
    progress: Callable[[int, int], None] | None = None,
) -> dict[Split, PatternSplit]:
    """Run the recipe in memory: per instance, a pattern, then its train, val and test graphs.

    Args:
        seed: Seed of the one ``numpy.random.Generator`` (PCG64) that draws everything, in the
            notebook's order (pattern, then its train, val, test graphs; then the next one).
        num_instances: Pattern instances (100).
        per_instance: Graphs per instance for train, val, test ((100, 20, 20)).
        progress: Called as ``progress(done, num_instances)`` after each instance.

    Returns:
        The three splits in compact collated form.
    """
    sizes = split_sizes(num_instances, per_instance)
    rng = np.random.default_rng(seed)
    compact: dict[Split, list[tuple[np.ndarray, ...]]] = {s: [] for s in SPLITS}
    for i in range(num_instances):
        pattern = sample_pattern(rng)
        for split, count in zip(SPLITS, per_instance, strict=True):
            for _ in range(count):
                g = sample_graph(rng, pattern)
                # uint8 ids keep the whole set near 170 MB until it is written.
                compact[split].append((g.features, g.edge_index.astype(np.uint8), g.y))
        if progress is not None:
            progress(i + 1, num_instances)
    out = {}
    for split in SPLITS:
        graphs = compact.pop(split)
        assert len(graphs) == sizes[split], (split, len(graphs), sizes[split])
        out[split] = PatternSplit(
            features=np.concatenate([g[0] for g in graphs]),
            edge_index=np.concatenate([g[1] for g in graphs], axis=1),
            y=np.concatenate([g[2] for g in graphs]),
            num_nodes=np.array([len(g[0]) for g in graphs], dtype=np.int64),
            num_edges=np.array([g[1].shape[1] for g in graphs], dtype=np.int64),
        )
    return out


def _collated(split: PatternSplit) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """PyG's ``InMemoryDataset`` storage of a split: concatenated fields and their slices."""
    node_slices = torch.from_numpy(np.concatenate([[0], np.cumsum(split.num_nodes)]))
    edge_slices = torch.from_numpy(np.concatenate([[0], np.cumsum(split.num_edges)]))
    categories = torch.from_numpy(split.features.astype(np.int64))
    data = {
        "x": torch.nn.functional.one_hot(categories, NUM_CATEGORIES).to(torch.float32),
        "edge_index": torch.from_numpy(split.edge_index).to(torch.int64),
        "y": torch.from_numpy(split.y).to(torch.int64),
    }
    slices = {"x": node_slices, "edge_index": edge_slices, "y": node_slices.clone()}
    return data, slices


def _save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` to a temp file in the same folder, then rename: never a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; data files are meant to be shared
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _graph_dicts(data: dict[str, Tensor], slices: dict[str, Tensor]) -> list[dict[str, Tensor]]:
    """Per-graph dicts of views into the collated tensors.

    ``torch.save`` stores each storage once, so the raw file costs no more than the processed one.
    """
    nodes, edges = slices["x"].tolist(), slices["edge_index"].tolist()
    return [
        {
            "x": data["x"][nodes[i] : nodes[i + 1]],
            "edge_index": data["edge_index"][:, edges[i] : edges[i + 1]],
            "y": data["y"][nodes[i] : nodes[i + 1]],
        }
        for i in range(len(nodes) - 1)
    ]


def generate_pattern(
    root: str | os.PathLike[str],
    *,
    seed: int = DEFAULT_SEED,
    num_instances: int = NUM_INSTANCES,
    per_instance: Sequence[int] = PER_INSTANCE,
    write_raw: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> dict[Split, SplitSummary]:
    """Generate PATTERN offline and write it in PyG's ``GNNBenchmarkDataset`` layout.

    Writes ``root/PATTERN/processed/{train,val,test}_data.pt`` (PyG's collated format, plus
    PyG's ``pre_transform.pt``/``pre_filter.pt`` markers), ``root/PATTERN/raw/PATTERN_v2.pt``
    (a list of three lists of per-graph dicts, the form PyG's ``process()`` reads) and
    ``root/PATTERN/probsym_generated.json`` (seed, recipe and statistics). With the raw file
    present, ``GNNBenchmarkDataset(root, "PATTERN", split=...)`` loads the set offline.

    Args:
        root: Root folder (the ``root`` of ``GNNBenchmarkDataset``).
        seed: Generator seed (:data:`DEFAULT_SEED`).
        num_instances: Pattern instances.
        per_instance: Graphs per instance for train, val and test.
        write_raw: Also write the raw file (doubles the disk use; PyG needs it, ours does not).
        progress: Called as ``progress(done, num_instances)`` after each instance.

    Returns:
        Statistics per split.
    """
    directory = pattern_dir(root)
    splits = generate_splits(
        seed, num_instances=num_instances, per_instance=per_instance, progress=progress
    )
    summaries = {s: SplitSummary.of(splits[s]) for s in SPLITS}
    processed = directory / "processed"
    for split in SPLITS:
        data, slices = _collated(splits.pop(split))  # free each split once it is collated
        _save_atomic((data, slices, Data), processed / PROCESSED_FILES[split])
        del data, slices
    # PyG compares these with repr(pre_transform) / repr(pre_filter) and warns on a mismatch.
    _save_atomic("None", processed / "pre_transform.pt")
    _save_atomic("None", processed / "pre_filter.pt")
    if write_raw:
        # Memory-map the processed files: the raw file is written from their pages, not from a
        # second copy in RAM.
        raw = []
        for split in SPLITS:
            data, slices, _ = torch.load(
                processed / PROCESSED_FILES[split], mmap=True, weights_only=False
            )
            raw.append(_graph_dicts(data, slices))
        _save_atomic(raw, directory / "raw" / RAW_FILE)
        del raw
    provenance = {
        "generator": "probsym.data.pattern.generate_pattern",
        "seed": seed,
        "num_instances": num_instances,
        "per_instance": list(per_instance),
        "recipe": "benchmarking-gnns generate_SBM_PATTERN.ipynb v4 (not the published sample)",
        "splits": {s: summaries[s]._asdict() for s in SPLITS},
    }
    (directory / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
    log.info("PATTERN generated in %s (seed %d): %s", directory, seed, summaries)
    return summaries


# ---------------------------------------------------------------------------------------------
# loading


def pattern_dir(root: str | os.PathLike[str]) -> Path:
    """``root/PATTERN``: the folder ``GNNBenchmarkDataset(root, "PATTERN")`` uses."""
    return Path(root) / NAME


class PatternDataset(InMemoryDataset):
    """One PATTERN split read from PyG's processed file, with no download or processing step.

    Storage is PyG's collated sparse form; ``dataset[i]`` is a ``Data(x, edge_index, y)``.

    Args:
        root: Root folder holding ``PATTERN/processed/<split>_data.pt``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        transform: Optional PyG transform applied on access.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: Split = "train",
        transform: Callable[[Data], Data] | None = None,
    ) -> None:
        if split not in SPLITS:
            raise UnknownNameError("PATTERN split", split, SPLITS)
        self.split = split
        super().__init__(str(root), transform=transform, log=False)
        path = pattern_dir(root) / "processed" / PROCESSED_FILES[split]
        try:
            self.load(str(path))
        except Exception as err:  # torch / pickle raise many types on corrupt input
            raise DataError(f"{path}: not a readable PyG processed file ({err})") from err

    @property
    def raw_dir(self) -> str:  # noqa: D102
        return str(pattern_dir(self.root) / "raw")

    @property
    def processed_dir(self) -> str:  # noqa: D102
        return str(pattern_dir(self.root) / "processed")

    @property
    def raw_file_names(self) -> list[str]:  # noqa: D102
        return [RAW_FILE]

    @property
    def processed_file_names(self) -> list[str]:  # noqa: D102
        return [PROCESSED_FILES[s] for s in SPLITS]

    def __repr__(self) -> str:
        return f"PATTERN({self.split}, {len(self)})"


def _missing_message(directory: Path, split: str | None = None) -> str:
    wanted = [PROCESSED_FILES[split]] if split else list(PROCESSED_FILES.values())
    processed = ", ".join(str(directory / "processed" / f) for f in wanted)
    return (
        f"PATTERN not found: expected {processed}, or the raw file {directory / 'raw' / RAW_FILE} "
        f"(inside {PYG_URL}; PyG's GNNBenchmarkDataset downloads it). Offline, generate the set "
        f"with probsym.data.pattern.generate_pattern({str(directory.parent)!r}) or pass "
        f"generate=True."
    )


def ensure_pattern(
    root: str | os.PathLike[str],
    *,
    download: bool = False,
    generate: bool = False,
    seed: int = DEFAULT_SEED,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Make the three processed PATTERN files exist under ``root/PATTERN`` and return that folder.

    In order: processed files present → done; raw file present → PyG's own ``process()``
    builds them (offline); ``download`` → PyG downloads the standard set; ``generate`` →
    :func:`generate_pattern` (the offline route; a fresh sample of the recipe, not the
    published graphs).

    Args:
        root: Root folder (as for ``GNNBenchmarkDataset``).
        download: Allow PyG to fetch ``PATTERN_v2.zip`` from data.pyg.org.
        generate: Allow offline generation when the files are absent (and download failed or
            was off).
        seed: Seed for generation.
        progress: Passed to :func:`generate_pattern`.

    Returns:
        ``root/PATTERN``.

    Raises:
        MissingDataError: If the files are absent and neither route is allowed or works; the
            message names the files to supply.
    """
    directory = pattern_dir(root)
    processed = [directory / "processed" / PROCESSED_FILES[s] for s in SPLITS]
    if all(p.is_file() for p in processed):
        return directory
    raw = directory / "raw" / RAW_FILE
    failure = ""
    if raw.is_file() or download:
        from torch_geometric.datasets import GNNBenchmarkDataset

        try:
            GNNBenchmarkDataset(str(root), NAME, split="train")  # processes all three splits
            return directory
        except (OSError, ValueError) as err:  # URLError is an OSError
            failure = f" (PyG download/processing failed: {err})"
            if raw.is_file():
                raise DataError(f"{raw}: PyG could not process it: {err}") from err
    if generate:
        generate_pattern(root, seed=seed, progress=progress)
        return directory
    raise MissingDataError(_missing_message(directory) + failure)


def load_pattern(
    root: str | os.PathLike[str],
    split: Split,
    *,
    download: bool = False,
    generate: bool = False,
    seed: int = DEFAULT_SEED,
    validate: bool = True,
) -> PatternDataset:
    """Load one PATTERN split from PyG's ``GNNBenchmarkDataset`` files under ``root/PATTERN``.

    Args:
        root: Root folder (as for ``GNNBenchmarkDataset``).
        split: ``"train"``, ``"val"`` or ``"test"``.
        download: Allow PyG to download the standard set when it is absent.
        generate: Generate the set offline when it is absent (see :func:`ensure_pattern`).
        seed: Seed for generation.
        validate: Check the collated tensors (vectorised: dtypes, shapes, one-hot features,
            binary labels, local edge ids in range, no self loops, in-degree = out-degree).

    Returns:
        The split as a PyG ``InMemoryDataset`` in compact sparse storage.

    Raises:
        UnknownNameError: For an unknown split.
        MissingDataError: If the files are absent and no route to them is allowed; the
            message names the files to supply.
        DataError: If a file is unreadable or fails validation.
    """
    if split not in SPLITS:
        raise UnknownNameError("PATTERN split", split, SPLITS)
    path = pattern_dir(root) / "processed" / PROCESSED_FILES[split]
    if not path.is_file():
        if not (download or generate or (pattern_dir(root) / "raw" / RAW_FILE).is_file()):
            raise MissingDataError(_missing_message(pattern_dir(root), split))
        ensure_pattern(root, download=download, generate=generate, seed=seed)
    dataset = PatternDataset(root, split)
    if validate:
        _validate(dataset, path)
    return dataset


#: Graphs per chunk of the vectorised validation.
VALIDATE_CHUNK = 500


def _validate(dataset: PatternDataset, path: Path) -> None:
    """Vectorised checks over the collated storage (no per-graph Python loop)."""
    store, slices = dataset._data, dataset.slices
    if slices is None:
        raise DataError(f"{path}: holds a single graph, expected a collated split")
    for key in ("x", "edge_index", "y"):
        if key not in slices:
            raise DataError(f"{path}: missing field {key!r}; has {sorted(slices)}")
    x, edge_index, y = store.x, store.edge_index, store.y
    if x.dim() != 2 or x.size(1) != NUM_CATEGORIES or not x.is_floating_point():
        raise DataError(f"{path}: x must be float (n, 3), got {x.dtype} {tuple(x.shape)}")
    if not bool(((x == 0) | (x == 1)).all() and (x.sum(1) == 1).all()):
        raise DataError(f"{path}: x rows must be one-hot over the 3 categories")
    if y.dim() != 1 or y.size(0) != x.size(0) or not bool(((y == 0) | (y == 1)).all()):
        raise DataError(f"{path}: y must be (n,) binary labels, got {y.dtype} {tuple(y.shape)}")
    if edge_index.dim() != 2 or edge_index.size(0) != 2 or edge_index.dtype != torch.long:
        raise DataError(
            f"{path}: edge_index must be int64 (2, e), got {edge_index.dtype} "
            f"{tuple(edge_index.shape)}"
        )
    node_slices, edge_slices = slices["x"], slices["edge_index"]
    if not torch.equal(node_slices, slices["y"]):
        raise DataError(f"{path}: x and y are sliced differently")
    num_nodes = node_slices.diff()
    # In chunks of graphs, so the temporaries stay small beside a 1 GB edge_index (the whole
    # split at once peaked near 1 GB above the data itself).
    total = int(node_slices[-1])
    out_degree = torch.zeros(total, dtype=torch.long)
    in_degree = torch.zeros(total, dtype=torch.long)
    for start in range(0, len(num_nodes), VALIDATE_CHUNK):
        stop = min(start + VALIDATE_CHUNK, len(num_nodes))
        lo, hi = int(edge_slices[start]), int(edge_slices[stop])
        chunk = edge_index[:, lo:hi]
        graph = torch.repeat_interleave(
            torch.arange(start, stop), edge_slices[start : stop + 1].diff()
        )
        if chunk.numel() and bool(((chunk < 0) | (chunk >= num_nodes[graph])).any()):
            raise DataError(f"{path}: edge_index has ids outside their graph's node range")
        if bool((chunk[0] == chunk[1]).any()):
            raise DataError(f"{path}: edge_index has self loops")
        offset = node_slices[graph]
        out_degree += torch.bincount(chunk[0] + offset, minlength=total)
        in_degree += torch.bincount(chunk[1] + offset, minlength=total)
    if not torch.equal(out_degree, in_degree):
        raise DataError(f"{path}: edge_index is not undirected (in- and out-degrees differ)")
