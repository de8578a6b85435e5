"""Metric against compute: train several methods and seeds for one budget, then compare them.

``probsym curves EXPERIMENT`` runs ``probsym train`` once per (method, seed) with the same
``--time-budget`` (a subprocess each, ``--threads 1``, at most ``parallel`` at a time), resumes a
run that was interrupted or that had a smaller budget, and skips a finished one, so that a long
comparison continues across sessions. It then reads every run's ``log.csv`` and draws the
best-so-far validation metric against training minutes, mean ± standard deviation over seeds
per method, in one PNG with the CSV behind it, and a table of that metric at fixed minutes beside
each method's test metric (the validation-selected checkpoint within the budget).
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from probsym.errors import ConfigError, ProbsymError

#: Clocks a curve can be drawn against: ``log.csv`` columns, cumulative seconds.
CLOCKS = {"train": "train_seconds", "wall": "wall_seconds", "cpu": "cpu_seconds"}


@dataclass(frozen=True)
class CurveRun:
    """One training run of a comparison: a method, a seed and its directory."""

    method: str
    seed: int
    run_dir: Path


def plan(methods: Sequence[str], seeds: Sequence[int], out: Path) -> list[CurveRun]:
    """Every (method, seed) pair, seeds innermost, each in ``out/<method>-s<seed>``."""
    return [CurveRun(m, s, out / f"{m}-s{s}") for m in methods for s in seeds]


def run_state(run: CurveRun, budget: float) -> str:
    """``"done"`` (tested within at least ``budget`` minutes), ``"resume"`` or ``"new"``."""
    metrics = run.run_dir / "metrics.json"
    if metrics.exists():
        done = json.loads(metrics.read_text()).get("time_budget_minutes") or 0
        if not done:
            # Not a budgeted run: its compute is unknown, so it can be neither kept nor resumed.
            raise ConfigError(
                f"{run.run_dir} holds a run trained without --time-budget; move it away or "
                "choose another --out"
            )
        if done >= budget:
            return "done"
    return "resume" if (run.run_dir / "last.pt").exists() else "new"


def train_command(
    experiment: str, run: CurveRun, budget: float, train_args: Sequence[str], resume: bool
) -> list[str]:
    """The ``probsym train`` command line of ``run``; ``train_args`` come last and win."""
    command = [sys.executable, "-m", "probsym", "train", experiment, "--method", run.method]
    command += ["--seed", str(run.seed), "--time-budget", str(budget), "--out", str(run.run_dir)]
    command += ["--threads", "1", "--quiet", "--epochs", "1000000"]
    command += ["--resume"] if resume else []
    return command + list(train_args)


def run_all(
    experiment: str,
    runs: Sequence[CurveRun],
    budget: float,
    train_args: Sequence[str] = (),
    parallel: int = 2,
    echo=print,
) -> None:
    """Train every run that is not done, ``parallel`` at a time; raise if any fails."""
    pending = [(r, run_state(r, budget)) for r in runs]
    pending = [(r, state) for r, state in pending if state != "done"]
    echo(f"{len(runs) - len(pending)} of {len(runs)} runs already done; {len(pending)} to train")
    active: list[tuple[CurveRun, subprocess.Popen]] = []
    failed: list[CurveRun] = []
    while pending or active:
        while pending and len(active) < parallel:
            run, state = pending.pop(0)
            run.run_dir.mkdir(parents=True, exist_ok=True)
            command = train_command(experiment, run, budget, train_args, state == "resume")
            log = (run.run_dir / "stdout.log").open("a")
            echo(f"start {run.run_dir.name} ({state}): {' '.join(command[2:])}")
            active.append((run, subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)))
        time.sleep(1.0)
        for item in list(active):
            run, process = item
            if process.poll() is None:
                continue
            active.remove(item)
            echo(f"end   {run.run_dir.name}: exit code {process.returncode}")
            if process.returncode != 0:
                failed.append(run)
    if failed:
        names = ", ".join(str(r.run_dir / "stdout.log") for r in failed)
        raise ProbsymError(f"{len(failed)} run(s) failed; see {names}")


# ---- reading and summarizing ------------------------------------------------------------------


def read_curve(run_dir: Path, metric: str, clock: str = "train") -> list[tuple[float, float]]:
    """``(minutes, validation metric)`` at every validated epoch of ``run_dir``'s ``log.csv``."""
    path = run_dir / "log.csv"
    if not path.exists():
        return []
    column, value = CLOCKS[clock], f"val_{metric}"
    rows = list(csv.DictReader(path.read_text().splitlines()))
    if rows and column not in rows[0]:
        raise ProbsymError(f"{path} has no {column!r} column: draw it with another --clock")
    return [(float(r[column]) / 60, float(r[value])) for r in rows if r.get(value, "") != ""]


def best_so_far(curve: Sequence[tuple[float, float]], minutes: float, lower: bool) -> float:
    """The best metric validated by ``minutes`` (NaN before the first validation)."""
    values = [v for t, v in curve if t <= minutes + 1e-9]
    if not values:
        return math.nan
    return min(values) if lower else max(values)


def mean_std(values: Iterable[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (0 for one value) and count of the finite values."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan, 0
    mean = sum(finite) / len(finite)
    if len(finite) == 1:
        return mean, 0.0, 1
    var = sum((v - mean) ** 2 for v in finite) / (len(finite) - 1)
    return mean, math.sqrt(var), len(finite)


@dataclass(frozen=True)
class Summary:
    """Per method: best-so-far validation metric on a minute grid, and the test metric."""

    metric: str
    lower_is_better: bool
    grid: list[float]
    curves: dict[str, list[tuple[float, float, int]]]  # method -> (mean, std, seeds) per grid
    test: dict[str, tuple[float, float, int]]  # method -> test metric over seeds
    minutes_run: dict[str, tuple[float, float, int]]  # method -> training minutes over seeds


def summarize(
    runs: Sequence[CurveRun],
    metric: str,
    lower_is_better: bool,
    budget: float,
    clock: str = "train",
    points: int = 60,
) -> Summary:
    """Mean ± std over seeds of each method's best-so-far curve and of its test metric."""
    grid = [budget * (i + 1) / points for i in range(points)]
    methods = list(dict.fromkeys(r.method for r in runs))
    curves, test, minutes = {}, {}, {}
    for method in methods:
        mine = [r for r in runs if r.method == method]
        read = [read_curve(r.run_dir, metric, clock) for r in mine]
        curves[method] = [
            mean_std(best_so_far(c, t, lower_is_better) for c in read if c) for t in grid
        ]
        results = [_metrics(r.run_dir) for r in mine]
        test[method] = mean_std(m["test"].get(metric, math.nan) for m in results if m)
        minutes[method] = mean_std(c[-1][0] for c in read if c)
    return Summary(metric, lower_is_better, grid, curves, test, minutes)


def _metrics(run_dir: Path) -> dict | None:
    path = run_dir / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else None


def milestone_table(summary: Summary, milestones: Sequence[float]) -> str:
    """A markdown table: best validation metric at each milestone, and the test metric."""
    header = ["method"] + [f"val {summary.metric} @ {m:g} min" for m in milestones]
    header += [f"test {summary.metric}", "seeds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, curve in summary.curves.items():
        cells = [method]
        for m in milestones:
            index = min(range(len(summary.grid)), key=lambda i: abs(summary.grid[i] - m))
            reached = summary.grid[index] >= m - 1e-9
            cells.append(_fmt(curve[index]) if reached else "—")
        cells += [_fmt(summary.test[method]), str(summary.test[method][2])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(value: tuple[float, float, int]) -> str:
    mean, std, count = value
    if count == 0:
        return "—"
    return f"{mean:.4g}" if count == 1 else f"{mean:.4g} ± {std:.2g}"


#: Axis labels of the clocks.
CLOCK_LABELS = {
    "train": "training minutes (wall clock of the training loop)",
    "wall": "wall minutes (training and validation)",
    "cpu": "training CPU minutes (process time)",
}


def write_summary(
    summary: Summary, out_png: Path, title: str, clock: str = "train"
) -> tuple[Path, Path]:
    """Draw the curves (mean line, ± std band) to ``out_png``; the CSV goes beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_png.parent.mkdir(parents=True, exist_ok=True)
    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    rows = []
    for method, curve in summary.curves.items():
        points = [(t, m, s, n) for t, (m, s, n) in zip(summary.grid, curve, strict=True) if n]
        rows += [(method, round(t, 4), m, s, n) for t, m, s, n in points]
        if not points:
            continue
        t, m, s, n = zip(*points, strict=True)
        seeds = max(n)
        line = axis.plot(t, m, label=f"{method} ({seeds} seed{'s' if seeds > 1 else ''})")[0]
        low = [a - b for a, b in zip(m, s, strict=True)]
        high = [a + b for a, b in zip(m, s, strict=True)]
        axis.fill_between(t, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    axis.set_xlabel(CLOCK_LABELS[clock])
    axis.set_ylabel(f"best validation {summary.metric} so far")
    if summary.lower_is_better:
        axis.set_yscale("log")
    axis.set_title(title)
    axis.grid(alpha=0.3, which="both")
    axis.legend()
    figure.tight_layout()
    figure.savefig(out_png, dpi=120)
    plt.close(figure)
    out_csv = out_png.with_suffix(".csv")
    with out_csv.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method", "minutes", f"val_{summary.metric}_mean", "std", "seeds"])
        writer.writerows(rows)
    return out_png, out_csv
