"""Validation metric against CPU minutes for several runs: one PNG and the CSV behind it.

Reads each run directory's ``log.csv`` (``train_seconds`` and a ``val_*`` column) and draws one
line per run, so that methods trained for the same ``--time-budget`` compare at equal compute.

Usage::

    python benchmarks/pattern_curves.py RUN_DIR ... --metric val_accuracy --out docs/pattern.png
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def read_curve(run_dir: Path, metric: str) -> list[tuple[float, float]]:
    """``(training minutes, metric)`` at every validated epoch of ``run_dir``."""
    rows = csv.DictReader((run_dir / "log.csv").read_text().splitlines())
    return [
        (float(r["train_seconds"]) / 60, float(r[metric])) for r in rows if r.get(metric, "") != ""
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--metric", default="val_accuracy")
    parser.add_argument("--out", type=Path, default=Path("pattern_curves.png"))
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = []
    figure, axis = plt.subplots(figsize=(6, 4))
    for run in args.runs:
        curve = read_curve(run, args.metric)
        table += [(run.name, minutes, value) for minutes, value in curve]
        axis.plot(*zip(*curve, strict=True), marker="o", label=run.name)
    axis.set_xlabel("training CPU minutes (2 cores shared by 2 runs, 1 thread each)")
    axis.set_ylabel(args.metric)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=120)
    with args.out.with_suffix(".csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["run", "train_minutes", args.metric])
        writer.writerows(table)
    print(f"wrote {args.out} and {args.out.with_suffix('.csv')}")


if __name__ == "__main__":
    main()
