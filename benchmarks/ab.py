"""One change measured: an earlier revision of private-channels (A) against this checkout
(B), served side by side on the same server, in alternating bursts.

::

    python benchmarks/ab.py HEAD~3 --server waitress
    python benchmarks/ab.py main --server gunicorn --workloads "upload" --rounds 6

    python benchmarks/ab.py 964f77f --limit --server gunicorn   # the limit app, A and B

The full harness (``side_by_side.py``) compares us with the limit; a change of a few
per cent hides in its noise on a shared 2-core machine.  Here both trees serve the same
channel (the harness's dataset, filled if missing) at once, and each workload runs on
A and on B in turn, in alternating order, ``--rounds`` times: the medians, their ratio
B/A and the median of the per-round ratios (with their range) are what to read, with
the server's CPU time a request (its processes' user and system time over each burst,
from ``/proc``), less blurred than the rates by the clients sharing the machine.  The
revision is checked out with ``git worktree`` into a temporary directory, removed at
the end; each side is served from its own tree (its working directory too: ``python
-m`` and gunicorn put that ahead of ``PYTHONPATH``), and the tool stops before it
measures if a side would import code from elsewhere; after an upload workload the
project documents are put back as filled.
With ``--apart`` B serves a copy of the channel (``cp -a`` beside the work directory,
removed at the end) and A the channel itself: for a change to what the storage holds
that A does not read (the thirty-first round's appended records), measured so since.
With ``--limit`` the two are each tree's ``limit_app.py`` instead of private-channels,
over the channel's pre-rendered tree, as the harness serves the limit (which is how the
nineteenth round of docs/performance.md compared two limits).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import side_by_side as harness  # noqa: E402

DEFAULT_WORKLOADS = "project page (JSON),304 revalidation,small download"


def serve(
    tree: Path, label: str, dataset: harness.Dataset, server: str, logs: Path, *, limit: bool
) -> harness.Running:
    """Ours, or with ``limit`` the limit app, as the harness starts it, from ``tree``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRIVATE_CHANNELS_")}
    if limit:
        log = logs / f"ab-limit-{label}.log"
        return harness.start_limit(label, dataset, server, env, log, tree / "benchmarks")
    return harness.start_ours(label, dataset, server, env, logs / f"ab-{label}.log", tree)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("revision", help="the tree to compare this checkout with (A)")
    parser.add_argument("--server", default="waitress", choices=harness.SERVERS)
    parser.add_argument(
        "--limit", action="store_true", help="compare the trees' limit apps instead of ours"
    )
    parser.add_argument(
        "--apart", action="store_true", help="B serves a copy of the channel, A the channel"
    )
    harness.burst_options(parser, workloads=DEFAULT_WORKLOADS, rounds=8, seconds=2.0)
    args = parser.parse_args()
    dataset, workloads = harness.burst_setup(parser, args)
    with tempfile.TemporaryDirectory(prefix="ab-", dir=args.work) as scratch:
        tree = Path(scratch) / "a"
        subprocess.run(
            ["git", "-C", str(HERE.parent), "worktree", "add", "--detach", "-q", str(tree),
             args.revision], check=True,
        )  # fmt: skip
        datasets = {"A": dataset, "B": dataset}
        if args.apart:
            # cp keeps the hard links between the storage and the static trees.
            subprocess.run(["cp", "-a", str(dataset.root), f"{scratch}/b-data"], check=True)
            copy = harness.Dataset.load(dataset.size, Path(scratch) / "b-data")
            assert copy is not None
            datasets["B"] = copy
        try:
            compare(args, datasets, {"A": tree, "B": HERE.parent}, workloads)
        finally:
            subprocess.run(
                ["git", "-C", str(HERE.parent), "worktree", "remove", "--force", str(tree)],
                check=False,
            )  # fmt: skip


def compare(
    args: argparse.Namespace,
    datasets: dict[str, harness.Dataset],
    trees: dict[str, Path],
    workloads: list[harness.Workload],
) -> None:
    target = "limit" if args.limit else "ours"  # the URLs and credentials its requests use
    running = {
        label: serve(t, label, datasets[label], args.server, args.work, limit=args.limit)
        for label, t in trees.items()
    }
    try:
        for label, run in running.items():
            harness.warm(run.port, target, datasets[label], args.server)
        states = {
            label: {
                "etags": harness.etags(run.port, target, datasets[label]),
                "run": random.randrange(10**6),
            }
            for label, run in running.items()
        }
        with multiprocessing.get_context("fork").Pool(2) as pool:
            for workload in workloads:
                rates: dict[str, list[float]] = {label: [] for label in running}
                cpu: dict[str, list[float]] = {label: [] for label in running}
                for i in range(args.rounds):
                    for label in ("A", "B") if i % 2 == 0 else ("B", "A"):
                        used, began = running[label].cpu_seconds(), time.perf_counter()
                        rate, _ = harness.measure(
                            pool, 2, running[label].port, workload, target, datasets[label],
                            states[label], args.seconds, 8, args.client,
                        )  # fmt: skip
                        requests = rate * (time.perf_counter() - began)
                        used = running[label].cpu_seconds() - used
                        rates[label].append(rate)
                        cpu[label].append(1e6 * used / requests if requests else 0.0)
                if workload.name == "upload":
                    for dataset in {id(d): d for d in datasets.values()}.values():
                        dataset.restore_uploaded()
                a, b = statistics.median(rates["A"]), statistics.median(rates["B"])
                pairs = sorted(y / x for x, y in zip(rates["A"], rates["B"], strict=True))
                print(
                    f"{args.server:9} {args.size:6} {workload.name:22} A {a:8.1f}/s  "
                    f"B {b:8.1f}/s  B/A {b / a:5.3f}  per round {statistics.median(pairs):5.3f} "
                    f"[{pairs[0]:.2f} to {pairs[-1]:.2f}]  server CPU a request "
                    f"A {statistics.median(cpu['A']):.0f} µs "
                    f"B {statistics.median(cpu['B']):.0f} µs",
                    flush=True,
                )
    finally:
        for run in running.values():
            harness.stop(run)


if __name__ == "__main__":
    main()
