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

from probsym.fields import Field
from probsym.groups import Group, GroupElement, Permutation, split_element
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
    """Per-output errors of one equivariance check; ``str()`` is a table."""

    outputs: list[OutputError]
    group: str
    notes: list[str] = field(default_factory=list)

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
        return "\n".join(lines + self.notes)


def _errors(name: str, actual: Tensor, expected: Tensor, weight: Tensor | None) -> OutputError:
    diff = (actual.double() - expected.double()).abs()
    ref = expected.double().abs()
    if weight is not None:
        diff, ref = diff * weight, ref * weight
    max_abs = float(diff.max()) if diff.numel() else 0.0
    scale = float(ref.max()) if ref.numel() else 0.0
    return OutputError(name, max_abs, max_abs / scale if scale > 0 else max_abs)


def _node_weight(fld: Field, mask: Tensor | None, like: Tensor) -> Tensor | None:
    """1 on real entries, 0 on padded node entries (their values carry no meaning)."""
    if mask is None or fld.node_axes == 0:
        return None
    m = mask.double()
    w = m.reshape(*m.shape, *([1] * (like.ndim - 2)))
    if fld.node_axes == 2:
        w = w * m.reshape(m.shape[0], 1, m.shape[1], *([1] * (like.ndim - 3)))
    return w


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
) -> GroupElement:
    """A random element per batch item that keeps every graph's padding in place."""
    tensors, mask = signature.split(inputs)
    first = next(iter(tensors.values()))
    n = next((x.shape[1] for k, x in tensors.items() if signature.inputs[k].node_axes), None)
    geometric = [x for k, x in tensors.items() if signature.inputs[k].geometry != "scalar"]
    dtype = geometric[0].dtype if geometric else torch.float32
    return group.sample(
        first.shape[0], n=n, mask=mask, generator=generator, device=first.device, dtype=dtype
    )


def transform_inputs(
    g: GroupElement, inputs: Mapping[str, Tensor], signature: Signature
) -> dict[str, Tensor]:
    """``g·x`` for every declared input; the mask is carried over unchanged."""
    tensors, mask = signature.split(inputs)
    out = {k: g.act(x, signature.inputs[k], mask) for k, x in tensors.items()}
    if mask is not None:
        out[signature.mask] = mask
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
    _, mask = signature.split(inputs)
    notes: list[str] = []
    rows: list[OutputError] = []
    with _eval_mode(model), torch.no_grad():
        if symmetrized:
            s = num_samples or model.eval_num_samples
            noise = model.sampler.sample_noise(inputs, s, generator)
            noise_g = model.sampler.transform_noise(g, noise, mask)
            out = model(**inputs, noise=noise, keep_samples=True, num_samples=s)
            out_g = model(**transformed, noise=noise_g, keep_samples=True, num_samples=s)
            if model.sampler.elements_transform_exactly:
                rows += _element_errors(group, g, out.samples.elements, out_g.samples.elements)
            else:
                notes.append(
                    "elements not compared one by one: the sampler returns a whole "
                    "frame, which transforms as a set"
                )
            y, y_g = out.value, out_g.value
        else:
            y, y_g = model(**inputs), model(**transformed)
    fields = signature.output_fields
    g64 = g.map(lambda t: t.double() if t.is_floating_point() else t)
    for name, value in _as_dict(y).items():
        fld = fields[name]
        expected = g64.act(value.double(), fld, mask)
        actual = _as_dict(y_g)[name]
        rows.append(_errors(name or "output", actual, expected, _node_weight(fld, mask, actual)))
    return EquivarianceReport(rows, repr(group), notes)


def _element_errors(
    group: Group, g: GroupElement, h: GroupElement, h_g: GroupElement
) -> list[OutputError]:
    """``h(g·x, g·ε)`` against ``g @ h(x, ε)``: permutations exactly, rotations in float64."""
    s = h.batch_size // g.batch_size
    expected = split_element(group, g.repeat_interleave(s).map(_to_double) @ h.map(_to_double))
    actual = split_element(group, h_g.map(_to_double))
    rows = []
    if isinstance(expected["permutation"], Permutation):
        mismatch = (expected["permutation"].index != actual["permutation"].index).any(dim=1)
        fraction = float(mismatch.double().mean())
        rows.append(OutputError("elements: permutation (fraction differing)", fraction, fraction))
    if expected["spatial"] is not None:
        for t_exp, t_act in zip(
            expected["spatial"].tensors(), actual["spatial"].tensors(), strict=True
        ):
            rows.append(_errors("elements: rotation/translation", t_act, t_exp, None))
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
    with _eval_mode(model), torch.no_grad():
        a = model(**inputs, keep_samples=True, num_samples=num_draws, generator=generator)
        b = model(**transformed, keep_samples=True, num_samples=num_draws, generator=generator)
    g_inverse = g.inverse().map(_to_double)
    z = []
    fields = signature.output_fields
    per_a, per_b = _as_dict(a.per_sample), _as_dict(b.per_sample)
    summary_a = summary_b = 0.0
    for name, fld in fields.items():
        draws_a = per_a[name].double()  # (b, M, ...)
        draws_b = per_b[name].double()
        batch, m = draws_b.shape[:2]
        folded = draws_b.transpose(0, 1).reshape(batch * m, *draws_b.shape[2:])
        g_rep = g_inverse.map(lambda t, m=m: t.repeat(m, *([1] * (t.ndim - 1))))
        mask_rep = None if mask is None else mask.repeat(m, 1)
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
