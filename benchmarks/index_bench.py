"""How fast the simple index answers when a channel holds tens of thousands of files.

::

    python benchmarks/index_bench.py                        # 20000 files, filesystem, in-process
    python benchmarks/index_bench.py --files 50000 --live   # and through a live server

It fills one channel directly through :class:`~private_channels.pypi.store.PythonStore`
(``--projects`` projects sharing ``--files`` files, plus one ``big`` project with
``--big`` files), then measures requests per second for the root page, a small and the
big project page (JSON, as pip and uv ask), a revalidation (304) and a download:

- in-process, through webtest, with the page cache on and off (``cache_bytes=0``);
- with ``--live``, through a running ``private-channels serve`` over HTTP/1.1 keep-alive
  connections from ``--threads`` client threads.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import io
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import webtest
from packaging.utils import canonicalize_name

from private_channels.auth import TokenAuthMiddleware
from private_channels.channels import Channel, ChannelRegistry
from private_channels.pypi.simple import SimpleIndexMiddleware
from private_channels.pypi.store import FileRecord, PythonStore
from private_channels.routing import ChannelMiddleware
from private_channels.storage import FileSystemStorage, MemoryStorage, Storage
from private_channels.tokens import Scope, TokenStore

JSON = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1"


def add(store: PythonStore, channel: Channel, project: str, version: str, n: int) -> FileRecord:
    filename = f"{project.replace('-', '_')}-{version}-py3-none-any.whl"
    data = f"{filename} {n}".encode()
    metadata = f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n".encode()
    record = FileRecord(
        filename=filename,
        project=canonicalize_name(project),
        version=version,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        blake2b_256=hashlib.blake2b(data, digest_size=32).hexdigest(),
        upload_time=time.time(),
        requires_python=">=3.8",
    )
    store.add_file(channel, record, io.BytesIO(data), display_name=project, metadata=metadata)
    return record


def fill(storage: Storage, files: int, projects: int, big: int, workers: int) -> FileRecord:
    channel = ChannelRegistry(storage).create("bench")
    store = PythonStore(storage)
    per_project = max(1, (files - big) // projects)

    def one_project(index: int) -> None:
        for version in range(per_project):
            add(store, channel, f"project-{index:05d}", f"1.{version}", index)

    def big_project() -> FileRecord:
        last = None
        for version in range(big):
            last = add(store, channel, "big", f"2.{version}", version)
        assert last is not None
        return last

    with ThreadPoolExecutor(workers) as pool:
        big_future = pool.submit(big_project)
        list(pool.map(one_project, range(projects)))
        return big_future.result()


def stack(storage: Storage, cache_bytes: int) -> webtest.TestApp:
    def nothing(environ, start_response):  # type: ignore[no-untyped-def]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b""]

    app = SimpleIndexMiddleware(nothing, storage, cache_bytes=cache_bytes)
    app = ChannelMiddleware(app, ChannelRegistry(storage))  # type: ignore[assignment]
    return webtest.TestApp(TokenAuthMiddleware(app, TokenStore(storage)))


def rate(call: Callable[[], object], seconds: float) -> float:
    call()  # warm
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        call()
        count += 1
    return count / elapsed


def in_process_cases(
    app: webtest.TestApp, headers: dict[str, str], download: str
) -> dict[str, Callable[[], object]]:
    etag = app.get("/bench/simple/big/", headers=headers).headers["ETag"]
    revalidate = {**headers, "If-None-Match": etag}
    return {
        "root page": lambda: app.get("/bench/simple/", headers=headers),
        "small project page": lambda: app.get("/bench/simple/project-00007/", headers=headers),
        "big project page": lambda: app.get("/bench/simple/big/", headers=headers),
        "big page, 304": lambda: app.get("/bench/simple/big/", headers=revalidate, status=304),
        "download (big project)": lambda: app.get(download, headers=headers),
    }


def in_process(storage: Storage, token: str, big: FileRecord, seconds: float) -> None:
    headers = {"X-Auth": token, "Accept": JSON}
    download = f"/bench/files/{big.sha256}/{big.filename}"
    for cache_bytes in (64 * 1024 * 1024, 0):
        cases = in_process_cases(stack(storage, cache_bytes), headers, download)
        label = "cache on" if cache_bytes else "cache off"
        for name, call in cases.items():
            print(f"  in-process, {label:9}  {name:24} {rate(call, seconds):9.0f} req/s")


def hammer(host: str, port: int, path: str, token: str, until: float) -> int:
    """GET ``path`` over one keep-alive connection until ``until``; the count."""
    count = 0
    connection = http.client.HTTPConnection(host, port, timeout=30)
    try:
        while time.perf_counter() < until:
            connection.request("GET", path, headers={"X-Auth": token, "Accept": JSON})
            response = connection.getresponse()
            response.read()
            assert response.status == 200, response.status
            count += 1
    finally:
        connection.close()
    return count


def start_server(root: Path) -> tuple[subprocess.Popen[str], str, int]:
    log = root.parent / "bench-server.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "private_channels", "serve", "--storage", str(root),
             "--port", "0", "--prefix", "/api/repo"],
            stdout=out, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PRIVATE_CHANNELS_LOG_FORMAT": "off"},
        )  # fmt: skip
    url = None
    while url is None and server.poll() is None:
        time.sleep(0.1)
        for line in log.read_text().splitlines():
            if " on http://" in line:
                url = line.rsplit(" on ", 1)[1].strip()
    assert url is not None, log.read_text()
    host, _, port = url.removeprefix("http://").split("/")[0].partition(":")
    return server, host, int(port)


def live(root: Path, token: str, big: FileRecord, seconds: float, threads: int) -> None:
    server, host, port = start_server(root)
    try:
        cases = {
            "root page": "/api/repo/bench/simple/",
            "small project page": "/api/repo/bench/simple/project-00007/",
            "big project page": "/api/repo/bench/simple/big/",
            "download (big project)": f"/api/repo/bench/files/{big.sha256}/{big.filename}",
        }
        for name, path in cases.items():
            until = time.perf_counter() + seconds
            with ThreadPoolExecutor(threads) as pool:
                jobs = [pool.submit(hammer, host, port, path, token, until) for _ in range(threads)]
                total = sum(job.result() for job in jobs)
            print(f"  live server, {threads} clients  {name:24} {total / seconds:9.0f} req/s")
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--projects", type=int, default=1900)
    parser.add_argument("--big", type=int, default=1000, help="files of the one big project")
    parser.add_argument("--backend", choices=["filesystem", "memory"], default="filesystem")
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--workers", type=int, default=8, help="threads that fill the channel")
    parser.add_argument("--live", action="store_true", help="also through a live server")
    parser.add_argument("--threads", type=int, default=4, help="client threads for --live")
    args = parser.parse_args()
    if args.live and args.backend != "filesystem":
        parser.error("--live needs the filesystem backend")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        storage: Storage = MemoryStorage()
        if args.backend == "filesystem":
            storage = FileSystemStorage(root)
        start = time.perf_counter()
        big = fill(storage, args.files, args.projects, args.big, args.workers)
        per = max(1, (args.files - args.big) // args.projects)
        total = per * args.projects + args.big
        print(
            f"{args.backend}: filled {total} files in {args.projects + 1} projects "
            f"({per} each, 'big' has {args.big}) in {time.perf_counter() - start:.1f}s"
        )
        token, _ = TokenStore(storage).create(channels=["bench"], scope=Scope.READ)
        in_process(storage, token, big, args.seconds)
        if args.live:
            live(root, token, big, args.seconds, args.threads)


if __name__ == "__main__":
    main()
