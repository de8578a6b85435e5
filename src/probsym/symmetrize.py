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

import math
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


class Prediction(NamedTuple):
    """Output of :meth:`Symmetrize.predict`: a Monte Carlo estimate with its error bars.

    Attributes:
        mean: The average of the per-sample outputs ``g_i · f(g_i⁻¹·x)`` (a tensor, or a dict
            for dict outputs), as :attr:`Symmetrized.value`.
        stderr: Its standard error per entry, ``sqrt(s² / N)`` with ``s²`` the unbiased variance
            of the input's N per-sample outputs (same structure and shapes as ``mean``).
        num_samples: ``(b,)`` long, the samples N each input used.
    """

    mean: Tensor | dict[str, Tensor]
    stderr: Tensor | dict[str, Tensor]
    num_samples: Tensor


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

    @torch.no_grad()
    def predict(
        self,
        *args: Any,
        tol: float = 1e-3,
        max_samples: int = 1000,
        min_samples: int = 10,
        chunk: int | None = None,
        generator: torch.Generator | None = None,
        **inputs: Tensor,
    ) -> Prediction:
        """Adaptive inference: sample each input until its estimate is within ``tol``.

        Each input draws samples until the standard error of **every entry of its output** (all
        keys of a dict output) is at most ``tol`` (absolute, in the output's units), or it has
        ``max_samples``; inputs stop separately, so easy ones stop early. The first check comes
        after ``min_samples``; later rounds draw about the count that the variance estimated so
        far asks for (at least a quarter more), so a typical input needs two or three rounds.
        The base sees at most ``chunk`` folded inputs (batch x samples) per call, whatever
        ``max_samples`` is. Runs in eval mode without gradients (the mode is restored).

        The mean is the plain Monte Carlo average, so it is equivariant whenever the forward
        pass is (in distribution; the stopping rule is invariant). Stopping on an estimated
        variance makes the error bars approximate for small ``min_samples``; a deterministic
        sampler (one element per input whatever N, e.g. ``Identity``) takes one sample and
        reports zero error.

        Args:
            *args: Not accepted (pass the batch as ``**inputs``).
            tol: Target standard error per output entry (``0``: ``max_samples``, except for
                inputs whose outputs do not vary at all).
            max_samples: Cap on the samples per input (>= 2).
            min_samples: Samples before the first check (>= 2; at most ``max_samples``).
            chunk: Most folded rows per base call (default: ``eval_chunk_size``, else 1024).
            generator: Random generator for all the noise.
            **inputs: The declared inputs and the mask, as for :meth:`forward`.

        Shapes:
            As :meth:`forward`; ``num_samples`` is ``(b,)``.

        Raises:
            ValueError: ``tol < 0``, ``max_samples < 2``, ``min_samples < 2`` or ``chunk < 1``.
            InputError: as :meth:`forward`.
        """
        if args:
            raise InputError(_positional_message(args))
        if not tol >= 0:
            raise ValueError(f"tol must be >= 0, got {tol!r}")
        max_samples = _check_count("max_samples", max_samples)
        min_samples = min(_check_count("min_samples", min_samples), max_samples)
        if min_samples < 2:
            raise ValueError(
                f"predict needs at least 2 samples per input for an error bar, got "
                f"max_samples={max_samples}, min_samples={min_samples}"
            )
        if chunk is None:
            chunk = self.eval_chunk_size or 1024
        chunk = _check_count("chunk", chunk)
        was_training = self.training
        self.eval()
        try:
            return self._predict(inputs, tol, max_samples, min_samples, chunk, generator)
        finally:
            self.train(was_training)

    def _predict(
        self,
        inputs: dict[str, Tensor],
        tol: float,
        max_samples: int,
        min_samples: int,
        chunk: int,
        generator: torch.Generator | None,
    ) -> Prediction:
        batch = next(iter(inputs.values())).shape[0]
        device = next(iter(inputs.values())).device
        if self.sampler.samples_per_input(2) == self.sampler.samples_per_input(1):
            out = self(**inputs, num_samples=1, generator=generator)  # one element whatever N
            single = isinstance(out.value, Tensor)
            values = {"": out.value} if single else dict(out.value)
            stderr = {k: torch.zeros_like(v) for k, v in values.items()}
            count = torch.ones(batch, dtype=torch.long, device=device)
            return Prediction(out.value, stderr[""] if single else stderr, count)
        moments: _Moments | None = None
        count = torch.zeros(batch, dtype=torch.long, device=device)
        active = torch.arange(batch, device=device)
        single = True
        while len(active):
            done = int(count[active[0]])  # active inputs have all drawn the same count
            if done == 0:
                step = min_samples
            else:
                needed = float(moments.samples_needed(active, tol).min())  # may be inf
                step = max(needed - done, math.ceil(done / 4), 1)
            step = int(min(step, max_samples - done))
            sub = {k: v[active] for k, v in inputs.items()}
            draws = self.sample_outputs(num_samples=step, chunk=chunk, generator=generator, **sub)
            single = isinstance(draws, Tensor)
            draws = {"": draws} if single else draws
            if moments is None:
                moments = _Moments.like(draws, batch)
            moments.add(active, draws)
            count[active] += step
            finished = count[active] >= max_samples
            finished |= (count[active] >= min_samples) & (moments.stderr_max(active) <= tol)
            active = active[~finished]
        mean, stderr = moments.mean_and_stderr()
        if single:
            mean, stderr = mean[""], stderr[""]
        return Prediction(mean, stderr, count)

    @torch.no_grad()
    def sample_outputs(
        self,
        *args: Any,
        num_samples: int,
        chunk: int | None = None,
        generator: torch.Generator | None = None,
        **inputs: Tensor,
    ) -> Tensor | dict[str, Tensor]:
        """``num_samples`` i.i.d. per-sample outputs ``g_i · f(g_i⁻¹·x)`` per input, without grad.

        Like ``forward(keep_samples=True).per_sample``, but the base sees at most ``chunk``
        folded inputs per call (default: ``eval_chunk_size``, else 1024), so the count is
        bounded by the memory of the outputs only. A sampler that returns a whole frame per
        sample counts the frame's mean as one sample; a deterministic one (one element whatever
        N) repeats its single output. Runs in the model's current mode.

        Shapes:
            Per output: ``(b, num_samples, ...)``.
        """
        if args:
            raise InputError(_positional_message(args))
        num_samples = _check_count("num_samples", num_samples)
        chunk = _check_count("chunk", chunk if chunk is not None else self.eval_chunk_size or 1024)
        batch = next(iter(inputs.values())).shape[0]
        parts: list[dict[str, Tensor]] = []
        items_per_call = min(batch, chunk)
        single = True
        for start in range(0, batch, items_per_call):
            sub = {k: v[start : start + items_per_call] for k, v in inputs.items()}
            k = next(iter(sub.values())).shape[0]
            per_call = max(1, chunk // k)
            pieces: list[dict[str, Tensor]] = []
            for drawn in range(0, num_samples, per_call):
                s = min(per_call, num_samples - drawn)
                out = self(**sub, num_samples=s, keep_samples=True, generator=generator)
                single = isinstance(out.per_sample, Tensor)
                draws = {"": out.per_sample} if single else dict(out.per_sample)
                per_input = self.sampler.samples_per_input(s)
                if per_input % s == 0:  # frames: the mean of each sample's elements
                    draws = {
                        key: v.reshape(k, s, per_input // s, *v.shape[2:]).mean(2)
                        for key, v in draws.items()
                    }
                else:  # one deterministic element: every sample is the same
                    draws = {key: v.expand(k, s, *v.shape[2:]) for key, v in draws.items()}
                pieces.append(draws)
            parts.append({key: torch.cat([p[key] for p in pieces], dim=1) for key in pieces[0]})
        joined = {key: torch.cat([p[key] for p in parts], dim=0) for key in parts[0]}
        return joined[""] if single else joined

    def sample_elements(
        self,
        *args: Any,
        num_samples: int,
        generator: torch.Generator | None = None,
        **inputs: Tensor,
    ) -> Samples:
        """The elements :meth:`forward` would draw for ``inputs``, without calling the base.

        Padded entries are zeroed first, as in :meth:`forward`. For diagnostics of p(g|x) (e.g.
        :func:`probsym.diagnostics.sampled_permutation_entropy`); ``b * N`` elements, b-major.
        """
        if args:
            raise InputError(_positional_message(args))
        num_samples = _check_count("num_samples", num_samples)
        sig = self.signature
        if self.check_inputs:
            sig.check(inputs, self.group)
        tensors, mask = sig.split(inputs)
        if mask is not None:
            tensors = {k: zero_padded(x, mask, sig.inputs[k].node_axes) for k, x in tensors.items()}
            inputs = {**tensors, sig.mask: mask}
        return self.sampler(inputs, num_samples, generator=generator)

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


class _Moments:
    """Per-input counts, means and sums of squared deviations (float64), merged chunk by chunk.

    Chan et al.'s pairwise update, so no catastrophic cancellation: for a new chunk with ``m``
    samples, mean ``μ_b`` and squared-deviation sum ``M_b``, ``δ = μ_b - μ``,
    ``μ ← μ + δ m / (n + m)`` and ``M ← M + M_b + δ² n m / (n + m)``.
    """

    def __init__(
        self,
        means: dict[str, Tensor],
        squares: dict[str, Tensor],
        counts: Tensor,
        dtypes: dict[str, torch.dtype],
    ) -> None:
        self.means, self.squares, self.counts, self.dtypes = means, squares, counts, dtypes

    @classmethod
    def like(cls, draws: dict[str, Tensor], batch: int) -> _Moments:
        """Zero moments for ``batch`` inputs shaped like the per-sample ``draws`` (k, s, ...)."""
        shapes = {k: (batch, *v.shape[2:]) for k, v in draws.items()}
        device = next(iter(draws.values())).device
        means = {k: torch.zeros(s, dtype=torch.float64, device=device) for k, s in shapes.items()}
        squares = {k: torch.zeros_like(v) for k, v in means.items()}
        counts = torch.zeros(batch, dtype=torch.float64, device=device)
        return cls(means, squares, counts, {k: v.dtype for k, v in draws.items()})

    def add(self, items: Tensor, draws: dict[str, Tensor]) -> None:
        """Merge per-sample outputs ``(k, m, ...)`` of the inputs ``items``."""
        m = next(iter(draws.values())).shape[1]
        n = self.counts[items]
        total = n + m
        for key, x in draws.items():
            x = x.double()
            mean_b = x.mean(1)
            squares_b = (x - mean_b.unsqueeze(1)).square().sum(1)
            shape = (len(items),) + (1,) * (mean_b.ndim - 1)
            delta = mean_b - self.means[key][items]
            self.means[key][items] += delta * (m / total).view(shape)
            self.squares[key][items] += squares_b + delta.square() * (n * m / total).view(shape)
        self.counts[items] = total

    def _variances(self, items: Tensor) -> Tensor:
        """``(k,)``: the largest unbiased variance over all entries of each input."""
        n = (self.counts[items] - 1).clamp_min(1)
        worst = [
            (self.squares[k][items].reshape(len(items), -1) / n.unsqueeze(1)).amax(1)
            for k in self.squares
        ]
        return torch.stack(worst).amax(0)

    def stderr_max(self, items: Tensor) -> Tensor:
        """``(k,)``: each input's largest standard error over its entries."""
        return (self._variances(items) / self.counts[items]).sqrt()

    def samples_needed(self, items: Tensor, tol: float) -> Tensor:
        """``(k,)``: the total count at which each input's error would reach ``tol``."""
        if tol == 0:
            return torch.full_like(self.counts[items], math.inf)
        return (self._variances(items) / tol**2).ceil()

    def mean_and_stderr(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """The means and standard errors, in the per-sample outputs' dtype."""
        n = self.counts
        means, errors = {}, {}
        for key, mean in self.means.items():
            shape = (len(n),) + (1,) * (mean.ndim - 1)
            variance = self.squares[key] / (n - 1).clamp_min(1).view(shape)
            means[key] = mean.to(self.dtypes[key])
            errors[key] = (variance / n.view(shape)).sqrt().to(self.dtypes[key])
        return means, errors


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
