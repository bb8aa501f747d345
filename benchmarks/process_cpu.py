"""What each server's processes spend while a harness runs beside it.

::

    python benchmarks/process_cpu.py cpu.log &     # then side_by_side.py, ab.py, ...

Every quarter of a second it appends one line to the file: the time, then the user and
system CPU seconds that each kind of process (the limit, ours, pypiserver, devpi, the
harness and its clients) used since the line before, read from ``/proc/<pid>/stat``.
A target's rounds show as the stretches where its kind leads; its CPU a request is
what it used over a round divided by the requests the harness counted in it.  The
twenty-seventh round of docs/performance.md read its full run this way.  Stop it with
``kill``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

INTERVAL = 0.25
TICK = os.sysconf("SC_CLK_TCK")
# By what its command line holds, the first that matches: the harness's own processes
# first (their command lines name the others' modules too), the limit before ours
# (both are run by run_server.py).
KINDS = (
    ("side_by_side", "harness"),
    ("ab.py", "harness"),
    ("server_cost", "harness"),
    ("devpi", "devpi"),
    ("pypiserver", "pypiserver"),
    ("pypi-server", "pypiserver"),
    ("limit_app", "limit"),
    ("private_channels", "ours"),
    ("private-channels", "ours"),
    ("run_server", "ours"),
)


def kind_of(command: str) -> str | None:
    return next((kind for part, kind in KINDS if part in command), None)


def sample() -> dict[tuple[str, str], float]:
    """CPU seconds so far, by (kind and ``user`` or ``system``, pid)."""
    found: dict[tuple[str, str], float] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, UnicodeDecodeError):  # gone meanwhile
            continue
        kind = kind_of(command)
        if kind is not None:
            found[(f"{kind}.user", pid)] = int(fields[11]) / TICK
            found[(f"{kind}.system", pid)] = int(fields[12]) / TICK
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("log", type=Path)
    args = parser.parse_args()
    before = sample()
    with args.log.open("a") as log:
        while True:
            time.sleep(INTERVAL)
            now = sample()
            spent: dict[str, float] = {}
            for (name, pid), seconds in now.items():
                spent[name] = spent.get(name, 0.0) + seconds - before.get((name, pid), seconds)
            before = now
            fields = [f"{name}={value:.2f}" for name, value in sorted(spent.items()) if value]
            log.write(f"{time.strftime('%H:%M:%S')} {' '.join(fields)}\n")
            log.flush()


if __name__ == "__main__":
    main()
