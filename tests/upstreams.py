"""Upstreams for the tests, all on 127.0.0.1: another private-channels app, a scripted
page server, and a CRAN-like directory served over HTTP.

::

    with serve_wsgi(make_app(storage)) as upstream:      # upstream.url: http://127.0.0.1:N
        ...
        upstream.stop()                                   # the upstream goes down

No test reaches the internet: every upstream here is a thread of the test process.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from werkzeug.serving import make_server

from private_channels.cran.dcf import format_dcf
from private_channels.cran.index import render_archive
from private_channels.cran.store import SOURCE_FIELDS

from .support import mounted
from .test_cran_description import source_package


@dataclass
class Running:
    url: str  # http://127.0.0.1:PORT, no trailing slash
    stop: Callable[[], None]
    requests: list[str] = field(default_factory=list)  # paths asked, in order


@contextmanager
def _serving(server: Any, url: str, running: Running | None = None) -> Iterator[Running]:
    """Run ``server`` (any ``socketserver``-style server) in a thread until the block ends
    or ``stop()`` is called."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stopped = threading.Event()

    def stop() -> None:
        if not stopped.is_set():
            stopped.set()
            server.shutdown()
            server.server_close()

    running = running or Running(url, stop)
    running.stop = stop
    try:
        yield running
    finally:
        stop()


@contextmanager
def serve_wsgi(app: Any, prefix: str = "") -> Iterator[Running]:
    """``app`` (mounted under ``prefix``) on a threaded server of a free port; the
    paths it is asked for are kept in ``requests``."""
    requests: list[str] = []
    app_under = mounted(app, prefix) if prefix else app

    def logged(environ: dict[str, Any], start_response: Any) -> Any:
        requests.append(environ.get("PATH_INFO", ""))
        return app_under(environ, start_response)

    server = make_server("127.0.0.1", 0, logged, threaded=True)
    running = Running(f"http://127.0.0.1:{server.port}", lambda: None, requests)
    with _serving(server, running.url, running) as serving:
        yield serving


class Pages:
    """A scripted upstream: ``pages[path] = (status, content_type, body, headers)``.

    ``delay`` seconds before every answer (a slow upstream); ``seen`` keeps the
    request headers, to check what was sent.
    """

    def __init__(self) -> None:
        self.pages: dict[str, tuple[int, str, bytes, dict[str, str]]] = {}
        self.delay = 0.0
        self.seen: list[dict[str, str]] = []

    def set(
        self, path: str, body: bytes | str, content_type: str = "text/html", status: int = 200,
        **headers: str,
    ) -> None:  # fmt: skip
        data = body.encode() if isinstance(body, str) else body
        self.pages[path] = (
            status,
            content_type,
            data,
            {k.replace("_", "-"): v for k, v in headers.items()},
        )

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.seen.append({k: str(v) for k, v in environ.items() if k.startswith("HTTP_")})
        if self.delay:
            time.sleep(self.delay)
        path = environ.get("PATH_INFO", "")
        status, content_type, body, headers = self.pages.get(
            path, (404, "text/plain", b"not here\n", {})
        )
        etag = headers.get("ETag")
        if etag and environ.get("HTTP_IF_NONE_MATCH") == etag:
            start_response("304 Not Modified", [("ETag", etag)])
            return []
        start_response(
            f"{status} X",
            [("Content-Type", content_type), ("Content-Length", str(len(body))), *headers.items()],
        )
        return [body]


# -- a CRAN-like directory ------------------------------------------------------------


def cran_directory(
    root: Path,
    packages: dict[str, list[tuple[str, bytes]]],
    *,
    lie_about_md5: frozenset[str] = frozenset(),
) -> Path:
    """A CRAN-like repository under ``root``: for each package its versions as
    ``(version, tarball)``, the last one current in ``src/contrib`` (listed in
    ``PACKAGES`` and ``PACKAGES.gz`` with its MD5sum), the others in ``Archive/`` and
    ``Meta/archive.rds``.  Packages in ``lie_about_md5`` get a wrong MD5sum."""
    contrib = root / "src" / "contrib"
    (contrib / "Meta").mkdir(parents=True, exist_ok=True)
    rows, archived = [], []
    for package, versions in sorted(packages.items()):
        *older, (version, tarball) = versions
        (contrib / f"{package}_{version}.tar.gz").write_bytes(tarball)
        md5 = hashlib.md5(tarball, usedforsecurity=False).hexdigest()
        if package in lie_about_md5:
            md5 = "0" * 32
        fields = {"Package": package, "Version": version, "NeedsCompilation": "no", "MD5sum": md5}
        fields.update(_description_fields(tarball, package))
        rows.append({name: fields.get(name) for name in SOURCE_FIELDS})
        for old_version, old_tarball in older:
            folder = contrib / "Archive" / package
            folder.mkdir(parents=True, exist_ok=True)
            filename = f"{package}_{old_version}.tar.gz"
            (folder / filename).write_bytes(old_tarball)
            archived.append((package, filename, float(len(old_tarball)), 1_700_000_000.0))
    text = format_dcf(rows, fold=True).encode()
    (contrib / "PACKAGES").write_bytes(text)
    (contrib / "PACKAGES.gz").write_bytes(gzip.compress(text, mtime=0))
    (contrib / "Meta" / "archive.rds").write_bytes(render_archive(archived))
    return root


def _description_fields(tarball: bytes, package: str) -> dict[str, str]:
    import tarfile

    from private_channels.cran.dcf import parse_dcf

    with tarfile.open(fileobj=io.BytesIO(tarball)) as archive:
        member = archive.extractfile(f"{package}/DESCRIPTION")
        assert member is not None
        (record,) = parse_dcf(member.read().decode())
    return {k: v for k, v in record.items() if k in ("Depends", "Imports", "License")}


def r_package(name: str, version: str, **fields: str) -> bytes:
    return source_package(name, version, **fields)


@contextmanager
def serve_directory(root: Path) -> Iterator[Running]:
    """``root`` over HTTP, as any static file server (with Last-Modified and 304s)."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    with _serving(server, f"http://127.0.0.1:{server.server_address[1]}") as serving:
        yield serving


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass
