"""The automorphic-nodes study: known orbits, the spread statistic, and what it shows."""

import csv
import math

import networkx as nx
import pytest
import torch
from networkx.algorithms.isomorphism import GraphMatcher

from probsym.analysis import orbits
from probsym.cli import main


def _search_orbits(graph: orbits.OrbitGraph) -> set[frozenset]:
    g = nx.Graph(list(graph.edges))
    g.add_nodes_from(range(graph.num_nodes))
    parent = list(range(graph.num_nodes))

    def find(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for mapping in GraphMatcher(g, g).isomorphisms_iter():
        for a, b in mapping.items():
            parent[find(a)] = find(b)
    groups: dict[int, set] = {}
    for i in range(graph.num_nodes):
        groups.setdefault(find(i), set()).add(i)
    return {frozenset(s) for s in groups.values()}


@pytest.mark.parametrize("graph", orbits.catalogue(), ids=lambda g: g.name)
def test_catalogue_orbits_are_the_automorphism_orbits(graph):
    labelled: dict[int, set] = {}
    for node, label in enumerate(graph.orbit):
        labelled.setdefault(label, set()).add(node)
    assert {frozenset(s) for s in labelled.values()} == _search_orbits(graph)


def test_orbit_spread_by_hand():
    values = torch.tensor([1.0, 3.0, 5.0, 10.0])
    # Orbit {0, 1}: squares 1 + 1; orbit {2}: alone, skipped; orbit {3}: alone.
    assert orbits.orbit_spread(values, [0, 0, 1, 2]) == pytest.approx(math.sqrt(2.0))
    # Two orbits of two: (1, 3) and (5, 10): squares 2 + 12.5 over 2 degrees of freedom.
    assert orbits.orbit_spread(values, [0, 0, 1, 1]) == pytest.approx(math.sqrt(7.25))
    assert math.isnan(orbits.orbit_spread(values, [0, 1, 2, 3]))


def test_ps_is_orbit_invariant_up_to_its_noise_and_canonical_is_not():
    graphs = [g for g in orbits.catalogue() if g.name in ("star", "cycle7", "s3xs2")]
    rows = orbits.study(counts=(1, 100), methods=("ps", "canonical"), trials=2, graphs=graphs)
    for graph in graphs:
        ps = {r["samples"]: r for r in rows if r["method"] == "ps" and r["graph"] == graph.name}
        (canonical,) = [r for r in rows if r["method"] == "canonical" and r["graph"] == graph.name]
        # Invariant in expectation: the spread is the Monte Carlo noise, shrinking like 1/sqrt(k).
        assert ps[100]["spread"] < 2.0 * ps[100]["noise_floor"]
        assert ps[100]["spread"] < 0.3 * ps[1]["spread"]
        # One canonical ordering treats automorphic nodes differently: far above PS at k = 100.
        assert canonical["spread"] > 3.0 * ps[100]["spread"]


def test_orbits_cli_writes_the_plot_and_its_csv(tmp_path, capsys):
    out = tmp_path / "orbits"
    args = ["orbits", "--out", str(out), "--counts", "1,4", "--trials", "2", "--quiet"]
    assert main(args) == 0
    rows = list(csv.DictReader((out / "orbits.csv").open()))
    assert {r["method"] for r in rows} == {"ps", "canonical", "ga"}
    assert {r["graph"] for r in rows} == {g.name for g in orbits.catalogue()}
    assert (out / "orbits.png").stat().st_size > 10_000
    capsys.readouterr()
    assert main(["orbits", "--out", str(out), "--methods", "ps,bogus"]) == 2
    assert "bogus" in capsys.readouterr().err
    assert main(["orbits", "--out", str(out), "--counts", "0"]) == 2
