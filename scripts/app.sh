#!/usr/bin/env bash
# Install, then start the app: it audits the built-in demo (MNIST 5k with 10% planted wrong labels) in the
# background and opens the review. Extra arguments go to `streamlit run` (e.g. --server.port 8502).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/streamlit run app.py --server.headless true --browser.gatherUsageStats false "$@"
