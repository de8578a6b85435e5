"""Sampler overhead: one symmetrized training step vs. the base model's steps on N copies.

    overhead_ratio = t(one step of Symmetrize(f, sampler, N) on a batch of b)
                     / t(N plain steps of f on the same batch of b)             (the issue's ratio)
    folded_ratio   = t(one step of Symmetrize(f, sampler, N) on a batch of b)
                     / t(one plain step of f on the b*N inputs, folded beforehand)   (stricter)

A "step" is forward + backward + Adam step (learning rate 0, so that every copy of the base keeps
the same weights and a step's cost does not drift as training moves the weights). N plain steps
are what running the base on N copies costs without symmetrization; one step on the folded b*N
batch is cheaper still (one optimizer step, larger matrix products), so ``folded_ratio - 1`` is
what the sampler, the group actions and the averaging add over the best possible batched run.
The three steps are timed in interleaved blocks (the order rotates every repeat) so that machine
noise hits all of them; each reported ratio is the median over repeats of the per-repeat ratio.

Settings (``--group Sn*E3``, the default): n-body-like inputs, ``b=100, n=5``: ``pos``
(node_point), ``vel`` (node_vector), ``charge`` (node), output node_point, no mask. With
``--group Sn``: a graph, ``x`` (node, 8 channels) and ``adj`` (pair), padded with a mask, output a
node scalar. Both bases read the same features: per node ``[pos, vel]`` (or ``x``), per pair
``[q_i q_j, |x_i - x_j|²]`` (or ``adj``).

* ``mlp``: 2 hidden layers of 256 (ReLU) over all node and pair features flattened.
* ``transformer``: the paper's n-body transformer (PAPER-NOTES §3.4): n² = 25 pair tokens (node
  features on the diagonal tokens, pair features off it), width 64, 8 pre-norm layers, 4 heads,
  FFN 64, GELU, learned positions; the diagonal tokens are read out per node.

Variants (``--variants``) time library options: ``heads`` (``Learned(noise_at="heads")``: the
sampler's networks once per input), ``heads+chunks`` (plus ``Symmetrize(train_chunk_size=b)``),
``heads+compile`` (plus ``sampler.compile()``; compile time reported), ``heads+antithetic``, and
the input-check and sampler-precision settings.

The paper line (``--paper``, default on for n-body): one PS training step of the paper's
architecture (the library's ``PairTransformer``, k = 20, b = 100) with the default sampler, with
``heads+chunks`` (also under bf16 autocast), and the base alone on the k·b folded rows; the FLOP
floor (``FlopCounterMode`` on one PS step over this CPU's measured float32 matmul throughput); and
the authors' 4.8-5.3 s for the same step (PAPER-NOTES §4.11, 2026-12-01) as the reference.

Usage: ``python benchmarks/overhead.py --quick``. The last line printed is the JSON result.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

import probsym
from probsym import fields, groups, samplers

BENCHMARKS_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = BENCHMARKS_DIR / "results" / "overhead.json"
Method = Literal["ps", "ga", "fa", "canonical"]
BaseName = Literal["mlp", "transformer"]
GROUPS: dict[str, Callable[[], groups.Group]] = {
    "Sn": groups.Sn,
    "O3": lambda: groups.O(3),
    "SO3": lambda: groups.SO(3),
    "E3": lambda: groups.E(3),
    "SE3": lambda: groups.SE(3),
}
REGULARIZATION_WEIGHT = 0.1  # the paper's entropy weight


# ----------------------------------------------------------------------------------------------
# Tasks: what a batch looks like and which features the base models read from it.


@dataclass(frozen=True)
class Task:
    """A synthetic input setting: signature, batch generator and base-model featurizer.

    Args:
        name: ``"nbody"`` or ``"graph"``.
        signature: How every input and the output transform.
        node_dim: Node feature channels produced by ``features``.
        pair_dim: Pair feature channels produced by ``features``.
        out_dim: Output channels per node.
    """

    name: Literal["nbody", "graph"]
    signature: probsym.Signature
    node_dim: int
    pair_dim: int
    out_dim: int

    def make_batch(
        self, batch_size: int, num_nodes: int, generator: torch.Generator, device: torch.device
    ) -> tuple[dict[str, Tensor], Tensor]:
        """Random inputs (plus the mask for graphs) and a regression target.

        Shapes:
            n-body: pos, vel ``(b, n, 3)``, charge ``(b, n, 1)``; target ``(b, n, 3)``.
            graph: x ``(b, n, 8)``, adj ``(b, n, n, 1)``, mask ``(b, n)``; target ``(b, n, 1)``.
        """
        b, n, g = batch_size, num_nodes, generator
        if self.name == "nbody":
            batch = {
                "pos": torch.randn(b, n, 3, generator=g),
                "vel": torch.randn(b, n, 3, generator=g),
                "charge": torch.randint(0, 2, (b, n, 1), generator=g).float() * 2 - 1,
            }
            target = torch.randn(b, n, 3, generator=g)
        else:
            sizes = torch.randint(max(1, n // 2), n + 1, (b,), generator=g)
            mask = torch.arange(n).unsqueeze(0) < sizes.unsqueeze(1)
            upper = (torch.rand(b, n, n, generator=g) < 0.4).triu(1)
            adj = (upper | upper.transpose(1, 2)) & mask.unsqueeze(1) & mask.unsqueeze(2)
            batch = {
                "x": torch.randn(b, n, self.node_dim, generator=g) * mask.unsqueeze(-1),
                "adj": adj.float().unsqueeze(-1),
                "mask": mask,
            }
            target = torch.randn(b, n, self.out_dim, generator=g) * mask.unsqueeze(-1)
        return {k: v.to(device) for k, v in batch.items()}, target.to(device)

    def features(self, inputs: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Node features ``(B, n, node_dim)`` and pair features ``(B, n, n, pair_dim)``."""
        if self.name == "nbody":
            pos, vel, charge = inputs["pos"], inputs["vel"], inputs["charge"]
            node = torch.cat([pos, vel], dim=-1)
            charges = charge[..., 0]
            product = charges.unsqueeze(2) * charges.unsqueeze(1)
            distance = (pos.unsqueeze(2) - pos.unsqueeze(1)).square().sum(-1)
            return node, torch.stack([product, distance], dim=-1)
        return inputs["x"], inputs["adj"]


def nbody_task() -> Task:
    """Charged particles: positions, velocities and charges in, positions out."""
    signature = probsym.Signature(
        {"pos": fields.node_point, "vel": fields.node_vector, "charge": fields.node},
        fields.node_point,
    )
    return Task("nbody", signature, node_dim=6, pair_dim=2, out_dim=3)


def graph_task() -> Task:
    """A padded graph: node features and an adjacency in, one scalar per node out."""
    signature = probsym.Signature({"x": fields.node, "adj": fields.pair}, fields.node)
    return Task("graph", signature, node_dim=8, pair_dim=1, out_dim=1)


# ----------------------------------------------------------------------------------------------
# Base models (deliberately unconstrained: they depend on node order and on the frame).


class FlatMLP(nn.Module):
    """MLP over the flattened node and pair features: ``in -> 256 -> 256 -> n * out``.

    Shapes:
        Inputs as produced by the task, batch ``B``; returns ``(B, n, out_dim)``.
    """

    def __init__(self, task: Task, num_nodes: int, hidden: int = 256, layers: int = 2) -> None:
        super().__init__()
        self.task, self.num_nodes = task, num_nodes
        width = num_nodes * task.node_dim + num_nodes**2 * task.pair_dim
        dims = [width] + [hidden] * layers
        blocks: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            blocks += [nn.Linear(a, b), nn.ReLU()]
        self.net = nn.Sequential(*blocks, nn.Linear(hidden, num_nodes * task.out_dim))

    def forward(self, mask: Tensor | None = None, **inputs: Tensor) -> Tensor:
        """Per-node outputs from one MLP over everything."""
        node, pair = self.task.features(inputs)
        x = torch.cat([node.flatten(1), pair.flatten(1)], dim=1)
        return self.net(x).reshape(x.shape[0], self.num_nodes, self.task.out_dim)


class PairTransformer(nn.Module):
    """The paper's n-body transformer over n² pair tokens (see the module docstring).

    Shapes:
        Inputs as produced by the task, batch ``B``; returns ``(B, n, out_dim)``.
    """

    def __init__(
        self, task: Task, num_nodes: int, dim: int = 64, depth: int = 8, heads: int = 4
    ) -> None:
        super().__init__()
        self.task, self.num_nodes = task, num_nodes
        self.embed = nn.Linear(task.node_dim + task.pair_dim, dim)
        self.position = nn.Parameter(torch.randn(num_nodes**2, dim))
        layer = nn.TransformerEncoderLayer(
            dim,
            heads,
            dim_feedforward=dim,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(
            layer, depth, norm=nn.LayerNorm(dim), enable_nested_tensor=False
        )
        self.head = nn.Sequential(
            nn.ReLU(), nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, task.out_dim)
        )
        self.register_buffer("diagonal", torch.eye(num_nodes, dtype=torch.bool), persistent=False)

    def forward(self, mask: Tensor | None = None, **inputs: Tensor) -> Tensor:
        """Encode the pair tokens and read out the diagonal (node) tokens."""
        node, pair = self.task.features(inputs)
        b, n = node.shape[:2]
        diagonal = self.diagonal.unsqueeze(-1)  # (n, n, 1)
        on_diagonal = torch.diag_embed(node.transpose(1, 2)).permute(0, 2, 3, 1)  # (B, n, n, c)
        tokens = torch.cat([on_diagonal, pair * ~diagonal], dim=-1).reshape(b, n * n, -1)
        padding = None
        if mask is not None:
            padding = ~(mask.unsqueeze(2) & mask.unsqueeze(1)).reshape(b, n * n)
        h = self.encoder(self.embed(tokens) + self.position, src_key_padding_mask=padding)
        h = h.reshape(b, n, n, -1).diagonal(dim1=1, dim2=2).transpose(1, 2)  # (B, n, dim)
        return self.head(h)


def make_base(
    name: BaseName | Literal["paper"], task: Task, num_nodes: int, bf16: bool = False
) -> nn.Module:
    """The base model called ``name`` (``"paper"``: the library's :class:`PairTransformer`,
    under bfloat16 autocast with ``bf16``)."""
    if name == "mlp":
        return FlatMLP(task, num_nodes)
    if name == "paper":
        from probsym.models import PairTransformer as LibraryPairTransformer
        from probsym.models import nbody_pair_features

        if task.name != "nbody":
            raise SystemExit("the paper-architecture line needs the n-body task (a group with d)")
        autocast = torch.bfloat16 if bf16 else None
        return LibraryPairTransformer(
            ("pos", "vel"), nbody_pair_features, num_nodes, 6, 2, residual="pos", autocast=autocast
        )
    return PairTransformer(task, num_nodes)


# ----------------------------------------------------------------------------------------------
# The two training steps and the interleaved timer.


@dataclass(frozen=True)
class Variant:
    """A library configuration to time: ``check_inputs``, the sampler networks' precision, and
    further options of the learned samplers (``noise_at``, ...)."""

    name: str
    check_inputs: bool = True
    sampler_dtype: torch.dtype = torch.float64
    sampler_options: tuple[tuple[str, object], ...] = ()
    train_chunks: bool = False  # Symmetrize(train_chunk_size=b): the base on chunks of b rows
    compile_sampler: bool = False  # sampler.compile() (torch.compile); first steps compile
    base_bf16: bool = False  # the paper base under bfloat16 autocast (PairTransformer(autocast=))


HEADS = (("noise_at", "heads"),)
VARIANTS = {
    "default": Variant("default"),
    "no-check": Variant("no-check", check_inputs=False),
    "sampler-f32": Variant("sampler-f32", sampler_dtype=torch.float32),
    "no-check+sampler-f32": Variant("no-check+sampler-f32", False, torch.float32),
    "heads": Variant("heads", sampler_options=HEADS),
    "heads+antithetic": Variant("heads+antithetic", sampler_options=(*HEADS, ("antithetic", True))),
    "no-check+heads": Variant("no-check+heads", False, sampler_options=HEADS),
    "heads+chunks": Variant("heads+chunks", sampler_options=HEADS, train_chunks=True),
    "heads+compile": Variant("heads+compile", sampler_options=HEADS, compile_sampler=True),
    "heads+chunks+bf16": Variant(
        "heads+chunks+bf16", sampler_options=HEADS, train_chunks=True, base_bf16=True
    ),
}
#: What ``--variants`` runs by default (the others on request).
DEFAULT_VARIANTS = (
    "default",
    "no-check",
    "sampler-f32",
    "no-check+sampler-f32",
    "heads",
    "heads+chunks",
)


def parse_group(spec: str) -> groups.Group:
    """``"Sn*E3"`` -> ``S_n × E(3)``; factors from ``Sn, O3, SO3, E3, SE3`` joined by ``*``."""
    factors = []
    for name in spec.split("*"):
        if name.strip() not in GROUPS:
            raise SystemExit(f"unknown group factor {name!r}; choose from {sorted(GROUPS)}")
        factors.append(GROUPS[name.strip()]())
    group = factors[0]
    for factor in factors[1:]:
        group = group * factor
    return group


def make_sampler(
    method: Method, group: groups.Group, signature: probsym.Signature, variant: Variant
) -> samplers.Sampler:
    """The sampler for ``method``; ``sampler_dtype`` applies to the learned samplers only."""
    kwargs = {}
    if method in ("ps", "canonical"):
        kwargs = {"dtype": variant.sampler_dtype, **dict(variant.sampler_options)}
    return samplers.resolve(method, group, signature, **kwargs)


class Steps(NamedTuple):
    """The two training steps of one case, and the models they train."""

    symmetrized: Callable[[], None]
    plain_steps: Callable[[], None]
    plain_folded: Callable[[], None]
    plain_batch: int
    model: probsym.Symmetrize
    plain_model: nn.Module
    compile_seconds: float = 0.0  # the first two steps, when the sampler is compiled


def build_steps(
    base_name: BaseName,
    variant: Variant,
    args: argparse.Namespace,
    task: Task,
    group: groups.Group,
    device: torch.device,
) -> Steps:
    """The symmetrized and the plain training step (forward, backward, Adam) for one case.

    The plain model is a copy of the base with its own Adam. ``plain_steps`` runs ``s`` steps on
    the batch (``s`` = elements per input); ``plain_folded`` runs one step on the batch repeated
    ``s`` times (b-major), folded once here, outside the timed step.
    """
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    batch, target = task.make_batch(args.batch, args.nodes, generator, device)
    base = make_base(base_name, task, args.nodes, variant.base_bf16).to(device)
    sampler = make_sampler(args.method, group, task.signature, variant).to(device)
    model = probsym.Symmetrize(
        base,
        sampler,
        task.signature,
        num_samples=args.samples,
        check_inputs=variant.check_inputs,
        train_chunk_size=args.batch if variant.train_chunks else None,
    ).train()
    plain = copy.deepcopy(base).train()
    s = sampler.samples_per_input(args.samples)
    folded = {k: v.repeat_interleave(s, dim=0) for k, v in batch.items()}
    folded_target = target.repeat_interleave(s, dim=0)
    with torch.no_grad():  # materialize lazy parameters before the optimizer sees them
        model(**batch)
    # lr = 0: Adam does all of its work but the weights stay put, so both bases keep identical
    # weights and every step costs the same. With lr > 0 the two models drift apart, and step
    # times can drift with them (float32 exp, for one, is ~30x slower for inputs below -87).
    model_optimizer = torch.optim.Adam(model.parameters(), lr=0.0)
    plain_optimizer = torch.optim.Adam(plain.parameters(), lr=0.0)

    def symmetrized_step() -> None:
        model_optimizer.zero_grad(set_to_none=True)
        out = model(**batch)
        loss = nn.functional.mse_loss(out.value, target)
        (loss + REGULARIZATION_WEIGHT * out.regularization).backward()
        model_optimizer.step()

    def plain_step(inputs: dict[str, Tensor], wanted: Tensor) -> None:
        plain_optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(plain(**inputs), wanted)
        loss.backward()
        plain_optimizer.step()

    def plain_steps() -> None:
        for _ in range(s):
            plain_step(batch, target)

    compile_seconds = 0.0
    if variant.compile_sampler:  # compile time counts: report it (train mode, then with grads)
        sampler.compile()
        start = time.perf_counter()
        symmetrized_step()
        symmetrized_step()
        compile_seconds = time.perf_counter() - start
    return Steps(
        symmetrized_step,
        plain_steps,
        lambda: plain_step(folded, folded_target),
        folded_target.shape[0],
        model,
        plain,
        compile_seconds,
    )


class Schedule(NamedTuple):
    """How many steps to run: repeats of two timed blocks, after a warm-up."""

    repeats: int
    block: int
    warmup: int
    min_repeats: int


def schedule(quick: bool, base_name: BaseName) -> Schedule:
    """Repeats and block sizes; ``--quick`` fits 2 minutes on 2 idle cores (see ``--budget``)."""
    if base_name == "mlp":
        return Schedule(15, 5, 10, 6) if quick else Schedule(41, 10, 20, 10)
    return Schedule(9, 2, 4, 4) if quick else Schedule(25, 3, 8, 10)


def interleaved_timing(
    steps: Mapping[str, Callable[[], None]],
    plan: Schedule,
    sync: Callable[[], None],
    budget: float | None = None,
) -> dict[str, list[float]]:
    """Seconds per call of each named step, one value per repeat, timed in rotating blocks.

    Each repeat runs ``block`` calls of every step in turn; the order rotates and reverses from
    repeat to repeat so that slow drifts hit every step alike; the garbage collector is paused
    while timing. With a ``budget`` (seconds, warm-up included), repeats stop early once it is
    spent, after at least ``plan.min_repeats`` (an even number, so that both orders count).
    """
    names = list(steps)
    start = time.perf_counter()
    for _ in range(plan.warmup):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(plan.repeats):
        spent = time.perf_counter() - start
        if budget is not None and r >= plan.min_repeats and r % 2 == 0 and spent > budget:
            break
        shift = (r // 2) % len(names)
        order = names[shift:] + names[:shift]
        if r % 2:
            order.reverse()
        gc.collect()
        gc.disable()
        try:
            for name in order:
                sync()
                begin = time.perf_counter()
                for _ in range(plan.block):
                    steps[name]()
                sync()
                times[name].append((time.perf_counter() - begin) / plan.block)
        finally:
            gc.enable()
    return times


@dataclass
class Timing:
    """Per-step times of one (base, variant) case and their ratio."""

    base: str
    variant: str
    symmetrized_ms: float
    plain_steps_ms: float
    plain_folded_ms: float
    ratio: float
    ratio_q1: float
    ratio_q3: float
    folded_ratio: float
    folded_ratio_q1: float
    folded_ratio_q3: float
    repeats: int
    block: int
    plain_batch: int
    ratios: list[float] = field(repr=False)
    compile_seconds: float = 0.0


def time_case(
    base_name: BaseName,
    variant: Variant,
    args: argparse.Namespace,
    task: Task,
    group: groups.Group,
    device: torch.device,
    budget: float | None,
) -> Timing:
    """Build the three steps for one case and time them interleaved."""
    steps = build_steps(base_name, variant, args, task, group, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    plan = schedule(args.quick, base_name)
    named = {"sym": steps.symmetrized, "steps": steps.plain_steps, "folded": steps.plain_folded}
    times = interleaved_timing(named, plan, sync, budget)
    ratios = [a / b for a, b in zip(times["sym"], times["steps"], strict=True)]
    folded = [a / b for a, b in zip(times["sym"], times["folded"], strict=True)]
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    f1, _, f3 = statistics.quantiles(folded, n=4)
    return Timing(
        base=base_name,
        variant=variant.name,
        symmetrized_ms=1e3 * statistics.median(times["sym"]),
        plain_steps_ms=1e3 * statistics.median(times["steps"]),
        plain_folded_ms=1e3 * statistics.median(times["folded"]),
        ratio=statistics.median(ratios),
        ratio_q1=q1,
        ratio_q3=q3,
        folded_ratio=statistics.median(folded),
        folded_ratio_q1=f1,
        folded_ratio_q3=f3,
        repeats=len(ratios),
        block=plan.block,
        plain_batch=steps.plain_batch,
        ratios=ratios,
        compile_seconds=round(steps.compile_seconds, 1),
    )


# ----------------------------------------------------------------------------------------------
# The paper-architecture line: the authors' n-body setting, against their own step time.

#: The authors' PS training step with this architecture (pair-token transformer, k = 20, batch
#: 100), their code on this machine, 2 threads: PAPER-NOTES §4.11, measured 2026-12-01.
AUTHORS_PS_STEP_SECONDS = (4.8, 5.3)
AUTHORS_SOURCE = "PAPER-NOTES §4.11 (their code, this machine, 2 threads, 2026-12-01)"
PAPER_VARIANTS = ("default", "heads+chunks", "heads+chunks+bf16")


def matmul_throughput(dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """Best-of-``repeats`` GFLOP/s of one ``size``-cubed matrix product (this CPU's ceiling)."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def step_flops(step: Callable[[], None]) -> int:
    """Floating-point operations of one call of ``step`` (``torch.utils.flop_counter``)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def paper_line(
    args: argparse.Namespace, task: Task, group: groups.Group, device: torch.device
) -> dict:
    """PS steps of the paper's architecture, the base alone, and the FLOP floor, in seconds.

    The base is the library's :class:`~probsym.models.PairTransformer` (the authors' model,
    residual on positions) at ``k = --paper-samples`` and ``b = --paper-batch``; "base alone" is
    one plain step on the ``k·b`` folded rows. The floor is the step's FLOPs divided by this
    CPU's float32 matrix-product throughput at the same thread count.
    """
    paper_args = argparse.Namespace(**{**vars(args), "samples": args.paper_samples})
    paper_args.batch = args.paper_batch
    cases = {
        v: build_steps("paper", VARIANTS[v], paper_args, task, group, device)
        for v in PAPER_VARIANTS
    }
    steps = {f"PS, {v}": c.symmetrized for v, c in cases.items()}
    steps["base alone"] = cases["default"].plain_folded
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    plan = Schedule(3, 1, 1, 2) if args.quick else Schedule(7, 1, 2, 4)
    times = {k: statistics.median(v) for k, v in interleaved_timing(steps, plan, sync).items()}
    flops = step_flops(cases["default"].symmetrized)
    fp32 = matmul_throughput(torch.float32)
    bf16 = matmul_throughput(torch.bfloat16)
    low, high = AUTHORS_PS_STEP_SECONDS
    return {
        "samples": args.paper_samples,
        "batch": args.paper_batch,
        "seconds": {k: round(v, 4) for k, v in times.items()},
        "vs_authors": {k: [round(v / high, 3), round(v / low, 3)] for k, v in times.items()},
        "gflop_per_step": round(flops / 1e9, 2),
        "matmul_gflops": {"float32": round(fp32, 1), "bfloat16": round(bf16, 1)},
        "floor_seconds": {
            "float32": round(flops / fp32 / 1e9, 4),
            "bfloat16": round(flops / bf16 / 1e9, 4),
        },
        "authors_seconds": list(AUTHORS_PS_STEP_SECONDS),
        "authors_source": AUTHORS_SOURCE,
    }


def paper_table(line: dict, threads: int) -> str:
    """The paper line as text: seconds per step and the fraction of the authors' step."""
    low, high = line["authors_seconds"]
    lines = [
        f"paper architecture: pair-token transformer, k = {line['samples']}, b = {line['batch']}"
        f" | authors' PS step {low}-{high} s ({line['authors_source']}); ours: {threads} thread(s)"
    ]
    for name, seconds in line["seconds"].items():
        a, b = line["vs_authors"][name]
        lines.append(f"  {name:<22} {seconds:7.3f} s   {a:.2f}-{b:.2f}x the authors'")
    floor, tput = line["floor_seconds"], line["matmul_gflops"]
    lines.append(
        f"  FLOP floor             {floor['float32']:7.3f} s   {line['gflop_per_step']} GFLOP per "
        f"PS step / {tput['float32']} GFLOP/s float32 matmul ({floor['float32'] / high:.2f}-"
        f"{floor['float32'] / low:.2f}x); bf16 {tput['bfloat16']} GFLOP/s: "
        f"{floor['bfloat16']:.3f} s"
    )
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Profiling, reporting, command line.

PROFILE_LABELS = ("symmetrized step", "plain step (folded)", "sampler.forward", "base.forward")


def profile_case(
    base_name: BaseName,
    variant: Variant,
    args: argparse.Namespace,
    task: Task,
    group: groups.Group,
    device: torch.device,
    steps: int = 10,
    rows: int = 25,
) -> str:
    """Where a symmetrized step spends its time: a breakdown, then ops by self CPU time.

    The sampler's and the base's forward passes are labelled; their backward passes are in the
    step's remainder (``symmetrized step - forwards``).
    """
    from torch.profiler import ProfilerActivity, record_function
    from torch.profiler import profile as torch_profile

    case = build_steps(base_name, variant, args, task, group, device)
    _label_forward(case.model.sampler, "sampler.forward")
    _label_forward(case.model.base, "base.forward")
    for _ in range(3):
        case.symmetrized()
        case.plain_folded()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch_profile(activities=activities) as prof:
        for _ in range(steps):
            with record_function("symmetrized step"):
                case.symmetrized()
            with record_function("plain step (folded)"):
                case.plain_folded()
    averages = prof.key_averages()
    totals = {e.key: e.cpu_time_total / 1e3 / steps for e in averages if e.key in PROFILE_LABELS}
    lines = [f"{label:<20} {totals.get(label, 0.0):9.2f} ms per step" for label in PROFILE_LABELS]
    return "\n".join(lines) + "\n" + averages.table(sort_by="self_cpu_time_total", row_limit=rows)


def _label_forward(module: nn.Module, label: str) -> None:
    """Wrap ``module``'s forward in a profiler range named ``label`` (profiled copies only)."""
    from torch.profiler import record_function

    forward = module.forward

    def labelled(*args, **kwargs):
        with record_function(label):
            return forward(*args, **kwargs)

    module.forward = labelled  # type: ignore[method-assign]


def table(timings: Sequence[Timing]) -> str:
    """A readable table of the timings (ms per step; ratios with their interquartile range)."""
    head = (
        f"{'base':<12} {'variant':<19} {'sym ms':>8} {'N plain':>8} {'folded':>8} "
        f"{'ratio':>7} {'IQR':>13} {'folded':>7} {'IQR':>13} {'reps':>4}"
    )
    lines = [head, "-" * len(head)]
    for t in timings:
        lines.append(
            f"{t.base:<12} {t.variant:<19} {t.symmetrized_ms:>8.2f} {t.plain_steps_ms:>8.2f} "
            f"{t.plain_folded_ms:>8.2f} {t.ratio:>7.3f} "
            f"{f'{t.ratio_q1:.3f}-{t.ratio_q3:.3f}':>13} {t.folded_ratio:>7.3f} "
            f"{f'{t.folded_ratio_q1:.3f}-{t.folded_ratio_q3:.3f}':>13} {t.repeats:>4}"
        )
    return "\n".join(lines)


def write_json(result: dict, out: Path) -> None:
    """Write ``result`` to ``out``; a new default results folder is made self-ignoring for git."""
    out.parent.mkdir(parents=True, exist_ok=True)
    ignore = DEFAULT_OUT.parent / ".gitignore"
    if out.parent.resolve() == DEFAULT_OUT.parent and not ignore.exists():
        ignore.write_text("# benchmark output; reference numbers live in benchmarks/README.md\n*\n")
    out.write_text(json.dumps(result, indent=2) + "\n")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (< 2 min, 2 cores)")
    parser.add_argument("--samples", type=int, default=10, help="samples N per input")
    parser.add_argument("--group", default="Sn*E3", help="e.g. Sn*E3 (n-body) or Sn (graph)")
    parser.add_argument("--method", choices=["ps", "ga", "fa", "canonical"], default="ps")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--batch", type=int, default=100, help="batch size b")
    parser.add_argument("--nodes", type=int, default=5, help="nodes per input n")
    parser.add_argument(
        "--bases", nargs="+", choices=["mlp", "transformer"], default=["mlp", "transformer"]
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS),
        default=None,
        help=f"library settings to time (default: {', '.join(DEFAULT_VARIANTS)}; --quick: "
        "default only)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds for all timings; repeats stop early when spent (default: 100 with --quick)",
    )
    parser.add_argument(
        "--paper",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time the paper-architecture line (n-body only; ~1 minute)",
    )
    parser.add_argument("--paper-samples", type=int, default=20, help="k of the paper line")
    parser.add_argument("--paper-batch", type=int, default=100, help="b of the paper line")
    parser.add_argument("--profile", action="store_true", help="print a torch.profiler table")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output file")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark, print the table and (last) the JSON line; return the result."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    group = parse_group(args.group)
    task = nbody_task() if group.dim is not None else graph_task()
    learned = args.method in ("ps", "canonical")
    names = args.variants or (["default"] if args.quick else list(DEFAULT_VARIANTS))
    if not learned:  # sampler options only exist for learned samplers
        names = [n for n in names if not VARIANTS[n].sampler_options]
        names = [n for n in names if "sampler-f32" not in n] or ["default"]
    variants = [VARIANTS[n] for n in names]
    print(
        f"probsym overhead | {group!r} method={args.method} N={args.samples} b={args.batch} "
        f"n={args.nodes} task={task.name} | {args.device} threads={torch.get_num_threads()} "
        f"torch {torch.__version__} | load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    if args.profile:
        for base_name in args.bases:
            print(f"\n== profile: {base_name}, {variants[0].name} ==")
            print(profile_case(base_name, variants[0], args, task, group, device), flush=True)
    if os.getloadavg()[0] > (os.cpu_count() or 1):
        print(
            "warning: the load average exceeds the core count; other processes share the CPU and "
            "the timings will be noisy (with --threads > 1 OpenMP threads also wait on each other)",
            file=sys.stderr,
        )
    budget = args.budget if args.budget is not None else (100.0 if args.quick else None)
    case_budget = None if budget is None else budget / (len(args.bases) * len(variants))
    timings = []
    for base_name in args.bases:
        for variant in variants:
            timings.append(time_case(base_name, variant, args, task, group, device, case_budget))
            t = timings[-1]
            compiled = f" (compile: {t.compile_seconds:.0f} s)" if t.compile_seconds else ""
            print(
                f"  {t.base}/{t.variant}: ratio {t.ratio:.3f}{compiled}",
                file=sys.stderr,
                flush=True,
            )
    print(table(timings))
    result: dict = {}
    if args.paper and task.name == "nbody":
        line = paper_line(args, task, group, device)
        print(paper_table(line, torch.get_num_threads()))
        result["paper"] = line
    for t in timings:
        if t.variant == variants[0].name:
            result[f"overhead_ratio_{t.base}"] = round(t.ratio, 4)
            result[f"folded_ratio_{t.base}"] = round(t.folded_ratio, 4)
    result.update(
        variant=variants[0].name,
        group=repr(group),
        method=args.method,
        num_samples=args.samples,
        batch=args.batch,
        nodes=args.nodes,
        task=task.name,
        quick=args.quick,
        device=args.device,
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        python=platform.python_version(),
        machine=platform.machine(),
        cpu_count=os.cpu_count(),
        load_average=[round(x, 2) for x in os.getloadavg()],  # > cpu_count: numbers are noisy
        timings=[{k: v for k, v in asdict(t).items() if k != "ratios"} for t in timings],
    )
    write_json(result, args.out)
    print(json.dumps(result, separators=(",", ":")))
    return result


if __name__ == "__main__":
    main()
