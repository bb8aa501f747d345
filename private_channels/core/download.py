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
  ``302`` to a URL of the store, so that large files never pass through this process.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import TYPE_CHECKING

from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response
from werkzeug.wsgi import wrap_file

from ..errors import http_error
from ..storage import PresignsURLs

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

    from ..storage import Storage

__all__ = ["BLOCK_SIZE", "document_response", "file_response", "redirects"]

#: At least 256 KiB: with werkzeug's 8 KiB default a 50 MB download ran at a third to
#: two thirds of a plain file server's speed on the same WSGI server.
BLOCK_SIZE = 512 * 1024


def redirects(storage: Storage, seconds: int) -> int:
    """``seconds`` if the storage can presign URLs, else 0 (serve the bytes)."""
    return seconds if isinstance(storage, PresignsURLs) else 0


def _single_byte_range(value: str) -> bool:
    unit, _, ranges = value.partition("=")
    return unit.strip().lower() == "bytes" and "," not in ranges


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
) -> Response:
    """The response to ``GET``/``HEAD`` of the blob at ``key`` (see the module)."""
    if redirect and isinstance(storage, PresignsURLs):
        # The store sends the bytes; the presigned URL is made locally, no request.
        response = Response(status=302, headers={"Location": storage.presigned_url(key, redirect)})
        response.headers["Cache-Control"] = "private, no-store"  # the URL expires
        response.vary.update(vary)
        return response
    try:
        if environ.get("REQUEST_METHOD") == "HEAD":
            stream, stat = None, storage.stat(key)
        else:
            stream, stat = storage.open(key)
    except FileNotFoundError:
        raise http_error(404, not_found) from None
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
) -> Response:
    """The response to ``GET``/``HEAD`` of a document rendered in memory.

    ``etag`` names ``body`` (a digest of it); by default a client revalidates on every
    use, which costs a 304 while nothing changed, since an index changes with every
    upload.  ``HEAD`` gets the headers alone.
    """
    response = Response(body, mimetype=mimetype)
    response.set_etag(etag)
    response.headers["Cache-Control"] = cache_control
    return response.make_conditional(environ)
