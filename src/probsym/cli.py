"""``probsym train|eval|separate|orbits|curves|analyze``: parse options, then call the library.

The option list is generated from :class:`~probsym.train.config.TrainConfig`; ``--config FILE``
reads a TOML file of the same keys and ``--set key=value`` overrides anything.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from probsym.errors import ProbsymError

#: Per-method defaults: a canonicalizer is one deterministic element.
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "canonical": {"samples": 1, "eval_samples": 1, "test_samples": 1}
}


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    from probsym.train.config import TrainConfig, field_types

    types = field_types()
    for f in dataclasses.fields(TrainConfig):
        if f.name == "experiment":
            continue
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        if types[f.name] is bool:
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        else:
            parser.add_argument(
                flag,
                type=types[f.name],
                default=None,
                metavar=f.name.upper(),
                help=f"{help_text} (default {f.default!r})",
            )
    parser.add_argument("--config", type=Path, help="TOML file of options (same keys)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any option (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``probsym`` argument parser."""
    parser = argparse.ArgumentParser(prog="probsym", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train and test one model")
    train.add_argument(
        "experiment",
        help="exp-classify | nbody | pattern | peptides-func | peptides-struct | pcqm-contact",
    )
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    _add_config_options(train)
    evaluate = commands.add_parser("eval", help="re-evaluate a saved run on its test split")
    evaluate.add_argument("run_dir", type=Path)
    evaluate.add_argument(
        "--eval-samples",
        type=_positive_int,
        default=None,
        help="samples per input (default: the run's test samples)",
    )
    evaluate.add_argument(
        "--tol",
        type=_positive_float,
        default=None,
        help="adaptive inference: sample each input until the standard error of every output "
        "entry is at most TOL (Symmetrize.predict); reports the samples spent",
    )
    evaluate.add_argument(
        "--max-samples", type=_positive_int, default=1000, help="cap per input with --tol"
    )
    evaluate.add_argument(
        "--chunk",
        type=_positive_int,
        default=None,
        help="most folded inputs per base call with --tol (default: --eval-chunk, else 1024)",
    )
    evaluate.add_argument("--quiet", action="store_true")
    _add_curves_parser(commands)
    _add_analyze_parser(commands)
    orbit_study = commands.add_parser(
        "orbits", help="automorphic nodes: within-orbit spread of node outputs, PS vs canonical"
    )
    orbit_study.add_argument("--out", type=Path, required=True, help="folder for the CSV and PNG")
    orbit_study.add_argument("--counts", default="1,10,100,1000", help="inference counts k")
    orbit_study.add_argument("--methods", default="ps,canonical,ga", help="comma-separated")
    orbit_study.add_argument("--trials", type=_positive_int, default=5)
    orbit_study.add_argument("--seed", type=int, default=777, help="model seed (paper: 777)")
    orbit_study.add_argument("--quiet", action="store_true")
    separate = commands.add_parser("separate", help="untrained graph-separation counts")
    separate.add_argument("benchmark", choices=["graph8c", "exp"])
    separate.add_argument("--method", default="ps", help="ps | ga | fa | canonical")
    separate.add_argument("--backbone", default="mlp", help="mlp | gin-id")
    separate.add_argument("--seeds", type=int, default=100, help="random models (paper: 100)")
    separate.add_argument("--data-dir", default="", help="folder with the data file")
    separate.add_argument(
        "--mc-samples",
        type=_positive_int,
        default=None,
        help="the sound rule: M per-sample outputs per graph, a pair is separated only when "
        "its distance exceeds --se-factor Monte Carlo standard errors (default: the paper's "
        "rule, one estimate per graph)",
    )
    separate.add_argument(
        "--se-factor", type=_positive_float, default=5.0, help="standard errors (sound rule)"
    )
    separate.add_argument(
        "--control-seeds",
        type=_positive_int,
        default=1,
        help="random models of the isomorphic-copy control (the first ones of the count)",
    )
    separate.add_argument("--out", type=Path, default=None, help="folder for metrics.json")
    separate.add_argument("--quiet", action="store_true")
    return parser


def _add_curves_parser(commands) -> None:
    curves = commands.add_parser(
        "curves", help="train methods x seeds for one time budget; plot metric vs minutes"
    )
    curves.add_argument(
        "experiment",
        help="exp-classify | nbody | pattern | peptides-func | peptides-struct | pcqm-contact",
    )
    curves.add_argument("--methods", default="ps,ga,fa,canonical", help="comma-separated")
    curves.add_argument("--seeds", default="1,2,3", help="comma-separated seeds")
    curves.add_argument("--budget", type=float, required=True, help="training minutes per run")
    curves.add_argument("--out", type=Path, required=True, help="folder of the runs and plots")
    curves.add_argument("--parallel", type=_positive_int, default=2, help="runs at a time")
    curves.add_argument(
        "--train-args", default="", help="extra `probsym train` options, one quoted string"
    )
    curves.add_argument(
        "--milestones", default="", help="minutes of the table (default: budget/4, /2, 1)"
    )
    curves.add_argument(
        "--metric",
        default="",
        help="NAME[:min|max] to draw (default: the experiment's selection metric)",
    )
    curves.add_argument("--clock", choices=["train", "wall", "cpu"], default="train")
    curves.add_argument(
        "--plot-only", action="store_true", help="summarize the runs in --out, train nothing"
    )


def _add_analyze_parser(commands) -> None:
    from probsym.analysis.sampling import DEFAULT_COUNTS

    analyze = commands.add_parser(
        "analyze",
        help="plots of a trained run: permutation entropy, metric and variance vs inference N, "
        "gradient norms (PNG + CSV in RUN_DIR/plots)",
    )
    analyze.add_argument("run_dir", type=Path)
    analyze.add_argument(
        "--compare", type=Path, nargs="+", default=[], metavar="RUN_DIR", help="runs to overlay"
    )
    analyze.add_argument("--out", type=Path, default=None, help="folder (default RUN_DIR/plots)")
    analyze.add_argument(
        "--counts",
        default=",".join(map(str, DEFAULT_COUNTS)),
        help="inference sample counts, comma-separated",
    )
    analyze.add_argument(
        "--max-samples", type=_positive_int, default=None, help="drop counts above this cap"
    )
    analyze.add_argument(
        "--trials",
        type=int,
        default=5,
        help="Monte Carlo trials at the largest count (smaller counts get more); >= 2",
    )
    analyze.add_argument("--split", default="test", help="split of the sample-count studies")
    analyze.add_argument("--entropy-split", default="val", help="split of the checkpoint entropy")
    analyze.add_argument(
        "--entropy-samples", type=_positive_int, default=100, help="samples per input (paper: 100)"
    )
    analyze.add_argument(
        "--limit", type=int, default=0, help="first N inputs of each split (0: all)"
    )
    analyze.add_argument("--batch-size", type=int, default=0, help="0: the run's eval batch size")
    analyze.add_argument(
        "--chunk", type=_positive_int, default=1024, help="most folded inputs per model call"
    )
    analyze.add_argument("--seed", type=int, default=0, help="seed of every draw")
    analyze.add_argument("--weights", choices=["best", "last"], default="best")
    analyze.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    analyze.add_argument("--quiet", action="store_true")


def config_from_args(args: argparse.Namespace):
    """Resolve defaults < experiment < method < --config < options < --set."""
    from probsym import experiments
    from probsym.train import config as cfg

    name = args.experiment
    if name in experiments.SEPARATION:
        raise ProbsymError(
            f"{name} is an untrained separation benchmark: run `probsym separate {name}`"
        )
    if name in experiments.PLANNED:
        raise ProbsymError(f"experiment {name!r} is not implemented in this release")
    experiment = experiments.get(name)
    layers: list[dict[str, Any]] = [{"experiment": name}, dict(experiment.defaults)]
    from_file = cfg.load_toml(args.config) if args.config else {}
    options = {k: getattr(args, k) for k in cfg.field_types() if k != "experiment"}
    options = {k: v for k, v in options.items() if v is not None}
    method = options.get("method", from_file.get("method", "ps"))
    layers += [METHOD_DEFAULTS.get(method, {}), from_file, options]
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ProbsymError(f"--set expects KEY=VALUE, got {item!r}")
        cfg.check_keys({key: None}, "--set")
        overrides[key] = cfg.parse_value(key, value)
    config = cfg.resolve(*layers, overrides)
    if config.backbone not in experiment.backbones:
        raise ProbsymError(
            f"unknown backbone {config.backbone!r} for {name}; choose one of "
            f"{', '.join(experiment.backbones)}"
        )
    from probsym.samplers import METHODS

    methods = (*METHODS, *experiment.extra_methods)
    if config.method not in methods:
        raise ProbsymError(f"unknown method {config.method!r}; choose one of {', '.join(methods)}")
    return experiment, config


def _positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (``--eval-samples 0`` used to mean "the default")."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    """An argparse type: a number > 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def run_train(args: argparse.Namespace) -> dict[str, Any]:
    """``probsym train``."""
    from probsym.train.loop import fit

    experiment, config = config_from_args(args)
    return fit(experiment, config, resume=args.resume)


def run_eval(args: argparse.Namespace) -> dict[str, Any]:
    """``probsym eval``: rebuild the run's model, load its best weights (EMA ones if any), test.

    With ``--tol``, each test input samples adaptively (:meth:`Symmetrize.predict`).
    """
    import torch

    from probsym.train.loop import evaluate, evaluate_adaptive
    from probsym.train.restore import restore

    if args.tol is not None and args.eval_samples is not None:
        raise ProbsymError("--eval-samples and --tol exclude each other (--tol decides N)")
    run = restore(args.run_dir, "best")
    config, model = run.config, run.model
    samples = config.test_num_samples if args.eval_samples is None else args.eval_samples
    torch.manual_seed(config.seed)
    device = next(model.parameters()).device
    if args.tol is not None:
        test = evaluate_adaptive(
            run.experiment,
            model,
            run.data["test"],
            args.tol,
            args.max_samples,
            config.eval_batch_size,
            device,
            args.chunk or config.eval_chunk or None,
            args.quiet,
            "test",
        )
        return {
            "experiment": config.experiment,
            "method": config.method,
            "test_samples": "adaptive",
            "tol": args.tol,
            "max_samples": args.max_samples,
            "weights": "ema" if run.ema else "model",
            "test": test,
        }
    test = evaluate(
        run.experiment,
        model,
        run.data["test"],
        samples,
        config.eval_batch_size,
        device,
        args.quiet,
        "test",
    )
    return {
        "experiment": config.experiment,
        "method": config.method,
        "test_samples": samples,
        "weights": "ema" if run.ema else "model",
        "test": test,
    }


def run_separate(args: argparse.Namespace) -> dict[str, Any]:
    """``probsym separate``: count indistinguishable pairs over untrained random models.

    Beside the count, the isomorphic-copy control under the same rule, with the first
    ``--control-seeds`` models of the count.
    """
    from probsym.experiments import graphsep
    from probsym.train import checkpoint

    if args.mc_samples == 1:
        raise ProbsymError("--mc-samples must be >= 2 (a standard error needs two samples)")
    rule = graphsep.SeparationRule(mc_samples=args.mc_samples, se_factor=args.se_factor)
    graphs = graphsep.load_graphs(args.benchmark, args.data_dir)
    start = time.perf_counter()
    used = [0]

    def report(seed: int, remaining: int) -> None:
        used[0] = seed + 1
        if not args.quiet:
            print(f"seed {seed + 1}/{args.seeds}: {remaining} indistinguishable", file=sys.stderr)

    count = graphsep.indistinguishable_pairs(
        args.benchmark, graphs, args.method, args.backbone, args.seeds, rule, on_seed=report
    )
    copies = graphsep.separated_isomorphic_copies(
        args.benchmark, graphs, args.method, args.backbone, rule=rule, seeds=args.control_seeds
    )
    metrics = {
        "experiment": args.benchmark,
        "method": args.method,
        "backbone": args.backbone,
        "rule": "stderr" if rule.sound else "paper",
        "mc_samples": rule.mc_samples,
        "se_factor": rule.se_factor if rule.sound else None,
        "tolerance": rule.tolerance,
        "seeds": args.seeds,
        "seeds_used": used[0],
        "control_seeds": args.control_seeds,
        "seed": 0,
        "epochs": 0,
        "train_seconds": round(time.perf_counter() - start, 2),
        "graphs": len(graphs),
        "test": {"indistinguishable_pairs": count, "isomorphic_copies_separated": copies},
    }
    if args.out is not None:
        checkpoint.write_json(args.out / "metrics.json", metrics)
    return metrics


def run_orbits(args: argparse.Namespace) -> dict[str, Any]:
    """``probsym orbits``: the automorphic-nodes study (``probsym.analysis.orbits``)."""
    from probsym.analysis import orbits, plots
    from probsym.samplers import METHODS

    counts = _integers(args.counts, "--counts")
    if not counts or min(counts) < 1:
        raise ProbsymError(f"--counts takes integers >= 1, got {args.counts!r}")
    methods = [m for m in args.methods.split(",") if m]
    for method in methods:
        if method not in METHODS:
            raise ProbsymError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    rows = orbits.study(counts, methods, args.trials, args.seed)
    title = "automorphic nodes: untrained paper MLP, spread of node outputs within orbits"
    png, csv_path = plots.orbits_figure(args.out, rows, title)
    return {"plot": str(png), "csv": str(csv_path), "rows": rows}


def _integers(text: str, flag: str) -> tuple[int, ...]:
    """Comma-separated integers of option ``flag``."""
    try:
        return tuple(int(c) for c in text.split(",") if c.strip())
    except ValueError as error:
        raise ProbsymError(f"{flag} takes comma-separated integers, got {text!r}") from error


def _stderr(text: str) -> None:
    print(text, file=sys.stderr)


def run_curves(args: argparse.Namespace) -> dict[str, Any]:
    """``probsym curves``: train (or resume) every method x seed, then the plot and table."""
    import shlex

    from probsym import experiments
    from probsym.experiments import curves

    experiment = experiments.get(args.experiment)
    metric, direction = experiment.select
    if args.metric:
        metric, _, chosen = args.metric.partition(":")
        lower = metric == experiment.select[0] or metric in ("loss", "mse", "mae")
        direction = chosen or ("min" if lower else "max")
        if direction not in ("min", "max"):
            raise ProbsymError(f"--metric takes NAME[:min|max], got {args.metric!r}")
    methods = [m for m in args.methods.split(",") if m]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    runs = curves.plan(methods, seeds, args.out)
    if not args.plot_only:
        curves.run_all(
            args.experiment, runs, args.budget, shlex.split(args.train_args), args.parallel, _stderr
        )
    summary = curves.summarize(runs, metric, direction == "min", args.budget, args.clock)
    title = f"{args.experiment}: {args.budget:g} training minutes per run"
    png, csv_path = curves.write_summary(summary, args.out / "curves.png", title, args.clock)
    marks = [float(m) for m in args.milestones.split(",") if m] or [
        args.budget / 4,
        args.budget / 2,
        args.budget,
    ]
    table = curves.milestone_table(summary, marks)
    (args.out / "curves.md").write_text(table + "\n")
    print(table, file=sys.stderr)
    return {
        "experiment": args.experiment,
        "plot": str(png),
        "csv": str(csv_path),
        "table": str(args.out / "curves.md"),
        "test": {m: list(v) for m, v in summary.test.items()},
    }


def run_analyze(args: argparse.Namespace) -> dict[str, Any]:
    """``probsym analyze``: the studies of :func:`probsym.analysis.analyze`, then a summary."""
    import torch

    from probsym.analysis import AnalyzeOptions, analyze

    if args.threads:
        torch.set_num_threads(args.threads)
    counts = _integers(args.counts, "--counts")
    options = AnalyzeOptions(
        counts=counts,
        max_samples=args.max_samples or 0,
        trials=args.trials,
        split=args.split,
        entropy_split=args.entropy_split,
        entropy_samples=args.entropy_samples,
        limit=args.limit,
        batch_size=args.batch_size,
        chunk=args.chunk,
        seed=args.seed,
        weights=args.weights,
    )

    def report(label: str) -> None:
        if not args.quiet:
            print(f"analyzing {label}", file=sys.stderr)

    summary = analyze(args.run_dir, args.compare, options, args.out, on_run=report)
    return {
        "experiment": summary["experiment"],
        "runs": summary["runs"],
        "files": summary["files"],
        "entropy_checkpoint": summary["entropy_checkpoint"],
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``probsym`` command."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if getattr(args, "quiet", False) else logging.INFO,
        format="%(message)s",
    )
    commands = {
        "train": run_train,
        "eval": run_eval,
        "separate": run_separate,
        "curves": run_curves,
        "analyze": run_analyze,
        "orbits": run_orbits,
    }
    try:
        result = commands[args.command](args)
    except (ProbsymError, ValueError, TypeError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"probsym: error: {message}", file=sys.stderr)
        return 2
    if args.command != "train" or result:  # under torchrun only rank 0 has the metrics
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
