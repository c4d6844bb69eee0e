#!/usr/bin/env bash
# The one test command (README quick start, and what .ci/run calls).
# Installs sr with its test extras into the current Python, then runs ruff, mypy and the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip --version >/dev/null
# torch first and pinned: an unpinned `torch` can pull a multi-GB CUDA build on a CPU-only machine.
python3 -c "import torch" 2>/dev/null || python3 -m pip install -q "torch==2.13.0"
python3 -m pip install -q -e ".[test]"
# Lint first: seconds, and a type error often explains a failing test. Settings in pyproject.toml.
python3 -m ruff check .
python3 -m mypy
python3 -m pytest "$@"
