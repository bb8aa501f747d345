"""Where a request's time goes inside the app: the middleware stack, token verification,
content negotiation, the cache, and an upload's phases (spool, hash, archive scan, commit).

::

    python benchmarks/profile_stack.py /tmp/pc-side-by-side/data-1000/storage --token TOKEN
    python benchmarks/profile_stack.py ... --profile page > page.prof.txt   # cProfile, sorted

It calls the app that ``private-channels serve`` builds directly, without a server, with
the environ a server would pass, and prints microseconds per request for each kind of
request (and, with ``--profile KIND``, cProfile's top functions for it; with ``--cold``,
the median with the CPU caches emptied before each request, which is closer to what a
request costs under a server on a small machine).

A request made again is answered from what the app kept of its first answer
(``core/answers.py``), so each kind's figures are those of a request asked again;
``--walk`` gives every request a query string of its own (``?walk=N``, which every
route ignores), so that none is kept and the whole walk is measured, as for a request
asked for the first time in a while.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import io
import itertools
import os
import pstats
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from side_by_side import JSON_ACCEPT, PREFIX, multipart, project_name, wheel_bytes

from private_channels.config import load_config


def environ(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> dict[str, Any]:
    env: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "CONTENT_LENGTH": str(len(body)) if body else "",
    }
    for name, value in headers.items():
        key = name.upper().replace("-", "_")
        if key == "CONTENT_TYPE":
            env[key] = value
        else:
            env[f"HTTP_{key}"] = value
    return env


def call(app: Any, env: dict[str, Any]) -> int:
    status: list[str] = []

    def start_response(s: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        status.append(s)
        return lambda data: None

    body = app(env, start_response)
    for _ in body:
        pass
    close = getattr(body, "close", None)
    if close is not None:
        close()
    return int(status[0][:3])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("storage")
    parser.add_argument("--token", required=True)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--projects", type=int, default=1000, help="uploads go to one at random")
    parser.add_argument("--profile", help="a kind of request to profile with cProfile")
    parser.add_argument("--log", default="text", help="the access log format (text, json, off)")
    parser.add_argument(
        "--cold", action="store_true",
        help="touch 16 MiB of memory between requests, as a server's other work does",
    )  # fmt: skip
    parser.add_argument(
        "--walk", action="store_true",
        help="a query string of its own to each request: none answered from kept answers",
    )  # fmt: skip
    args = parser.parse_args()
    os.environ["PRIVATE_CHANNELS_LOG_FORMAT"] = args.log
    app = load_config().replace(storage=args.storage).build_app()
    if args.log != "off":
        import logging

        from private_channels.accesslog import FLUSH_INTERVAL, configure_logging

        # As serve and private_channels.wsgi configure it: lines written every 0.1 s.
        configure_logging(open(os.devnull, "w"), flush_interval=FLUSH_INTERVAL)  # noqa: SIM115
        logging.getLogger("private_channels.access").setLevel(logging.INFO)
    basic = base64.b64encode(f"{args.token}:x-auth-token".encode()).decode()
    auth = {"Authorization": f"Basic {basic}"}
    page = f"{PREFIX}/simple/project-00007/"
    first = environ("GET", page, {**auth, "Accept": JSON_ACCEPT})
    status: list[Any] = []

    def start_response(s: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        status.append(dict(headers))
        return lambda data: None

    for _ in app(first, start_response):
        pass
    etag = status[0]["ETag"]
    status.clear()
    body = b"".join(app(environ("GET", page, {**auth, "Accept": JSON_ACCEPT}), start_response))
    url = __import__("json").loads(body)["files"][0]["url"]  # ../../files/<sha256>/<name>
    download = f"{PREFIX}/{url.removeprefix('../../')}"
    counter = [0]

    def upload() -> dict[str, Any]:
        counter[0] += 1
        # As the harness uploads: a new version of a project picked at random.
        name = project_name(random.randrange(args.projects))
        filename, data = wheel_bytes(name, f"3.{os.getpid()}.{time.time_ns()}")
        body, content_type = multipart({":action": "file_upload"}, filename, data)
        return environ("POST", PREFIX, {**auth, "Content-Type": content_type}, body)

    kinds: dict[str, Callable[[], dict[str, Any]]] = {
        "health (no auth)": lambda: environ("GET", "/api/repo/-/health", {}),
        "page": lambda: environ("GET", page, {**auth, "Accept": JSON_ACCEPT}),
        "page html": lambda: environ("GET", page, {**auth, "Accept": "text/html"}),
        "304": lambda: environ("GET", page, {**auth, "Accept": JSON_ACCEPT, "If-None-Match": etag}),
        "root": lambda: environ("GET", f"{PREFIX}/simple/", {**auth, "Accept": JSON_ACCEPT}),
        "small download": lambda: environ("GET", download, auth),
        "PACKAGES.rds": lambda: environ("GET", f"{PREFIX}/src/contrib/PACKAGES.rds", auth),
        "upload": upload,
    }
    if args.walk:
        walks = itertools.count()

        def walked(make: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
            return lambda: {**make(), "QUERY_STRING": f"walk={next(walks)}"}

        kinds = {kind: walked(make) for kind, make in kinds.items()}
    if args.cold:
        cold(app, kinds, args.count)
        return
    for kind, make in kinds.items():
        count = args.count if kind != "upload" else max(50, args.count // 20)
        call(app, make())
        profiler = cProfile.Profile() if kind == args.profile else None
        # The fastest of a few batches: the machine is shared, and others only add time.
        best, codes = float("inf"), []
        for _ in range(1 if profiler else 5):
            envs = [make() for _ in range(count // 5 if not profiler else count)]
            started = time.perf_counter()
            if profiler:
                profiler.enable()
            codes += [call(app, env) for env in envs]
            if profiler:
                profiler.disable()
            best = min(best, (time.perf_counter() - started) / len(envs))
        print(f"{kind:18} {best * 1e6:8.1f} us/request  statuses {sorted(set(codes))}")
        if profiler:
            stats = pstats.Stats(profiler, stream=sys.stdout)
            stats.sort_stats("tottime").print_stats(25)
            stats.sort_stats("cumulative").print_stats(40)


def cold(app: Any, kinds: dict[str, Callable[[], dict[str, Any]]], count: int) -> None:
    """The median time of each kind of request with the CPU caches cold: what a request
    costs under a server on a small machine, where the server, the kernel and the
    clients run between any two requests (docs/performance.md, fourth round)."""
    junk = bytearray(16 << 20)

    def evict() -> None:
        for i in range(0, len(junk), 64):
            junk[i] = 1
        sorted({str(i): i for i in range(3000)})

    for kind, make in kinds.items():
        if kind == "upload":
            continue
        call(app, make())
        times = []
        for _ in range(min(count, 1500)):
            env = make()
            evict()
            started = time.perf_counter()
            call(app, env)
            times.append(time.perf_counter() - started)
        times.sort()
        print(f"{kind:18} {times[len(times) // 2] * 1e6:8.1f} us/request, cold (median)")


if __name__ == "__main__":
    main()
