"""Shared fixtures and hypothesis profiles (STYLE.md section E).

Profiles (``HYPOTHESIS_PROFILE``, default ``ci``): ``ci`` is deterministic with no deadline (the
first torch call is slow and a red CI blocks landing), ``dev`` is quick, ``thorough`` is for a
manual or GPU run.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings

# float_tolerance only sets the default dtype, which is the same for every hypothesis example, so
# sharing the function-scoped fixture across examples is intended.
_SHARED = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
settings.register_profile("ci", max_examples=25, derandomize=True, print_blob=True, **_SHARED)
settings.register_profile("dev", max_examples=10, **_SHARED)
settings.register_profile("thorough", max_examples=500, **_SHARED)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_configure(config):
    """One intra-op thread unless OMP_NUM_THREADS says otherwise.

    Unit tests use tiny tensors, which gain nothing from intra-op threads; on a loaded 2-core CI
    machine, OpenMP spin-waiting makes each small op 10-20x slower with 2 threads than with 1.
    """
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)


SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


@dataclass(frozen=True)
class Tolerance:
    """Tolerances of one float dtype (STYLE.md, tolerance table)."""

    dtype: torch.dtype
    matrix: float  # orthogonality / det of sampled R; group laws on matrices (<= 3 compositions)
    output: float  # outputs with O(d)/E(d) (atol and rtol)
    exact: float  # outputs on S_n-only paths (expected to be exactly 0)


TOLERANCES = {
    torch.float32: Tolerance(torch.float32, matrix=1e-5, output=1e-5, exact=1e-6),
    torch.float64: Tolerance(torch.float64, matrix=1e-12, output=1e-10, exact=1e-12),
}


@pytest.fixture(params=[torch.float32, torch.float64], ids=["float32", "float64"])
def float_tolerance(request):
    """Set the default dtype for one test (restored afterwards) and give its tolerances."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(request.param)
    try:
        yield TOLERANCES[request.param]
    finally:
        torch.set_default_dtype(previous)


@pytest.fixture(autouse=True)
def _seed_everything():
    """Every test starts from the same global RNG state (tests pass generators where they can)."""
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``<repo>/../shared/data``; the test is skipped, with the reason, when it is absent.

    Test modules may define their own ``shared_data`` (module fixtures override this one).
    """
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data absent: {SHARED_DATA} does not exist")
    return SHARED_DATA
