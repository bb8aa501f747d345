"""One download response for every package file of every ecosystem.

::

    return file_response(
        environ, storage, key,
        etag=record.sha256, mimetype="application/zip",
        cache_control="private, max-age=31536000, immutable",
        redirect=600,                 # seconds of a presigned URL, on a store that makes them
    )

Indexes rendered in memory (``PACKAGES``, ``repodata.json``...) go out through
:func:`document_response`: a strong ETag, revalidated on every use, ``304`` when it
still matches.

What :func:`file_response` guarantees, whoever calls it:

- ``HEAD`` answers exactly what ``GET`` would, headers and status, also when the blob
  has vanished from under its record (both 404);
- ``Range`` as RFC 9110 says: one byte range gets a 206 (or a 416 when it lies past the
  end); a range in another unit, or several ranges, are ignored and the whole file
  comes with a 200 (a server may ignore the field; a wrong 416 would break a client);
  ``If-Range``, ``If-None-Match`` and ``If-Modified-Since`` as werkzeug implements them;
- the body goes through ``wsgi.file_wrapper`` in blocks of :data:`BLOCK_SIZE`, so a
  server that has one (gunicorn, waitress) sends a file from the filesystem without
  copying it through Python, and one that does not still reads large blocks;
- on a storage that :class:`~..storage.PresignsURLs` (S3), with ``redirect`` seconds, a
  ``302`` to a URL of the store, so that large files never pass through this process;
- on one that does not (a file system), files of at most :data:`SMALL_FILE` bytes are
  kept in memory, each valid for the storage ETag it was read under: a download of one
  costs a ``stat``, as a page view does, instead of an open, reads and a close.
"""

from __future__ import annotations

import datetime as dt
import functools
import weakref
from collections.abc import Iterable
from typing import IO, TYPE_CHECKING, TypeGuard, cast

from werkzeug.exceptions import HTTPException
from werkzeug.http import http_date, quote_etag
from werkzeug.utils import get_content_type
from werkzeug.wrappers import Response
from werkzeug.wsgi import wrap_file

from ..errors import http_error
from ..storage import PresignsURLs
from .answers import PRECONDITIONS, offer
from .cache import DocumentCache

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from ..storage import Stat, Storage

__all__ = ["BLOCK_SIZE", "document_response", "file_response", "redirects"]

#: At least 256 KiB: with werkzeug's 8 KiB default a 50 MB download ran at a third to
#: two thirds of a plain file server's speed on the same WSGI server.
BLOCK_SIZE = 512 * 1024
#: Files up to this size are served from memory (wheels and R packages often are).
SMALL_FILE = 64 * 1024
#: The memory those take at most, per storage.
SMALL_FILES_BYTES = 32 * 1024 * 1024


def redirects(storage: Storage, seconds: int) -> int:
    """``seconds`` if the storage can presign URLs, else 0 (serve the bytes)."""
    return seconds if presigns(storage) else 0


def presigns(storage: Storage) -> TypeGuard[PresignsURLs]:
    """Whether the storage can presign URLs (:class:`~..storage.PresignsURLs`)."""
    return _kept_of(storage).presigns


class _Kept:
    """What downloads keep of a storage: whether it presigns URLs (``isinstance`` with a
    runtime-checkable protocol looks up each of its attributes every time: some
    microseconds a download), and its small files."""

    __slots__ = ("presigns", "small_files")

    def __init__(self, storage: Storage) -> None:
        self.presigns = isinstance(storage, PresignsURLs)
        self.small_files = DocumentCache(SMALL_FILES_BYTES, max_entry=SMALL_FILE)


# Under a plain weak reference to each storage (what weakref.ref returns again while
# the key lives): one lookup in C a download, where a WeakKeyDictionary's methods are
# Python functions, each some cache misses with the CPU's caches cold.
_kept: dict[weakref.ref[Storage], _Kept] = {}


def _kept_of(storage: Storage) -> _Kept:
    try:
        key = weakref.ref(storage)
        kept = _kept.get(key)
    except TypeError:  # a storage that cannot be weakly referenced, or hashed: none kept
        return _Kept(storage)
    if kept is None:
        kept = _kept.setdefault(key, _Kept(storage))
        weakref.finalize(storage, _kept.pop, key, None)
    return kept


def _single_byte_range(value: str) -> bool:
    unit, _, ranges = value.partition("=")
    return unit.strip().lower() == "bytes" and "," not in ranges


class _PlainDownload:
    """A whole file to a request with no precondition and no range, the usual download:
    the headers werkzeug's ``make_conditional`` would send, without building its
    ``Response`` (which cost more than the rest of the request)."""

    __slots__ = ("block_size", "headers", "stream")

    def __init__(
        self, stream: IO[bytes] | bytes | None, headers: list[tuple[str, str]], size: int
    ) -> None:
        self.stream = stream
        self.headers = headers
        self.block_size = min(BLOCK_SIZE, max(size, 8192))

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        # A copy: a kept answer is given again (core.answers), and a layer outside may
        # append to the list it is handed.
        start_response("200 OK", self.headers.copy())
        if self.stream is None:
            return []
        if isinstance(self.stream, bytes):
            return [self.stream]
        # A server's own file wrapper gets the large blocks (the module says why); one
        # without never allocates 512 KiB to read a file of a few.
        wrapped = "wsgi.file_wrapper" in environ
        return wrap_file(environ, self.stream, BLOCK_SIZE if wrapped else self.block_size)


def _small_file(storage: Storage, key: str, cache: DocumentCache) -> tuple[bytes | None, Stat]:
    """The content of ``key`` from memory (``cache``, read on first use) and its stat, or
    ``None`` and the stat when it is larger than :data:`SMALL_FILE`."""
    stat = storage.stat(key)
    if stat.size > SMALL_FILE:
        return None, stat
    content: bytes | None = cache.get(key, stat.etag)
    if content is None:
        stream, stat = storage.open(key)
        try:
            content = stream.read(SMALL_FILE + 1)
        finally:
            stream.close()
        if len(content) != stat.size:  # replaced by a larger version meanwhile
            return None, storage.stat(key)
        cache.put(key, stat.etag, content, len(content))
    return content, stat


_http_date = functools.lru_cache(maxsize=1024)(http_date)  # a blob's mtime rarely changes


def file_response(
    environ: WSGIEnvironment,
    storage: Storage,
    key: str,
    *,
    etag: str,
    mimetype: str,
    cache_control: str,
    redirect: int = 0,
    vary: Iterable[str] = (),
    not_found: str = "This file is listed but its content is missing.",
    headers: Iterable[tuple[str, str]] = (),
    keep: bool = False,
) -> WSGIApplication:
    """The response to ``GET``/``HEAD`` of the blob at ``key`` (see the module);
    ``headers`` are added to it, whatever it is.

    With ``keep``, a whole small file in memory (or a ``HEAD``'s headers) is offered to
    be kept for requests like this one (:func:`~.answers.offer`): for a caller that
    decided the download from the request's path and credentials and the storage alone.
    """
    headers, vary = list(headers), tuple(vary)
    kept = _kept_of(storage)
    if redirect and kept.presigns:
        # The store sends the bytes; the presigned URL is made locally, no request.
        location = cast("PresignsURLs", storage).presigned_url(key, redirect)
        response = Response(status=302, headers={"Location": location})
        response.headers["Cache-Control"] = "private, no-store"  # the URL expires
        response.vary.update(vary)
        response.headers.extend(headers)
        return response
    plain = environ.keys().isdisjoint(PRECONDITIONS)
    content: bytes | None = None
    try:
        if environ.get("REQUEST_METHOD") == "HEAD":
            stream, stat = None, storage.stat(key)
        elif plain and not kept.presigns:
            stream, (content, stat) = None, _small_file(storage, key, kept.small_files)
            if content is None:
                stream, stat = storage.open(key)
        else:
            stream, stat = storage.open(key)
    except FileNotFoundError:
        raise http_error(404, not_found) from None
    if plain:
        download = _PlainDownload(
            stream if content is None else content,
            [
                ("Content-Type", get_content_type(mimetype, "utf-8")),
                ("Content-Length", str(stat.size)),
                ("ETag", quote_etag(etag)),
                ("Last-Modified", _http_date(int(stat.mtime))),
                ("Cache-Control", cache_control),
                ("Accept-Ranges", "bytes"),
                *(("Vary", name) for name in vary),
                *headers,
            ],
            stat.size,
        )
        if keep and stream is None:
            fields = (*PRECONDITIONS, *(f"HTTP_{n.upper().replace('-', '_')}" for n in vary))
            offer(environ, download, vary=fields, size=stat.size if content else 0)
        return download
    response = Response(
        wrap_file(environ, stream, BLOCK_SIZE) if stream is not None else b"",
        mimetype=mimetype,
        direct_passthrough=True,
    )
    response.content_length = stat.size
    response.set_etag(etag)
    response.last_modified = dt.datetime.fromtimestamp(stat.mtime, dt.UTC)
    response.headers["Cache-Control"] = cache_control
    response.vary.update(vary)
    response.headers.extend(headers)
    range_header = environ.get("HTTP_RANGE")
    if range_header is not None and not _single_byte_range(range_header):
        environ = {**environ}
        del environ["HTTP_RANGE"]
    try:
        response.make_conditional(environ, accept_ranges=True, complete_length=stat.size)
    except HTTPException:
        response.close()  # a 416: the open blob (a file, an S3 connection) goes back now
        raise
    if response.status_code in (304, 412):
        response.close()
        response.response = []
    return response


def document_response(
    environ: WSGIEnvironment,
    body: bytes,
    *,
    etag: str,
    mimetype: str,
    cache_control: str = "private, no-cache",
) -> WSGIApplication:
    """The response to ``GET``/``HEAD`` of a document rendered in memory.

    ``etag`` names ``body`` (a digest of it); by default a client revalidates on every
    use, which costs a 304 while nothing changed, since an index changes with every
    upload.  ``HEAD`` gets the headers alone.  It is :class:`~.document.DocumentResponse`,
    the response of every rendered page and index.
    """
    from .document import DocumentResponse

    return DocumentResponse(
        body,
        etag=etag,
        content_type=get_content_type(mimetype, "utf-8"),
        cache_control=cache_control,
    )
