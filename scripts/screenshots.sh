#!/usr/bin/env bash
# Takes the screenshots of the web pages that docs/web.md shows: the browser test
# (tests/test_e2e_browser.py, headless chromium driven by selenium) saves them into
# docs/screenshots/ instead of a temporary directory.  Run it from a set-up checkout
# (bash scripts/test.sh once, or a .venv with the test extra) after changing the pages.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
PRIVATE_CHANNELS_SCREENSHOTS="$PWD/docs/screenshots" \
  exec python -m pytest -q -p no:cacheprovider tests/test_e2e_browser.py "$@"
