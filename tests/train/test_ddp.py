"""Data parallelism under two CPU processes (gloo) on a tiny n-body PS run.

One DDP epoch must give the weights of one single-process epoch on the same global batch: 7
simulations in one batch, split 4 + 3 (so the loss weights matter); the PS sampler's GIN has
BatchNorm, and the sampler noise must be the single process's. A DDP run resumed from its
epoch-1 checkpoint must equal an uninterrupted 2-epoch DDP run (batches of 3: 2 + 1 splits).

The equality check takes one step of plain SGD. Adam's first step moves every weight by about
``lr · sign(g)``, which turns float rounding in near-zero gradients (the attention key bias has
an exactly zero gradient in exact arithmetic) into lr-sized differences; and after a few steps
of either optimizer, rounding differences grow past any float tolerance through the hard
argsort of the PS sampler (measured: 2e-5 of the update after one step, 1e-3 after two). One SGD
step differs by ``lr`` times the gradient's rounding error: the comparison is about the
gradients, which is what DDP must get right.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from tiny_runs import read_log

from nbody_runs import tiny_nbody_config
from probsym.data.nbody import generate_nbody
from probsym.experiments import get
from probsym.train import checkpoint
from probsym.train.config import TrainConfig
from probsym.train.loop import fit

WORLD = 2
#: One epoch of one step: 7 simulations in one batch (4 + 3 on the ranks), SGD at lr 0.1.
ONE_STEP = {"limit": 7, "batch_size": 7, "lr": 0.1}

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="this torch build has no torch.distributed gloo backend",
)


def nbody_config(data_dir: Path, out: Path, **options) -> TrainConfig:
    """A tiny n-body PS run: 8 / 8 / 8 simulations, batches of 3, a depth-1 transformer."""
    values = dict(
        method="ps",
        limit=8,
        epochs=1,
        batch_size=3,
        eval_batch_size=8,
        eval_samples=2,
        test_samples=2,
    )
    return tiny_nbody_config(data_dir, out, **(values | options))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sgd(params, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Plain SGD in place of the loop's AdamW (the groups carry their lr)."""
    return torch.optim.SGD(params, lr=0.0, weight_decay=weight_decay)


def worker(rank: int, port: int, data_dir: Path, root: Path) -> None:
    """One rank: a 1-epoch SGD run; a 1-epoch run, its resume to 2 epochs, a 2-epoch run."""
    os.environ.update(
        WORLD_SIZE=str(WORLD),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(torch.optim, "AdamW", sgd)
            fit(get("nbody"), nbody_config(data_dir, root / "ddp-sgd", **ONE_STEP))
        fit(get("nbody"), nbody_config(data_dir, root / "ddp"))
        if rank == 0:
            shutil.copy(root / "ddp" / "last.pt", root / "ddp-epoch1.pt")
        fit(get("nbody"), nbody_config(data_dir, root / "ddp", epochs=2), resume=True)
        fit(get("nbody"), nbody_config(data_dir, root / "ddp-straight", epochs=2))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """The DDP runs (2 processes) and the single-process 1-epoch run, in one folder."""
    root = tmp_path_factory.mktemp("ddp")
    data_dir = generate_nbody(
        root / "data", sizes=(8, 8, 8), progress=False, num_steps=500, sample_freq=10
    )
    torch.multiprocessing.spawn(worker, (free_port(), data_dir, root), nprocs=WORLD, join=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.optim, "AdamW", sgd)
        fit(get("nbody"), nbody_config(data_dir, root / "single-sgd", **ONE_STEP))
        fit(get("nbody"), nbody_config(data_dir, root / "initial", **{**ONE_STEP, "lr": 0.0}))
    return root


def test_one_ddp_epoch_equals_one_single_process_epoch(runs):
    ddp = checkpoint.load(runs / "ddp-sgd" / "last.pt")
    single = checkpoint.load(runs / "single-sgd" / "last.pt")
    initial = checkpoint.load(runs / "initial" / "last.pt")["model"]
    assert ddp["state"]["step"] == single["state"]["step"] == 1
    assert ddp["model"].keys() == single["model"].keys()
    moved = 0.0
    for key, value in single["model"].items():
        if not value.is_floating_point():
            assert torch.equal(ddp["model"][key], value), key  # BatchNorm batch counts
            continue
        # relative to the step: float32 rounding gives 2e-5 (reduction order over 7 vs 4 + 3
        # rows, the float32 relaxation); a wrong noise, loss weight or BatchNorm gives > 1e-2
        update = (value.double() - initial[key].double()).abs().max()
        error = (ddp["model"][key].double() - value.double()).abs().max()
        assert error <= 1e-4 * update + 1e-7, (key, float(error), float(update))
        moved = max(moved, float(update))
    assert moved > 1e-2  # the step moved the weights
    a, b = read_log(runs / "ddp-sgd")[0], read_log(runs / "single-sgd")[0]
    assert float(a["train_loss"]) == pytest.approx(float(b["train_loss"]), rel=1e-5)
    assert float(a["val_mse"]) == pytest.approx(float(b["val_mse"]), rel=1e-4)
    assert a["train_graphs"] == b["train_graphs"] == "7"


def test_ddp_checkpoint_resumes_like_an_uninterrupted_ddp_run(runs):
    resumed = checkpoint.load(runs / "ddp" / "last.pt")
    straight = checkpoint.load(runs / "ddp-straight" / "last.pt")
    assert resumed["state"]["epoch"] == straight["state"]["epoch"] == 2
    for key, value in straight["model"].items():
        assert torch.equal(resumed["model"][key], value), key
    a = json.loads((runs / "ddp" / "metrics.json").read_text())
    b = json.loads((runs / "ddp-straight" / "metrics.json").read_text())
    assert a["test"] == b["test"] and a["val_best"] == b["val_best"]
    assert resumed["state"]["step"] == 6 and len(read_log(runs / "ddp")) == 2  # 3 + 3 + 2
