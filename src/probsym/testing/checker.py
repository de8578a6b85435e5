"""Equivariance checks for any model and any group: a product feature, not only a test helper.

``equivariance_error`` transforms the inputs by a random ``g`` and compares ``f(g·x)`` with
``g·f(x)`` in float64, per output. For a :class:`~probsym.Symmetrize` model it runs the *exact*
check: the sampler's noise is transformed with the input, so the sampled elements transform by ``g``
exactly and the outputs agree up to float error. ``statistical_equivariance_test`` uses fresh noise
on both sides and compares the two output distributions with a z-test.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from probsym import fields
from probsym.fields import Field
from probsym.groups import (
    Group,
    GroupElement,
    Permutation,
    ProductElement,
    Rigid,
    split_element,
)
from probsym.groups.padding import real_entries
from probsym.samplers.relax import slot_mask
from probsym.signature import Signature
from probsym.symmetrize import Symmetrize


@dataclass(frozen=True)
class OutputError:
    """Worst-case error of one output: ``max |a - b|`` and that divided by ``max |b|``."""

    name: str
    max_abs: float
    max_rel: float


@dataclass(frozen=True)
class EquivarianceReport:
    """Per-output errors of one equivariance check; ``str()`` is a table.

    ``degenerate`` lists the batch items for which the sampler reported that its element is not
    determined by the input at working precision (``Samples.degenerate``: no unique frame, or
    node scores tied up to rounding). No exact equivariance is claimed there, so their errors are
    left out of ``outputs`` and ``passed`` judges the other items; the report says so.
    """

    outputs: list[OutputError]
    group: str
    notes: list[str] = field(default_factory=list)
    degenerate: tuple[int, ...] = ()
    batch_size: int | None = None

    @property
    def max_abs(self) -> float:
        """Largest absolute error over outputs."""
        return max(e.max_abs for e in self.outputs)

    @property
    def max_rel(self) -> float:
        """Largest relative error over outputs."""
        return max(e.max_rel for e in self.outputs)

    def passed(self, atol: float = 1e-5, rtol: float = 1e-5) -> bool:
        """Whether every output satisfies ``max_abs <= atol + rtol * max|reference|``."""
        return all(
            e.max_abs <= atol + rtol * (e.max_abs / e.max_rel if e.max_rel else 0.0)
            for e in self.outputs
        )

    def __str__(self) -> str:
        width = max(len(e.name) for e in self.outputs)
        lines = [f"equivariance under {self.group}", f"{'output':<{width}}  max abs    max rel"]
        lines += [f"{e.name:<{width}}  {e.max_abs:.2e}   {e.max_rel:.2e}" for e in self.outputs]
        if self.degenerate:
            shown = ", ".join(str(i) for i in self.degenerate[:20])
            more = " ..." if len(self.degenerate) > 20 else ""
            lines.append(
                f"degenerate inputs (no unique element, excluded): {len(self.degenerate)} of "
                f"{self.batch_size}: items {shown}{more}"
            )
        return "\n".join(lines + self.notes)


def _errors(
    name: str, actual: Tensor, expected: Tensor, weight: Tensor | None, keep: Tensor | None = None
) -> OutputError:
    """Max errors over the entries where ``weight`` is 1 and the rows ``keep`` selects."""
    diff = (actual.double() - expected.double()).abs()
    ref = expected.double().abs()
    if weight is not None:  # select, not multiply: padded entries may hold nan or inf
        weight = weight.expand_as(diff) > 0
        zero = torch.zeros((), dtype=diff.dtype, device=diff.device)
        diff, ref = torch.where(weight, diff, zero), torch.where(weight, ref, zero)
    if keep is not None:
        diff, ref = diff[keep], ref[keep]
    max_abs = float(diff.max()) if diff.numel() else 0.0
    scale = float(ref.max()) if ref.numel() else 0.0
    return OutputError(name, max_abs, max_abs / scale if scale > 0 else max_abs)


def _node_weight(fld: Field, mask: Tensor | None, like: Tensor) -> Tensor | None:
    """1 on real entries, 0 on padded node entries (their values carry no meaning)."""
    if mask is None or fld.node_axes == 0:
        return None
    return real_entries(mask, like.ndim, fld.node_axes).double()


def _as_dict(y: Tensor | Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {"": y} if isinstance(y, Tensor) else dict(y)


@contextlib.contextmanager
def _eval_mode(model: object) -> Iterator[None]:
    if not isinstance(model, nn.Module):
        yield
        return
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def random_element(
    group: Group,
    inputs: Mapping[str, Tensor],
    signature: Signature,
    generator: torch.Generator | None = None,
    move_padding: bool = True,
) -> GroupElement:
    """A random element per batch item.

    Permutations are uniform over all ``n`` slots, so they move padding too (the mask moves with
    the input in :func:`transform_inputs`): a symmetrized model must not depend on where the real
    nodes sit. ``move_padding=False`` keeps every graph's padded slots fixed.
    """
    tensors, mask = signature.split(inputs)
    first = next(iter(tensors.values()))
    n = next((x.shape[1] for k, x in tensors.items() if signature.inputs[k].node_axes), None)
    geometric = [x for k, x in tensors.items() if signature.inputs[k].geometry != "scalar"]
    dtype = geometric[0].dtype if geometric else torch.float32
    if not dtype.is_floating_point:
        dtype = torch.float32
    g = group.sample(
        first.shape[0],
        n=n,
        mask=None if move_padding else mask,
        generator=generator,
        device=first.device,
        dtype=dtype,
    )
    return _scale_translations(g, group, tensors, signature, mask)


def _scale_translations(
    g: GroupElement,
    group: Group,
    tensors: Mapping[str, Tensor],
    signature: Signature,
    mask: Tensor | None,
) -> GroupElement:
    """Translations at each item's own scale (RMS of its points), not N(0, 1).

    A cloud of size 1e-6 moved by 1 keeps only 1e-7 / 1e-6 of its shape in float32: the test
    would measure the rounding of the move, not the model.
    """
    if not group.has_translations:
        return g
    name = next((k for k, x in tensors.items() if signature.inputs[k].geometry == "point"), None)
    if name is None or not tensors[name].is_floating_point():
        return g
    x = tensors[name].double()
    squares = x.square().sum(-1)  # (b, [n,] *c)
    if mask is not None and signature.inputs[name].node_axes:
        squares = torch.where(real_entries(mask, squares.ndim, 1), squares, 0.0)
        count = mask.sum(1).double() * (squares[0, 0].numel())
    else:
        count = torch.full(
            (x.shape[0],), float(squares[0].numel()), dtype=torch.float64, device=x.device
        )
    scale = torch.sqrt(squares.flatten(1).sum(1) / count.clamp_min(1))
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))

    def rescale(element: GroupElement) -> GroupElement:
        if isinstance(element, Rigid):
            t = element.translation * scale.to(element.translation).unsqueeze(1)
            return Rigid(element.rotation, t)
        if isinstance(element, ProductElement):
            return ProductElement(tuple(rescale(part) for part in element.parts))
        return element

    return rescale(g)


def transform_inputs(
    g: GroupElement, inputs: Mapping[str, Tensor], signature: Signature
) -> dict[str, Tensor]:
    """``g·x`` for every declared input, and the mask moved with the nodes."""
    tensors, mask = signature.split(inputs)
    out = {k: g.act(x, signature.inputs[k], mask) for k, x in tensors.items()}
    if mask is not None:
        out[signature.mask] = g.act(mask, fields.node)
    return out


def equivariance_error(
    model: Callable[..., object],
    inputs: Mapping[str, Tensor],
    g: GroupElement | None = None,
    *,
    signature: Signature | None = None,
    group: Group | None = None,
    generator: torch.Generator | None = None,
    num_samples: int | None = None,
) -> EquivarianceReport:
    """Compare ``model(g·x)`` with ``g·model(x)`` for a random (or given) ``g``.

    A :class:`~probsym.Symmetrize` model is checked exactly: its sampler's noise is drawn once,
    transformed with ``g`` for the second call, and the sampled elements are compared too
    (permutations as integers). It runs in eval mode. Any other callable needs ``signature`` and
    ``group`` and is treated as deterministic.

    Returns:
        An :class:`EquivarianceReport` with max absolute and relative error per output.
    """
    symmetrized = isinstance(model, Symmetrize)
    if symmetrized:
        signature = signature or model.signature
        group = group or model.group
    if signature is None or group is None:
        raise ValueError("equivariance_error needs signature= and group= for a plain model")
    if g is None:
        g = random_element(group, inputs, signature, generator)
    group.check_element(g)
    transformed = transform_inputs(g, inputs, signature)
    tensors, mask = signature.split(inputs)
    mask_g = transformed.get(signature.mask) if mask is not None else None
    notes: list[str] = []
    rows: list[OutputError] = []
    batch = next(iter(tensors.values())).shape[0]
    keep = torch.ones(batch, dtype=torch.bool)
    with _eval_mode(model), torch.no_grad():
        if symmetrized:
            s = num_samples or model.eval_num_samples
            noise = model.sampler.sample_noise(inputs, s, generator)
            noise_g = model.sampler.transform_noise(g, noise, mask)
            out = model(**inputs, noise=noise, keep_samples=True, num_samples=s)
            out_g = model(**transformed, noise=noise_g, keep_samples=True, num_samples=s)
            for samples in (out.samples, out_g.samples):
                if samples.degenerate is not None:
                    flags = samples.degenerate.reshape(batch, -1).any(dim=1).cpu()
                    keep &= ~flags
            structural = int((~keep).sum())
            if group.dim is not None:
                keep &= ~rounding_sensitive(model, inputs, s, noise, out.samples, generator)
                sensitive = batch - structural - int(keep.sum())
                if sensitive:
                    notes.append(
                        f"{structural} degenerate as flagged by the sampler, {sensitive} whose "
                        f"element moves under rounding-level perturbations of the input"
                    )
            keep_device = keep.to(out.samples.regularization.device)
            if model.sampler.elements_transform_exactly:
                rows += _element_errors(
                    group, g, out.samples.elements, out_g.samples.elements, keep_device, mask
                )
            else:
                notes.append(
                    "elements not compared one by one: the sampler returns a whole "
                    "frame, which transforms as a set"
                )
            y, y_g = out.value, out_g.value
        else:
            y, y_g = model(**inputs), model(**transformed)
            keep_device = None
    laws = signature.output_fields
    g64 = g.map(lambda t: t.double() if t.is_floating_point() else t)
    for name, value in _as_dict(y).items():
        fld = laws[name]
        expected = g64.act(value.double(), fld, mask)
        actual = _as_dict(y_g)[name]
        weight = _node_weight(fld, mask_g, actual)
        rows.append(_errors(name or "output", actual, expected, weight, keep_device))
    degenerate = tuple(int(i) for i in (~keep).nonzero().flatten())
    return EquivarianceReport(rows, repr(group), notes, degenerate, batch)


def rounding_sensitive(
    model: Symmetrize,
    inputs: Mapping[str, Tensor],
    num_samples: int,
    noise: Mapping[str, Tensor],
    samples,
    generator: torch.Generator | None = None,
    trials: int = 3,
) -> Tensor:
    """Items whose sampled elements change when the input moves by its own rounding error.

    A rotated input ``g·x`` is exact only to about ``eps·|x|`` (float32: 1e-7). Where the
    sampler's element is that sensitive (near-symmetric clouds, near-tied node scores), no exact
    comparison can hold at working precision. Each vector or point entry is perturbed by
    ``4·eps/sqrt(d)`` times its row norm (Gaussian), with the same noise; an item is flagged when
    a permutation part changes or a rotation/translation entry moves by more than ``1e-5``
    (float32) / ``1e-10`` (float64), relative to the element's scale: half of what the exact
    check allows an element (atol + rtol), because a random perturbation can underestimate the
    worst case; ``trials`` independent perturbations are tried.

    Shapes:
        returns ``(b,)`` bool (on the CPU).
    """
    signature = model.signature
    tensors, _ = signature.split(inputs)
    batch = next(iter(tensors.values())).shape[0]
    flags = torch.zeros(batch, dtype=torch.bool)
    geometric = {
        name: x
        for name, x in tensors.items()
        if signature.inputs[name].geometry != "scalar" and x.is_floating_point()
    }
    if not geometric:
        return flags
    double = all(x.dtype == torch.float64 for x in geometric.values())
    tolerance = 1e-10 if double else 1e-5
    parts_a = split_element(model.group, samples.elements)
    for _ in range(trials):
        perturbed = dict(inputs)
        for name, x in geometric.items():
            eps = torch.finfo(x.dtype).eps
            size = x.norm(dim=-1, keepdim=True) / math.sqrt(x.shape[-1])
            step = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
            perturbed[name] = x + 4 * eps * size * step
        out = model(**perturbed, noise=noise, keep_samples=True, num_samples=num_samples)
        parts_b = split_element(model.group, out.samples.elements)
        if isinstance(parts_a["permutation"], Permutation):
            # same input layout on both sides: padded slots come out in the same order too
            changed = (parts_a["permutation"].index != parts_b["permutation"].index).any(dim=1)
            flags |= changed.reshape(batch, -1).any(dim=1).cpu()
        if parts_a["spatial"] is not None:
            pairs = zip(parts_a["spatial"].tensors(), parts_b["spatial"].tensors(), strict=True)
            for a, b in pairs:
                a, b = a.double(), b.double()
                scale = a.flatten(1).abs().max(dim=1).values.clamp_min(1.0)
                change = (a - b).flatten(1).abs().max(dim=1).values / scale
                flags |= (change > tolerance).reshape(batch, -1).any(dim=1).cpu()
    return flags


def _element_errors(
    group: Group,
    g: GroupElement,
    h: GroupElement,
    h_g: GroupElement,
    keep: Tensor,
    mask: Tensor | None,
) -> list[OutputError]:
    """``h(g·x, g·ε)`` against ``g @ h(x, ε)``: permutations exactly, rotations in float64.

    Permutations are compared on the slots that hold real nodes (the first ``n_i``): the order
    of padded nodes behind them moves no data.
    """
    s = h.batch_size // g.batch_size
    expected = split_element(group, g.repeat_interleave(s).map(_to_double) @ h.map(_to_double))
    actual = split_element(group, h_g.map(_to_double))
    keep_rows = keep.repeat_interleave(s)
    rows = []
    if isinstance(expected["permutation"], Permutation):
        differ = expected["permutation"].index != actual["permutation"].index
        if mask is not None:
            differ = differ & slot_mask(mask.repeat_interleave(s, dim=0).to(differ.device))
        mismatch = differ.any(dim=1)[keep_rows]
        fraction = float(mismatch.double().mean()) if mismatch.numel() else 0.0
        rows.append(OutputError("elements: permutation (fraction differing)", fraction, fraction))
    if expected["spatial"] is not None:
        for t_exp, t_act in zip(
            expected["spatial"].tensors(), actual["spatial"].tensors(), strict=True
        ):
            rows.append(_errors("elements: rotation/translation", t_act, t_exp, None, keep_rows))
    return rows


def _to_double(t: Tensor) -> Tensor:
    return t.double() if t.is_floating_point() else t


def assert_equivariant(
    model: Callable[..., object],
    inputs: Mapping[str, Tensor],
    atol: float = 1e-5,
    rtol: float = 1e-5,
    **kwargs,
) -> EquivarianceReport:
    """Raise ``AssertionError`` (with the report) when the error exceeds the tolerance."""
    report = equivariance_error(model, inputs, **kwargs)
    if not report.passed(atol, rtol):
        raise AssertionError(f"not equivariant (atol={atol}, rtol={rtol}):\n{report}")
    return report


@dataclass(frozen=True)
class StatisticalReport:
    """z-scores comparing ``g⁻¹·phi(g·x)`` with ``phi(x)`` over fresh noise, one per batch item."""

    z: list[float]
    num_draws: int

    @property
    def max_abs_z(self) -> float:
        """Largest ``|z|``."""
        return max(abs(v) for v in self.z)


def statistical_equivariance_test(
    model: Symmetrize,
    inputs: Mapping[str, Tensor],
    g: GroupElement | None = None,
    num_draws: int = 2000,
    generator: torch.Generator | None = None,
) -> StatisticalReport:
    """Two-sample z-test that ``phi(g·x)`` and ``g·phi(x)`` have the same distribution.

    Each side draws ``num_draws`` independent single-sample estimates with fresh noise; a fixed
    random projection of the (pulled back) outputs gives one scalar per draw. Under equivariance
    ``|z|`` is standard normal; a biased sampler gives large ``|z|``.
    """
    signature, group = model.signature, model.group
    if g is None:
        g = random_element(group, inputs, signature, generator)
    transformed = transform_inputs(g, inputs, signature)
    _, mask = signature.split(inputs)
    mask_g = None if mask is None else transformed[signature.mask]  # the layout of φ(g·x)
    with _eval_mode(model), torch.no_grad():
        a = model(**inputs, keep_samples=True, num_samples=num_draws, generator=generator)
        b = model(**transformed, keep_samples=True, num_samples=num_draws, generator=generator)
    g_inverse = g.inverse().map(_to_double)
    z = []
    laws = signature.output_fields
    per_a, per_b = _as_dict(a.per_sample), _as_dict(b.per_sample)
    summary_a = summary_b = 0.0
    for name, fld in laws.items():
        draws_a = per_a[name].double()  # (b, M, ...)
        draws_b = per_b[name].double()
        batch, m = draws_b.shape[:2]
        folded = draws_b.transpose(0, 1).reshape(batch * m, *draws_b.shape[2:])
        g_rep = g_inverse.map(lambda t, m=m: t.repeat(m, *([1] * (t.ndim - 1))))
        mask_rep = None if mask_g is None else mask_g.repeat(m, 1)
        pulled = g_rep.act(folded, fld, mask_rep).reshape(m, batch, *draws_b.shape[2:])
        pulled = pulled.transpose(0, 1)
        weight = _node_weight(fld, mask, draws_a[:, 0])
        projection = (
            torch.randn(
                draws_a.shape[2:], generator=generator, dtype=torch.float64, device=draws_a.device
            )
            if generator is not None
            else torch.randn(draws_a.shape[2:], dtype=torch.float64, device=draws_a.device)
        )
        if weight is not None:
            projection = projection * weight.unsqueeze(1)
        dims = tuple(range(2, draws_a.ndim))
        summary_a = summary_a + (draws_a * projection).sum(dims) if dims else draws_a * projection
        summary_b = summary_b + (pulled * projection).sum(dims) if dims else pulled * projection
    for i in range(summary_a.shape[0]):
        xa, xb = summary_a[i], summary_b[i]
        se = math.sqrt(float(xa.var() + xb.var()) / xa.numel())
        diff = float(xa.mean() - xb.mean())
        z.append(diff / se if se > 0 else (0.0 if diff == 0 else math.inf))
    return StatisticalReport(z, num_draws)
