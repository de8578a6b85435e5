"""Charged-particle n-body data: draws, physics, bit-exactness, files and loader."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from probsym.data import nbody
from probsym.errors import DataError, MissingDataError, ShapeError, UnknownNameError

# Short trajectories keep the tests fast: 1000 steps sampled every 100 -> 9 frames.
SHORT = {"num_steps": 1000, "sample_freq": 100}
FRAMES = 9
SMALL_SIZES = (6, 3, 3)


def exact_fma(a: float, b: float, c: float) -> float:
    """round(a * b + c) with a single rounding (Fraction arithmetic is exact)."""
    return float(Fraction(a) * Fraction(b) + Fraction(c))


def fma_gram(x: np.ndarray) -> np.ndarray:
    """x_i · x_j as an FMA-capable BLAS computes it: fma(z, z, fma(y, y, x * x))."""
    n = x.shape[1]
    gram = np.empty((n, n))
    for i in range(n):
        for j in range(i, n):  # symmetric: fma's product is exact, so a·b == b·a
            a, b = x[:, i], x[:, j]
            gram[i, j] = gram[j, i] = exact_fma(a[2], b[2], exact_fma(a[1], b[1], a[0] * b[0]))
    return gram


def reference_trajectory(
    charges: np.ndarray,
    loc: np.ndarray,
    vel: np.ndarray,
    num_steps: int,
    sample_freq: int,
    gram: str = "fma",
) -> tuple[np.ndarray, np.ndarray]:
    """One simulation, step by step, in the style of the original ``sample_trajectory``.

    ``gram="blas"`` uses ``x.T @ x`` through this machine's BLAS, exactly like the original;
    ``gram="fma"`` uses the FMA chain computed exactly with fractions.
    """
    n = loc.shape[1]
    edges = charges * charges.T
    x, v = loc.copy(), vel.copy()

    def force(x: np.ndarray) -> np.ndarray:
        rows = x.transpose()
        sq = (rows**2).sum(axis=1)
        dots = rows.dot(rows.transpose()) if gram == "blas" else fma_gram(x)
        dist = sq.reshape(n, 1) + sq.reshape(1, n) - 2 * dots
        with np.errstate(divide="ignore", invalid="ignore"):
            size = 1.0 * edges / np.power(dist, 3.0 / 2.0)
        np.fill_diagonal(size, 0)
        diff = np.stack([np.subtract.outer(x[c], x[c]) for c in range(3)])
        forces = (size.reshape(1, n, n) * diff).sum(axis=-1)
        forces[forces > 100.0] = 100.0
        forces[forces < -100.0] = -100.0
        return forces

    frames = num_steps // sample_freq - 1
    loc_out, vel_out = np.zeros((frames, 3, n)), np.zeros((frames, 3, n))
    v += 0.001 * force(x)
    counter = 0
    for t in range(1, num_steps):
        x += 0.001 * v
        if t % sample_freq == 0:
            loc_out[counter], vel_out[counter] = x, v
            counter += 1
        v += 0.001 * force(x)
    return loc_out, vel_out


def blas_is_fma_chain() -> bool:
    """Whether this machine's BLAS computes 3-term Gram entries as the FMA chain."""
    x = np.random.RandomState(0).randn(40, 3, 5)
    return all(np.array_equal(s.T.dot(s), fma_gram(s)) for s in x)


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return nbody.generate_nbody(
        tmp_path_factory.mktemp("nbody"), SMALL_SIZES, seed=43, progress=False, **SHORT
    )


# ---------------------------------------------------------------- random draws (PAPER-NOTES §7)


def test_random_state_continues_like_the_global_legacy_stream() -> None:
    saved = np.random.get_state()
    try:
        np.random.seed(43)
        expected = [np.random.choice([-1.0, 0.0, 1.0], size=(5, 1), p=[0.5, 0, 0.5])]
        expected += [np.random.randn(3, 5), np.random.randn(FRAMES, 3, 5)]
    finally:
        np.random.set_state(saved)
    rng = np.random.RandomState(43)
    got = [rng.choice([-1.0, 0.0, 1.0], size=(5, 1), p=[0.5, 0, 0.5])]
    got += [rng.randn(3, 5), rng.randn(FRAMES, 3, 5)]
    for a, b in zip(expected, got, strict=True):
        assert np.array_equal(a, b)


def test_draw_order_per_simulation() -> None:
    num_sims = 7
    rng = np.random.RandomState(43)
    states = nbody.sample_initial_states(rng, num_sims, **SHORT)
    ref = np.random.RandomState(43)
    for s in range(num_sims):
        charges = ref.choice(np.array([-1.0, 0.0, 1.0]), size=(5, 1), p=[0.5, 0, 0.5])
        loc = ref.randn(3, 5)
        vel = ref.randn(3, 5)
        ref.randn(FRAMES, 3, 5)  # loc noise, scaled by 0
        ref.randn(FRAMES, 3, 5)  # vel noise, scaled by 0
        vel = vel * 0.5 / np.sqrt((vel**2).sum(axis=0)).reshape(1, -1)
        assert np.array_equal(states.charges[s], charges)
        assert np.array_equal(states.loc[s], loc)  # |randn| > 5 does not occur here
        assert np.array_equal(states.vel[s], vel)
    # Same position in the stream afterwards: the next simulation would match too.
    for a, b in zip(rng.get_state(), ref.get_state(), strict=True):
        assert np.array_equal(a, b)


def test_sampling_leaves_the_global_stream_alone() -> None:
    before = np.random.get_state()
    nbody.sample_initial_states(np.random.RandomState(1), 3, **SHORT)
    after = np.random.get_state()
    for a, b in zip(before, after, strict=True):
        assert np.array_equal(a, b)


def test_initial_states_follow_the_protocol() -> None:
    states = nbody.sample_initial_states(np.random.RandomState(5), 200, **SHORT)
    assert states.charges.shape == (200, 5, 1)
    assert set(np.unique(states.charges)) <= {-1.0, 1.0}
    assert np.allclose(np.linalg.norm(states.vel, axis=1), 0.5, rtol=0, atol=1e-15)
    assert np.all(np.abs(states.loc) <= 5.0)


def test_box_reflects_the_initial_state_once() -> None:
    loc = np.array([[[6.0, -7.0, 1.0], [0.0, 5.5, -5.25], [2.0, 2.0, 2.0]]])
    vel = np.full_like(loc, 0.1)
    vel[0, 0, 1] = -0.1
    new_loc, new_vel = nbody._reflect_into_box(loc, vel)
    assert new_loc[0, 0].tolist() == [4.0, -3.0, 1.0]
    assert new_loc[0, 1].tolist() == [0.0, 4.5, -4.75]
    assert new_vel[0, 0].tolist() == [-0.1, 0.1, 0.1]  # inwards where reflected
    assert new_vel[0, 1].tolist() == [0.1, -0.1, 0.1]


def test_first_charges_for_seed_43() -> None:
    # Cross-check value for other implementations of §7.
    states = nbody.sample_initial_states(np.random.RandomState(43), 2, **SHORT)
    assert states.charges[0, :, 0].tolist() == [-1.0, 1.0, -1.0, -1.0, -1.0]


# ---------------------------------------------------------------- arithmetic and physics


def test_fma_emulation_rounds_once() -> None:
    rng = np.random.RandomState(0)
    size = 4000
    a = rng.randn(size) * np.exp2(rng.randint(-30, 30, size))
    b = rng.randn(size) * np.exp2(rng.randint(-30, 30, size))
    c = np.concatenate(
        [
            rng.randn(size // 4),
            -(a * b)[: size // 4] * (1 + 1e-12 * rng.randn(size // 4)),  # cancellation
            (a * b)[: size // 4] * np.exp2(rng.randint(-60, 60, size // 4)),
            rng.randint(-(2**40), 2**40, size // 4) * 2.0 ** rng.randint(-20, 20, size // 4),
        ]
    )
    # Integer-valued products: a·b + c often lies exactly halfway between two doubles.
    a[-500:] = rng.randint(1, 2**27, 500)
    b[-500:] = rng.randint(1, 2**27, 500)

    def split(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = 134217729.0 * x
        hi = t - (t - x)
        return hi, x - hi

    got = nbody._fma(
        a,
        b,
        c,
        *split(a),
        *split(b),
        np.empty(size),
        np.empty((9, size)),
        np.empty((2, size), bool),
    )
    expected = [exact_fma(*abc) for abc in zip(a.tolist(), b.tolist(), c.tolist(), strict=True)]
    assert np.array_equal(got, expected)


def test_vectorised_equals_per_simulation_reference() -> None:
    states = nbody.sample_initial_states(np.random.RandomState(43), 3, **SHORT)
    traj = nbody.simulate(states.loc, states.vel, states.charges, **SHORT)
    assert traj.loc.shape == traj.vel.shape == (3, FRAMES, 3, 5)
    for s in range(3):
        loc, vel = reference_trajectory(states.charges[s], states.loc[s], states.vel[s], **SHORT)
        assert np.array_equal(traj.loc[s], loc), f"simulation {s}: positions differ"
        assert np.array_equal(traj.vel[s], vel), f"simulation {s}: velocities differ"


@pytest.mark.parametrize("n", [2, 4, 6])
def test_other_particle_counts_equal_the_reference(n: int) -> None:
    rng = np.random.RandomState(n)
    loc, vel = rng.randn(3, 3, n), rng.randn(3, 3, n)
    charges = rng.choice([-1.0, 1.0], size=(3, n, 1))
    steps = {"num_steps": 300, "sample_freq": 100}
    traj = nbody.simulate(loc, vel, charges, **steps)
    for s in range(3):
        ref_loc, ref_vel = reference_trajectory(charges[s], loc[s], vel[s], **steps)
        assert np.array_equal(traj.loc[s], ref_loc)
        assert np.array_equal(traj.vel[s], ref_vel)


def test_matches_the_original_arithmetic_on_this_blas() -> None:
    # The original computes x_i · x_j with BLAS; on FMA hardware (every x86-64 CPU since 2013)
    # that is the FMA chain we emulate. Elsewhere the original itself gives other bits.
    if not blas_is_fma_chain():
        pytest.skip("this BLAS does not compute 3-term dot products as an FMA chain")
    states = nbody.sample_initial_states(np.random.RandomState(7), 6, **SHORT)
    traj = nbody.simulate(states.loc, states.vel, states.charges, **SHORT)
    for s in range(6):
        loc, vel = reference_trajectory(
            states.charges[s], states.loc[s], states.vel[s], **SHORT, gram="blas"
        )
        assert np.array_equal(traj.loc[s], loc)
        assert np.array_equal(traj.vel[s], vel)


def test_blocks_and_threads_do_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    states = nbody.sample_initial_states(np.random.RandomState(3), 7, **SHORT)
    whole = nbody.simulate(states.loc, states.vel, states.charges, num_threads=1, **SHORT)
    monkeypatch.setattr(nbody, "_BLOCK_SIZE", 3)
    done: list[int] = []
    blocks = nbody.simulate(
        states.loc, states.vel, states.charges, num_threads=2, callback=done.append, **SHORT
    )
    assert sorted(done) == [1, 3, 3]
    for a, b in zip(whole, blocks, strict=True):
        assert np.array_equal(a, b)


def test_momentum_is_conserved_between_frames_without_clipping() -> None:
    # Unit masses and pairwise forces: sum_i v_i changes only through clipped components.
    states = nbody.sample_initial_states(np.random.RandomState(0), 32, **SHORT)
    traj = nbody.simulate(states.loc, states.vel, states.charges, **SHORT)
    momentum = traj.vel.sum(axis=-1)  # (s, f, 3)
    before = np.concatenate([states.vel.sum(axis=-1)[:, None], momentum[:, :-1]], axis=1)
    change = np.abs(momentum - before).max(axis=-1)  # (s, f)
    free = ~traj.clipped
    assert free.sum() >= 100 and traj.clipped.sum() >= 3, "need both kinds of interval"
    assert change[free].max() < 1e-12
    # Negative control: the clipping flags mark the intervals where momentum does change.
    assert change[traj.clipped].max() > 1e-6


def test_simulate_rejects_mismatched_shapes() -> None:
    loc = np.zeros((2, 3, 5))
    with pytest.raises(ShapeError, match="charges"):
        nbody.simulate(loc, loc, np.ones((2, 4, 1)), **SHORT)
    with pytest.raises(ValueError, match="multiple"):
        nbody.simulate(loc, loc, np.ones((2, 5, 1)), num_steps=1050, sample_freq=100)


# ---------------------------------------------------------------- files and caching


def test_files_have_standard_names_and_shapes(small_dir: Path) -> None:
    names = sorted(p.name for p in small_dir.iterdir())
    assert names == sorted(
        f"{kind}_{split}_charged5_initvel1small.npy"
        for kind in nbody.KINDS
        for split in nbody.SPLITS
    )  # and no temporary files left behind
    for split, size in zip(nbody.SPLITS, SMALL_SIZES, strict=True):
        arrays = {kind: np.load(nbody.nbody_path(small_dir, kind, split)) for kind in nbody.KINDS}
        assert arrays["loc"].shape == arrays["vel"].shape == (size, FRAMES, 3, 5)
        assert arrays["edges"].shape == (size, 5, 5)
        assert arrays["charges"].shape == (size, 5, 1)
        assert all(a.dtype == np.float64 for a in arrays.values())
        charges = arrays["charges"]
        assert np.array_equal(arrays["edges"], charges * charges.transpose(0, 2, 1))


def test_generation_is_reproducible_from_the_seed(small_dir: Path, tmp_path: Path) -> None:
    again = nbody.generate_nbody(tmp_path / "a", SMALL_SIZES, 43, progress=False, **SHORT)
    other = nbody.generate_nbody(tmp_path / "b", SMALL_SIZES, 44, progress=False, **SHORT)
    for kind in nbody.KINDS:
        for split in nbody.SPLITS:
            same = np.load(nbody.nbody_path(small_dir, kind, split))
            assert np.array_equal(same, np.load(nbody.nbody_path(again, kind, split)))
    first = np.load(nbody.nbody_path(small_dir, "loc", "train"))
    assert not np.array_equal(first, np.load(nbody.nbody_path(other, "loc", "train")))


def test_smaller_run_is_a_prefix_of_a_larger_one_for_train_only(small_dir: Path, tmp_path: Path):
    bigger = nbody.generate_nbody(tmp_path, (9, 3, 3), progress=False, **SHORT)
    for kind in ("loc", "vel", "charges"):
        small = np.load(nbody.nbody_path(small_dir, kind, "train"))
        big = np.load(nbody.nbody_path(bigger, kind, "train"))
        assert np.array_equal(big[: len(small)], small)
    # valid and test start after all of train in the random stream, so they differ.
    small = np.load(nbody.nbody_path(small_dir, "loc", "valid"))
    assert not np.array_equal(np.load(nbody.nbody_path(bigger, "loc", "valid")), small)


def test_cache_skips_complete_splits_and_redoes_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nbody.generate_nbody(tmp_path, SMALL_SIZES, progress=False, **SHORT)
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    simulated: list[int] = []
    real_simulate = nbody.simulate

    def recording_simulate(loc: np.ndarray, *args: object, **kwargs: object):
        simulated.append(len(loc))
        return real_simulate(loc, *args, **kwargs)

    monkeypatch.setattr(nbody, "simulate", recording_simulate)
    nbody.generate_nbody(tmp_path, SMALL_SIZES, progress=False, **SHORT)
    assert simulated == []
    assert stamps == {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}

    nbody.nbody_path(tmp_path, "vel", "valid").unlink()  # a missing file
    np.save(nbody.nbody_path(tmp_path, "loc", "test"), np.zeros((3, FRAMES, 3, 4)))  # bad shape
    nbody.generate_nbody(tmp_path, SMALL_SIZES, progress=False, **SHORT)
    assert simulated == [3, 3]
    assert stamps["loc_train_charged5_initvel1small.npy"] == (
        nbody.nbody_path(tmp_path, "loc", "train").stat().st_mtime_ns
    )

    simulated.clear()  # files from another seed have other charges: regenerate
    nbody.generate_nbody(tmp_path, SMALL_SIZES, seed=44, progress=False, **SHORT)
    assert simulated == list(SMALL_SIZES)


# ---------------------------------------------------------------- loader


def test_load_round_trip(small_dir: Path) -> None:
    data = nbody.load_nbody(small_dir, "train", max_samples=4, input_frame=2, target_frame=6)
    assert set(data) == {"pos", "vel", "charge", "target"}
    assert data["pos"].shape == data["vel"].shape == data["target"].shape == (4, 5, 3)
    assert data["charge"].shape == (4, 5, 1)
    assert all(t.dtype == torch.float32 for t in data.values())
    loc = np.load(nbody.nbody_path(small_dir, "loc", "train"))
    vel = np.load(nbody.nbody_path(small_dir, "vel", "train"))
    charges = np.load(nbody.nbody_path(small_dir, "charges", "train"))
    assert torch.equal(data["pos"], torch.from_numpy(loc[:4, 2].transpose(0, 2, 1)).float())
    assert torch.equal(data["vel"], torch.from_numpy(vel[:4, 2].transpose(0, 2, 1)).float())
    assert torch.equal(data["target"], torch.from_numpy(loc[:4, 6].transpose(0, 2, 1)).float())
    assert torch.equal(data["charge"], torch.from_numpy(charges[:4]).float())
    assert len(nbody.load_nbody(small_dir, "valid", input_frame=2, target_frame=6)["pos"]) == 3


def test_load_names_the_missing_file(tmp_path: Path) -> None:
    expected = tmp_path / "loc_test_charged5_initvel1small.npy"
    with pytest.raises(MissingDataError, match="generate_nbody") as info:
        nbody.load_nbody(tmp_path, "test")
    assert str(expected) in str(info.value)
    assert isinstance(info.value, FileNotFoundError)


def _write_split(directory: Path, loc: np.ndarray, vel: np.ndarray, charges: np.ndarray) -> None:
    for kind, array in (("loc", loc), ("vel", vel), ("charges", charges)):
        np.save(nbody.nbody_path(directory, kind, "valid"), array)


def test_load_rejects_bad_shapes(tmp_path: Path) -> None:
    good = np.zeros((4, 49, 3, 5))
    charges = np.ones((4, 5, 1))
    _write_split(tmp_path, np.zeros((4, 49, 5, 3)), good, charges)
    with pytest.raises(DataError, match=r"loc_valid.*\(4, 49, 5, 3\)"):
        nbody.load_nbody(tmp_path, "valid")
    _write_split(tmp_path, good, np.zeros((4, 48, 3, 5)), charges)
    with pytest.raises(DataError, match="vel_valid"):
        nbody.load_nbody(tmp_path, "valid")
    _write_split(tmp_path, good, good, np.ones((3, 5, 1)))
    with pytest.raises(DataError, match="charges_valid"):
        nbody.load_nbody(tmp_path, "valid")
    _write_split(tmp_path, good, good, charges)
    with pytest.raises(DataError, match="max_samples=5"):
        nbody.load_nbody(tmp_path, "valid", max_samples=5)
    with pytest.raises(DataError, match="target_frame=49"):
        nbody.load_nbody(tmp_path, "valid", target_frame=49)
    (tmp_path / "loc_valid_charged5_initvel1small.npy").write_bytes(b"not a npy file")
    with pytest.raises(DataError, match="cannot read"):
        nbody.load_nbody(tmp_path, "valid")


def test_load_rejects_non_finite_values(tmp_path: Path) -> None:
    loc = np.zeros((4, 49, 3, 5))
    loc[1, 40, 2, 3] = np.nan
    _write_split(tmp_path, loc, np.zeros_like(loc), np.ones((4, 5, 1)))
    with pytest.raises(DataError, match="target"):
        nbody.load_nbody(tmp_path, "valid")
    assert nbody.load_nbody(tmp_path, "valid", target_frame=39)["pos"].shape == (4, 5, 3)


def test_unknown_split_lists_the_choices(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError, match="train, valid"):
        nbody.load_nbody(tmp_path, "validation")  # type: ignore[arg-type]


@pytest.mark.slow
def test_full_length_trajectories_equal_the_reference() -> None:
    states = nbody.sample_initial_states(np.random.RandomState(43), 3)
    traj = nbody.simulate(states.loc, states.vel, states.charges)
    assert traj.loc.shape == (3, 49, 3, 5)
    for s in range(3):
        loc, vel = reference_trajectory(
            states.charges[s], states.loc[s], states.vel[s], nbody.NUM_STEPS, nbody.SAMPLE_FREQ
        )
        assert np.array_equal(traj.loc[s], loc) and np.array_equal(traj.vel[s], vel)
