"""A plain PyTorch training loop with progress, CSV/TensorBoard logs and exact resume.

Each epoch ends with an atomic checkpoint of everything the next epoch depends on (weights,
optimizer, scheduler, RNG states, best-so-far), so ``--resume`` after a kill continues with the
same results as an uninterrupted run for a fixed seed.

Levers (all off by default): an lr schedule after the warm-up and a training-N schedule over
the run's progress (:mod:`probsym.train.schedule`), an EMA of the weights that validation,
selection, test and the saved model use, and a time budget on the wall or the CPU clock.

Device-agnostic: ``--device cuda``, mixed precision (``--precision bf16|16``: autocast in training;
evaluation stays in float32, as in the reference), and data parallelism under ``torchrun``
(``WORLD_SIZE > 1``: each rank trains on its share of every batch with the single process's
sampler noise, DDP averages gradients, BatchNorm statistics span all ranks, rank 0 writes the run
directory; :mod:`probsym.train.distributed`).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import logging
import math
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from probsym import diagnostics
from probsym.errors import ProbsymError
from probsym.experiments.base import DataSplit, Experiment, Split, split_size
from probsym.symmetrize import Symmetrize
from probsym.train import checkpoint, schedule
from probsym.train.config import TrainConfig, to_toml
from probsym.train.distributed import Shard, all_reduce_sum, convert_batchnorm, from_rank_zero

log = logging.getLogger(__name__)


def batches(
    split: DataSplit, batch_size: int, generator: torch.Generator | None = None
) -> Iterator[Split]:
    """Mini-batches of a split; shuffled with ``generator`` when given.

    An in-memory dict is sliced here; any other split makes its own batches
    (``split.batches(batch_size, generator)``, e.g. a size-bucketed ``GraphSplit``).
    """
    if not isinstance(split, dict):
        yield from split.batches(batch_size, generator)
        return
    count = split_size(split)
    order = torch.randperm(count, generator=generator) if generator is not None else None
    for start in range(0, count, batch_size):
        if order is None:
            yield {k: v[start : start + batch_size] for k, v in split.items()}
        else:
            index = order[start : start + batch_size]
            yield {k: v[index] for k, v in split.items()}


def model_inputs(model: Symmetrize, batch: Split, device: torch.device) -> dict[str, Tensor]:
    """The declared inputs (and mask) of ``batch``, on ``device``."""
    names = list(model.signature.inputs)
    if model.signature.mask and model.signature.mask in batch:
        names.append(model.signature.mask)
    return {k: batch[k].to(device, non_blocking=True) for k in names}


def num_batches(split: DataSplit, batch_size: int) -> int:
    """Batches per pass over ``split``."""
    return math.ceil(split_size(split) / batch_size)


def param_groups(model: Symmetrize, config: TrainConfig) -> list[dict[str, Any]]:
    """AdamW parameter groups: new parameters at ``lr`` first, pretrained ones after.

    Pretrained parameters are those the base model lists in ``pretrained_parameters()`` (when it
    has that method); they train at ``lr_pretrained``, or at ``lr`` when that is 0.
    """
    listed = getattr(model.base, "pretrained_parameters", None)
    if not callable(listed):
        return [{"params": list(model.parameters()), "lr": config.lr}]
    pretrained = list(dict.fromkeys(listed()))  # unique, in the base model's order
    known = {id(p) for p in pretrained}
    fresh = [p for p in model.parameters() if id(p) not in known]
    return [
        {"params": fresh, "lr": config.lr},
        {"params": pretrained, "lr": config.lr_pretrained or config.lr},
    ]


def build_model(
    experiment: Experiment, config: TrainConfig, split: DataSplit, device: torch.device
) -> Symmetrize:
    """The experiment's model on ``device``, its lazy modules sized by a batch of ``split``.

    Runs one forward pass in eval mode (so that lazy layers exist before an optimizer or a
    ``load_state_dict`` sees the parameters); returns the model in eval mode.
    """
    example = next(batches(split, 2))
    model = experiment.build_model(config, example).to(device)
    model.eval()
    with torch.no_grad():
        model(**model_inputs(model, example, device))
    return model


def progress(iterable, total: int, desc: str, quiet: bool):
    """A tqdm bar on a terminal (unless quiet), else the bare iterable."""
    if quiet or not sys.stderr.isatty():
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is in the cli extra
        return iterable
    return tqdm(iterable, total=total, desc=desc, leave=False)


@torch.no_grad()
def evaluate(
    experiment: Experiment,
    model: Symmetrize,
    split: DataSplit,
    num_samples: int,
    batch_size: int,
    device: torch.device,
    quiet: bool = True,
    desc: str = "eval",
    permutation_entropy: bool = False,
) -> dict[str, float | None]:
    """Loss and metrics of ``model`` on a whole split with ``num_samples`` samples per input.

    The experiment's readout turns each batch into ``(prediction, target)``; these concatenate
    over batches for ``loss`` and ``metrics``, while ``batch_metrics`` (if any) are averaged over
    batches. With ``permutation_entropy``, also ``perm_entropy`` (the entropy of each input's mean
    sampled permutation, :mod:`probsym.diagnostics`, mean over inputs) and
    ``perm_entropy_uniform`` (the same for uniform permutations at the same N), both ``None``
    for groups without S_n.
    """
    model.eval()
    predictions, targets = [], []
    per_batch: dict[str, list[float]] = {}
    entropy = _EntropySums(torch.Generator().manual_seed(0)) if permutation_entropy else None
    total = num_batches(split, batch_size)
    for batch in progress(batches(split, batch_size), total, desc, quiet):
        batch = _to_device(batch, device)
        inputs = model_inputs(model, batch, device)
        out = model(**inputs, num_samples=num_samples, keep_samples=entropy is not None)
        if entropy is not None:
            entropy.add(model, out, inputs)
        prediction, target = experiment.read(out.value.float(), batch)
        prediction, target = prediction.cpu(), target.cpu()
        predictions.append(prediction)
        targets.append(target)
        if experiment.batch_metrics is not None:
            for key, value in experiment.batch_metrics(prediction, target).items():
                per_batch.setdefault(key, []).append(float(value))
    result = _split_result(experiment, predictions, targets, per_batch)
    if entropy is not None:
        result.update(entropy.means())
    return result


@torch.no_grad()
def evaluate_adaptive(
    experiment: Experiment,
    model: Symmetrize,
    split: DataSplit,
    tol: float,
    max_samples: int,
    batch_size: int,
    device: torch.device,
    chunk: int | None = None,
    quiet: bool = True,
    desc: str = "eval",
) -> dict[str, float]:
    """:func:`evaluate` with :meth:`Symmetrize.predict`: each input samples until ``tol``.

    Loss and metrics are those of the adaptive means. Also returns the samples spent
    (``samples_total``, per input ``samples_mean`` / ``samples_min`` / ``samples_max``, and
    ``at_cap``, the fraction of inputs that reached ``max_samples``) and the standard errors of
    the predictions after the readout (``stderr_mean`` over all their entries, ``stderr_max``).
    """
    model.eval()
    predictions, targets, errors, counts = [], [], [], []
    per_batch: dict[str, list[float]] = {}
    total = num_batches(split, batch_size)
    for batch in progress(batches(split, batch_size), total, desc, quiet):
        batch = _to_device(batch, device)
        inputs = model_inputs(model, batch, device)
        out = model.predict(**inputs, tol=tol, max_samples=max_samples, chunk=chunk)
        prediction, target = experiment.read(out.mean.float(), batch)
        error, _ = experiment.read(out.stderr.float(), batch)  # the same entries as prediction
        predictions.append(prediction.cpu())
        targets.append(target.cpu())
        errors.append(error.cpu().flatten())
        counts.append(out.num_samples.cpu())
        if experiment.batch_metrics is not None:
            for key, value in experiment.batch_metrics(prediction.cpu(), target.cpu()).items():
                per_batch.setdefault(key, []).append(float(value))
    result = _split_result(experiment, predictions, targets, per_batch)
    count, error = torch.cat(counts).double(), torch.cat(errors).double()
    result.update(
        samples_total=int(count.sum()),
        samples_mean=float(count.mean()),
        samples_min=int(count.min()),
        samples_max=int(count.max()),
        at_cap=float((count >= max_samples).double().mean()),
        stderr_mean=float(error.mean()),
        stderr_max=float(error.max()),
    )
    return result


def _split_result(
    experiment: Experiment,
    predictions: list[Tensor],
    targets: list[Tensor],
    per_batch: dict[str, list[float]],
) -> dict[str, float | None]:
    """Loss and metrics of the concatenated predictions, and the batch metrics' means."""
    prediction, target = torch.cat(predictions), torch.cat(targets)
    result: dict[str, float | None] = {"loss": float(experiment.loss(prediction, target))}
    result.update(experiment.metrics(prediction, target))
    result.update({k: sum(v) / len(v) for k, v in per_batch.items()})
    return result


class _EntropySums:
    """Running sums of the sampled and the uniform permutation entropy over inputs.

    The uniform reference draws from its own generator, so that logging it leaves the global RNG
    stream (and with it the run) unchanged.
    """

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator
        self.entropy = self.uniform = 0.0
        self.count = 0

    def add(self, model: Symmetrize, out: Any, inputs: dict[str, Tensor]) -> None:
        """Add one batch's inputs (``out`` from a ``keep_samples=True`` call)."""
        if not model.group.acts_on_nodes or out.samples is None:
            return
        mask = inputs.get(model.signature.mask) if model.signature.mask else None
        b = next(iter(inputs.values())).shape[0]
        per_input = out.samples.elements.batch_size // b
        index = diagnostics.permutation_index(model.group, out.samples.elements)
        n = index.shape[1]
        sampled = diagnostics.sampled_permutation_entropy(
            model.group, out.samples.elements, per_input, mask
        )
        uniform = diagnostics.uniform_permutation_entropy(b, n, per_input, mask, self.generator)
        self.entropy += float(sampled.sum())
        self.uniform += float(uniform.sum())
        self.count += b

    def means(self) -> dict[str, float | None]:
        """``perm_entropy`` and ``perm_entropy_uniform`` (``None`` when nothing was added)."""
        if not self.count:
            return {"perm_entropy": None, "perm_entropy_uniform": None}
        return {
            "perm_entropy": self.entropy / self.count,
            "perm_entropy_uniform": self.uniform / self.count,
        }


class _TrainProbes:
    """One epoch's training diagnostics: the penalty on every batch, the rest on a few."""

    def __init__(self, generator: torch.Generator) -> None:
        self.entropy = _EntropySums(generator)
        self.penalty, self.examples = 0.0, 0
        self.grad_base: list[float] = []
        self.grad_sampler: list[float] = []

    def add_gradients(self, model: Symmetrize) -> None:
        """Gradient norms of the base and of the sampler, before clipping."""
        for norms, module in ((self.grad_base, model.base), (self.grad_sampler, model.sampler)):
            norm = diagnostics.gradient_norm(module.parameters())
            if norm is not None:
                norms.append(norm)

    def row(self) -> dict[str, float | None]:
        """The log.csv columns (``None``: empty, e.g. no S_n or a sampler without weights)."""
        entropy = self.entropy.means()

        def mean(values: list[float]) -> float | None:
            return sum(values) / len(values) if values else None

        return {
            "train_regularization": self.penalty / max(self.examples, 1),
            "train_perm_entropy": entropy["perm_entropy"],
            "train_perm_entropy_uniform": entropy["perm_entropy_uniform"],
            "grad_norm_base": mean(self.grad_base),
            "grad_norm_sampler": mean(self.grad_sampler),
        }


def _to_device(batch: Split, device: torch.device) -> Split:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _distributed(config: TrainConfig) -> tuple[int, int, torch.device]:
    """``(rank, world_size, device)``; starts the process group under ``torchrun``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = torch.device(config.device)
    if world == 1:
        return 0, 1, device
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world, device


def _autocast(config: TrainConfig, device: torch.device):
    """Autocast for training steps at ``config.precision`` (a no-op at 32)."""
    dtypes = {"bf16": torch.bfloat16, "16": torch.float16}
    if config.precision == "32":
        return contextlib.nullcontext()
    if config.precision not in dtypes:
        raise ProbsymError(f"precision must be 32, bf16 or 16, got {config.precision!r}")
    return torch.autocast(device.type, dtype=dtypes[config.precision])


def averaged(model: Symmetrize, decay: float) -> AveragedModel:
    """An EMA copy of ``model``: ``w ← decay · w + (1 − decay) · w_model`` per step, buffers copied.

    The first update copies the weights; BatchNorm statistics (every buffer) are copied from the
    model at each update.
    """
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))


def _is_better(value: float, best: float | None, direction: str) -> bool:
    if best is None:
        return True
    return value < best if direction == "min" else value > best


def fit(experiment: Experiment, config: TrainConfig, resume: bool = False) -> dict[str, Any]:
    """Train, select on validation, test the selected weights, and write the run directory.

    Returns:
        The content of ``metrics.json``.
    """
    run_dir = config.run_dir
    rank, world, device = _distributed(config)
    if config.threads:
        torch.set_num_threads(config.threads)
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    if last_path.exists() and not resume:  # on every rank: one left behind would wait forever
        raise ProbsymError(
            f"{run_dir} already holds a run; pass --resume to continue it or choose another --out"
        )
    torch.manual_seed(config.seed)
    data = experiment.build_data(config)
    model = build_model(experiment, config, data["train"], device)
    ema = averaged(model, config.ema) if config.ema > 0 else None
    train_samples = model.num_samples  # --samples; the N before a schedule's first point
    train_model: torch.nn.Module = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        if device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:  # SyncBatchNorm is GPU-only; this one all-reduces with any backend
            model = convert_batchnorm(model)
        train_model = DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True,  # e.g. relaxation-only parameters in some groups
        )
    scaler = torch.amp.GradScaler(device.type, enabled=config.precision == "16")
    # Group 0 holds the new parameters, so the logged lr is theirs.
    optimizer = torch.optim.AdamW(param_groups(model, config), weight_decay=config.weight_decay)
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    steps_per_epoch = num_batches(data["train"], config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    warmup_steps = round(config.warmup_epochs * steps_per_epoch)
    budget_seconds = config.time_budget * 60
    clock_key = "cpu_seconds" if config.budget_clock == "cpu" else "train_seconds"
    samples_steps = schedule.parse_samples_schedule(config.samples_schedule)

    def set_lr(step: int, clock: float) -> None:
        """Every group's lr for optimizer step ``step`` at ``clock`` budget seconds."""
        effective = schedule.effective_step(step, total_steps, clock, budget_seconds)
        factor = schedule.lr_factor(config.lr_schedule, step, effective, warmup_steps, total_steps)
        for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
            group["lr"] = base * factor

    shuffle = torch.Generator().manual_seed(config.seed)
    state: dict[str, Any] = {
        "epoch": 0,
        "step": 0,
        "best": None,
        "best_epoch": 0,
        "train_seconds": 0.0,
        "wall_seconds": 0.0,
        "cpu_seconds": 0.0,
    }
    if resume and last_path.exists():
        saved = checkpoint.load(last_path, device)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if ema is not None and "ema" in saved:
            ema.load_state_dict(saved["ema"])
        elif ema is not None:
            log.warning("%s has no EMA weights; the EMA starts at the resumed weights", run_dir)
        shuffle.set_state(saved["shuffle"])
        checkpoint.set_rng_state(saved["rng"])
        # checkpoints from before the schedules count no steps and no wall or CPU seconds
        state = {**state, "step": saved["state"]["epoch"] * steps_per_epoch, **saved["state"]}
        log.info("resumed %s at epoch %d", run_dir, state["epoch"])
    else:
        torch.manual_seed(config.seed)  # the same stream whether or not data loading drew numbers
    set_lr(state["step"], state[clock_key])
    writes = rank == 0
    if writes:
        run_dir.mkdir(parents=True, exist_ok=True)
        checkpoint.write_text(run_dir / "config.toml", to_toml(config))
    writer = _tensorboard(run_dir) if writes else None
    select_key, direction = experiment.select
    epochs = range(state["epoch"], config.epochs)
    quiet = config.quiet or not writes
    # the lr follows the budget clock within an epoch only when it decays with time
    clock_per_step = budget_seconds > 0 and config.lr_schedule != "constant"
    bar = progress(epochs, len(epochs), f"{experiment.name} {config.method}", quiet)
    for epoch in bar:
        at = schedule.run_progress(state["step"], total_steps, state[clock_key], budget_seconds)
        model.num_samples = schedule.samples_at(samples_steps, train_samples, at)
        start, cpu_start = time.perf_counter(), time.process_time()
        model.train()
        total, seen, examples = 0.0, 0, 0
        # the uniform entropy reference's own stream, per epoch: a resumed run logs the same
        probes = _TrainProbes(torch.Generator().manual_seed(config.seed * 1_000_003 + epoch))
        epoch_batches = batches(data["train"], config.batch_size, shuffle)
        epoch_bar = progress(epoch_batches, steps_per_epoch, f"epoch {epoch + 1}", quiet)
        for batch_index, batch in enumerate(epoch_bar):
            probe = batch_index < config.diagnostic_batches
            examples += split_size(batch)
            now = state[clock_key]  # the budget clock: saved seconds (plus this epoch's)
            if clock_per_step:
                cpu = clock_key == "cpu_seconds"
                now += time.process_time() - cpu_start if cpu else time.perf_counter() - start
            batch = _to_device(batch, device)
            noise, shard = None, None
            if world > 1:  # every rank draws the same shuffle and noise and keeps its share
                shard = Shard.of(split_size(batch), rank, world)
                noise = model.sampler.sample_noise(
                    model_inputs(model, batch, device), model.num_samples
                )
                per_input = model.sampler.samples_per_input(model.num_samples)
                noise = shard.noise(noise, per_input) or None
                batch = shard.rows(batch)
            inputs = model_inputs(model, batch, device)
            with _autocast(config, device):
                out = train_model(**inputs, noise=noise, keep_samples=probe)
                prediction, target = experiment.read(out.value.float(), batch)
                loss = experiment.loss(prediction, target)
                objective = loss + config.entropy_weight * out.regularization.float()
            rows = len(target)
            if shard is not None:  # weights that make DDP's gradient mean the batch's mean
                rows = rows if shard.real else 0
                all_rows, rank_zero_now = all_reduce_sum([rows, from_rank_zero(now)], device)
                now = rank_zero_now  # every rank steps with the same lr
                objective = loss * (world * rows / all_rows) + (
                    config.entropy_weight * out.regularization.float() * shard.example_weight
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(objective).backward()
            if config.grad_clip > 0 or probe:
                scaler.unscale_(optimizer)  # (a no-op without a scaler)
            if probe:  # the samples are the ones this step drew; norms before clipping
                probes.entropy.add(model, out, inputs)
                probes.add_gradients(model)
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            set_lr(state["step"], now)
            scaler.step(optimizer)
            scaler.update()
            if ema is not None:
                ema.update_parameters(model)
            state["step"] += 1
            if rows:
                total += float(loss.detach()) * rows
                seen += rows
                share = split_size(batch)
                probes.penalty += float(out.regularization.detach()) * share
                probes.examples += share
        epoch_seconds = time.perf_counter() - start
        epoch_cpu = time.process_time() - cpu_start
        if world > 1:  # the loss over every rank's rows; rank 0's clocks, so all stop together
            reduced = all_reduce_sum(
                [
                    total,
                    seen,
                    from_rank_zero(epoch_seconds),
                    from_rank_zero(epoch_cpu),
                    probes.penalty,
                    probes.examples,
                ],
                device,
            )
            total, seen, epoch_seconds, epoch_cpu, probes.penalty, probes.examples = reduced
        state["train_seconds"] += epoch_seconds
        state["cpu_seconds"] += epoch_cpu
        set_lr(state["step"], state[clock_key])  # the next step's lr, as logged and saved
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": total / max(seen, 1),
            "lr": optimizer.param_groups[0]["lr"],
            "train_seconds": round(state["train_seconds"], 3),
            "epoch_seconds": round(epoch_seconds, 3),
            "train_graphs": examples,  # examples in the (global) batches: graphs, systems, ...
            "samples": model.num_samples,  # the training N of this epoch
            "wall_seconds": None,  # set below, after validation
            "cpu_seconds": round(state["cpu_seconds"], 3),
            **probes.row(),  # penalty, entropy of the sampled permutations, gradient norms
        }
        # --time-budget: stop at the end of the epoch that reaches it, validated and saved
        out_of_time = 0 < budget_seconds <= state[clock_key]
        if (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs or out_of_time:
            selected = model if ema is None else ema.module
            val_start = time.perf_counter()
            val = evaluate(
                experiment,
                selected,
                data["val"],
                config.eval_samples,
                config.eval_batch_size,
                device,
                permutation_entropy=True,
            )
            row["val_seconds"] = round(time.perf_counter() - val_start, 3)
            row["val_graphs"] = split_size(data["val"])
            row.update({f"val_{k}": v for k, v in val.items()})
            if _is_better(val[select_key], state["best"], direction):
                state["best"], state["best_epoch"] = val[select_key], epoch + 1
                if writes:
                    best = {"model": selected.state_dict(), "epoch": epoch + 1}
                    checkpoint.save(best_path, {**best, "ema": ema is not None})
        state["wall_seconds"] += time.perf_counter() - start
        row["wall_seconds"] = round(state["wall_seconds"], 3)
        state["epoch"] = epoch + 1
        if not writes:
            if out_of_time:
                break
            continue
        _log_row(run_dir / "log.csv", row, writer)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(
                {
                    k: f"{v:.4g}"
                    for k, v in row.items()
                    if k.startswith(("train_l", "val_")) and v is not None
                }
            )
        saved_state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "shuffle": shuffle.get_state(),
            "rng": checkpoint.rng_state(),
            "state": state,
            "config": dataclasses.asdict(config),
        }
        if ema is not None:
            saved_state["ema"] = ema.state_dict()
        checkpoint.save(last_path, saved_state)
        if out_of_time:
            log.info(
                "time budget of %.1f min (%s clock) reached after epoch %d",
                config.time_budget,
                config.budget_clock,
                epoch + 1,
            )
            break
    if writer is not None:
        writer.close()
    if world > 1:
        import torch.distributed as dist

        dist.barrier()  # rank 0 has written best.pt
        if not writes:
            return {}
    return finish(experiment, config, model, data, state, device)


def finish(
    experiment: Experiment,
    config: TrainConfig,
    model: Symmetrize,
    data: dict[str, DataSplit],
    state: dict[str, Any],
    device: torch.device,
) -> dict[str, Any]:
    """Test the best weights (the EMA's when the run has one) and write ``metrics.json``."""
    run_dir = config.run_dir
    best = checkpoint.load(run_dir / "best.pt", device)
    model.load_state_dict(best["model"])
    torch.manual_seed(config.seed)  # test-time sampling is reproducible
    test = evaluate(
        experiment,
        model,
        data["test"],
        config.test_num_samples,
        config.eval_batch_size,
        device,
        config.quiet,
        "test",
    )
    metrics = {
        "experiment": experiment.name,
        "method": config.method,
        "backbone": config.backbone,
        "seed": config.seed,
        "epochs": state["epoch"],
        "best_epoch": state["best_epoch"],
        "train_seconds": round(state["train_seconds"], 2),
        "wall_seconds": round(state["wall_seconds"], 2),
        "cpu_seconds": round(state["cpu_seconds"], 2),
        "time_budget_minutes": config.time_budget,
        "budget_clock": config.budget_clock,
        "lr_schedule": config.lr_schedule,
        "ema": config.ema,
        "samples_schedule": config.samples_schedule,
        "test": test,
        "val_best": state["best"],
        "samples": config.samples,
        "test_samples": config.test_num_samples,
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    checkpoint.write_json(run_dir / "metrics.json", metrics)
    return metrics


def _log_row(path: Path, row: dict[str, Any], writer) -> None:
    """Append ``row`` to the CSV log, dropping rows of this or later epochs left by a killed run."""
    old = list(csv.DictReader(path.read_text().splitlines())) if path.exists() else []
    old = [r for r in old if int(r["epoch"]) < row["epoch"]]
    header = list(dict.fromkeys([k for r in old for k in r] + list(row)))
    lines = [",".join(header)]
    for r in [*old, row]:  # None (a diagnostic that does not apply) is an empty cell
        lines.append(",".join("" if r.get(k) is None else str(r[k]) for k in header))
    checkpoint.write_text(path, "\n".join(lines) + "\n")
    if writer is not None:
        for key, value in row.items():
            if key != "epoch" and value is not None:
                writer.add_scalar(key.replace("_", "/", 1), value, row["epoch"])
        writer.flush()


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is in the cli extra
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))
