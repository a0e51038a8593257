#!/usr/bin/env bash
# The README's pictures (assets/*.png), made again from the current app: the browser tests that take them run in
# headless chromium on the full digits demo (1,797 images, 15 epochs, UMAP map) and write their screenshots here.
#   scripts/screenshots.sh                     all five: map, review, keyboard, evidence, team
#   scripts/screenshots.sh tests/ui/test_browser.py::test_demo_map_selection_relabel_and_download   (map, review)
# Each test still checks what it checks; look at every picture before committing it.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
if [ ! -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ]; then  # the app's few emoji, not empty boxes
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends fonts-noto-color-emoji >/dev/null
fi
export OGAUDIT_SCREENSHOTS="${OGAUDIT_SCREENSHOTS:-$PWD/assets}"
export OGAUDIT_DEMO=digits OGAUDIT_DEMO_EPOCHS=15 OGAUDIT_DEMO_MAP=umap OGAUDIT_DEMO_LIMIT=
TESTS=(
  tests/ui/test_browser.py::test_demo_map_selection_relabel_and_download                              # map, review
  tests/ui/test_browser_review.py::test_twenty_samples_reviewed_by_keyboard_are_all_in_the_ledger_after_a_reload  # keyboard
  tests/ui/test_browser_review.py::test_a_card_shows_its_evidence_and_the_queue_filters_by_class_and_id   # evidence
  tests/ui/test_browser_team.py::test_assignments_with_overlap_and_a_reviewer_settling_a_disagreement     # team
)
if [ "$#" -gt 0 ]; then TESTS=("$@"); fi
"$PYTHON" -m pytest -q -p no:cacheprovider "${TESTS[@]}"
