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
    python benchmarks/pattern_pipeline.py --shapes              # LRGB shapes (444 and 53 nodes)

``--shapes`` times the LRGB models instead (issue 12), one child process per benchmark: training
steps and evaluation passes of the ``probsym train <name>`` model (the experiment's defaults plus
``--extra`` options) on synthetic molecule-like batches with every graph at the benchmark's
largest size (``rep_dim``: 444 nodes for Peptides, 53 for PCQM-Contact), no data files needed.
One line per benchmark: train and eval graphs per second and the child's peak RSS.

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


#: LRGB benchmarks timed by ``--shapes`` (their largest graph is the experiment's max_nodes).
LRGB_SHAPES = ("peptides-func", "peptides-struct", "pcqm-contact")


def synthetic_batch(name: str, batch: int, nodes: int) -> dict:
    """``batch`` chain-like molecules of ``nodes`` atoms in the LRGB experiment's dense layout."""
    from probsym.data.lrgb import CONTACT_CODES, OneHotNodes, atom_vocab, bond_vocab

    generator = torch.Generator().manual_seed(0)
    codes = torch.stack(
        [torch.randint(0, size, (batch, nodes), generator=generator) for size in atom_vocab()], -1
    )
    mask = torch.ones(batch, nodes, dtype=torch.bool)
    adj = torch.zeros(batch, nodes, nodes, 1 + len(bond_vocab()))
    chain = torch.arange(nodes - 1)
    for u, v in ((chain, chain + 1), (chain + 1, chain)):  # a backbone chain, both directions
        adj[:, u, v, 0] = 1.0
        adj[:, u, v, 1] = torch.randint(0, 2, (batch, nodes - 1), generator=generator).float()
    out = OneHotNodes(atom_vocab())({"x": codes.float(), "adj": adj, "mask": mask})
    if name == "pcqm-contact":
        target = torch.full((batch, nodes, nodes), CONTACT_CODES["negative"], dtype=torch.int8)
        target[:, chain, chain + 1] = CONTACT_CODES["positive"]
    else:
        width = 10 if name == "peptides-func" else 11
        target = torch.randint(0, 2, (batch, width), generator=generator).float()
    return {**out, "target": target}


def shape_case(name: str, batch: int, steps: int, extra: list[str]) -> dict:
    """Time ``steps`` training steps and evaluation passes of ``name``'s model (in this process)."""
    from probsym import cli
    from probsym.train.loop import model_inputs

    args = cli.build_parser().parse_args(["train", name, *extra])
    experiment, config = cli.config_from_args(args)
    if config.threads:
        torch.set_num_threads(config.threads)
    nodes = config.max_nodes or {"pcqm-contact": 53}.get(name, 444)
    data = synthetic_batch(name, batch, nodes)
    model = experiment.build_model(config, data)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    inputs = model_inputs(model, data, torch.device("cpu"))

    def train_step() -> None:
        model.train()
        out = model(**inputs)
        prediction, target = experiment.read(out.value.float(), data)
        loss = experiment.loss(prediction, target) + 0.1 * out.regularization.float()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    @torch.no_grad()
    def eval_pass() -> None:
        model.eval()
        model(**inputs, num_samples=config.eval_samples)

    timings = {}
    for key, run in (("train", train_step), ("eval", eval_pass)):
        run()  # warm-up (lazy layers, allocator)
        start = time.perf_counter()
        for _ in range(steps):
            run()
        timings[key] = batch * steps / (time.perf_counter() - start)
    return {
        "benchmark": name,
        "nodes": nodes,
        "batch": batch,
        "samples": config.samples,
        "eval_samples": config.eval_samples,
        "train_graphs_per_second": round(timings["train"], 2),
        "eval_graphs_per_second": round(timings["eval"], 2),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
    }


def run_shapes(batch: int, steps: int, extra: list[str]) -> list[dict]:
    """One child process per LRGB benchmark (so each peak RSS is its own); their results."""
    rows = []
    for name in LRGB_SHAPES:
        command = [sys.executable, str(Path(__file__).resolve()), "--shape-case", name]
        command += ["--shape-batch", str(batch), "--shape-steps", str(steps), "--extra", *extra]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(
            f"{name:16s} n={row['nodes']:3d} batch {batch}: train "
            f"{row['train_graphs_per_second']:.2f} graphs/s (k={row['samples']}), eval "
            f"{row['eval_graphs_per_second']:.2f} graphs/s (k={row['eval_samples']}), "
            f"peak RSS {row['peak_rss_gb']:.2f} GB"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", action="store_true", help="time the LRGB shapes instead")
    parser.add_argument("--shape-case", choices=LRGB_SHAPES, help=argparse.SUPPRESS)
    parser.add_argument("--shape-batch", type=int, default=4, help="graphs per --shapes batch")
    parser.add_argument("--shape-steps", type=int, default=2, help="timed steps per --shapes case")
    parser.add_argument("--backbone", default="transformer")
    parser.add_argument("--method", default="ps")
    parser.add_argument("--limit", type=int, default=0, help="graphs per split (0: all)")
    parser.add_argument("--max-train", type=int, default=0, help="training graphs (0: all)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more train args")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    if args.shape_case:  # a child of --shapes
        print(
            json.dumps(shape_case(args.shape_case, args.shape_batch, args.shape_steps, args.extra))
        )
        return
    if args.shapes:
        rows = run_shapes(args.shape_batch, args.shape_steps, args.extra)
        summary = {"shapes": rows, "args": args.extra, "torch": torch.__version__}
        out = args.out if args.out != DEFAULT_OUT else DEFAULT_OUT.with_name("lrgb_shapes.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(summary, indent=2) + "\n")
        print(json.dumps(summary))
        return
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
