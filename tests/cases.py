"""The one list of supported cases (group × sampler), base models, and batches for them.

Every parametrized sampler/equivariance test reads ``CASES``;
``tests/samplers/test_equivariance.py::test_cases_cover_every_group_and_sampler`` fails when a
group class or a sampler method exists without a case here.

Base models are deliberately *not* equivariant: an MLP over all flattened padded inputs, and a
transformer over node tokens with learned per-slot position embeddings and raw coordinates.

Shapes: ``b`` batch · ``n`` nodes (padded) · ``c`` channels · ``d`` space.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

import probsym
from probsym import fields, groups, samplers
from probsym.fields import Field
from probsym.groups import Group
from probsym.samplers.relax import normalize_scores
from probsym.testing.strategies import PaddedGraphs, PointClouds

Output = Literal["invariant", "equivariant"]
BaseKind = Literal["mlp", "transformer"]

S = groups.Sn()
#: Every supported group: each simple group in d = 2 and 3, each product with S_n in one d
#: (2-D and 3-D alternate, which keeps the matrix small; the strategies cover all 17 groups).
GROUPS: list[Group] = [
    S,
    groups.O(2),
    groups.O(3),
    groups.SO(2),
    groups.SO(3),
    groups.E(2),
    groups.E(3),
    groups.SE(2),
    groups.SE(3),
    S * groups.O(3),
    S * groups.SO(2),
    S * groups.E(3),
    S * groups.SE(2),
]
#: Sampler method names (keys of ``probsym.samplers.METHODS``), listed explicitly on purpose.
METHODS: tuple[str, ...] = ("ga", "fa", "canonical", "ps")
OUTPUTS: tuple[Output, ...] = ("invariant", "equivariant")
BASES: tuple[BaseKind, ...] = ("mlp", "transformer")

#: Small learned samplers, so that the whole matrix runs in seconds.
SAMPLER_OPTIONS: dict[str, dict] = {
    "ps": dict(hidden_dim=16, num_layers=2, vector_channels=8),
    "canonical": dict(hidden_dim=16, num_layers=2, vector_channels=8),
}


def group_id(group: Group) -> str:
    """A short test id: ``Sn``, ``O3``, ``Sn*SE2``."""
    return repr(group).replace("S_n", "Sn").replace(" × ", "*").replace("(", "").replace(")", "")


@dataclass(frozen=True)
class Case:
    """One supported (group, sampler) pair."""

    group: Group
    method: str

    @property
    def id(self) -> str:
        """Test id, e.g. ``Sn*E3-ps``."""
        return f"{group_id(self.group)}-{self.method}"

    @property
    def permutation_only(self) -> bool:
        """S_n alone: outputs must agree exactly (bit-identical base inputs)."""
        return self.group.dim is None

    def sampler(self, signature: probsym.Signature, **kwargs) -> samplers.Sampler:
        """The case's sampler, small."""
        options = {**SAMPLER_OPTIONS.get(self.method, {}), **kwargs}
        return samplers.resolve(self.method, self.group, signature, **options)


CASES: list[Case] = [Case(g, m) for g in GROUPS for m in METHODS]
CASE_IDS = [c.id for c in CASES]


def input_fields(group: Group) -> dict[str, Field]:
    """Inputs that fit the group: graphs for S_n, particles for O/E, both for products."""
    graph = {"x": fields.node, "adj": fields.pair}
    particles = {"pos": fields.node_point, "vel": fields.node_vector, "charge": fields.node}
    if group.dim is None:
        return graph
    if group.acts_on_nodes:
        return {**particles, "adj": fields.pair}
    return particles


def output_fields(
    group: Group, output: Output, node_outputs: bool = False
) -> Field | dict[str, Field]:
    """A graph-level invariant, or a dict of equivariant outputs that fit the group.

    Node outputs come with S_n alone, and under products too when ``node_outputs``.
    """
    if output == "invariant":
        return fields.scalar
    out: dict[str, Field] = {}
    if group.dim is not None:
        if group.has_translations:
            out.update(pos=fields.node_point, center=fields.point)
        else:
            out.update(vel=fields.node_vector, axis=fields.vector)
    if group.acts_on_nodes:
        out.update(pair=fields.pair)
        if group.dim is None or node_outputs:
            out.update(node=fields.node)
    return out


def signature(group: Group, output: Output = "equivariant") -> probsym.Signature:
    """The signature of the case's model."""
    return probsym.Signature(input_fields(group), output_fields(group, output))


def make_batch(
    group: Group,
    seed: int = 0,
    sizes: tuple[int, ...] = (5, 4, 3),
    num_nodes: int = 5,
    dtype: torch.dtype = torch.float32,
) -> dict[str, Tensor]:
    """A padded batch for ``signature(group)``: ``sizes`` real nodes per item, padded to ``n``.

    The default has one unpadded and two padded items; no item has fewer than 3 nodes, because
    smaller clouds are degenerate for O(3) (no unique frame, no exact equivariance claim).
    """
    names = input_fields(group)
    batch: dict[str, Tensor] = {}
    if group.dim is not None:
        batch.update(PointClouds(sizes, num_nodes, group.dim, seed).build(dtype))
    graph = PaddedGraphs(sizes, num_nodes, seed + 10_000).build(dtype)
    batch.update({k: v for k, v in graph.items() if k in names})
    batch["mask"] = graph["mask"]  # both recipes put real nodes first
    return batch


def output_shapes(sig: probsym.Signature, n: int, d: int | None) -> dict[str, tuple[int, ...]]:
    """Per-item output shapes (batch axis excluded) for every declared output."""
    shapes = {}
    for name, fld in sig.output_fields.items():
        channels = {(0, "scalar"): 3, (1, "scalar"): 2, (2, "scalar"): 1}.get(
            (fld.node_axes, fld.geometry), 1
        )
        shape = (n,) * fld.node_axes + (channels,)
        shapes[name] = shape if fld.geometry == "scalar" else (*shape[:-1], d)
    return shapes


def _pack(outputs: dict[str, Tensor]) -> Tensor | dict[str, Tensor]:
    return outputs[""] if set(outputs) == {""} else outputs


class FlatMLP(nn.Module):
    """An MLP over every input flattened (padding included): sees node order and raw coordinates."""

    def __init__(self, in_dim: int, shapes: Mapping[str, tuple[int, ...]], hidden: int = 32):
        super().__init__()
        self.shapes = dict(shapes)
        self.sizes = [math.prod(s) for s in self.shapes.values()]
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.Tanh(), nn.Linear(hidden, sum(self.sizes))
        )

    def forward(self, mask: Tensor | None = None, **inputs: Tensor):
        x = torch.cat([inputs[k].flatten(1) for k in sorted(inputs)], dim=1)
        flat = self.net(x).split(self.sizes, dim=1)
        b = x.shape[0]
        return _pack(
            {k: y.reshape(b, *s) for (k, s), y in zip(self.shapes.items(), flat, strict=True)}
        )


class TokenTransformer(nn.Module):
    """A transformer over node tokens with per-slot position embeddings (order-dependent).

    A token is the node's features, its row of every pair input, and every node-free input.
    Graph-level outputs read the masked mean token, node outputs each token, pair outputs a
    bilinear form of two tokens.
    """

    def __init__(
        self,
        token_dim: int,
        sig: probsym.Signature,
        shapes: Mapping[str, tuple[int, ...]],
        max_nodes: int,
        dim: int = 16,
        rank: int = 4,
    ):
        super().__init__()
        self.fields, self.shapes, self.rank = sig.output_fields, dict(shapes), rank
        self.inputs = dict(sig.inputs)
        self.embed = nn.Linear(token_dim, dim)
        self.position = nn.Parameter(torch.randn(max_nodes, dim))
        layer = nn.TransformerEncoderLayer(
            dim, 2, dim_feedforward=2 * dim, dropout=0.0, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.heads = nn.ModuleDict()
        for name, fld in self.fields.items():
            per = math.prod(self.shapes[name][fld.node_axes :])
            self.heads[name or "_"] = nn.Linear(dim, per * (rank if fld.node_axes == 2 else 1))
            if fld.node_axes == 2:
                self.heads[(name or "_") + "_right"] = nn.Linear(dim, per * rank)

    def forward(self, mask: Tensor | None = None, **inputs: Tensor):
        b = next(iter(inputs.values())).shape[0]
        n = next(x.shape[1] for k, x in inputs.items() if self.inputs[k].node_axes)
        parts = []
        for k in sorted(inputs):
            x, axes = inputs[k], self.inputs[k].node_axes
            parts.append(x.reshape(b, 1, -1).expand(b, n, -1) if axes == 0 else x.reshape(b, n, -1))
        h = self.embed(torch.cat(parts, dim=-1)) + self.position[:n]
        padding = None if mask is None else ~mask
        h = self.encoder(h, src_key_padding_mask=padding)
        if mask is not None:  # padded tokens carry no meaning (the fast path may leave them 0/NaN)
            h = h.masked_fill(padding.unsqueeze(-1), 0.0)
            pooled = h.sum(1) / mask.sum(1, keepdim=True).to(h.dtype)
        else:
            pooled = h.mean(1)
        out = {}
        for name, fld in self.fields.items():
            head, shape = self.heads[name or "_"], self.shapes[name]
            if fld.node_axes == 0:
                out[name] = head(pooled).reshape(b, *shape)
            elif fld.node_axes == 1:
                out[name] = head(h).reshape(b, *shape)
            else:
                left = head(h).reshape(b, n, self.rank, -1)
                right = self.heads[(name or "_") + "_right"](h).reshape(b, n, self.rank, -1)
                out[name] = torch.einsum("bikc,bjkc->bijc", left, right).reshape(b, *shape)
        return _pack(out)


def make_base(kind: BaseKind, sig: probsym.Signature, batch: Mapping[str, Tensor]) -> nn.Module:
    """A base model for ``sig`` sized from ``batch`` (same ``n`` and ``d`` later)."""
    tensors, _ = sig.split(batch)
    n = next(x.shape[1] for k, x in tensors.items() if sig.inputs[k].node_axes)
    d = next((x.shape[-1] for k, x in tensors.items() if sig.inputs[k].geometry != "scalar"), None)
    shapes = output_shapes(sig, n, d)
    if kind == "mlp":
        return FlatMLP(sum(x[0].numel() for x in tensors.values()), shapes)
    token_dim = sum(
        x[0].numel() // (n if sig.inputs[k].node_axes else 1) for k, x in tensors.items()
    )
    return TokenTransformer(token_dim, sig, shapes, n)


def make_model(
    case: Case,
    output: Output = "equivariant",
    base: BaseKind = "mlp",
    batch: Mapping[str, Tensor] | None = None,
    num_samples: int = 2,
    **sampler_options,
) -> tuple[probsym.Symmetrize, dict[str, Tensor]]:
    """``Symmetrize(base, sampler)`` for a case, and the batch it was sized for."""
    batch = dict(make_batch(case.group) if batch is None else batch)
    sig = signature(case.group, output)
    model = probsym.Symmetrize(
        make_base(base, sig, batch), case.sampler(sig, **sampler_options), num_samples=num_samples
    )
    return model, batch


def min_gap(scores: Tensor, mask: Tensor | None) -> float:
    """Smallest gap between two real nodes' scores in any row of ``(B, n)`` (inf: < 2 nodes)."""
    if mask is not None:
        scores = scores.masked_fill(~mask, float("inf"))
    ordered = scores.sort(dim=1).values
    gaps = ordered[:, 1:] - ordered[:, :-1]
    gaps = gaps[torch.isfinite(gaps)]
    return float(gaps.min()) if gaps.numel() else math.inf


@contextmanager
def recorded_score_gaps(model: probsym.Symmetrize) -> Iterator[list[float]]:
    """Record the min gap of the normalised learned scores on every sampler call.

    Hard argsort turns a float difference between nearly equal scores into a different
    permutation; tests exclude draws whose gap is at most 1e-4 (STYLE.md, "Ties").
    """
    gaps: list[float] = []
    network = getattr(model.sampler, "scores", None)
    if network is None:
        yield gaps
        return

    def hook(module: nn.Module, args: tuple, output: Tensor) -> None:
        mask = args[2]
        gaps.append(min_gap(normalize_scores(output.squeeze(-1), mask), mask))

    handle = network.register_forward_hook(hook)
    try:
        yield gaps
    finally:
        handle.remove()


def element_rows(report) -> dict[str, list[float]]:
    """The report's rows by name (element rows may repeat: rotation, then translation)."""
    rows: dict[str, list[float]] = {}
    for row in report.outputs:
        rows.setdefault(row.name, []).append(row.max_abs)
    return rows


def assert_valid_element(group: Group, g, mask: Tensor | None, atol: float) -> None:
    """Permutations of each graph's real nodes; orthogonal matrices with the right determinant."""
    group.check_element(g)
    parts = g.parts if isinstance(g, groups.ProductElement) else (g,)
    for factor, part in zip(group.factors, parts, strict=True):
        if isinstance(part, groups.Permutation):
            index = part.index
            n = index.shape[1]
            assert torch.equal(index.sort(dim=1).values, torch.arange(n).expand_as(index))
            if mask is not None:
                slots = torch.arange(n).expand_as(index)
                assert torch.equal(index[~mask], slots[~mask]), "padded slots must be fixed"
                assert bool(torch.gather(mask, 1, index)[mask].all()), "real nodes stay real"
            continue
        r = part.matrix if isinstance(part, groups.Orthogonal) else part.rotation
        d = factor.dim
        assert r.shape[-2:] == (d, d)
        eye = torch.eye(d, dtype=r.dtype)
        assert float((r.transpose(1, 2) @ r - eye).abs().max()) <= atol
        det = torch.linalg.det(r)
        target = torch.ones_like(det) if factor.proper else det.sign()
        assert float((det - target).abs().max()) <= atol
        if isinstance(part, groups.Rigid):
            assert part.translation.shape == (r.shape[0], d)
            assert bool(torch.isfinite(part.translation).all())
