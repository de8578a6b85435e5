"""The figures of ``probsym analyze``: each PNG is drawn from the CSV written beside it.

Every function takes the rows the computations returned (one dict per point, with a ``run``
label), writes ``<name>.csv`` and ``<name>.png`` into a folder and returns both paths. Runs are
overlaid in one colour each. matplotlib is imported here only, with a non-interactive canvas
(``matplotlib.figure.Figure``: no pyplot state, no display needed).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from probsym.analysis.sampling import finite

Rows = Sequence[dict[str, Any]]


def write_csv(path: Path, rows: Rows) -> Path:
    """``rows`` as CSV (the union of their keys, in first-seen order; ``None`` is empty)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row[k] for k in header})
    return path


def _figure(columns: int):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.2 * columns, 4.0), layout="constrained")
    axes = figure.subplots(1, columns, squeeze=False)[0]
    return figure, list(axes)


def _save(figure, title: str, png: Path) -> Path:
    """Title ``figure`` and write it to ``png``."""
    figure.suptitle(title, fontsize=11)
    figure.savefig(png, dpi=110)
    return png


def _runs(rows: Rows) -> list[str]:
    return list(dict.fromkeys(r["run"] for r in rows))


def _series(rows: Rows, run: str, x: str, y: str) -> tuple[list[float], list[float]]:
    points = [(r[x], r[y]) for r in rows if r["run"] == run and finite(r.get(y))]
    return [p[0] for p in points], [p[1] for p in points]


def _colour(index: int) -> str:
    return f"C{index % 10}"


def _integer_epochs(*axes) -> None:
    from matplotlib.ticker import MaxNLocator

    for axis in axes:
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))


def _empty(axis, text: str) -> None:
    axis.text(0.5, 0.5, text, ha="center", va="center", transform=axis.transAxes, wrap=True)


def entropy_figure(
    folder: Path, curves: Rows, checkpoint: Rows, title: str
) -> tuple[Path, Path, Path]:
    """Permutation entropy over training, and at the checkpoint against the uniform reference.

    Left: ``val_perm_entropy`` (solid, validation at the eval N) and ``train_perm_entropy``
    (dotted, training batches at the training N) per epoch; dashed, the uniform sampler's value
    at the same N. Right: the entropy at the checkpoint with ``samples`` draws per input
    (mean ± std over inputs) beside the uniform value at that N.

    Returns:
        The PNG and the two CSVs (``entropy.csv``: curves, ``entropy_checkpoint.csv``).
    """
    curves_csv = write_csv(folder / "entropy.csv", curves)
    checkpoint_csv = write_csv(folder / "entropy_checkpoint.csv", checkpoint)
    figure, (left, right) = _figure(2)
    drawn = False
    for i, run in enumerate(_runs(curves)):
        mine = [r for r in curves if r["run"] == run]
        val_n = mine[0].get("eval_samples")
        train_n = "/".join(
            str(int(n)) for n in sorted({r["samples"] for r in mine if r.get("samples")})
        )
        for column, style, what in (
            ("val_perm_entropy", "-", f"val, N={val_n}"),
            ("val_perm_entropy_uniform", "--", f"uniform, N={val_n}"),
            ("train_perm_entropy", ":", f"train, N={train_n or '?'}"),
        ):
            x, y = _series(curves, run, "epoch", column)
            if x:
                left.plot(x, y, style, color=_colour(i), label=f"{run}: {what}")
                drawn = True
    if drawn:
        _integer_epochs(left)
        left.set_xlabel("epoch")
        left.set_ylabel("row + column entropy per node (nats)")
        left.legend(fontsize=7)
    else:
        _empty(left, "no permutation entropy logged\n(no S_n factor, or an older run)")
    left.set_title("Entropy of the mean sampled permutation", fontsize=10)
    rows = [r for r in checkpoint if finite(r.get("entropy"))]
    if rows:
        positions = range(len(rows))
        right.bar(
            [p - 0.2 for p in positions],
            [r["entropy"] for r in rows],
            0.4,
            yerr=[r["entropy_std"] for r in rows],
            color=[_colour(_runs(curves + checkpoint).index(r["run"])) for r in rows],
            label="learned",
        )
        right.bar(
            [p + 0.2 for p in positions],
            [r["uniform"] for r in rows],
            0.4,
            color="lightgray",
            hatch="//",
            label="uniform, same N",
        )
        right.set_xticks(list(positions), [r["run"] for r in rows], fontsize=7, rotation=15)
        right.set_ylabel("entropy (nats)")
        right.legend(fontsize=7)
        right.set_title(
            f"At the checkpoint, N = {rows[0]['samples']} per input ({rows[0]['split']})",
            fontsize=10,
        )
    else:
        _empty(right, "no S_n factor: no permutation entropy")
    png = _save(figure, title, folder / "entropy.png")
    return png, curves_csv, checkpoint_csv


def samples_figure(folder: Path, rows: Rows, title: str) -> tuple[Path, Path]:
    """Loss and metrics against the inference sample count, mean ± std over trials."""
    path = write_csv(folder / "samples.csv", rows)
    names = [k[: -len("_mean")] for k in rows[0] if k.endswith("_mean")]
    figure, axes = _figure(len(names))
    for axis, name in zip(axes, names, strict=True):
        for i, run in enumerate(_runs(rows)):
            points = [r for r in rows if r["run"] == run and finite(r.get(f"{name}_mean"))]
            axis.errorbar(
                [r["samples"] for r in points],
                [r[f"{name}_mean"] for r in points],
                yerr=[r[f"{name}_std"] for r in points],
                marker="o",
                markersize=3,
                capsize=3,
                color=_colour(i),
                label=run,
            )
        axis.set_xscale("log")
        axis.set_xlabel("inference samples N")
        axis.set_ylabel(name)
        axis.set_title(f"{name} vs N (mean ± std over trials)", fontsize=10)
        axis.legend(fontsize=7)
    png = _save(figure, title, folder / "samples.png")
    return png, path


def variance_figure(folder: Path, rows: Rows, title: str) -> tuple[Path, Path]:
    """Output and per-input loss variance over trials against N (log-log, 1/N for reference)."""
    keep = ("run", "samples", "trials", "output_variance", "loss_variance")
    path = write_csv(folder / "variance.csv", [{k: r.get(k) for k in keep} for r in rows])
    figure, axes = _figure(2)
    for axis, column, label in (
        (axes[0], "output_variance", "output variance"),
        (axes[1], "loss_variance", "loss variance (per input)"),
    ):
        drawn = False
        for i, run in enumerate(_runs(rows)):
            x, y = _series(rows, run, "samples", column)
            if not x:
                continue
            axis.plot(x, y, "o-", markersize=3, color=_colour(i), label=run)
            if y[0] > 0:  # the i.i.d. rate var / N through the first point
                axis.plot(x, [y[0] * x[0] / n for n in x], ":", color=_colour(i), alpha=0.6)
            drawn = True
        if drawn:
            axis.set_xscale("log")
            axis.set_yscale("log")
            axis.set_xlabel("inference samples N")
            axis.set_ylabel(label)
            axis.legend(fontsize=7)
        else:
            _empty(axis, f"no {label}\n(no per-input readout)")
        axis.set_title(f"{label} over trials (dotted: ∝ 1/N)", fontsize=10)
    png = _save(figure, title, folder / "variance.png")
    return png, path


def gradients_figure(folder: Path, rows: Rows, title: str) -> tuple[Path, Path]:
    """Base and sampler gradient norms (before clipping) and the sampler penalty per epoch."""
    path = write_csv(folder / "gradients.csv", rows)
    figure, (left, right) = _figure(2)
    drawn = False
    for i, run in enumerate(_runs(rows)):
        for column, style, what in (
            ("grad_norm_base", "-", "base"),
            ("grad_norm_sampler", "--", "sampler"),
        ):
            x, y = _series(rows, run, "epoch", column)
            if x:
                left.plot(x, y, style, color=_colour(i), label=f"{run}: {what}")
                drawn = True
        x, y = _series(rows, run, "epoch", "train_regularization")
        if x:
            right.plot(x, y, "-", color=_colour(i), label=run)
    _integer_epochs(left, right)
    if drawn:
        left.set_yscale("log")
        left.set_xlabel("epoch")
        left.set_ylabel("gradient norm")
        left.legend(fontsize=7)
    else:
        _empty(left, "no gradient norms logged (an older run?)")
    left.set_title("Gradient norms before clipping", fontsize=10)
    right.set_xlabel("epoch")
    right.set_ylabel("sampler penalty (train mean)")
    right.set_title("Sampler penalty (entropy of the relaxed permutation)", fontsize=10)
    if right.get_lines():
        right.legend(fontsize=7)
    png = _save(figure, title, folder / "gradients.png")
    return png, path


def orbits_figure(folder: Path, rows: Rows, title: str) -> tuple[Path, Path]:
    """Within-orbit spread / output scale against k (the orbit study).

    A panel per method measured at several k; methods measured at one k (canonical) are
    drawn as crosses on every panel.
    """
    path = write_csv(folder / "orbits.csv", rows)
    counts: dict[str, set] = {}
    for r in rows:
        counts.setdefault(r["method"], set()).add(r["samples"])
    swept = [m for m, ks in counts.items() if len(ks) > 1] or list(counts)
    single = [m for m in counts if m not in swept]
    graphs = list(dict.fromkeys(r["graph"] for r in rows if finite(r["spread"])))
    figure, axes = _figure(len(swept))
    for axis, method in zip(axes, swept, strict=True):
        for i, graph in enumerate(graphs):
            mine = [r for r in rows if r["method"] == method and r["graph"] == graph]
            x = [r["samples"] for r in mine]
            axis.plot(
                x,
                [r["spread"] / r["scale"] for r in mine],
                "o-",
                markersize=4,
                color=_colour(i),
                label=graph,
            )
            axis.plot(
                x, [r["noise_floor"] / r["scale"] for r in mine], ":", color=_colour(i), alpha=0.6
            )
            crosses = [r for r in rows if r["method"] in single and r["graph"] == graph]
            x = [r["samples"] for r in crosses]
            y = [r["spread"] / r["scale"] for r in crosses]
            axis.plot(x, y, "x", markersize=9, color=_colour(i))
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("inference samples k")
        axis.set_ylabel("within-orbit spread / output scale")
        marked = f"; ×: {', '.join(single)}" if single else ""
        axis.set_title(f"{method} (dotted: Monte Carlo noise alone{marked})", fontsize=10)
        axis.legend(fontsize=7)
    png = _save(figure, title, folder / "orbits.png")
    return png, path
