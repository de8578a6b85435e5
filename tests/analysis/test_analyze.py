"""probsym analyze and eval --tol on tiny n-body runs (generated data) and a tiny EXP run."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from torch.nn import functional

from nbody_runs import tiny_nbody_config
from probsym.analysis import AnalyzeOptions, analyze
from probsym.analysis.sampling import Pool, per_input_loss, pool_size, sample_count_study
from probsym.cli import main
from probsym.data.nbody import generate_nbody
from probsym.errors import ProbsymError
from probsym.experiments import get
from probsym.experiments.base import Experiment
from probsym.train.loop import fit

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def nbody_runs(tmp_path_factory) -> dict[str, Path]:
    """A PS and a GA run of 3 epochs on 12 / 12 / 12 tiny simulations."""
    root = tmp_path_factory.mktemp("analyze")
    data = generate_nbody(
        root / "data", sizes=(24, 12, 12), progress=False, num_steps=500, sample_freq=10
    )
    runs = {}
    for method in ("ps", "ga"):
        config = tiny_nbody_config(data, root / method, method=method, epochs=3)
        fit(get("nbody"), config)
        runs[method] = root / method
    return runs


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_analyze_writes_every_plot_and_its_csv(nbody_runs, tmp_path):
    out = tmp_path / "plots"
    options = AnalyzeOptions(counts=(1, 2, 4, 8), trials=3, entropy_samples=20, seed=1)
    summary = analyze(nbody_runs["ps"], [nbody_runs["ga"]], options, out)
    labels = ["ps (ps, N=2)", "ga (ga, N=2)"]
    assert summary["labels"] == labels and summary["experiment"] == "nbody"
    for name in ("entropy", "samples", "variance", "gradients"):
        png = out / f"{name}.png"
        assert png.read_bytes()[:8] == PNG and png.stat().st_size > 10_000, name
        assert (out / f"{name}.csv").exists()
    assert json.loads((out / "summary.json").read_text())["files"] == summary["files"]

    # the sample-count study: every run x count, trials = P // k (P = 3 x 8), finite numbers
    samples = read_csv(out / "samples.csv")
    assert [(r["run"], int(r["samples"]), int(r["trials"])) for r in samples] == [
        (label, k, 24 // k) for label in labels for k in (1, 2, 4, 8)
    ]
    for row in samples:
        assert row["split"] == "test"
        for key in ("loss_mean", "loss_std", "mse_mean", "output_variance", "loss_variance"):
            assert math.isfinite(float(row[key])) and float(row[key]) >= 0, key
        assert row["mse_mean"] == row["loss_mean"]  # n-body's loss is its metric
    for label in labels:  # the variance of a k-sample mean falls about as 1/k
        variance = {
            int(r["samples"]): float(r["output_variance"]) for r in samples if r["run"] == label
        }
        assert 3 < variance[1] / variance[8] < 20, variance
    assert read_csv(out / "variance.csv")[0].keys() == {
        "run",
        "samples",
        "trials",
        "output_variance",
        "loss_variance",
    }

    # the training curves are the runs' logs, epoch by epoch
    for name, columns in (
        ("entropy", ("val_perm_entropy", "train_perm_entropy")),
        ("gradients", ("grad_norm_base", "grad_norm_sampler")),
    ):
        rows = read_csv(out / f"{name}.csv")
        assert [(r["run"], r["epoch"]) for r in rows] == [
            (label, str(e)) for label in labels for e in (1, 2, 3)
        ]
        for method, label in zip(("ps", "ga"), labels, strict=True):
            log = read_csv(nbody_runs[method] / "log.csv")
            mine = [r for r in rows if r["run"] == label]
            for column in columns:
                assert [r[column] for r in mine] == [r[column] for r in log], (name, column)
    gradients = read_csv(out / "gradients.csv")
    assert all(r["grad_norm_sampler"] == "" for r in gradients if r["run"] == labels[1])

    # the checkpoint entropy: group averaging is the uniform reference, up to Monte Carlo error
    checkpoint = {r["run"]: r for r in read_csv(out / "entropy_checkpoint.csv")}
    ga = checkpoint[labels[1]]
    assert int(ga["samples"]) == 20 and int(ga["inputs"]) == 12 and ga["split"] == "val"
    assert float(ga["entropy"]) == pytest.approx(float(ga["uniform"]), abs=0.15)
    assert float(ga["uniform"]) < float(ga["uniform_limit"]) == pytest.approx(2 * math.log(5))
    assert 0 < float(checkpoint[labels[0]]["entropy"]) <= float(ga["uniform_limit"])


def test_cli_analyze_defaults_to_run_dir_plots_and_caps_counts(nbody_runs, capsys):
    run = nbody_runs["ga"]
    argv = ["analyze", str(run), "--trials", "2", "--max-samples", "5", "--entropy-samples", "5"]
    assert main([*argv, "--quiet"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["files"][0] == str(run / "plots" / "entropy.png")
    assert [int(r["samples"]) for r in read_csv(run / "plots" / "samples.csv")] == [1, 2, 5]
    assert main(["analyze", str(run), "--counts", "1,x"]) == 2
    assert "--counts" in capsys.readouterr().err


def test_compared_runs_must_share_the_experiment(nbody_runs, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.toml").write_text(
        (nbody_runs["ga"] / "config.toml").read_text().replace('"nbody"', '"exp-classify"')
    )
    with pytest.raises(ProbsymError, match="of one experiment"):
        analyze(nbody_runs["ps"], [other], AnalyzeOptions(counts=(1, 2), trials=2), tmp_path)
    assert not (tmp_path / "entropy.png").exists()


def test_eval_with_a_tolerance_reports_samples_and_errors(nbody_runs, capsys):
    run = str(nbody_runs["ps"])
    assert main(["eval", run, "--tol", "0.01", "--max-samples", "300", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    test = result["test"]
    assert result["test_samples"] == "adaptive" and result["tol"] == 0.01
    assert 10 <= test["samples_min"] <= test["samples_mean"] <= test["samples_max"] <= 300
    assert test["samples_total"] == pytest.approx(12 * test["samples_mean"])
    assert test["stderr_max"] <= 0.01 or test["at_cap"] > 0
    assert 0 < test["stderr_mean"] <= test["stderr_max"]
    assert math.isfinite(test["mse"])
    # a looser tolerance spends fewer samples
    assert main(["eval", run, "--tol", "0.05", "--max-samples", "300", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["test"]["samples_total"] < test["samples_total"]
    assert main(["eval", run, "--tol", "0.01", "--eval-samples", "3"]) == 2
    assert "exclude" in capsys.readouterr().err


def synthetic_experiment() -> Experiment:
    def mse(prediction, target):
        return functional.mse_loss(prediction, target)

    return Experiment("toy", None, None, mse, lambda p, t: {"mse": float(mse(p, t))})


def test_sample_count_study_on_draws_of_known_variance():
    generator = torch.Generator().manual_seed(0)
    sigma = torch.linspace(0.5, 2.0, 40).reshape(40, 1, 1)
    draws = 1.0 + sigma * torch.randn(40, 2000, 1, generator=generator)  # mean 1, var sigma²
    batches = [{"target": torch.zeros(20, 1)}, {"target": torch.zeros(20, 1)}]
    pool = Pool(batches, [draws[:20], draws[20:]])
    rows = sample_count_study(synthetic_experiment(), pool, (1, 4, 10), max_trials=200)
    assert [(r["samples"], r["trials"]) for r in rows] == [(1, 200), (4, 200), (10, 200)]
    expected = float(sigma.square().mean())
    for row in rows:
        k = row["samples"]
        assert row["output_variance"] == pytest.approx(expected / k, rel=0.1)
        # the MSE against 0 of a k-sample mean: 1 + sigma² / k on average
        assert row["loss_mean"] == pytest.approx(1 + expected / k, rel=0.05)
        assert row["mse_mean"] == row["loss_mean"] and row["loss_std"] > 0
        assert row["loss_variance"] > 0
    with pytest.raises(ProbsymError, match="fewer than 2 trials"):
        sample_count_study(synthetic_experiment(), pool, (1500,))
    with pytest.raises(ProbsymError, match="2 trials"):
        pool_size((1, 2), 1)


def test_per_input_loss_is_each_rows_loss():
    prediction, target = torch.randn(5, 3), torch.randn(5, 3)
    losses = per_input_loss(synthetic_experiment(), prediction, target)
    torch.testing.assert_close(losses, (prediction - target).square().mean(1))


@pytest.mark.needs_data
def test_analyze_a_tiny_exp_classify_run(tmp_path):
    if not (SHARED / "EXP" / "GRAPHSAT.pkl").exists():
        pytest.skip(f"EXP data absent at {SHARED / 'EXP'}")
    train = ["train", "exp-classify", "--data-dir", str(SHARED / "EXP"), "--limit", "20"]
    train += ["--backbone", "gin-id", "--samples", "2", "--eval-samples", "2", "--epochs", "2"]
    train += ["--quiet", "--threads", "1", "--set", "warmup_epochs=0", "--out", str(tmp_path / "r")]
    assert main(train) == 0
    options = AnalyzeOptions(counts=(1, 2, 5), trials=2, entropy_samples=100, limit=10)
    summary = analyze(tmp_path / "r", options=options)
    rows = read_csv(tmp_path / "r" / "plots" / "samples.csv")
    assert [int(r["samples"]) for r in rows] == [1, 2, 5]
    assert all(0 <= float(r["accuracy_mean"]) <= 1 for r in rows)
    assert all(float(r["loss_variance"]) >= 0 for r in rows)
    (entropy,) = summary["entropy_checkpoint"]
    # 100 uniform samples of the first 10 validation graphs: near the paper's 7.035
    assert 6.8 < entropy["uniform"] < 7.3 and 0 <= entropy["entropy"] <= entropy["uniform_limit"]
