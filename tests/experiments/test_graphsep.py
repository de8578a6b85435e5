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


SOUND = graphsep.SeparationRule(mc_samples=40, se_factor=5.0)


@pytest.mark.parametrize("method", ["ps", "ga", "fa", "canonical"])
def test_sound_rule_separates_no_isomorphic_copy(method):
    graphs = [HEXAGON, TREE, TRIANGLES, TREE_RELABELLED]
    copies = graphsep.separated_isomorphic_copies(
        "exp", graphs, method, "mlp", rule=SOUND, n_max=7, seeds=2
    )
    assert copies == 0


def test_sound_rule_still_separates_a_wl_equivalent_pair_with_ps():
    # Only PS here: on these vertex-transitive graphs GA, FA (all degrees tie) and the tie-broken
    # canonicalizer average over uniform orderings, whose means differ by less than 5 standard
    # errors even at M = 1000 (measured); PS's noise passes through the GNN, so its orderings
    # follow the graph's structure and its means differ clearly.
    count = graphsep.indistinguishable_pairs(
        "exp", [HEXAGON, TRIANGLES], "ps", "mlp", seeds=2, rule=SOUND, n_max=6
    )
    assert count == 0
    ga = graphsep.indistinguishable_pairs(
        "exp", [HEXAGON, TRIANGLES], "ga", "mlp", seeds=2, rule=SOUND, n_max=6
    )
    assert ga == 1


def test_sound_rule_keeps_isomorphic_copies_together_in_the_all_pairs_search():
    graphs = [TREE, HEXAGON, TREE_RELABELLED, RELABELLED, TRIANGLES]
    count = graphsep.indistinguishable_pairs(
        "graph8c", graphs, "ps", "mlp", seeds=2, rule=SOUND, n_max=7
    )
    assert count == 2  # the two trees and the two hexagons, nothing else


def test_sound_rule_compares_a_difference_with_its_standard_error():
    rule = graphsep.SeparationRule(mc_samples=10, se_factor=3.0, tolerance=0.0)
    mean_a = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    mean_b = torch.tensor([[0.5, 0.0], [0.2, 0.0], [0.0, 0.0]], dtype=torch.float64)
    error = torch.full((3, 2), 0.1 / 2**0.5, dtype=torch.float64)  # difference's error 0.1
    assert graphsep.separated(mean_a, error, mean_b, error, rule).tolist() == [True, False, False]
    # The paper's rule (no errors) separates any L1 distance above its tolerance.
    paper = graphsep.SeparationRule(tolerance=0.1)
    assert graphsep.separated(mean_a, None, mean_b, None, paper).tolist() == [True, True, False]
    with pytest.raises(ValueError, match="mc_samples"):
        graphsep.SeparationRule(mc_samples=1)


def test_separate_cli_reports_the_rule_and_its_control(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(graphsep, "load_graphs", lambda name, data_dir="": [TREE, TREE_RELABELLED])
    args = ["separate", "graph8c", "--method", "ga", "--seeds", "2", "--quiet"]
    assert main([*args, "--mc-samples", "30", "--out", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["rule"] == "stderr" and metrics["mc_samples"] == 30
    # The trees are isomorphic: the sound rule neither separates them nor their copies.
    assert metrics["test"] == {"indistinguishable_pairs": 1, "isomorphic_copies_separated": 0}
    capsys.readouterr()
    assert main([*args, "--mc-samples", "1"]) == 2
    assert "--mc-samples" in capsys.readouterr().err


@pytest.mark.needs_data
def test_sound_rule_on_a_graph8c_subset():
    if not (SHARED / "graph8c").exists():
        pytest.skip(f"GRAPH8c data absent at {SHARED / 'graph8c'}")
    graphs = graphsep.load_graphs("graph8c", str(SHARED / "graph8c"))[:300]
    rule = graphsep.SeparationRule(mc_samples=30)
    assert graphsep.indistinguishable_pairs("graph8c", graphs, "ps", "mlp", 3, rule) == 0
    assert graphsep.separated_isomorphic_copies("graph8c", graphs, "ps", "mlp", rule=rule) == 0
