"""The limit: a minimal WSGI app serving pre-rendered pages and files from disk.

::

    LIMIT_ROOT=/tmp/bench/static-1000 waitress-serve --port 9000 limit_app:app

It does the least a package index can do on the same server: map the path to a file
under ``LIMIT_ROOT`` (``<path>/index.json`` or ``index.html`` by a plain look at
``Accept`` for a page, the file itself otherwise), ``stat`` it, answer ``304`` when
``If-None-Match`` names its ETag (from the stat: no hashing, no open), and send a file
of up to 64 KiB read whole, a larger one through ``wsgi.file_wrapper`` in blocks of
the same size as private-channels (gunicorn sends that with ``sendfile``).  An upload (a
``POST``) is parsed with werkzeug's multipart parser and its file written to
``LIMIT_ROOT/uploads/`` and fsynced once: no authentication, no validation, no index.
``side_by_side.py`` runs private-channels against it on the same server; their ratio
is what docs/performance.md reports.
"""

from __future__ import annotations

import os
import stat
import uuid

from werkzeug.formparser import parse_form_data

ROOT = os.environ.get("LIMIT_ROOT", ".")
BLOCK_SIZE = 512 * 1024
WHOLE = 64 * 1024
TYPES = {
    ".json": "application/vnd.pypi.simple.v1+json",
    ".html": "text/html; charset=utf-8",
    ".rds": "application/octet-stream",
    ".gz": "application/gzip",
}


def _page(path: str, accept: str) -> str:
    if path.endswith("/"):
        return path + ("index.json" if "json" in accept else "index.html")
    return path


def _upload(environ, start_response):  # type: ignore[no-untyped-def]
    _, _, files = parse_form_data(environ)
    content = files.get("content")
    if content is None:
        start_response("400 Bad Request", [("Content-Type", "text/plain")])
        return [b"no file\n"]
    directory = os.path.join(ROOT, "uploads")
    os.makedirs(directory, exist_ok=True)
    target = os.path.join(directory, f"{uuid.uuid4().hex}-{os.path.basename(content.filename)}")
    with open(target, "xb") as out:
        content.save(out)
        out.flush()
        os.fsync(out.fileno())
    content.close()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"ok\n"]


def app(environ, start_response):  # type: ignore[no-untyped-def]
    if environ["REQUEST_METHOD"] == "POST":
        return _upload(environ, start_response)
    path = _page(environ.get("PATH_INFO", "/"), environ.get("HTTP_ACCEPT", ""))
    full = os.path.join(ROOT, path.lstrip("/"))
    try:
        st = os.stat(full)
    except (FileNotFoundError, NotADirectoryError, ValueError):  # ValueError: a NUL in it
        st = None
    if st is None or not stat.S_ISREG(st.st_mode):
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "0")])
        return [b""]
    etag = f'"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"'
    if environ.get("HTTP_IF_NONE_MATCH") == etag:
        start_response("304 Not Modified", [("ETag", etag)])
        return [b""]
    content_type = TYPES.get(os.path.splitext(path)[1], "application/octet-stream")
    if path.endswith("PACKAGES"):
        content_type = "text/plain; charset=utf-8"
    headers = [("Content-Type", content_type), ("Content-Length", str(st.st_size)), ("ETag", etag)]
    start_response("200 OK", headers)
    if environ.get("REQUEST_METHOD") == "HEAD":
        return [b""]
    stream = open(full, "rb")  # noqa: SIM115
    if st.st_size <= WHOLE:
        # One read: on waitress cheaper than the file wrapper's seeks and reads for a
        # small file, elsewhere no dearer (nineteenth round of docs/performance.md).
        with stream:
            return [stream.read()]
    wrapper = environ.get("wsgi.file_wrapper")
    if wrapper is not None:
        return wrapper(stream, BLOCK_SIZE)  # type: ignore[no-any-return]
    return _blocks(stream)


def _blocks(stream):  # type: ignore[no-untyped-def]
    with stream:
        while block := stream.read(BLOCK_SIZE):
            yield block
