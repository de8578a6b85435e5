"""Time the S_n relaxation (SoftSort + Sinkhorn, forward + backward) and the learned samplers.

    python benchmarks/relaxation.py            # about 30 s on one core

Prints, per case, the best of several repeats in milliseconds (best-of, not median: these are
short kernels and the minimum is the least noisy estimate on a shared machine), and as its last
line a JSON object with the same numbers. One thread by default (``--threads``).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence

import torch

import probsym
from probsym import fields, groups, samplers
from probsym.groups import split_element
from probsym.groups.permutation import order_by_keys
from probsym.samplers.relax import soft_permutation


def best_ms(step: Callable[[], None], repeats: int = 6, inner: int = 5) -> float:
    """Best over ``repeats`` of the mean time of ``inner`` calls, in milliseconds."""
    for _ in range(2):
        step()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            step()
        best = min(best, (time.perf_counter() - start) / inner * 1e3)
    return best


def relaxation_step(rows: int, nodes: int, masked: bool) -> Callable[[], None]:
    """Forward + backward of ``soft_permutation`` (tau 0.1, 20 iterations)."""
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(rows, nodes, generator=generator, requires_grad=True)
    mask = None
    if masked:
        mask = torch.ones(rows, nodes, dtype=torch.bool)
        mask[:, -2:] = False
    index = order_by_keys(scores.detach(), mask)
    return lambda: soft_permutation(scores, index, mask, 0.1).square().sum().backward()


def sampler_step(group: groups.Group, batch: int, samples: int) -> Callable[[], None]:
    """Forward + backward of ``Learned`` on n-body-like inputs (5 particles), in training mode."""
    signature = probsym.Signature(
        {"pos": fields.node_point, "vel": fields.node_vector, "charge": fields.node},
        fields.node_point,
    )
    sampler = samplers.Learned(group, signature, tau=0.1).train()
    generator = torch.Generator().manual_seed(0)
    inputs = {
        "pos": torch.randn(batch, 5, 3, generator=generator),
        "vel": torch.randn(batch, 5, 3, generator=generator),
        "charge": torch.randn(batch, 5, 1, generator=generator).sign(),
    }
    sampler(inputs, samples)  # materialise lazy layers

    def step() -> None:
        out = sampler(inputs, samples)
        loss = out.regularization
        if out.relaxed is not None:
            loss = loss + out.relaxed.square().sum()
        spatial = split_element(group, out.elements)["spatial"]  # Rigid: E(3) has translations
        (loss + spatial.rotation.square().sum()).backward()

    return step


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Run every case, print a table and the JSON line; return the timings."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cases = {
        "relaxation B=1000 n=5": relaxation_step(1000, 5, False),
        "relaxation B=1000 n=5 masked": relaxation_step(1000, 5, True),
        "relaxation B=400 n=64": relaxation_step(400, 64, False),
        "relaxation B=400 n=64 masked": relaxation_step(400, 64, True),
        "sampler E(3) b=100 N=10": sampler_step(groups.E(3), 100, 10),
        "sampler S_n x E(3) b=100 N=10": sampler_step(groups.Sn() * groups.E(3), 100, 10),
    }
    result = {}
    for name, step in cases.items():
        result[name] = round(best_ms(step), 2)
        print(f"{name:<32} {result[name]:>9.2f} ms (forward + backward, best of 6)", flush=True)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
