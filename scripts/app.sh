#!/usr/bin/env bash
# Install, then start the app: it audits the built-in demo (MNIST 5k with 10% planted wrong labels) in the
# background and opens the review. It listens on 127.0.0.1 only: to serve a review team, set OGAUDIT_ADDRESS
# (e.g. 0.0.0.0) after adding users with `ogaudit users add` (README, "Serving a review team"). Extra arguments
# go to `streamlit run` (e.g. --server.port 8502). ogaudit.ui.serve is `streamlit run` with ogaudit's guard installed
# before the first request (uploads, media and the clear_cache message; docs/SECURITY.md).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m ogaudit.ui.serve app.py --server.headless true --browser.gatherUsageStats false \
  --server.address "${OGAUDIT_ADDRESS:-127.0.0.1}" --server.fileWatcherType none "$@"
