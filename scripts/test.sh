#!/usr/bin/env bash
# Sets up a fresh machine for the test suite and runs it: R from Debian's packages (the
# tests drive the real R), the project with its test extra (pytest, webtest, twine, uv,
# pip, build), then pytest.  Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v Rscript >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends r-base-core curl >/dev/null
  else
    echo "scripts/test.sh: R and curl are missing; install r-base-core and curl (needs root)" >&2
  fi
fi

python3 -m pip install --quiet -e '.[test]'

# pytest exits 5 when it collected no test: that is a failure here, never a pass.
exec python3 -m pytest "$@"
