"""The overhead benchmark runs end to end on a tiny case and reports what the issue asks for."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "overhead.py"


@pytest.fixture(scope="module")
def overhead():
    spec = importlib.util.spec_from_file_location("overhead", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["overhead"] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    yield module
    del sys.modules["overhead"]


@pytest.mark.parametrize("group", ["Sn*E3", "Sn"])
def test_quick_run_prints_both_ratios_as_the_last_json_line(overhead, tmp_path, capsys, group):
    out = tmp_path / "overhead.json"
    argv = ["--quick", "--group", group, "--batch", "2", "--nodes", "3", "--samples", "2"]
    argv += ["--no-paper"]
    result = overhead.main([*argv, "--threads", "1", "--budget", "0", "--out", str(out)])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last) == json.loads(out.read_text()) == result
    for base in ("mlp", "transformer"):
        assert result[f"overhead_ratio_{base}"] > 0 and result[f"folded_ratio_{base}"] > 0
    assert result["num_samples"] == 2 and result["threads"] == 1


def test_paper_line_reports_steps_floor_and_the_authors_reference(overhead, tmp_path, capsys):
    argv = ["--quick", "--batch", "2", "--nodes", "3", "--samples", "2", "--bases", "mlp"]
    argv += ["--paper-samples", "2", "--paper-batch", "3", "--threads", "1", "--budget", "0"]
    result = overhead.main([*argv, "--out", str(tmp_path / "overhead.json")])
    paper = result["paper"]
    assert set(paper["seconds"]) == {
        "PS, default",
        "PS, heads+chunks",
        "PS, heads+chunks+bf16",
        "base alone",
    }
    assert all(v > 0 for v in paper["seconds"].values())
    assert paper["authors_seconds"] == [4.8, 5.3] and "§4.11" in paper["authors_source"]
    assert paper["gflop_per_step"] > 0 and 0 < paper["floor_seconds"]["float32"]
    assert "authors' PS step 4.8-5.3 s" in capsys.readouterr().out
    assert (
        overhead.main([*argv, "--no-paper", "--out", str(tmp_path / "b.json")]).get("paper") is None
    )


def test_unknown_group_factor_is_a_clear_error(overhead):
    with pytest.raises(SystemExit, match="unknown group factor 'Q3'"):
        overhead.parse_group("Sn*Q3")


def test_pattern_pipeline_and_curves_run_on_a_tiny_generated_set(tmp_path):
    import subprocess

    from probsym.data.pattern import generate_pattern

    generate_pattern(tmp_path / "data", seed=3, num_instances=2, per_instance=(6, 3, 3))
    bench = SCRIPT.parent / "pattern_pipeline.py"
    out = tmp_path / "pipeline.json"
    tiny = ["--data-dir", str(tmp_path / "data"), "--hidden", "16", "--depth", "1"]
    tiny += ["--heads", "2", "--token-grid", "4", "--batch-size", "4", "--eval-samples", "1"]
    done = subprocess.run(
        [sys.executable, str(bench), "--out", str(out), "--extra", *tiny],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == json.loads(out.read_text())
    assert 0 < result["peak_rss_gb"] < 24
    assert result["train_graphs_per_second"] > 0 and result["eval_graphs_per_second"] > 0
    assert set(result["test"]) == {"loss", "accuracy", "plain_accuracy"}


def test_pattern_pipeline_times_the_lrgb_shapes(tmp_path):
    import subprocess

    pytest.importorskip("ogb", reason="LRGB's vocabularies come from ogb")
    bench = SCRIPT.parent / "pattern_pipeline.py"
    out = tmp_path / "shapes.json"
    tiny = ["--hidden", "16", "--depth", "1", "--heads", "2", "--token-grid", "4"]
    tiny += ["--max-nodes", "12", "--eval-samples", "2", "--interface-hidden", "8"]
    argv = ["--shapes", "--shape-batch", "2", "--shape-steps", "1", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, str(bench), *argv, "--extra", *tiny],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == json.loads(out.read_text())
    rows = {row["benchmark"]: row for row in result["shapes"]}
    assert set(rows) == {"peptides-func", "peptides-struct", "pcqm-contact"}
    for row in rows.values():
        assert row["nodes"] == 12 and row["train_graphs_per_second"] > 0
        assert row["eval_graphs_per_second"] > 0 and 0 < row["peak_rss_gb"] < 24
