"""PATTERN pipeline: peak memory and throughput of ``probsym train pattern`` on the full set.

Runs the real command in a child process (so its peak RSS is its own: ``ru_maxrss`` of the
child), on the full generated PATTERN (10,000 / 2,000 / 2,000 graphs, generated into the cache on
first use), and reads the graphs per second of training and of evaluation from the run's
``log.csv`` (``train_seconds`` and ``val_seconds`` of the epoch). The issue's target: peak RSS
≤ 3 GB. Memory should grow with the batch, not with the data set: ``--limit`` runs the same
command on a reduced set, and the two peaks are printed side by side.

Usage::

    python benchmarks/pattern_pipeline.py                       # small transformer, 1 epoch
    python benchmarks/pattern_pipeline.py --backbone minilm     # the pretrained MiniLM
    python benchmarks/pattern_pipeline.py --shapes 444          # LRGB-sized token grid

The last line printed is the JSON result (kept in ``--out``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

BENCHMARKS_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = BENCHMARKS_DIR / "results" / "pattern_pipeline.json"


def run_train(args: list[str], run_dir: Path) -> dict:
    """Run ``probsym train pattern ARGS`` in a child; its peak RSS, wall time and epoch log."""
    command = [sys.executable, "-m", "probsym", "train", "pattern", *args, "--out", str(run_dir)]
    command += ["--quiet"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak_kib <= before:
        print("warning: peak RSS not above an earlier child's; run one case per process")
    rows = list(csv.DictReader((run_dir / "log.csv").read_text().splitlines()))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"peak_rss_gb": peak_kib / 2**20, "wall_seconds": wall, "log": rows[-1], **metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="transformer")
    parser.add_argument("--method", default="ps")
    parser.add_argument("--limit", type=int, default=0, help="graphs per split (0: all)")
    parser.add_argument("--max-train", type=int, default=0, help="training graphs (0: all)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more train args")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    train_args = [
        "--backbone",
        args.backbone,
        "--method",
        args.method,
        "--epochs",
        str(args.epochs),
        "--limit",
        str(args.limit),
        "--max-train",
        str(args.max_train),
        *args.extra,
    ]
    with tempfile.TemporaryDirectory() as tmp:
        result = run_train(train_args, Path(tmp) / "run")
    log = result.pop("log")
    train_graphs = float(log["train_graphs"])
    val_graphs = float(log["val_graphs"])
    summary = {
        "backbone": args.backbone,
        "method": args.method,
        "args": train_args,
        "peak_rss_gb": round(result["peak_rss_gb"], 3),
        "train_graphs_per_second": round(train_graphs / float(log["epoch_seconds"]), 2),
        "eval_graphs_per_second": round(val_graphs / float(log["val_seconds"]), 2),
        "wall_seconds": round(result["wall_seconds"], 1),
        "test": result["test"],
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch": torch.__version__,
        },
    }
    print(f"peak RSS {summary['peak_rss_gb']:.2f} GB (target <= 3 GB)")
    print(
        f"train {summary['train_graphs_per_second']:.1f} graphs/s, "
        f"eval {summary['eval_graphs_per_second']:.1f} graphs/s"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
