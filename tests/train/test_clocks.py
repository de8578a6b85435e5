"""Clocks in log.csv and metrics.json, --budget-clock, and --time-budget testing the best epoch."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_runs import (
    EVAL_TICK,
    STEPS_PER_EPOCH,
    TRAIN_CPU_TICK,
    TRAIN_TICK,
    FakeClock,
    Killed,
    read_log,
    tiny_config,
    tiny_experiment,
)

from probsym import experiments
from probsym.train import checkpoint, loop
from probsym.train.restore import restore

EPOCH_TRAIN = STEPS_PER_EPOCH * TRAIN_TICK  # 40 fake seconds of training per epoch
EPOCH_CPU = STEPS_PER_EPOCH * TRAIN_CPU_TICK  # 4 CPU seconds
EPOCH_WALL = EPOCH_TRAIN + 2 * EVAL_TICK  # + validation: 2 batches of 8


def test_every_row_has_cumulative_clocks_across_a_resume(tmp_path, monkeypatch):
    for clock, name, resume in (
        (FakeClock(), "straight", False),
        (FakeClock(kill_at=2 * STEPS_PER_EPOCH + 1), "resumed", False),
        (FakeClock(), "resumed", True),
    ):
        monkeypatch.setattr(loop, "time", clock)
        config = tiny_config(tmp_path / name, epochs=4)
        if clock.kill_at:
            with pytest.raises(Killed):
                loop.fit(tiny_experiment(clock), config)
        else:
            metrics = loop.fit(tiny_experiment(clock), config, resume=resume)
    rows = read_log(tmp_path / "resumed")
    assert rows == read_log(tmp_path / "straight")
    for epoch, row in enumerate(rows, 1):
        assert float(row["train_seconds"]) == epoch * EPOCH_TRAIN
        assert float(row["cpu_seconds"]) == epoch * EPOCH_CPU
        assert float(row["wall_seconds"]) == epoch * EPOCH_WALL  # training and validation
    assert (metrics["train_seconds"], metrics["cpu_seconds"], metrics["wall_seconds"]) == (
        4 * EPOCH_TRAIN,
        4 * EPOCH_CPU,
        4 * EPOCH_WALL,
    )
    saved = json.loads((tmp_path / "resumed" / "metrics.json").read_text())
    assert saved["wall_seconds"] == 4 * EPOCH_WALL and saved["budget_clock"] == "wall"


def test_real_clocks_are_measured(tmp_path):
    loop.fit(tiny_experiment(), tiny_config(tmp_path / "run", epochs=2))
    rows = read_log(tmp_path / "run")
    for key in ("train_seconds", "wall_seconds", "cpu_seconds"):
        values = [float(r[key]) for r in rows]
        assert 0 < values[0] <= values[1], key
    assert float(rows[-1]["wall_seconds"]) >= float(rows[-1]["train_seconds"])


@pytest.mark.parametrize(("budget_clock", "epochs"), [("wall", 1), ("cpu", 3)])
def test_budget_clock_picks_what_the_budget_counts(tmp_path, monkeypatch, budget_clock, epochs):
    # 9 s: one epoch of training wall time (40 s) is past it, three epochs of CPU time (4 s each)
    monkeypatch.setattr(loop, "time", FakeClock())
    config = tiny_config(
        tmp_path / "run", epochs=50, time_budget=9 / 60, budget_clock=budget_clock, eval_every=10
    )
    metrics = loop.fit(tiny_experiment(loop.time), config)
    assert metrics["epochs"] == epochs and metrics["budget_clock"] == budget_clock
    rows = read_log(tmp_path / "run")
    assert len(rows) == epochs and "val_mse" in rows[-1] and rows[-1]["val_mse"]


def test_time_budget_stops_at_the_budget_and_tests_the_best_epoch(tmp_path, monkeypatch):
    # validation gets worse as training improves (flipped targets): epoch 1 is the best, and the
    # 1.5-minute budget (40 s per epoch) stops the 50-epoch run at the end of epoch 3
    experiment = tiny_experiment(flip_val=True)
    monkeypatch.setitem(experiments.EXPERIMENTS, "tiny", lambda: experiment)
    monkeypatch.setattr(loop, "time", FakeClock())
    run = tmp_path / "run"
    config = tiny_config(run, epochs=50, time_budget=1.5)
    metrics = loop.fit(tiny_experiment(loop.time, flip_val=True), config)
    assert metrics["epochs"] == 3 and metrics["train_seconds"] == 3 * EPOCH_TRAIN
    assert metrics["best_epoch"] == 1 and len(read_log(run)) == 3
    assert checkpoint.load(run / "best.pt")["epoch"] == 1

    def test_of(which: str) -> dict[str, float]:
        model = restore(run, which).model
        torch.manual_seed(config.seed)
        test = experiment.build_data(config)["test"]
        return loop.evaluate(experiment, model, test, 2, 8, torch.device("cpu"))

    assert test_of("best") == metrics["test"]
    assert json.loads((run / "metrics.json").read_text())["test"] == metrics["test"]
    assert test_of("last")["mse"] != pytest.approx(metrics["test"]["mse"], rel=1e-3)
