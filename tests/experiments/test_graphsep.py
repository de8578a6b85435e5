"""Graph separation: counts on known pairs, and EXP-classify end to end through the CLI."""

import json
from pathlib import Path

import pytest
import torch
from torch_geometric.data import Data

from probsym.cli import main
from probsym.data.batching import add_degree_feature
from probsym.experiments import graphsep

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _graph(n, edges):
    index = torch.tensor(edges, dtype=torch.long).t()
    index = torch.cat([index, index.flip(0)], dim=1)
    return add_degree_feature(Data(x=torch.ones(n, 1), edge_index=index, num_nodes=n))


HEXAGON = _graph(6, [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 0)])
TRIANGLES = _graph(6, [(0, 1), (1, 2), (2, 0), (3, 4), (4, 5), (5, 3)])  # 1-WL equivalent
RELABELLED = _graph(6, [(0, 2), (2, 4), (4, 1), (1, 3), (3, 5), (5, 0)])  # a hexagon again
# The smallest asymmetric tree (no automorphism): a 6-path with a pendant at the third node.
TREE = _graph(7, [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (2, 6)])
TREE_RELABELLED = _graph(7, [(6, 4), (4, 0), (0, 2), (2, 5), (5, 1), (0, 3)])


@pytest.mark.parametrize("method", ["ps", "canonical", "fa"])
def test_wl_equivalent_pair_is_separated(method):
    count = graphsep.indistinguishable_pairs(
        "exp", [HEXAGON, TRIANGLES], method, "mlp", seeds=2, n_max=6
    )
    assert count == 0


def test_isomorphic_asymmetric_pair_is_not_separated_by_a_canonicalizer():
    count = graphsep.indistinguishable_pairs(
        "exp", [TREE, TREE_RELABELLED], "canonical", "mlp", seeds=3, n_max=7
    )
    assert count == 1


def test_automorphic_graph_defeats_a_canonicalizer():
    # The hexagon's nodes tie exactly; random tie-breaks give different orderings of the same
    # graph, so even an isomorphic copy is "separated" (the paper's point about canonicalization).
    count = graphsep.indistinguishable_pairs(
        "exp", [HEXAGON, RELABELLED], "canonical", "mlp", seeds=1, n_max=6
    )
    assert count == 0


def test_graph8c_style_search_finds_isomorphic_copies():
    graphs = [TREE, HEXAGON, TREE_RELABELLED]
    count = graphsep.indistinguishable_pairs(
        "graph8c", graphs, "canonical", "mlp", seeds=2, n_max=7
    )
    assert count == 1  # the tree and its relabelling only


@pytest.mark.needs_data
def test_cli_exp_classify_tiny_run_and_resume(tmp_path, capsys):
    if not (SHARED / "EXP" / "GRAPHSAT.pkl").exists():
        pytest.skip(f"EXP data absent at {SHARED / 'EXP'}")
    common = [
        "train",
        "exp-classify",
        "--data-dir",
        str(SHARED / "EXP"),
        "--limit",
        "20",
        "--backbone",
        "gin-id",
        "--samples",
        "2",
        "--eval-samples",
        "2",
        "--quiet",
        "--set",
        "warmup_epochs=0",
    ]
    assert main([*common, "--epochs", "2", "--out", str(tmp_path / "full")]) == 0
    full = json.loads((tmp_path / "full" / "metrics.json").read_text())
    assert set(full["test"]) == {"loss", "accuracy"} and full["epochs"] == 2
    # Interrupted after one epoch, then resumed: identical to the uninterrupted run.
    assert main([*common, "--epochs", "1", "--out", str(tmp_path / "part")]) == 0
    assert main([*common, "--epochs", "2", "--out", str(tmp_path / "part"), "--resume"]) == 0
    resumed = json.loads((tmp_path / "part" / "metrics.json").read_text())
    assert resumed["test"] == full["test"]
    log = (tmp_path / "part" / "log.csv").read_text().splitlines()
    assert len(log) == 3  # header + one row per epoch, no duplicates
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "full"), "--eval-samples", "2", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["test"]["accuracy"] == full["test"]["accuracy"]


def test_cli_rejects_bad_options(tmp_path, capsys):
    assert main(["train", "nonsense"]) == 2
    assert "unknown experiment" in capsys.readouterr().err
    assert main(["train", "graph8c"]) == 2
    assert "probsym separate graph8c" in capsys.readouterr().err
    assert main(["train", "exp-classify", "--set", "bogus=1"]) == 2
    assert "bogus" in capsys.readouterr().err
    assert main(["train", "exp-classify", "--method", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["train", "exp-classify", "--data-dir", str(tmp_path), "--quiet"]) == 2
    assert "GRAPHSAT.pkl" in capsys.readouterr().err


def test_isomorphic_copy_control_tells_noise_from_power():
    graphs = [TREE, TREE_RELABELLED]
    # A deterministic canonicalizer is invariant on asymmetric graphs: no copy is "separated".
    assert graphsep.separated_isomorphic_copies("exp", graphs, "canonical", "mlp", n_max=7) == 0
    # Fresh-noise Monte Carlo estimates differ by more than the tolerance: the control shows it.
    assert graphsep.separated_isomorphic_copies("exp", graphs, "ga", "mlp", n_max=7) > 0
