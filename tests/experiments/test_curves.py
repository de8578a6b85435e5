"""``probsym curves``: resumable method x seed runs, best-so-far curves, mean ± std, the table."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from probsym import cli
from probsym.data.nbody import generate_nbody
from probsym.errors import ConfigError, ProbsymError
from probsym.experiments import curves


def write_log(run_dir: Path, rows: list[tuple[float, float | None]]) -> None:
    """A ``log.csv`` with ``(train_seconds, val_mse or None)`` per epoch."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "log.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", "train_seconds", "val_mse"])
        for epoch, (seconds, value) in enumerate(rows, 1):
            writer.writerow([epoch, seconds, "" if value is None else value])


def write_metrics(run_dir: Path, test_mse: float, budget: float) -> None:
    metrics = {"test": {"mse": test_mse}, "time_budget_minutes": budget}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))


def test_best_so_far_is_a_running_minimum_that_starts_at_the_first_validation():
    curve = [(1.0, 0.5), (2.0, 0.7), (3.0, 0.2)]
    assert math.isnan(curves.best_so_far(curve, 0.5, lower=True))
    assert curves.best_so_far(curve, 2.5, lower=True) == 0.5
    assert curves.best_so_far(curve, 3.0, lower=True) == 0.2
    assert curves.best_so_far(curve, 2.5, lower=False) == 0.7


def test_mean_std_uses_the_sample_deviation_and_skips_nan():
    mean, std, count = curves.mean_std([1.0, 3.0, math.nan])
    assert (mean, count) == (2.0, 2)
    assert std == pytest.approx(math.sqrt(2.0))
    assert curves.mean_std([]) == (pytest.approx(math.nan, nan_ok=True),) * 2 + (0,)


def test_summary_averages_seeds_on_the_grid_and_reads_test_metrics(tmp_path):
    runs = curves.plan(["ps", "ga"], [1, 2], tmp_path)
    assert [r.run_dir.name for r in runs] == ["ps-s1", "ps-s2", "ga-s1", "ga-s2"]
    write_log(runs[0].run_dir, [(30, None), (60, 0.4), (120, 0.1)])
    write_log(runs[1].run_dir, [(60, 0.2), (120, 0.3)])
    write_log(runs[2].run_dir, [(60, 0.5), (120, 0.5)])
    write_metrics(runs[0].run_dir, 0.11, 2)
    write_metrics(runs[1].run_dir, 0.21, 2)
    summary = curves.summarize(runs, "mse", True, budget=2.0, points=2)
    assert summary.grid == [1.0, 2.0]
    (m1, s1, n1), (m2, s2, n2) = summary.curves["ps"]
    assert (m1, n1) == (pytest.approx(0.3), 2) and s1 == pytest.approx(math.sqrt(0.02))
    assert (m2, n2) == (pytest.approx(0.15), 2)  # seed 1 reached 0.1, seed 2 stays at 0.2
    assert summary.curves["ga"][1] == (0.5, 0.0, 1)  # ga-s2 has no log: left out
    assert summary.test["ps"][0] == pytest.approx(0.16) and summary.test["ps"][2] == 2
    assert summary.test["ga"][2] == 0
    table = curves.milestone_table(summary, [1, 2, 3])
    assert "0.3 ± 0.14" in table and "| ps |" in table
    assert table.splitlines()[2].split("|")[3].strip() == "0.15 ± 0.071"
    assert table.splitlines()[2].split("|")[4].strip() == "—"  # 3 min is past the budget
    png, csv_path = curves.write_summary(summary, tmp_path / "plots" / "c.png", "t")
    assert png.stat().st_size > 1000
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "method,minutes,val_mse_mean,std,seeds" and len(lines) == 1 + 2 + 2


def test_run_state_resumes_smaller_budgets_and_skips_done_runs(tmp_path):
    run = curves.plan(["ps"], [1], tmp_path)[0]
    assert curves.run_state(run, 5) == "new"
    run.run_dir.mkdir(parents=True)
    (run.run_dir / "last.pt").write_bytes(b"")
    assert curves.run_state(run, 5) == "resume"
    write_metrics(run.run_dir, 0.1, 5)
    assert curves.run_state(run, 5) == "done"
    assert curves.run_state(run, 10) == "resume"  # a longer budget continues the run
    command = curves.train_command("nbody", run, 10, ["--samples", "4"], resume=True)
    assert command[-3:] == ["--resume", "--samples", "4"]
    assert command[command.index("--time-budget") + 1] == "10"


def test_a_run_without_a_budget_in_the_run_directory_is_a_clear_error(tmp_path):
    run = curves.plan(["ps"], [1], tmp_path)[0]
    run.run_dir.mkdir(parents=True)
    (run.run_dir / "metrics.json").write_text(json.dumps({"test": {"mse": 0.1}}))
    with pytest.raises(ConfigError, match="without --time-budget"):
        curves.run_state(run, 5)


def test_a_clock_the_log_lacks_is_a_clear_error(tmp_path):
    write_log(tmp_path, [(60, 0.1)])
    with pytest.raises(ProbsymError, match="wall_seconds"):
        curves.read_curve(tmp_path, "mse", "wall")


def test_a_failed_run_is_reported_with_its_log(tmp_path):
    runs = curves.plan(["no-such-method"], [1], tmp_path)
    with pytest.raises(ProbsymError, match="stdout.log"):
        curves.run_all("nbody", runs, 0.01, ["--limit", "4"], parallel=1, echo=lambda _: None)
    assert "unknown method" in (runs[0].run_dir / "stdout.log").read_text()


def test_curves_command_trains_two_methods_and_resumes_nothing_twice(tmp_path, capsys):
    data = generate_nbody(
        tmp_path / "data", sizes=(12, 6, 6), progress=False, num_steps=500, sample_freq=10
    )
    tiny = (
        f"--data-dir {data} --limit 6 --batch-size 3 --eval-batch-size 6 --samples 1 "
        "--eval-samples 2 --test-samples 2 --hidden 8 --depth 1 --heads 2 "
        "--interface-hidden 8 --interface-layers 1 --eval-every 1 --epochs 2"
    )
    argv = ["curves", "nbody", "--methods", "ps,ga", "--seeds", "1", "--budget", "5"]
    argv += ["--out", str(tmp_path / "c"), "--train-args", tiny]
    assert cli.main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["test"]) == {"ps", "ga"} and all(v[2] == 1 for v in result["test"].values())
    assert (tmp_path / "c" / "curves.png").exists() and (tmp_path / "c" / "curves.md").exists()
    assert cli.main(argv) == 0  # both done: nothing retrains
    assert "2 of 2 runs already done" in capsys.readouterr().err
