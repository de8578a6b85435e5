"""Charged-particle n-body data ("charged5_initvel1small"): simulator, generator and loader.

The simulator reproduces the EGNN / frame-averaging ``ChargedParticlesSim`` (PAPER-NOTES §4.5,
§7) operation for operation in float64, so that its arrays can equal the published ones bit for
bit. It integrates many simulations at once with elementwise NumPy ops only. The random numbers
come first, simulation by simulation, from a private legacy ``RandomState`` in the original's
order.

Shapes: s simulations · f frames (49) · 3 coordinates · n particles (5). The files hold
``loc``/``vel`` (s, f, 3, n), ``charges`` (s, n, 1) and ``edges`` (s, n, n), all float64. The
integrator keeps a block of b simulations as (3, n, b), with the long axis innermost.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor

from probsym.errors import DataError, MissingDataError, ShapeError, UnknownNameError

__all__ = [
    "DEFAULT_SEED",
    "DEFAULT_SIZES",
    "InitialStates",
    "KINDS",
    "NUM_PARTICLES",
    "NUM_STEPS",
    "SAMPLE_FREQ",
    "SPLITS",
    "SUFFIX",
    "Trajectories",
    "generate_nbody",
    "load_nbody",
    "nbody_path",
    "num_frames",
    "sample_initial_states",
    "simulate",
]

logger = logging.getLogger(__name__)

Split = Literal["train", "valid", "test"]
Kind = Literal["loc", "vel", "edges", "charges"]

SPLITS: tuple[Split, ...] = ("train", "valid", "test")
KINDS: tuple[Kind, ...] = ("loc", "vel", "edges", "charges")
SUFFIX = "charged5_initvel1small"
NUM_PARTICLES = 5
NUM_STEPS = 5000
SAMPLE_FREQ = 100
DEFAULT_SIZES = (10000, 2000, 2000)
DEFAULT_SEED = 43  # the EGNN instructions' seed; the script default (42) does not match the files

# The original's constants, written as it computes them.
_DT = 0.001
_MAX_FORCE = 0.1 / _DT  # == 100.0 in float64
_BOX_SIZE = 5.0
_VEL_NORM = 0.5
_LOC_STD = 1.0 * (NUM_PARTICLES / 5.0) ** (1 / 3)  # == 1.0 exactly
_INTERACTION_STRENGTH = 1.0
_CHARGE_TYPES = np.array([-1.0, 0.0, 1.0])
_CHARGE_PROB = [1.0 / 2, 0, 1.0 / 2]

_BLOCK_SIZE = 1000  # sims per block: big enough to amortise NumPy call overhead, fits in L3
_VELTKAMP = 134217729.0  # 2**27 + 1: splits a 53-bit significand into two 26-bit halves


class InitialStates(NamedTuple):
    """Random draws of ``num_sims`` simulations: charges and the (boxed) initial state.

    Shapes:
        charges: (s, n, 1) in {-1, +1}; loc, vel: (s, 3, n), with every column of vel of norm 0.5.
    """

    charges: np.ndarray
    loc: np.ndarray
    vel: np.ndarray


class Trajectories(NamedTuple):
    """Sampled frames of simulated trajectories.

    ``clipped[s, k]`` says whether a force component of simulation s was clipped at ±100 in one
    of the kicks between frame k - 1 (the initial state for k = 0) and frame k. Without clipping
    the total momentum sum_i v_i is conserved over that interval (unit masses, pairwise forces).

    Shapes:
        loc, vel: (s, f, 3, n); clipped: (s, f) bool.
    """

    loc: np.ndarray
    vel: np.ndarray
    clipped: np.ndarray


def num_frames(num_steps: int = NUM_STEPS, sample_freq: int = SAMPLE_FREQ) -> int:
    """Number of stored frames, f = num_steps / sample_freq - 1 (49 for the standard set).

    Raises:
        ValueError: if sample_freq does not divide num_steps or fewer than one frame results.
    """
    if sample_freq < 1 or num_steps % sample_freq != 0 or num_steps // sample_freq < 2:
        raise ValueError(
            f"num_steps ({num_steps}) must be a multiple of sample_freq ({sample_freq}) and at "
            "least twice as large"
        )
    return num_steps // sample_freq - 1


def sample_initial_states(
    rng: np.random.RandomState,
    num_sims: int,
    num_steps: int = NUM_STEPS,
    sample_freq: int = SAMPLE_FREQ,
) -> InitialStates:
    """Draw charges and initial states of ``num_sims`` simulations in the original's order.

    Per simulation: charges (``choice``), positions ``randn(3, n)``, velocities ``randn(3, n)``,
    then two ``randn(f, 3, n)`` observation-noise draws that are scaled by 0 in the original and
    only advance the stream. Velocities are rescaled to norm 0.5 and the ±5 box is applied once.

    Args:
        rng: legacy generator; ``RandomState(seed)`` continues exactly like ``np.random.seed``.
        num_sims: number of simulations s.
        num_steps: trajectory length T (sets the size of the noise draws).
        sample_freq: steps between stored frames.

    Shapes:
        see :class:`InitialStates`.
    """
    frames, n = num_frames(num_steps, sample_freq), NUM_PARTICLES
    charges = np.empty((num_sims, n, 1))
    loc = np.empty((num_sims, 3, n))
    vel = np.empty((num_sims, 3, n))
    for s in range(num_sims):
        charges[s] = rng.choice(_CHARGE_TYPES, size=(n, 1), p=_CHARGE_PROB)
        loc[s] = rng.randn(3, n) * _LOC_STD
        vel[s] = rng.randn(3, n)
        rng.randn(frames, 3, n)  # noise on loc, times noise_var = 0
        rng.randn(frames, 3, n)  # noise on vel, times noise_var = 0
    # |v| as the original sums it: ((0 + v_x²) + v_y²) + v_z², then v * 0.5 / |v|.
    speed = np.sqrt((vel[:, 0] * vel[:, 0] + vel[:, 1] * vel[:, 1]) + vel[:, 2] * vel[:, 2])
    vel = vel * _VEL_NORM / speed[:, None, :]
    loc, vel = _reflect_into_box(loc, vel)
    return InitialStates(charges, loc, vel)


def _reflect_into_box(loc: np.ndarray, vel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror coordinates beyond ±5 back into the box and point their velocity inwards."""
    assert np.all(np.abs(loc) < 3 * _BOX_SIZE), "initial position beyond the reflectable range"
    over = loc > _BOX_SIZE
    loc = np.where(over, 2 * _BOX_SIZE - loc, loc)
    vel = np.where(over, -np.abs(vel), vel)
    under = loc < -_BOX_SIZE  # tested after the first reflection, as in the original
    loc = np.where(under, -2 * _BOX_SIZE - loc, loc)
    vel = np.where(under, np.abs(vel), vel)
    return loc, vel


def simulate(
    loc: np.ndarray,
    vel: np.ndarray,
    charges: np.ndarray,
    *,
    num_steps: int = NUM_STEPS,
    sample_freq: int = SAMPLE_FREQ,
    num_threads: int | None = None,
    callback: Callable[[int], None] | None = None,
) -> Trajectories:
    """Integrate charged-particle trajectories, vectorised over simulations.

    Force on particle i: F_i = sum_j q_i q_j (x_i - x_j) / |x_i - x_j|^3, each component clipped
    at ±100. One kick v += dt F(x) first, then for t = 1 … T - 1: x += dt v, store (x, v) when
    t % sample_freq == 0, v += dt F(x); dt = 0.001. Frame k holds step (k + 1) · sample_freq.
    Steps after the last stored frame are skipped (they do not change the output).

    Args:
        loc: initial positions.
        vel: initial velocities.
        charges: particle charges.
        num_steps: trajectory length T.
        sample_freq: steps between stored frames.
        num_threads: worker threads over blocks of simulations (NumPy releases the GIL);
            ``None`` uses every CPU. The result does not depend on it.
        callback: called with the number of simulations in each finished block (progress).

    Shapes:
        loc, vel: (s, 3, n); charges: (s, n, 1) -> :class:`Trajectories` with f frames.
    """
    frames = num_frames(num_steps, sample_freq)
    if (
        loc.ndim != 3
        or loc.shape[1] != 3
        or loc.shape[2] < 2
        or vel.shape != loc.shape
        or charges.shape != (loc.shape[0], loc.shape[2], 1)
    ):
        raise ShapeError(
            f"expected loc, vel (s, 3, n) and charges (s, n, 1) with n >= 2; got {loc.shape}, "
            f"{vel.shape}, {charges.shape}"
        )
    num_sims, _, n = loc.shape
    out = Trajectories(
        np.empty((num_sims, frames, 3, n)),
        np.empty((num_sims, frames, 3, n)),
        np.empty((num_sims, frames), dtype=bool),
    )
    # (3, n, s): the simulation axis innermost and contiguous.
    loc_t = np.ascontiguousarray(np.asarray(loc, dtype=np.float64).transpose(1, 2, 0))
    vel_t = np.ascontiguousarray(np.asarray(vel, dtype=np.float64).transpose(1, 2, 0))
    charge_t = np.ascontiguousarray(np.asarray(charges, dtype=np.float64)[..., 0].T)

    def run(start: int) -> None:
        stop = min(start + _BLOCK_SIZE, num_sims)
        block = slice(start, stop)
        _integrate_block(
            loc_t[..., block],
            vel_t[..., block],
            charge_t[:, block],
            sample_freq,
            frames,
            out.loc[block],
            out.vel[block],
            out.clipped[block],
        )
        if callback is not None:
            callback(stop - start)

    starts = range(0, num_sims, _BLOCK_SIZE)
    workers = min(num_threads or _available_cpus(), len(starts))
    if workers <= 1:
        for start in starts:
            run(start)
    else:
        with ThreadPoolExecutor(workers) as pool:
            for future in [pool.submit(run, start) for start in starts]:
                future.result()
    return out


def _available_cpus() -> int:
    """CPUs this process may run on (the affinity mask, where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _integrate_block(
    loc: np.ndarray,
    vel: np.ndarray,
    charge: np.ndarray,
    sample_freq: int,
    frames: int,
    loc_out: np.ndarray,
    vel_out: np.ndarray,
    clipped_out: np.ndarray,
) -> None:
    """Integrate one block of b simulations into the ``*_out`` views; see ``simulate``.

    Each op mirrors one op of the original, in the same order, so that it rounds the same way:
    - r² = (|x_i|² + |x_j|²) - 2 (x_i · x_j), with |x|² summed left to right. The original's Gram
      term x_i · x_j goes through BLAS ``dsyrk``; every FMA-capable x86-64 BLAS (OpenBLAS, MKL)
      computes it as fma(a_z, b_z, fma(a_y, b_y, a_x b_x)). ``_fma`` rounds exactly like that
      with plain float64 ops, so the result does not depend on the BLAS or the CPU.
    - |r|³ = (r²) ** 1.5 with ``np.power`` (libm ``pow``); force size q_i q_j / |r|³.
    - F_i = sum over j = 0 … n-1, left to right, of size_ij (x_i - x_j); size_ii = 0.
    r² and the sizes are symmetric bit for bit, so they are computed once per pair: pair
    (i, i + d mod n) for offsets d = 1 … n // 2, read through strided views of a copy of x that
    is repeated along the particle axis (gathers into preallocated buffers are slow in NumPy).

    Shapes:
        loc, vel: (3, n, b); charge: (n, b); loc_out, vel_out: (b, f, 3, n); clipped_out: (b, f).
    """
    _, n, b = loc.shape
    g = n // 2  # offsets; each unordered pair once for odd n (twice for d = n/2 when n is even)

    def by_offset(rep: np.ndarray) -> np.ndarray:
        """(..., 2n, b) array repeating (..., n, b) -> view (..., g, n, b) of entry i + d."""
        *lead, _, _ = rep.shape
        step = rep.strides[-2]
        view = rep[..., 1:, :]
        return np.lib.stride_tricks.as_strided(
            view, (*lead, g, n, b), (*rep.strides[:-2], step, step, rep.strides[-1])
        )

    # size[j, i] = size[i, j] (flattened to n * n rows) from pair values size_pairs[d - 1, i]:
    # four strided slices per offset, for the entries (i, i + d) and (i + d, i), with and
    # without wrapping around n.
    copy_plan = []
    for d in range(1, g + 1):
        head, tail = slice(0, n - d), slice(n - d, n)
        for first in (d, d * n):  # flat index of (0, d) and of (d, 0)
            copy_plan.append((slice(first, first + (n - d - 1) * (n + 1) + 1, n + 1), d, head))
            wrapped = (n - d) * (n + 1) + first - (n if first == d else n * n)
            copy_plan.append((slice(wrapped, wrapped + (d - 1) * (n + 1) + 1, n + 1), d, tail))

    rep = np.empty((3, 2 * n, b))  # positions, particles repeated: rep[:, n + i] = rep[:, i]
    x = rep[:, :n]
    rep[:, :n] = loc
    v = vel.copy()
    x_i, x_j = x[:, None], by_offset(rep)  # (3, 1, n, b), (3, g, n, b)
    halves = np.empty((2, 2, 2 * n, b))  # Veltkamp hi/lo of the y and z rows of `rep`
    hi_i, lo_i = halves[0, :, None, :n], halves[1, :, None, :n]
    hi_j, lo_j = by_offset(halves[0]), by_offset(halves[1])
    norms, square = np.empty((2, 2 * n, b))
    norm_i, norm_j = norms[None, :n], by_offset(norms)
    charge_rep = np.concatenate([charge, charge])
    pair_charge = charge[None] * by_offset(charge_rep) * _INTERACTION_STRENGTH  # ±1

    gram = np.empty((g, n, b))
    dist = np.empty((g, n, b))
    scratch = np.empty((9, g, n, b))
    flags = np.empty((2, g, n, b), dtype=bool)
    size = np.zeros((n * n, b))  # zero diagonal: no self-force
    size_ji = size.reshape(n, n, b)[None]  # (1, j, i, b)
    summands = np.empty((3, n, n, b))  # (3, j, i, b)
    force = np.empty((3, n, b))
    step = np.empty((3, n, b))
    over = np.empty((3, n, b), dtype=bool)
    clipped = np.zeros(b, dtype=bool)

    def kick() -> None:
        """Apply one kick, v += dt F(x), with each force component clipped at ±100."""
        rep[:, n:] = x
        yz = rep[1:]
        np.multiply(yz, _VELTKAMP, out=halves[0])
        np.subtract(halves[0], yz, out=halves[1])
        np.subtract(halves[0], halves[1], out=halves[0])  # hi = t - (t - a)
        np.subtract(yz, halves[0], out=halves[1])  # lo = a - hi
        np.multiply(x_i[0], x_j[0], out=gram)
        for c in (0, 1):  # the y and z terms
            _fma(
                x_i[c + 1],
                x_j[c + 1],
                gram,
                hi_i[c],
                lo_i[c],
                hi_j[c],
                lo_j[c],
                gram,
                scratch,
                flags,
            )

        np.multiply(rep[0], rep[0], out=norms)  # ((0 + x²) + y²) + z², as NumPy's sum
        np.multiply(rep[1], rep[1], out=square)
        np.add(norms, square, out=norms)
        np.multiply(rep[2], rep[2], out=square)
        np.add(norms, square, out=norms)
        np.add(norm_i, norm_j, out=dist)
        np.multiply(gram, 2.0, out=gram)
        np.subtract(dist, gram, out=dist)
        np.power(dist, 1.5, out=dist)
        np.divide(pair_charge, dist, out=dist)
        for target, d, part in copy_plan:
            size[target] = dist[d - 1, part]

        np.subtract(x[:, None], x[:, :, None], out=summands)  # x_i - x_j at [c, j, i]
        np.multiply(size_ji, summands, out=summands)
        np.add(summands[:, 0], summands[:, 1], out=force)
        for j in range(2, n):
            np.add(force, summands[:, j], out=force)

        np.abs(force, out=step)
        np.greater(step, _MAX_FORCE, out=over)
        clipped[...] |= over.any(axis=(0, 1))
        np.minimum(force, _MAX_FORCE, out=force)
        np.maximum(force, -_MAX_FORCE, out=force)
        np.multiply(force, _DT, out=step)
        np.add(v, step, out=v)

    last = frames * sample_freq
    with np.errstate(divide="ignore"):  # as the original: coincident particles get clipped
        kick()
        for t in range(1, last + 1):
            np.multiply(v, _DT, out=step)
            np.add(x, step, out=x)
            if t % sample_freq == 0:
                k = t // sample_freq - 1
                loc_out[:, k] = x.transpose(2, 0, 1)
                vel_out[:, k] = v.transpose(2, 0, 1)
                clipped_out[:, k] = clipped
                clipped[...] = False
                if t == last:
                    break
            kick()


def _fma(
    a: np.ndarray,
    b: np.ndarray,
    c: np.ndarray,
    a_hi: np.ndarray,
    a_lo: np.ndarray,
    b_hi: np.ndarray,
    b_lo: np.ndarray,
    out: np.ndarray,
    scratch: np.ndarray,
    flags: np.ndarray,
) -> np.ndarray:
    """Fused multiply-add round(a·b + c) with one rounding, from float64 ops that round once each.

    Boldo & Melquiond (2008), "Emulation of FMA and correctly rounded sums: proved algorithms
    using rounding to odd": a·b = u_h + u_l exactly (Dekker), c + u_h = t_h + t_l exactly
    (TwoSum), and then round(t_h + odd(t_l + u_l)), where odd() rounds to odd. ``out`` may alias
    ``c``.

    Shapes:
        all float arrays share one shape; scratch: (9, *shape); flags: (2, *shape) bool.
    """
    uh, ul, th, tl, z, w, e, t, v = scratch
    np.multiply(a, b, out=uh)
    np.multiply(a_hi, b_hi, out=ul)  # ul = ((ah bh - uh) + ah bl + al bh) + al bl
    np.subtract(ul, uh, out=ul)
    np.multiply(a_hi, b_lo, out=t)
    np.add(ul, t, out=ul)
    np.multiply(a_lo, b_hi, out=t)
    np.add(ul, t, out=ul)
    np.multiply(a_lo, b_lo, out=t)
    np.add(ul, t, out=ul)
    np.add(c, uh, out=th)  # tl = (c - (th - z)) + (uh - z), z = th - c
    np.subtract(th, c, out=z)
    np.subtract(th, z, out=t)
    np.subtract(c, t, out=tl)
    np.subtract(uh, z, out=t)
    np.add(tl, t, out=tl)
    np.add(tl, ul, out=v)  # v + e == tl + ul exactly
    np.subtract(v, tl, out=w)
    np.subtract(v, w, out=t)
    np.subtract(tl, t, out=e)
    np.subtract(ul, w, out=t)
    np.add(e, t, out=e)
    # Round v to odd: truncate towards zero (one step down in magnitude when the exact sum lies
    # below |v|), then set the last significand bit when inexact. v == 0 implies e == 0.
    toward_zero, inexact = flags
    np.multiply(e, v, out=t)
    np.less(t, 0.0, out=toward_zero)
    np.not_equal(e, 0.0, out=inexact)
    bits = v.view(np.int64)
    np.subtract(bits, toward_zero, out=bits)
    np.bitwise_or(bits, inexact, out=bits)
    return np.add(th, v, out=out)


def nbody_path(data_dir: str | os.PathLike[str], kind: Kind, split: Split) -> Path:
    """Standard file name, e.g. ``loc_train_charged5_initvel1small.npy`` inside ``data_dir``."""
    if kind not in KINDS:
        raise UnknownNameError("n-body array", kind, KINDS)
    if split not in SPLITS:
        raise UnknownNameError("split", split, SPLITS)
    return Path(data_dir) / f"{kind}_{split}_{SUFFIX}.npy"


def generate_nbody(
    out_dir: str | os.PathLike[str],
    sizes: Sequence[int] = DEFAULT_SIZES,
    seed: int = DEFAULT_SEED,
    progress: bool = True,
    *,
    num_steps: int = NUM_STEPS,
    sample_freq: int = SAMPLE_FREQ,
    num_threads: int | None = None,
) -> Path:
    """Write the n-body data set (train, valid, test) in the standard names; cached.

    One ``RandomState(seed)`` covers the splits in the order train, valid, test, so a run with
    fewer simulations reproduces the first ones of a full run for ``train`` only; ``valid`` and
    ``test`` change with the sizes before them. A split is skipped when its four files exist with
    the expected shapes and its charges equal the ones this seed draws (a cheap check that the
    files come from this seed). Files are written atomically, charges last.

    Args:
        out_dir: directory for the 12 ``.npy`` files; created if absent.
        sizes: simulations per split (train, valid, test).
        seed: seed of the legacy NumPy stream (43 reproduces the public files).
        progress: show a tqdm bar when tqdm is installed and stderr is a terminal.
        num_steps: trajectory length T (5000 in the standard set).
        sample_freq: steps between stored frames (100 in the standard set).
        num_threads: see :func:`simulate`.

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.
    """
    if len(sizes) != len(SPLITS) or any(int(size) < 1 for size in sizes):
        raise ValueError(f"sizes must be three positive counts (train, valid, test); got {sizes}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(seed)
    states = {
        split: sample_initial_states(rng, int(size), num_steps, sample_freq)
        for split, size in zip(SPLITS, sizes, strict=True)
    }
    frames = num_frames(num_steps, sample_freq)
    todo = [split for split in SPLITS if not _is_cached(out, split, states[split].charges, frames)]
    for split in SPLITS:
        if split not in todo:
            logger.info("n-body %s split is up to date in %s", split, out)
    bar = _progress_bar(sum(len(states[split].charges) for split in todo), progress)
    try:
        for split in todo:
            logger.info("simulating %d n-body %s trajectories", len(states[split].charges), split)
            charges, loc, vel = states[split]
            traj = simulate(
                loc,
                vel,
                charges,
                num_steps=num_steps,
                sample_freq=sample_freq,
                num_threads=num_threads,
                callback=None if bar is None else bar.update,
            )
            edges = charges * charges.transpose(0, 2, 1)  # q qᵀ, exactly ±1
            # Charges last: they mark the split as complete for the cache check.
            for kind, array in (("loc", traj.loc), ("vel", traj.vel), ("edges", edges)):
                _save_atomic(nbody_path(out, kind, split), array)
            _save_atomic(nbody_path(out, "charges", split), charges)
    finally:
        if bar is not None:
            bar.close()
    return out


def _is_cached(out: Path, split: Split, charges: np.ndarray, frames: int) -> bool:
    """Whether the split's four files exist, have the expected shapes, and match the charges."""
    s, n = charges.shape[:2]
    expected = {"loc": (s, frames, 3, n), "vel": (s, frames, 3, n), "edges": (s, n, n)}
    expected["charges"] = (s, n, 1)
    for kind, shape in expected.items():
        path = nbody_path(out, kind, split)
        try:
            array = np.load(path, mmap_mode="r")
        except (OSError, ValueError):
            return False
        if array.shape != shape or array.dtype != np.float64:
            return False
        if kind == "charges" and not np.array_equal(array, charges):
            return False
    return True


def _save_atomic(path: Path, array: np.ndarray) -> None:
    """np.save to a temporary file in the same directory, then rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _progress_bar(total: int, enabled: bool) -> Any:
    """A tqdm bar counting simulations, or None (disabled, nothing to do, no tqdm, no terminal)."""
    if not enabled or total == 0 or not sys.stderr.isatty():
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="sim", desc="n-body", file=sys.stderr)


def load_nbody(
    data_dir: str | os.PathLike[str],
    split: Split,
    max_samples: int | None = None,
    input_frame: int = 30,
    target_frame: int = 40,
) -> dict[str, Tensor]:
    """Load one split: the state at ``input_frame`` and the positions at ``target_frame``.

    The LPS / EGNN protocol trains on the first 3,000 training simulations
    (``max_samples=3000``) and evaluates on all 2,000 of valid and test.

    Args:
        data_dir: directory with the standard files (see :func:`generate_nbody`).
        split: ``"train"``, ``"valid"`` or ``"test"``.
        max_samples: keep the first ``max_samples`` simulations; ``None`` keeps all.
        input_frame: frame of the input positions and velocities.
        target_frame: frame of the target positions.

    Returns:
        float32 tensors ``pos``, ``vel``, ``charge`` and ``target``.

    Shapes:
        pos, vel, target: (s, n, 3); charge: (s, n, 1).

    Raises:
        MissingDataError: a file is absent; the message names it.
        DataError: a file is unreadable, has the wrong shape, holds NaN/inf, or has fewer than
            ``max_samples`` simulations or frames than requested.
    """
    paths = {kind: nbody_path(data_dir, kind, split) for kind in ("loc", "vel", "charges")}
    for path in paths.values():
        if not path.is_file():
            raise MissingDataError(
                f"n-body file not found: {path}. Generate the data set with "
                f"probsym.data.nbody.generate_nbody({str(Path(data_dir))!r}) (about one CPU "
                "minute for the standard sizes), or copy the published files there."
            )
    arrays = {kind: _load_array(path) for kind, path in paths.items()}
    loc, vel, charges = arrays["loc"], arrays["vel"], arrays["charges"]
    if loc.ndim != 4 or loc.shape[2] != 3:
        raise DataError(f"{paths['loc']} has shape {loc.shape}; expected (s, frames, 3, n)")
    s, frames, _, n = loc.shape
    if vel.shape != loc.shape:
        raise DataError(f"{paths['vel']} has shape {vel.shape}; expected {loc.shape} like loc")
    if charges.shape != (s, n, 1):
        raise DataError(f"{paths['charges']} has shape {charges.shape}; expected {(s, n, 1)}")
    for name, frame in (("input_frame", input_frame), ("target_frame", target_frame)):
        if not 0 <= frame < frames:
            raise DataError(f"{name}={frame} is out of range: {paths['loc']} has {frames} frames")
    if max_samples is not None:
        if max_samples < 1:
            raise ValueError(f"max_samples must be positive or None; got {max_samples}")
        if max_samples > s:
            raise DataError(
                f"max_samples={max_samples} but {paths['loc']} has only {s} simulations"
            )
        s = max_samples

    def select(array: np.ndarray, frame: int) -> Tensor:  # (s, 3, n) -> (s, n, 3)
        return torch.from_numpy(np.ascontiguousarray(array[:s, frame].transpose(0, 2, 1)))

    out = {
        "pos": select(loc, input_frame),
        "vel": select(vel, input_frame),
        "charge": torch.from_numpy(np.array(charges[:s])),
        "target": select(loc, target_frame),
    }
    sources = {
        "pos": (paths["loc"], input_frame),
        "vel": (paths["vel"], input_frame),
        "charge": (paths["charges"], None),
        "target": (paths["loc"], target_frame),
    }
    for name, tensor in out.items():
        if not torch.isfinite(tensor).all():
            path, frame = sources[name]
            where = "" if frame is None else f" at frame {frame}"
            raise DataError(f"{name} holds NaN or inf: {path}{where}")
    return {name: tensor.float() for name, tensor in out.items()}


def _load_array(path: Path) -> np.ndarray:
    """Memory-map one ``.npy`` file, as a DataError naming it when it is unreadable."""
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read {path}: {error}") from error
    if not np.issubdtype(array.dtype, np.floating):
        raise DataError(f"{path} has dtype {array.dtype}; expected a floating-point type")
    return array
