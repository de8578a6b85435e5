"""The core never imports its optional dependencies, the experiments, or hypothesis."""

from __future__ import annotations

import json
import subprocess
import sys

# hypothesis is a dev dependency: only probsym.testing.strategies (imported by tests) may use it
FORBIDDEN = ["torch_geometric", "matplotlib", "probsym.experiments", "hypothesis"]

SCRIPT = """
import json, sys
import probsym
from probsym import errors, fields, groups, samplers, signature, symmetrize, testing
forbidden = sys.argv[1:]
print(json.dumps(sorted(
    name for name in sys.modules
    if any(name == f or name.startswith(f + ".") for f in forbidden)
)))
"""


def loaded_modules(forbidden: list[str]) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, *forbidden],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_importing_probsym_keeps_the_core_light():
    loaded = loaded_modules([*FORBIDDEN, "probsym.signature"])
    # the probe has power: a module probsym does import is reported
    assert loaded.pop(loaded.index("probsym.signature")) == "probsym.signature"
    assert loaded == [], f"importing probsym loaded {loaded}"
