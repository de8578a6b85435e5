"""--ema: the averaged weights are validated, selected, tested, saved, resumed and evaluated."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_runs import STEPS_PER_EPOCH, FakeClock, Killed, read_log, tiny_config, tiny_experiment

from probsym import cli, experiments
from probsym.train import checkpoint, loop
from probsym.train.restore import restore


def test_averaged_is_an_ema_of_the_weights_with_the_buffers_copied():
    config = tiny_config("unused")
    experiment = tiny_experiment()
    model = loop.build_model(experiment, config, experiment.build_data(config)["train"], "cpu")
    buffers = [name for name, _ in model.named_buffers() if "running_mean" in name]
    assert buffers, "the PS sampler's GIN has BatchNorm"
    ema = loop.averaged(model, 0.75)
    expected = None
    batch = experiment.build_data(config)["train"]
    for step in range(3):
        model.train()
        model(x=batch["x"][:8])  # moves the BatchNorm statistics
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(torch.randn_like(parameter))
        current = {k: v.clone() for k, v in model.named_parameters()}
        if expected is None:  # the first update copies
            expected = current
        else:
            expected = {k: 0.75 * expected[k] + 0.25 * current[k] for k in current}
        ema.update_parameters(model)
        for name, parameter in ema.module.named_parameters():
            assert torch.allclose(parameter, expected[name], atol=1e-6), (step, name)
        for (name, a), b in zip(ema.module.named_buffers(), model.buffers(), strict=True):
            assert torch.equal(a, b), (step, name)


def test_ema_weights_are_validated_selected_tested_and_evaluated(tmp_path, monkeypatch, capsys):
    # fa over S_n with distinct node keys is deterministic, so validation can be replayed exactly
    experiment = tiny_experiment()
    monkeypatch.setitem(experiments.EXPERIMENTS, "tiny", lambda: experiment)
    run = tmp_path / "run"
    config = tiny_config(run, method="fa", ema=0.8, epochs=3)
    metrics = loop.fit(experiment, config)
    assert metrics["ema"] == 0.8
    val = experiment.build_data(config)["val"]
    logged = float(read_log(run)[-1]["val_mse"])

    def val_mse(model) -> float:
        return loop.evaluate(experiment, model, val, 2, 8, torch.device("cpu"))["mse"]

    last = restore(run, "last")
    assert last.ema and val_mse(last.model) == logged  # validation saw the EMA weights
    live = loop.build_model(experiment, config, experiment.build_data(config)["train"], "cpu")
    live.load_state_dict(checkpoint.load(run / "last.pt")["model"])
    assert val_mse(live) != pytest.approx(logged, rel=1e-3)  # not the live weights

    best = restore(run, "best")
    assert best.ema and checkpoint.load(run / "best.pt")["ema"] is True
    torch.manual_seed(config.seed)
    test = loop.evaluate(experiment, best.model, best.data["test"], 2, 8, torch.device("cpu"))
    assert test == metrics["test"] == json.loads((run / "metrics.json").read_text())["test"]
    assert cli.main(["eval", str(run), "--quiet"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["test"] == metrics["test"] and evaluated["weights"] == "ema"


def test_ema_state_resumes_after_a_kill(tmp_path, monkeypatch):
    options = dict(ema=0.9, epochs=3)
    for clock, name, resume in (
        (FakeClock(), "straight", False),
        (FakeClock(kill_at=STEPS_PER_EPOCH + 1), "resumed", False),
        (FakeClock(), "resumed", True),
    ):
        monkeypatch.setattr(loop, "time", clock)
        config = tiny_config(tmp_path / name, **options)
        if clock.kill_at:
            with pytest.raises(Killed):
                loop.fit(tiny_experiment(clock), config)
        else:
            loop.fit(tiny_experiment(clock), config, resume=resume)
    a = checkpoint.load(tmp_path / "straight" / "last.pt")
    b = checkpoint.load(tmp_path / "resumed" / "last.pt")
    assert a["ema"].keys() == b["ema"].keys() and int(a["ema"]["n_averaged"]) == 3 * 4
    for key in a["ema"]:
        assert torch.equal(a["ema"][key], b["ema"][key]), key
    for key, live in a["model"].items():  # averaged weights, copied BatchNorm statistics
        copied = "running_" in key or "num_batches_tracked" in key
        assert torch.equal(live, a["ema"]["module." + key]) == copied, key
    assert read_log(tmp_path / "straight") == read_log(tmp_path / "resumed")
