#!/usr/bin/env bash
# Install, lint and run the whole test suite (the browser test included). CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest -q --durations=20 "$@"   # the 20 slowest, so the suite's time is visible in CI
