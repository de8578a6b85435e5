"""Automorphic nodes (PAPER-NOTES §4.4) as a number: how much node outputs differ within an orbit.

Nodes that an automorphism of the graph maps onto each other (one *orbit*) must get the same
output from an S_n-equivariant model. A symmetrized model is equivariant in expectation, so the
spread of its Monte Carlo estimate within an orbit is sampling noise that falls like 1/sqrt(k);
one canonical ordering (k = 1) treats the nodes of an orbit differently, and nothing averages it
out. The paper draws this; here it is measured, on graphs whose orbits are known by
construction (the tests check them against an exhaustive automorphism search).

The study: an untrained paper MLP (``vec(P^T A P)`` 625 -> 2048 -> 4096 -> 2048 -> 25, ReLU,
one output per node slot, mapped back by ``P``), eval mode, seed 777, graphs padded to 25 nodes
with zero node features; PS (noise 1) at several inference counts k against learned
canonicalization (no noise, k = 1) and group averaging.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from probsym import Signature, Symmetrize, fields, groups, samplers
from probsym.models import FlatMLP

SIGNATURE = Signature({"x": fields.node, "adj": fields.pair}, fields.node)
#: The paper's padded size.
MAX_NODES = 25


@dataclass(frozen=True)
class OrbitGraph:
    """A graph with its automorphism orbits (node labels, equal label = same orbit)."""

    name: str
    num_nodes: int
    edges: tuple[tuple[int, int], ...]
    orbit: tuple[int, ...]

    def adjacency(self, size: int = MAX_NODES) -> Tensor:
        """The symmetric 0/1 adjacency, zero-padded to ``size`` nodes."""
        adj = torch.zeros(size, size)
        for a, b in self.edges:
            adj[a, b] = adj[b, a] = 1.0
        return adj


def _grid(rows: int, cols: int) -> tuple[tuple[int, int], ...]:
    edges = []
    for r in range(rows):
        for c in range(cols):
            if c + 1 < cols:
                edges.append((r * cols + c, r * cols + c + 1))
            if r + 1 < rows:
                edges.append((r * cols + c, (r + 1) * cols + c))
    return tuple(edges)


def catalogue() -> list[OrbitGraph]:
    """The paper's five graphs and two Cartesian products, each with its orbits."""
    cycle = tuple((i, (i + 1) % 7) for i in range(7))
    grid_orbit = tuple((r - 2) ** 2 + (c - 2) ** 2 for r in range(5) for c in range(5))
    prism = ((0, 1), (1, 2), (2, 0), (3, 4), (4, 5), (5, 3), (0, 3), (1, 4), (2, 5))
    return [
        # The smallest asymmetric tree: a 6-path with a pendant at its third node.
        OrbitGraph(
            "asymmetric", 7, ((0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (2, 6)), tuple(range(7))
        ),
        OrbitGraph("star", 7, tuple((0, i) for i in range(1, 7)), (0, 1, 1, 1, 1, 1, 1)),
        # Centre 0 with two pendants (1, 2: S2) and a hub 3 carrying three leaves (4-6: S3).
        OrbitGraph(
            "s3xs2", 7, ((0, 1), (0, 2), (0, 3), (3, 4), (3, 5), (3, 6)), (0, 1, 1, 2, 3, 3, 3)
        ),
        OrbitGraph("cycle7", 7, cycle, (0,) * 7),
        OrbitGraph("grid5x5", 25, _grid(5, 5), grid_orbit),  # orbit = squared distance to centre
        OrbitGraph("prism", 6, prism, (0,) * 6),  # K3 x K2: vertex-transitive
        OrbitGraph("ladder4", 8, _grid(2, 4), (0, 1, 1, 0, 0, 1, 1, 0)),  # P2 x P4: ends, middles
    ]


def batch(graphs: Sequence[OrbitGraph], size: int = MAX_NODES) -> dict[str, Tensor]:
    """The graphs as one padded batch: zero node features, adjacency, mask."""
    mask = torch.zeros(len(graphs), size, dtype=torch.bool)
    for i, graph in enumerate(graphs):
        mask[i, : graph.num_nodes] = True
    return {
        "x": torch.zeros(len(graphs), size, 1),
        "adj": torch.stack([g.adjacency(size) for g in graphs]),
        "mask": mask,
    }


def paper_model(method: str, seed: int = 777, size: int = MAX_NODES) -> Symmetrize:
    """The untrained symmetrized MLP of the study (``ps``, ``canonical`` or ``ga``)."""
    torch.manual_seed(seed)
    base = FlatMLP(["adj"], size * size, [2048, 4096, 2048], (size, 1), "relu")
    group = groups.Sn()
    if method == "ps":
        sampler = samplers.Learned(group, SIGNATURE, 64, 3, noise_scale=1.0, tau=0.01)
    elif method == "canonical":
        sampler = samplers.Canonical(group, SIGNATURE, hidden_dim=64, num_layers=3, tau=0.01)
    else:
        sampler = samplers.resolve(method, group, SIGNATURE)
    return Symmetrize(base, sampler, num_samples=1, eval_num_samples=1).eval()


def orbit_spread(values: Tensor, orbit: Sequence[int]) -> float:
    """Pooled within-orbit standard deviation of node values (orbits of one node excluded).

    ``sqrt(Σ_orbits Σ_{i in orbit} (v_i - mean_orbit)² / Σ_orbits (|orbit| - 1))``; NaN when
    every orbit is a single node (nothing to compare).
    """
    labels = torch.as_tensor(orbit)
    squares, freedom = 0.0, 0
    for label in labels.unique():
        members = values[labels == label]
        if len(members) > 1:
            squares += float((members - members.mean()).square().sum())
            freedom += len(members) - 1
    return math.sqrt(squares / freedom) if freedom else math.nan


@torch.no_grad()
def spread_rows(
    model: Symmetrize,
    method: str,
    graphs: Sequence[OrbitGraph],
    counts: Sequence[int],
    trials: int = 5,
    seed: int = 0,
) -> list[dict]:
    """Within-orbit spread of the k-sample estimate, for each graph and count k.

    Each trial draws ``max(counts)`` per-sample outputs per graph; the estimate at k is the mean
    of the first k. ``spread`` is the mean over trials of :func:`orbit_spread`; ``scale`` is the
    standard deviation of the per-sample node outputs (how large outputs are, for reading the
    spread); ``noise_floor`` is the spread that Monte Carlo error alone gives at k,
    ``sqrt(mean node variance / k)``: a model that is invariant in expectation sits at it.
    """
    inputs = batch(graphs)
    generator = torch.Generator().manual_seed(seed)
    largest = max(counts)
    rows = []
    pools = [
        model.sample_outputs(**inputs, num_samples=largest, generator=generator)[..., 0]
        for _ in range(trials)
    ]  # each (graphs, largest, nodes)
    for g, graph in enumerate(graphs):
        n = graph.num_nodes
        draws = [pool[g, :, :n].double() for pool in pools]  # (largest, n) per trial
        every = torch.cat(draws)
        variance = float(every.var(0).mean())
        for k in counts:
            spreads = [orbit_spread(d[:k].mean(0), graph.orbit) for d in draws]
            rows.append(
                {
                    "graph": graph.name,
                    "method": method,
                    "samples": k,
                    "trials": trials,
                    "nodes": n,
                    "orbits": len(set(graph.orbit)),
                    "spread": sum(spreads) / trials,
                    "spread_std": float(torch.tensor(spreads).std()) if trials > 1 else 0.0,
                    "noise_floor": math.sqrt(variance / k),
                    "scale": float(every.std()),
                }
            )
    return rows


def study(
    counts: Sequence[int] = (1, 10, 100, 1000),
    methods: Sequence[str] = ("ps", "canonical", "ga"),
    trials: int = 5,
    seed: int = 777,
    graphs: Sequence[OrbitGraph] | None = None,
) -> list[dict]:
    """Rows of :func:`spread_rows` for every method; canonical is measured at k = 1 only."""
    graphs = list(graphs or catalogue())
    rows = []
    for method in methods:
        model = paper_model(method, seed)
        chosen = (1,) if method == "canonical" else tuple(counts)
        rows += spread_rows(model, method, graphs, chosen, trials, seed)
    return rows
