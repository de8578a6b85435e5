"""Worst exact-check error over the input zoo, per group × sampler: the table in docs/design.md.

Runs the checker (noise transformed with the input) on fixed-seed zoo batches: every shape kind,
positions only and with vectors, with and without node features, prefix and scattered masks,
scales 1e-6 to 1e6, n from 1 to 64, float32 and float64. It reports, per group and sampler, the
worst error over the items the checker did not flag as a ratio to the test's bound
(``atol + rtol·max|reference|``, 1e-5 in float32 and 1e-10 in float64, grown only for
coincident clouds far from the origin as ``tests/test_input_zoo.py::tolerance`` says: <= 1
passes; a permutation mismatch counts as infinite), for outputs and for sampled elements, and
the fraction of flagged items among generic inputs (random, n >= d + 2) and among all.

Usage: ``python benchmarks/zoo_report.py`` (about 2 minutes on 2 cores). The last line printed is
the JSON result. It reuses the zoo test's model builder (tests/test_input_zoo.py).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from cases import GROUPS, METHODS, group_id  # noqa: E402
from probsym.testing.strategies import ZooInput  # noqa: E402
from test_input_zoo import check, tolerance, zoo_model  # noqa: E402

SIZES = {1: (1, 1), 2: (2, 1), 5: (5, 4, 3), 8: (8, 6, 5), 32: (32, 20), 64: (64,)}


def specs(group, seed: int):
    """Fixed zoo batches that fit ``group``: (spec, generic?) pairs."""
    d = group.dim
    kinds = ["random", "symmetric"] if d is None else ["random", "coincident", "collinear"]
    if d == 3:
        kinds += ["coplanar", "symmetric"]
    elif d == 2:
        kinds += ["symmetric"]
    for kind, n, scale, scatter, extra in itertools.product(
        kinds, SIZES, (1.0, 1e-6, 1e6), (False, True), (False, True)
    ):
        if d is None:
            options = dict(has_scalars=True, has_adjacency=extra)
        else:
            options = dict(has_vectors=extra, has_adjacency=group.acts_on_nodes and extra)
        num_nodes = n + 2 if scatter else n
        seed += 1
        spec = ZooInput(
            kind, SIZES[n], num_nodes, d, scale=scale, scatter=scatter, seed=seed, **options
        )
        generic = kind == "random" and n >= (d or 1) + 2
        yield spec, generic


def measure(group, method: str, dtype: torch.dtype) -> dict:
    worst_output = worst_element = 0.0
    worst_spec = None
    flagged = total = flagged_generic = total_generic = 0
    for spec, generic in specs(group, seed=1000):
        batch = spec.build(dtype)
        model = zoo_model(group, method, spec, batch, output="equivariant", dtype=dtype)
        report = check(model, batch)
        count = len(report.degenerate)
        flagged, total = flagged + count, total + spec.batch_size
        if generic:
            flagged_generic += count
            total_generic += spec.batch_size
        if count == spec.batch_size:
            continue
        tol = tolerance(group, spec, dtype)  # the zoo test's bound (grown for offsets)
        for row in report.outputs:
            # the test's criterion: |error| <= tol + tol * max|reference|, as a ratio
            reference = row.max_abs / row.max_rel if row.max_rel else 0.0
            ratio = row.max_abs / (tol + tol * reference)
            if row.name.startswith("elements: permutation"):
                worst_element = max(worst_element, math.inf if row.max_abs else 0.0)
            elif row.name.startswith("elements"):
                worst_element = max(worst_element, ratio)
            elif ratio > worst_output:
                worst_output, worst_spec = ratio, spec
    return {
        "group": repr(group),
        "method": method,
        "dtype": str(dtype).removeprefix("torch."),
        "worst_output_ratio": worst_output,
        "worst_element_ratio": worst_element,
        "flagged_generic": flagged_generic / max(total_generic, 1),
        "flagged_all": flagged / max(total, 1),
        "worst_input": repr(worst_spec),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", nargs="*", help="group ids such as Sn*E3 (default: all)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    chosen = [g for g in GROUPS if not args.groups or group_id(g) in args.groups]
    rows = []
    print(
        "| group | sampler | float32 worst output / element (÷ bound) | flagged generic / all "
        "| float64 worst output / element (÷ bound) | flagged generic / all |"
    )
    print("|---|---|---|---|---|---|")
    for group in chosen:
        for method in METHODS:
            a = measure(group, method, torch.float32)
            b = measure(group, method, torch.float64)
            rows += [a, b]
            print(
                f"| {group!r} | {method} | {a['worst_output_ratio']:.1e} / "
                f"{a['worst_element_ratio']:.1e} | {a['flagged_generic']:.0%} / "
                f"{a['flagged_all']:.0%} | {b['worst_output_ratio']:.1e} / "
                f"{b['worst_element_ratio']:.1e} | {b['flagged_generic']:.0%} / "
                f"{b['flagged_all']:.0%} |",
                flush=True,
            )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
