"""What a request costs the server: the limit and private-channels on one WSGI server,
their CPU time and context switches a request, in alternating bursts (the limit first
in the first round, ours first in the next, and so on: ``side_by_side.round_order``).

::

    python benchmarks/server_cost.py --server waitress --workloads upload
    python benchmarks/server_cost.py --work /dev/shm/pc --workloads upload   # no disk

Rates on a shared 2-core machine mix the server's cost with the clients'.  Here each
burst also reads, from ``/proc``, the CPU time (user and system) and the context
switches of all the server's threads, and how idle the machine was: a server that
uses one core's worth at a third idle is bound by its interpreter lock, not by the
machine (docs/performance.md, seventh round).  The channel is the harness's dataset
under ``--work`` (filled if missing; a copy on tmpfs takes the disk out).
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import side_by_side as harness  # noqa: E402


def _busy() -> tuple[int, int]:
    """The machine's idle (with I/O wait) and total jiffies so far."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    return values[3] + values[4], sum(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", default="waitress", choices=harness.SERVERS)
    harness.burst_options(parser, workloads="upload", rounds=2, seconds=4.0)
    args = parser.parse_args()
    dataset, workloads = harness.burst_setup(parser, args)
    running = harness.start_targets(dataset, args.server, args.work, ["limit", "ours"])
    try:
        for target, run in running.items():
            harness.warm(run.port, target, dataset, args.server)
        states = {
            target: {"etags": harness.etags(run.port, target, dataset),
                     "run": random.randrange(10**6)}
            for target, run in running.items()
        }  # fmt: skip
        with multiprocessing.get_context("fork").Pool(2) as pool:
            for workload in workloads:
                for i in range(args.rounds):
                    for target, run in harness.round_order(running, i):
                        cpu, switches, idle = run.cpu_seconds(), run.context_switches(), _busy()
                        began = time.perf_counter()
                        rate, errors = harness.measure(
                            pool, 2, run.port, workload, target, dataset, states[target],
                            args.seconds, 8, args.client,
                        )  # fmt: skip
                        requests = rate * (time.perf_counter() - began) or 1.0
                        cpu = run.cpu_seconds() - cpu
                        switches = run.context_switches() - switches
                        after = _busy()
                        print(
                            f"{args.server:9} {workload.name:22} {target:6} {rate:8.1f}/s  "
                            f"server CPU {1e6 * cpu / requests:7.1f} µs a request  "
                            f"{switches / requests:5.1f} switches a request  machine "
                            f"{100 * (after[0] - idle[0]) / (after[1] - idle[1]):4.1f}% idle  "
                            f"errors {errors}",
                            flush=True,
                        )
                if workload.name == "upload":
                    dataset.restore_uploaded()
    finally:
        for run in running.values():
            harness.stop(run)


if __name__ == "__main__":
    main()
