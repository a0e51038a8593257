#!/usr/bin/env bash
# Install, then audit the built-in demo (MNIST 5k with 10% planted wrong labels) from the command line.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/ogaudit scan mnist5k --noise-rate 0.1 --out runs/mnist5k-demo "$@"
