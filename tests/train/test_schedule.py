"""--lr-schedule and --samples-schedule: shapes, run progress, validation, resume, group ratio."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_runs import STEPS_PER_EPOCH, FakeClock, Killed, read_log, tiny_config, tiny_experiment

from probsym import cli
from probsym.errors import ConfigError
from probsym.train import checkpoint, loop
from probsym.train.schedule import (
    effective_step,
    lr_factor,
    parse_samples_schedule,
    run_progress,
    samples_at,
)


def test_constant_is_the_old_linear_warm_up_exactly():
    # the LambdaLR the loop used before the schedules, stepped once per optimizer step
    warmup, total = 7, 30
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.3)
    old = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))
    for step in range(total):
        assert optimizer.param_groups[0]["lr"] == 0.3 * lr_factor(
            "constant", step, step, warmup, total
        )
        optimizer.step()
        old.step()
    assert lr_factor("constant", 3, 3, 0, total) == 1.0


def test_linear_is_the_authors_formula_and_cosine_and_onecycle_end_low():
    warmup, total = 10, 50
    for step in range(warmup, total):
        expected = 1 - (step - warmup) / (total + 1 - warmup)
        assert lr_factor("linear", step, step, warmup, total) == expected
    assert lr_factor("linear", 4, 4, warmup, total) == 0.5  # still warming up
    cosine = [lr_factor("cosine", s, s, warmup, total) for s in range(total + 1)]
    assert cosine[warmup] == 1.0 and cosine[30] == pytest.approx(0.5) and cosine[total] == 0.0
    assert all(a >= b for a, b in zip(cosine[warmup:], cosine[warmup + 1 :], strict=False))
    # one-cycle: rise from 1/25 over the warm-up (30 % of the run without one), decay to 1/2.5e5
    assert lr_factor("onecycle", 0, 0.0, warmup, total) == pytest.approx(1 / 25)
    assert lr_factor("onecycle", 10, 10.0, warmup, total) == pytest.approx(1.0)
    assert lr_factor("onecycle", 15, 15.0, 0, total) == pytest.approx(1.0)
    assert lr_factor("onecycle", 7, 7.5, 0, total) == pytest.approx((1 / 25 + 1) / 2)
    assert lr_factor("onecycle", total, float(total), 0, total) == pytest.approx(1 / 2.5e5)
    with pytest.raises(ConfigError, match="lr-schedule"):
        lr_factor("step", 0, 0.0, 0, total)


def test_progress_is_the_larger_of_steps_and_budget():
    assert effective_step(5, 100, 30.0, 60.0) == 50.0  # half the budget spent
    assert effective_step(80, 100, 30.0, 60.0) == 80.0  # steps ahead of the clock
    assert effective_step(7, 100, 1e6, 0.0) == 7.0  # no budget: steps only
    assert effective_step(7, 100, 1e6, 60.0) == 100.0  # capped at the end of the run
    assert run_progress(25, 100, 0.0, 0.0) == 0.25


def test_samples_schedule_parses_and_steps():
    steps = parse_samples_schedule(" 0:1, 0.5:2 ,0.9:4")
    assert steps == ((0.0, 1), (0.5, 2), (0.9, 4))
    assert [samples_at(steps, 7, p) for p in (0.0, 0.49, 0.5, 0.89, 0.9, 1.0)] == [1, 1, 2, 2, 4, 4]
    late = parse_samples_schedule("0.5:3")
    assert samples_at(late, 7, 0.2) == 7  # before the first point: --samples
    assert parse_samples_schedule("") == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("many", "PROGRESS:N"),
        ("0:1,half:2", "PROGRESS:N"),
        ("0:1.5", "PROGRESS:N"),
        ("0:1,", "PROGRESS:N"),
        ("0.5:2,0.2:3", "must increase"),
        ("0.5:2,0.5:3", "must increase"),
        ("0:0", "N must be >= 1"),
        ("1.5:2", r"in \[0, 1\]"),
    ],
)
def test_bad_samples_schedules_are_config_errors(text, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config("unused", samples_schedule=text)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("lr_schedule", "step", "--lr-schedule must be one of constant, linear, cosine"),
        ("budget_clock", "gpu", "--budget-clock must be one of wall, cpu"),
        ("ema", 1.0, "--ema must be < 1"),
        ("ema", -0.5, "--ema must be >= 0"),
    ],
)
def test_bad_lever_values_are_config_errors(option, value, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config("unused", **{option: value})


def test_cli_reports_a_bad_samples_schedule_in_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "nbody", "--samples-schedule", "0.5:2,0.2:3", "--out", str(out), "--quiet"]
    assert cli.main(argv) == 2
    assert "probsym: error: --samples-schedule progress points must increase" in (
        capsys.readouterr().err
    )
    assert not out.exists()


def test_budgeted_cosine_decays_to_zero_and_resumes_after_a_kill(tmp_path, monkeypatch):
    # 40 fake seconds per epoch against a 3-minute budget: progress follows the clock (2/9 per
    # epoch, ahead of the steps' 1/10), the run stops after epoch 5 with its lr decayed to 0.
    options = dict(
        epochs=10, lr_schedule="cosine", warmup_epochs=1.0, time_budget=3.0, lr_pretrained=1e-3
    )
    monkeypatch.setattr(loop, "time", FakeClock())
    loop.fit(tiny_experiment(loop.time), tiny_config(tmp_path / "straight", **options))
    rows = read_log(tmp_path / "straight")
    assert len(rows) == 5 and float(rows[-1]["lr"]) == 0.0
    total, warmup = 10 * STEPS_PER_EPOCH, STEPS_PER_EPOCH
    for epoch, row in enumerate(rows[:-1], 1):
        effective = total * 40 * epoch / 180
        expected = 0.5 * (1 + math.cos(math.pi * (effective - warmup) / (total - warmup)))
        assert float(row["lr"]) == pytest.approx(1e-2 * expected, rel=1e-12)

    clock = FakeClock(kill_at=STEPS_PER_EPOCH + 2)  # killed mid-epoch 2, after its checkpoint
    monkeypatch.setattr(loop, "time", clock)
    with pytest.raises(Killed):
        loop.fit(tiny_experiment(clock), tiny_config(tmp_path / "resumed", **options))
    assert len(read_log(tmp_path / "resumed")) == 1
    monkeypatch.setattr(loop, "time", FakeClock())
    config = tiny_config(tmp_path / "resumed", **options)
    loop.fit(tiny_experiment(loop.time), config, resume=True)
    assert read_log(tmp_path / "resumed") == rows  # every lr, loss and clock
    a = checkpoint.load(tmp_path / "straight" / "last.pt")
    b = checkpoint.load(tmp_path / "resumed" / "last.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_linear_schedule_keeps_the_pretrained_lr_ratio(tmp_path):
    config = tiny_config(tmp_path / "run", lr_schedule="linear", lr_pretrained=1e-3, epochs=4)
    loop.fit(tiny_experiment(), config)
    total = 4 * STEPS_PER_EPOCH
    for epoch, row in enumerate(read_log(tmp_path / "run"), 1):
        step = epoch * STEPS_PER_EPOCH  # the logged lr is the next step's
        assert float(row["lr"]) == 1e-2 * (1 - step / (total + 1))
    groups = checkpoint.load(tmp_path / "run" / "last.pt")["optimizer"]["param_groups"]
    assert groups[0]["lr"] == pytest.approx(1e-2 / (total + 1), rel=1e-12)
    assert groups[1]["lr"] == pytest.approx(groups[0]["lr"] / 10, rel=1e-12)


def test_samples_schedule_sets_the_training_n_per_epoch(tmp_path):
    clock = FakeClock()
    config = tiny_config(tmp_path / "run", epochs=4, samples=2, samples_schedule="0.5:3,0.75:1")
    metrics = loop.fit(tiny_experiment(clock), config)
    assert [int(r["samples"]) for r in read_log(tmp_path / "run")] == [2, 2, 3, 1]
    batch = 8
    per_step = [rows // batch for rows in clock.train_rows]  # the base sees b*N rows
    assert per_step == [2] * 8 + [3] * 4 + [1] * 4
    assert metrics["samples_schedule"] == "0.5:3,0.75:1"


def test_a_checkpoint_from_before_the_schedules_resumes(tmp_path, monkeypatch):
    # last.pt of the old loop: a LambdaLR state, no step, no wall or CPU seconds, no EMA
    options = dict(warmup_epochs=1.5, epochs=3)
    monkeypatch.setattr(loop, "time", FakeClock())
    loop.fit(tiny_experiment(loop.time), tiny_config(tmp_path / "straight", **options))
    clock = FakeClock(kill_at=STEPS_PER_EPOCH + 1)
    monkeypatch.setattr(loop, "time", clock)
    with pytest.raises(Killed):
        loop.fit(tiny_experiment(clock), tiny_config(tmp_path / "old", **options))
    path = tmp_path / "old" / "last.pt"
    saved = checkpoint.load(path)
    for key in ("step", "wall_seconds", "cpu_seconds"):
        del saved["state"][key]
    saved["scheduler"] = {"last_epoch": STEPS_PER_EPOCH, "base_lrs": [1e-2, 1e-2]}
    checkpoint.save(path, saved)
    monkeypatch.setattr(loop, "time", FakeClock())
    loop.fit(tiny_experiment(loop.time), tiny_config(tmp_path / "old", **options), resume=True)
    a = checkpoint.load(tmp_path / "straight" / "last.pt")
    b = checkpoint.load(tmp_path / "old" / "last.pt")
    assert b["state"]["step"] == 3 * STEPS_PER_EPOCH
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    old, new = read_log(tmp_path / "straight"), read_log(tmp_path / "old")
    assert [r["lr"] for r in old] == [r["lr"] for r in new]
