"""``analyze``: every analysis of one run and the runs it is compared with, into one folder.

For each run: its ``log.csv`` curves (permutation entropy, gradient norms), then its model
restored from the checkpoint (:func:`probsym.train.restore.restore`) for the entropy of the
sampled permutations and the sample-count and variance studies. All runs must be of the same
experiment; they are overlaid, one colour each (e.g. PS against GA, or a sweep over the training
N). Writes ``entropy``, ``samples``, ``variance`` and ``gradients`` ``.png`` + ``.csv`` and a
``summary.json``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from probsym.analysis import logs, plots
from probsym.analysis.sampling import (
    DEFAULT_COUNTS,
    checkpoint_entropy,
    draw_pool,
    pool_size,
    sample_count_study,
)
from probsym.errors import ProbsymError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnalyzeOptions:
    """What ``probsym analyze`` computes (its CLI options, one to one).

    Attributes:
        counts: Inference sample counts N of the sample-count and variance studies.
        max_samples: Drop counts above this (0: keep all).
        trials: Independent trials at the largest count (smaller counts get more, up to
            ``max_trials``); each input draws ``trials x max(counts)`` samples once.
        max_trials: Most trials per count.
        split: Split of the sample-count and variance studies.
        entropy_split: Split of the checkpoint entropy (the paper: validation).
        entropy_samples: Samples per input for the checkpoint entropy (the paper: 100).
        limit: Use the first ``limit`` inputs of each split (0: all).
        batch_size: Inputs per evaluation batch (0: the run's ``eval_batch_size``).
        chunk: Most folded inputs (inputs x samples) per model call.
        seed: Seed of every draw, so an analysis reproduces.
        weights: ``best`` (validation-selected) or ``last`` checkpoint.
        device: Device (empty: the run's).
    """

    counts: tuple[int, ...] = DEFAULT_COUNTS
    max_samples: int = 0
    trials: int = 5
    max_trials: int = 200
    split: str = "test"
    entropy_split: str = "val"
    entropy_samples: int = 100
    limit: int = 0
    batch_size: int = 0
    chunk: int = 1024
    seed: int = 0
    weights: str = "best"
    device: str = ""

    @property
    def used_counts(self) -> tuple[int, ...]:
        """``counts`` up to ``max_samples``, sorted."""
        cap = self.max_samples or max(self.counts)
        counts = tuple(sorted({c for c in self.counts if 1 <= c <= cap}))
        if not counts:
            raise ProbsymError(f"no sample count in {self.counts} is within 1..{cap}")
        return counts


def run_label(run_dir: Path, method: str, samples: int) -> str:
    """``name (method, N=k)``: the legend entry of a run."""
    return f"{run_dir.name} ({method}, N={samples})"


def analyze(
    run_dir: str | Path,
    compare: Sequence[str | Path] = (),
    options: AnalyzeOptions | None = None,
    out: str | Path | None = None,
    on_run: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Analyze ``run_dir`` (and overlay ``compare``); write the figures to ``out``.

    Args:
        run_dir: The run (``out`` defaults to ``run_dir/plots``).
        compare: More runs of the same experiment, drawn beside it.
        options: What to compute (:class:`AnalyzeOptions`).
        out: Folder of the PNGs, CSVs and ``summary.json``.
        on_run: Called with each run's label before its studies (progress).

    Returns:
        The content of ``summary.json``: the files, the options and the numbers per run.

    Raises:
        ProbsymError: not a run directory, runs of different experiments, a split the
            experiment lacks, or counts that do not fit the options.
    """
    from probsym.experiments.base import limit_split
    from probsym.train.restore import read_config, restore

    options = options or AnalyzeOptions()
    counts = options.used_counts
    folder = Path(out) if out is not None else Path(run_dir) / "plots"
    paths = [Path(run_dir), *map(Path, compare)]
    labels: list[str] = []
    curves, gradients, entropy_rows, sample_rows = [], [], [], []
    experiment_name = read_config(paths[0]).experiment
    for path in paths[1:]:  # before any model or data is built
        other = read_config(path).experiment
        if other != experiment_name:
            raise ProbsymError(
                f"{path} is a {other} run, {paths[0]} a {experiment_name} run: compare runs "
                f"of one experiment"
            )
    for path in paths:
        run = restore(path, options.weights, options.device or None)
        config, model = run.config, run.model
        label = run_label(path, config.method, config.samples)
        if label in labels:
            label = f"{path.parent.name}/{label}"
        labels.append(label)
        if on_run is not None:
            on_run(label)
        rows = logs.read_log(path)
        curves += logs.curve_rows(
            rows, logs.ENTROPY_COLUMNS, label, {"eval_samples": config.eval_samples}
        )
        gradients += logs.curve_rows(rows, logs.GRADIENT_COLUMNS, label)
        for name in (options.split, options.entropy_split):
            if name not in run.data:
                raise ProbsymError(f"{config.experiment} has no split {name!r}: {sorted(run.data)}")
        device = next(model.parameters()).device
        generator = torch.Generator(device).manual_seed(options.seed)
        entropy = checkpoint_entropy(
            model,
            limit_split(run.data[options.entropy_split], options.limit),
            options.entropy_samples,
            device,
            options.chunk,
            generator,
        )
        if entropy is not None:
            entropy_rows.append(
                {
                    "run": label,
                    "split": options.entropy_split,
                    "checkpoint": options.weights,
                    "epoch": _checkpoint_epoch(path, options.weights),
                    **entropy,
                }
            )
        pool = draw_pool(
            model,
            limit_split(run.data[options.split], options.limit),
            pool_size(counts, options.trials),
            options.batch_size or config.eval_batch_size,
            device,
            options.chunk,
            generator,
        )
        study = sample_count_study(run.experiment, pool, counts, options.max_trials)
        sample_rows += [{"run": label, "split": options.split, **r} for r in study]
    title = f"{experiment_name}: {', '.join(labels)}"
    entropy_png, entropy_csv, checkpoint_csv = plots.entropy_figure(
        folder, curves, entropy_rows, title
    )
    files = [entropy_png, entropy_csv, checkpoint_csv]
    files += plots.samples_figure(folder, sample_rows, f"{title} ({options.split} split)")
    files += plots.variance_figure(folder, sample_rows, f"{title} ({options.split} split)")
    files += plots.gradients_figure(folder, gradients, title)
    summary = {
        "experiment": experiment_name,
        "runs": [str(p) for p in paths],
        "labels": labels,
        "files": [str(f) for f in files],
        "options": {**asdict(options), "counts": list(counts)},
        "entropy_checkpoint": entropy_rows,
        "samples": sample_rows,
    }
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _checkpoint_epoch(run_dir: Path, weights: str) -> int | None:
    """The epoch of the analysed checkpoint, from ``metrics.json`` or ``log.csv``."""
    if weights == "best":
        metrics = run_dir / "metrics.json"
        if metrics.exists():
            return json.loads(metrics.read_text()).get("best_epoch")
        return None
    rows = logs.read_log(run_dir)
    return int(rows[-1]["epoch"]) if rows else None
