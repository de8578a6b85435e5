"""A tiny in-memory experiment for loop tests, with a clock that its base model drives.

Node regression over S_n: 32 / 16 / 16 examples of 4 nodes, ``y = tanh(x w)`` per node. With
``flip_val`` the validation targets are ``-y``, so validation gets worse as training improves and
the best epoch is the first. :class:`FakeClock` replaces the loop's ``time`` module: each training
call of the base advances the wall clock by 10 s and the CPU clock by 1 s, each evaluation call
the wall clock by 100 s, so timings, budgets and time-based schedules are exact. Its
``kill_at`` emulates a kill: the given training call raises :class:`Killed`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn import functional

from probsym import Signature, Symmetrize, fields, groups, samplers
from probsym.experiments.base import Experiment
from probsym.train.config import TrainConfig

SIGNATURE = Signature({"x": fields.node}, fields.node)
STEPS_PER_EPOCH = 4  # 32 training examples in batches of 8
TRAIN_TICK, TRAIN_CPU_TICK, EVAL_TICK = 10.0, 1.0, 100.0


class Killed(Exception):
    """The emulated kill of a run (raised from inside a training step)."""


@dataclass
class FakeClock:
    """``perf_counter`` / ``process_time`` stand-ins advanced by the base model's calls."""

    wall: float = 0.0
    cpu: float = 0.0
    train_rows: list[int] = field(default_factory=list)  # (b*s) per training call of the base
    kill_at: int = 0  # raise Killed at this training call (1-based; 0: never)

    def perf_counter(self) -> float:
        return self.wall

    def process_time(self) -> float:
        return self.cpu


class NodeMLP(nn.Module):
    """Per-node output from the node's features and the mean over the graph; ticks a clock."""

    def __init__(self, clock: FakeClock | None) -> None:
        super().__init__()
        self.clock = clock
        self.lin1 = nn.Linear(4, 8)  # plays the pretrained part
        self.lin2 = nn.Linear(8, 1)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if self.clock is not None:
            if self.training:
                self.clock.wall += TRAIN_TICK
                self.clock.cpu += TRAIN_CPU_TICK
                self.clock.train_rows.append(x.shape[0])
                if len(self.clock.train_rows) == self.clock.kill_at:
                    raise Killed(f"killed at training call {self.clock.kill_at}")
            else:
                self.clock.wall += EVAL_TICK
        context = x.mean(1, keepdim=True).expand_as(x)  # (b, n, 2)
        return self.lin2(torch.tanh(self.lin1(torch.cat([x, context], -1))))

    def pretrained_parameters(self):
        return self.lin1.parameters()


def tiny_experiment(clock: FakeClock | None = None, flip_val: bool = False) -> Experiment:
    """The experiment; ``clock`` (if any) is ticked by every call of the base model."""

    def build_data(config: TrainConfig) -> dict[str, dict[str, Tensor]]:
        generator = torch.Generator().manual_seed(0)
        weight = torch.tensor([[1.5], [-1.0]])
        data = {}
        for name, count in (("train", 32), ("val", 16), ("test", 16)):
            x = torch.randn(count, 4, 2, generator=generator)
            target = torch.tanh(x @ weight)  # (count, 4, 1)
            data[name] = {"x": x, "target": -target if flip_val and name == "val" else target}
        return data

    def build_model(config: TrainConfig, example: dict[str, Tensor]) -> Symmetrize:
        sampler = samplers.resolve(config.method, groups.Sn(), SIGNATURE)
        return Symmetrize(
            NodeMLP(clock),
            sampler,
            num_samples=config.samples,
            eval_num_samples=config.eval_samples,
        )

    def mse(prediction: Tensor, target: Tensor) -> Tensor:
        return functional.mse_loss(prediction, target)

    return Experiment(
        name="tiny",
        build_data=build_data,
        build_model=build_model,
        loss=mse,
        metrics=lambda prediction, target: {"mse": float(mse(prediction, target))},
        select=("mse", "min"),
    )


def tiny_config(out, **changes) -> TrainConfig:
    """A config that trains the tiny experiment for 3 epochs in well under a second."""
    values = dict(
        experiment="tiny",
        method="ps",
        epochs=3,
        batch_size=8,
        eval_batch_size=8,
        samples=2,
        eval_samples=2,
        test_samples=2,
        lr=1e-2,
        quiet=True,
        out=str(out),
    )
    return TrainConfig(**{**values, **changes})


def read_log(run_dir) -> list[dict[str, str]]:
    """The rows of ``run_dir/log.csv``."""
    import csv

    with open(f"{run_dir}/log.csv") as handle:
        return list(csv.DictReader(handle))
