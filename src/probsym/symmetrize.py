"""The symmetrizer: ``phi(x) = (1/N) Σ_i g_i · f(g_i⁻¹ · x)`` with ``g_i ~ p(g|x)``.

All N samples of a batch go through the base model ``f`` in one batched call: inputs are folded
b-major to ``(b*N, ...)``, transformed by ``g⁻¹`` (gathers for permutations, one bmm for rotations),
fed to ``f``, mapped back by ``g`` and averaged. The base model is untouched and is called with the
declared inputs as keyword tensors (plus the folded mask when the batch carries one).

Padding carries no meaning: padded entries of the inputs are set to zero before the sampler or
the base reads them, padded entries of node outputs are zero, and with an S_n factor the base
sees its real nodes first (a prefix mask), wherever they sit in the input. So the output does
not depend on the padded layout, and NaN or garbage in padded slots never reaches a real value.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from probsym import fields
from probsym.errors import InputError
from probsym.folding import fold_samples, unfold_samples
from probsym.groups.padding import zero_padded
from probsym.samplers import Sampler, Samples
from probsym.signature import Signature


class Symmetrized(NamedTuple):
    """Output of :class:`Symmetrize`.

    Attributes:
        value: The Monte Carlo average (a tensor, or a dict for dict outputs).
        regularization: The sampler's penalty (add ``weight * regularization`` to the loss).
        samples: The sampled elements, when ``keep_samples=True``.
        per_sample: ``g_i · f(g_i⁻¹·x)`` per sample, ``(b, N, ...)``, when ``keep_samples=True``.
    """

    value: Tensor | dict[str, Tensor]
    regularization: Tensor
    samples: Samples | None = None
    per_sample: Tensor | dict[str, Tensor] | None = None


class Symmetrize(nn.Module):
    """Make any model equivariant by averaging it over sampled group elements.

    Args:
        base: Any ``nn.Module`` ``f(**inputs) -> Tensor | dict``; unconstrained.
        sampler: The distribution p(g|x) (:mod:`probsym.samplers`).
        signature: The inputs' and outputs' laws (defaults to the sampler's).
        num_samples: Samples N per input in training mode.
        eval_num_samples: Samples per input in eval mode (defaults to ``num_samples``).
        check_inputs: Validate shapes, masks and finiteness on every call (one device sync).
        eval_chunk_size: In eval mode, call the base on at most this many folded inputs
            (``b * N`` rows) at a time, so evaluation memory is bounded whatever ``N`` and the
            batch are (the average is unchanged; a base whose output for one row depends on the
            other rows of its batch, like BatchNorm in training mode, is not chunked: training
            mode never chunks). ``None``: one call.
        train_chunk_size: In training mode too, call the base on at most this many folded rows
            at a time, all in one autograd graph (the same outputs and gradients as one call),
            for bases whose rows are independent: a base with batch statistics (BatchNorm in
            training mode) would normalise each chunk on its own. On a CPU, chunks of about the
            unfolded batch keep a transformer's activations in cache: the paper's n-body
            transformer then runs ``b*N`` rows faster than ``N`` separate steps on ``b`` rows,
            where one call on all of them is ~5-10% slower (``benchmarks/README.md``).
            ``None`` (the default): one call.

    Shapes:
        Inputs as declared by ``signature``, batch ``b``; outputs likewise.

    Raises:
        ValueError: no signature, a sample count that is not an integer >= 1, or an input or
            mask named like an argument of :meth:`forward` (``RESERVED``).
    """

    def __init__(
        self,
        base: nn.Module,
        sampler: Sampler,
        signature: Signature | None = None,
        num_samples: int = 1,
        eval_num_samples: int | None = None,
        check_inputs: bool = True,
        eval_chunk_size: int | None = None,
        train_chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        signature = signature if signature is not None else sampler.signature
        if signature is None:
            raise ValueError("Symmetrize needs a signature (none given and the sampler has none)")
        num_samples = _check_count("num_samples", num_samples)
        eval_num_samples = num_samples if eval_num_samples is None else eval_num_samples
        eval_num_samples = _check_count("eval_num_samples", eval_num_samples)
        _check_reserved(signature)
        self.base, self.sampler, self.signature = base, sampler, signature
        self.num_samples, self.eval_num_samples = num_samples, eval_num_samples
        self.check_inputs = check_inputs
        self.eval_chunk_size = (
            None if eval_chunk_size is None else _check_count("eval_chunk_size", eval_chunk_size)
        )
        self.train_chunk_size = (
            None if train_chunk_size is None else _check_count("train_chunk_size", train_chunk_size)
        )

    @property
    def group(self):
        """The symmetry group."""
        return self.sampler.group

    def forward(
        self,
        *args: Any,
        noise: Mapping[str, Tensor] | None = None,
        generator: torch.Generator | None = None,
        keep_samples: bool = False,
        num_samples: int | None = None,
        **inputs: Tensor,
    ) -> Symmetrized:
        """Symmetrized prediction for a batch given as keyword tensors: ``model(**batch)``.

        Args:
            *args: Not accepted; only there to catch ``model(batch)`` with a clear message.
            noise: The sampler's noise (as from ``sampler.sample_noise``); drawn when ``None``.
            generator: Random generator for the noise.
            keep_samples: Also return the elements and per-sample outputs.
            num_samples: Override the train/eval sample count for this call.
            **inputs: The declared inputs and the mask.

        Raises:
            InputError: a positional argument (the batch must be passed as ``**batch``), or
                inputs that do not match the signature (see :meth:`Signature.check`).
        """
        sig = self.signature
        if args:
            raise InputError(_positional_message(args))
        if num_samples is None:
            num_samples = self.num_samples if self.training else self.eval_num_samples
        num_samples = _check_count("num_samples", num_samples)
        if self.check_inputs:
            info = sig.check(inputs, self.group)
            batch, num_nodes, dim = info
        else:
            batch = next(iter(inputs.values())).shape[0]
        tensors, mask = sig.split(inputs)
        if mask is not None:  # padding carries no meaning: nothing read from it may reach outputs
            tensors = {k: zero_padded(x, mask, sig.inputs[k].node_axes) for k, x in tensors.items()}
            inputs = {**tensors, sig.mask: mask}
        samples = self.sampler(inputs, num_samples, noise=noise, generator=generator)
        s = self.sampler.samples_per_input(num_samples)
        mask_f = None if mask is None else fold_samples(mask, s)
        g = samples.elements
        g_inverse = g.inverse()
        base_inputs: dict[str, Any] = {
            name: g_inverse.act(fold_samples(x, s), sig.inputs[name], mask_f)
            for name, x in tensors.items()
        }
        mask_base = None
        if mask_f is not None:  # with S_n, the base sees its real nodes first (a prefix mask)
            mask_base = g_inverse.act(mask_f, fields.node) if self.group.acts_on_nodes else mask_f
            base_inputs[sig.mask] = mask_base
        y = self._call_base(base_inputs)
        if self.check_inputs:
            sig.check_outputs(y, batch * s, num_nodes, dim)
        laws = sig.output_fields
        outputs = {"": y} if isinstance(y, Tensor) else dict(y)
        per_sample = {}
        for k, v in outputs.items():
            if mask_base is not None:  # before g acts: 0 * nan in a backward pass is nan too
                v = zero_padded(v, mask_base, laws[k].node_axes)
            v = g.act(v, laws[k], mask_base)
            if mask_f is not None:
                v = zero_padded(v, mask_f, laws[k].node_axes)
            per_sample[k] = unfold_samples(v, s)
        value = {k: v.mean(dim=1) for k, v in per_sample.items()}
        if isinstance(y, Tensor):
            per_sample, value = per_sample[""], value[""]
        if keep_samples:
            return Symmetrized(value, samples.regularization, samples, per_sample)
        return Symmetrized(value, samples.regularization)

    def _call_base(self, base_inputs: dict[str, Tensor]) -> Tensor | dict[str, Tensor]:
        """``f(**base_inputs)``, in chunks of ``eval_chunk_size`` (``train_chunk_size``) rows."""
        rows = next(iter(base_inputs.values())).shape[0]
        chunk = self.train_chunk_size if self.training else self.eval_chunk_size
        if chunk is None or rows <= chunk:
            return self.base(**base_inputs)
        parts = [
            self.base(**{k: v[start : start + chunk] for k, v in base_inputs.items()})
            for start in range(0, rows, chunk)
        ]
        if isinstance(parts[0], Tensor):
            return torch.cat(parts)
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    def extra_repr(self) -> str:  # noqa: D102 - nn.Module hook
        return f"num_samples={self.num_samples}, eval_num_samples={self.eval_num_samples}"


#: Keywords of :meth:`Symmetrize.forward` (and ``self``), which no input or mask may be named.
RESERVED = ("generator", "keep_samples", "noise", "num_samples", "self")


def _check_reserved(signature: Signature) -> None:
    names = [(f"input {n!r}", n) for n in signature.inputs]
    if signature.mask is not None:
        names.append((f"the mask name {signature.mask!r}", signature.mask))
    for label, name in names:
        if name in RESERVED:
            raise ValueError(
                f"{label} collides with an argument of Symmetrize.forward; the reserved names "
                f"are {', '.join(RESERVED)}: rename it in the signature and the base model"
            )


def _positional_message(args: tuple[Any, ...]) -> str:
    if len(args) == 1 and isinstance(args[0], Mapping):
        return (
            f"Symmetrize takes the batch as keyword tensors: call model(**batch), not "
            f"model(batch) (got a positional dict with keys {sorted(map(str, args[0]))})"
        )
    kinds = ", ".join(type(a).__name__ for a in args)
    return (
        f"Symmetrize takes the batch as keyword tensors, e.g. model(**batch) or "
        f"model(x=x, mask=mask); got {len(args)} positional argument(s) ({kinds})"
    )


def _check_count(name: str, value: Any) -> int:
    """``value`` as an int >= 1: what ``operator.index`` takes (NumPy, 0-d tensors), no bools."""
    is_bool = isinstance(value, (bool, np.bool_)) or (
        isinstance(value, Tensor) and value.dtype == torch.bool
    )
    try:
        count = None if is_bool else operator.index(value)
    except TypeError:
        count = None
    if count is None or count < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return count
