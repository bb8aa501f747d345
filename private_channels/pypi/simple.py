"""Serves the PEP 503/691 simple index, the files it links, and the yank/delete API.

::

    app = SimpleIndexMiddleware(app, storage)      # below ChannelMiddleware

Under a channel (``SCRIPT_NAME`` ends with ``/<CHANNEL>``) it owns:

- ``GET|HEAD /simple/`` and ``/simple/<project>/``: the index, HTML (PEP 503) or
  JSON (PEP 691) by the ``Accept`` header, HTML when there is none;
- ``GET|HEAD /files/<sha256>/<filename>`` and ``<file URL>.metadata`` (PEP 658);
- ``POST /-/yank``, ``/-/unyank``, ``/-/delete`` (admin scope; see docs/python-index.md).

Everything else goes to the wrapped app.  A page costs one ``stat`` of one document
when its rendering is in this process's cache, and one read when that document changed
(an upload or a yank through any process changes its storage ETag), never a listing;
no archive is ever opened.  Files stream from storage through ``wsgi.file_wrapper``, so
a server that has one (gunicorn, uWSGI) can ``sendfile`` them from the filesystem backend.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from packaging.utils import canonicalize_name
from werkzeug.datastructures import MIMEAccept
from werkzeug.exceptions import (
    BadRequest,
    HTTPException,
    RequestedRangeNotSatisfiable,
    RequestEntityTooLarge,
)
from werkzeug.http import is_resource_modified, parse_accept_header
from werkzeug.wrappers import Request, Response
from werkzeug.wsgi import wrap_file

from ..auth import authorize
from ..errors import http_error
from ..routing import current_channel
from ..tokens import Scope
from . import manage
from .render import HTML, JSON, MEDIA_TYPES, TEXT_HTML, index_page, project_page, render
from .store import FileRecord, PythonStore

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from ..channels import Channel
    from ..storage import Storage

__all__ = ["SimpleIndexMiddleware", "negotiate"]

# Bump when the rendering changes, so that clients' cached pages stop validating.
RENDER_VERSION = "1"
FILE_MAX_AGE = 365 * 24 * 3600  # a file's URL names its sha256: it never changes
MAX_ADMIN_FORM = 64 * 1024

# PEP 508 names, case-insensitive; anything else cannot be a project.
_PROJECT_NAME = re.compile(r"[A-Z0-9](?:[A-Z0-9._-]*[A-Z0-9])?\Z", re.IGNORECASE)
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")
_LATEST = {
    "application/vnd.pypi.simple.latest+json": JSON,
    "application/vnd.pypi.simple.latest+html": HTML,
}
# At equal quality and specificity, the most expressive format first (PEP 691's advice).
_PREFERENCE = (JSON, HTML, TEXT_HTML)
_VARY = ("Vary", "Accept")
_ADMIN_ACTIONS: dict[str, Callable[..., list[str]]] = {
    "yank": manage.yank,
    "unyank": manage.unyank,
    "delete": manage.delete,
}


def _offer_quality(accepted: MIMEAccept, offer: str) -> tuple[float, int]:
    """The quality the client gives ``offer`` and how specifically (RFC 9110 12.5.1:
    the most specific matching range decides, so ``text/html;q=0, */*`` refuses HTML)."""
    best: tuple[int, float] | None = None
    kind = offer.split("/")[0]
    for value, quality in accepted:
        media = value.split(";")[0].strip().lower()
        media = _LATEST.get(media, media)
        if media == offer:
            specificity = 2
        elif media == f"{kind}/*":
            specificity = 1
        elif media == "*/*":
            specificity = 0
        else:
            continue
        if best is None or specificity > best[0]:
            best = (specificity, quality)
    if best is None:
        return 0.0, -1
    return best[1], best[0]


@functools.lru_cache(maxsize=256)  # pure, and clients send the same few headers
def negotiate(accept: str | None) -> str | None:
    """The media type to answer an ``Accept`` header with, or ``None`` (406).

    No header, or one whose best matches are all through ``*/*``, gets HTML
    (``text/html`` unless refused): PEP 691 treats a missing header as ``*/*``, and
    browsers and old tools want HTML.  Otherwise the highest quality wins, then the
    most specific match, then JSON, the most expressive format (PEP 691's advice).
    pip and uv list the JSON type first, with HTML at a lower quality, and get JSON::

        >>> negotiate("application/vnd.pypi.simple.v1+json, text/html;q=0.01")
        'application/vnd.pypi.simple.v1+json'
        >>> negotiate(None), negotiate("application/json")
        ('text/html', None)
    """
    if accept is None or not accept.strip():
        return TEXT_HTML
    accepted = parse_accept_header(accept, MIMEAccept)
    scored = [(*_offer_quality(accepted, offer), offer) for offer in _PREFERENCE]
    best_quality = max(quality for quality, _, _ in scored)
    if best_quality <= 0:
        return None
    best = [
        (specificity, offer) for quality, specificity, offer in scored if quality == best_quality
    ]
    if all(specificity == 0 for specificity, _ in best):
        offers = {offer for _, offer in best}
        return next(offer for offer in (TEXT_HTML, HTML, JSON) if offer in offers)
    top = max(specificity for specificity, _ in best)
    return next(offer for specificity, offer in best if specificity == top)


class _Cache:
    """What this process derived from storage documents (rendered pages, parsed
    projects), each entry valid for one storage ETag, least recently used out first
    once the weights (about the bytes held) pass ``limit``."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._weight = 0
        self._entries: OrderedDict[tuple[str, ...], tuple[str, Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, ...], storage_etag: str) -> Any:
        with self._lock:
            cached = self._entries.get(key)
            if cached is None or cached[0] != storage_etag:
                return None
            self._entries.move_to_end(key)
            return cached[1]

    def put(self, key: tuple[str, ...], storage_etag: str, value: Any, weight: int) -> None:
        if weight > self._limit // 4:
            return  # one huge page must not flush everything else
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._weight -= old[2]
            self._entries[key] = (storage_etag, value, weight)
            self._weight += weight
            while self._weight > self._limit:
                _, (_, _, dropped) = self._entries.popitem(last=False)
                self._weight -= dropped


def _page_etag(storage_etag: str, media_type: str) -> str:
    seed = f"{RENDER_VERSION}\0{media_type}\0{storage_etag}".encode()
    return hashlib.sha256(seed).hexdigest()[:40]


def _not_found(what: str) -> HTTPException:
    return http_error(404, f"{what} is not in this channel.")


class SimpleIndexMiddleware:
    """The read side of a channel's Python packages, and its yank/delete API.

    ``cache_bytes`` bounds what this process keeps of rendered pages and parsed
    project documents (0 turns the cache off); every entry is checked against its
    document's storage ETag (one ``stat``) on every request that uses it.
    ``redirect_downloads`` (seconds, 0 = off): on a storage that presigns URLs (S3),
    answer a file download with a 302 to a URL of the store valid that long, so that
    large files never pass through this process.
    """

    def __init__(
        self,
        app: WSGIApplication,
        storage: Storage,
        *,
        cache_bytes: int = 64 * 1024 * 1024,
        redirect_downloads: int = 0,
    ) -> None:
        self.app = app
        self.storage = storage
        self.store = PythonStore(storage)
        self.cache = _Cache(cache_bytes)
        # Only a storage that can presign (S3) redirects; others serve the bytes.
        presign = getattr(storage, "presigned_url", None)
        self.redirect_downloads = redirect_downloads if presign is not None else 0

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        handler: Callable[[WSGIEnvironment, Channel, str], Response]
        if path == "/simple" or path.startswith("/simple/"):
            handler, rest = self._simple, path[len("/simple") :]
        elif path.startswith("/files/"):
            handler, rest = self._file, path[len("/files/") :]
        elif path.startswith("/-/") and path[3:] in _ADMIN_ACTIONS:
            handler, rest = self._admin, path[3:]
        else:
            return self.app(environ, start_response)
        try:
            response: WSGIApplication = handler(environ, current_channel(environ), rest)
        except HTTPException as error:
            response = error
        return response(environ, start_response)

    # -- the index ---------------------------------------------------------------

    def _simple(self, environ: WSGIEnvironment, channel: Channel, rest: str) -> Response:
        authorize(environ, channel, Scope.READ)
        self._read_only(
            environ,
            "This is the package index, which is read-only; upload to "
            "the channel's own URL (without /simple/).",
        )
        if rest == "":
            return _redirect("simple/")
        if rest == "/":
            return self._index(environ, channel)
        name, slash, extra = rest[1:].partition("/")
        if extra or not _PROJECT_NAME.match(name):
            raise _not_found(f"Project {name!r}")
        normalized = canonicalize_name(name)
        if not slash:
            return _redirect(f"{normalized}/")
        if name != normalized:
            # PEP 503: project pages live at the normalized name. Relative, so that
            # any mount prefix and a token in the path survive the redirect.
            return _redirect(f"../{normalized}/")
        return self._project(environ, channel, normalized)

    def _media_type(self, environ: WSGIEnvironment) -> str:
        # PEP 691's optional URL parameter, for people exploring with a browser.
        query = dict(_query(environ))
        requested = query.get("format")
        if requested is not None:
            requested = _LATEST.get(requested, requested)
            if requested in MEDIA_TYPES:
                return requested
            raise http_error(
                406,
                f"Format {requested!r} is not one of {', '.join(MEDIA_TYPES)}.",
                headers=[_VARY],
            )
        media_type = negotiate(environ.get("HTTP_ACCEPT"))
        if media_type is None:
            raise http_error(
                406,
                f"This index serves {', '.join(MEDIA_TYPES)}; the Accept header allows none.",
                headers=[_VARY],
            )
        return media_type

    def _index(self, environ: WSGIEnvironment, channel: Channel) -> Response:
        media_type = self._media_type(environ)

        def load() -> tuple[dict[str, Any] | None, str]:
            projects, stat = self.store.projects(channel)
            return index_page(projects), stat.etag if stat else "-"

        key = self.store.projects_key(channel)
        return self._page(environ, channel, ("index",), key, media_type, load)

    def _project(self, environ: WSGIEnvironment, channel: Channel, name: str) -> Response:
        media_type = self._media_type(environ)

        def load() -> tuple[dict[str, Any] | None, str]:
            project = self.store.project(channel, name)
            if project is None:
                return None, "-"
            return project_page(project), project.stat.etag

        key = self.store.project_key(channel, name)
        return self._page(environ, channel, ("project", name), key, media_type, load, name)

    def _page(
        self,
        environ: WSGIEnvironment,
        channel: Channel,
        page: tuple[str, ...],
        key: str,
        media_type: str,
        load: Callable[[], tuple[dict[str, Any] | None, str]],
        project: str | None = None,
    ) -> Response:
        try:
            storage_etag = self.storage.stat(key).etag
        except FileNotFoundError:
            if project is not None:
                raise _not_found(f"Project {project!r}") from None
            storage_etag = "-"  # a channel without Python packages: an empty index
        serialization = "json" if media_type == JSON else "html"
        cache_key = (channel.name, *page, serialization)
        body = self.cache.get(cache_key, storage_etag)
        if body is None and not is_resource_modified(environ, _page_etag(storage_etag, media_type)):
            body = b""  # the client's copy is current (a 304 follows): nothing to read
        if body is None:
            data, storage_etag = load()
            if data is None:
                raise _not_found(f"Project {project!r}")
            body = render(data, media_type)
            self.cache.put(cache_key, storage_etag, body, len(body))
        content_type = media_type if media_type == JSON else f"{media_type}; charset=utf-8"
        response = Response(body, content_type=content_type)
        response.headers.add(*_VARY)
        response.set_etag(_page_etag(storage_etag, media_type))
        # Revalidated on every use: an upload must show at once, and a 304 is cheap.
        response.headers["Cache-Control"] = (
            f"{'public' if channel.public else 'private'}, max-age=0, must-revalidate"
        )
        return response.make_conditional(environ)

    # -- files -------------------------------------------------------------------

    def _file(self, environ: WSGIEnvironment, channel: Channel, rest: str) -> Response:
        authorize(environ, channel, Scope.READ)
        self._read_only(environ, "Files are read-only.")
        sha256, _, filename = rest.partition("/")
        if not _SHA256.match(sha256) or not filename or "/" in filename:
            raise _not_found("This file")
        metadata = filename.endswith(".metadata")
        record = self._committed(channel, filename.removesuffix(".metadata"))
        if record is None or record.sha256 != sha256 or (metadata and not record.metadata_sha256):
            raise _not_found(f"File {filename!r}")
        key = self.store.blob_key(channel, sha256, filename)
        if self.redirect_downloads and not metadata:
            # The store sends the bytes; the presigned URL is made locally, no request.
            url = self.storage.presigned_url(key, self.redirect_downloads)  # type: ignore[attr-defined]
            redirect = Response(status=302, headers={"Location": url})
            redirect.headers["Cache-Control"] = "private, no-store"  # the URL expires
            return redirect
        try:
            if environ.get("REQUEST_METHOD") == "HEAD":
                stream, stat = None, self.storage.stat(key)
            else:
                stream, stat = self.storage.open(key)
        except FileNotFoundError:  # deleted since the record was read
            raise _not_found(f"File {filename!r}") from None
        response = Response(
            wrap_file(environ, stream) if stream is not None else b"",
            mimetype="text/plain" if metadata else "application/octet-stream",
            direct_passthrough=True,
        )
        response.content_length = stat.size
        # The path names the file's sha256, and its METADATA is derived from it.
        response.set_etag(f"{sha256}-metadata" if metadata else sha256)
        response.last_modified = dt.datetime.fromtimestamp(stat.mtime, dt.UTC)
        response.headers["Cache-Control"] = (
            f"{'public' if channel.public else 'private'}, max-age={FILE_MAX_AGE}, immutable"
        )
        try:
            return response.make_conditional(environ, accept_ranges=True, complete_length=stat.size)
        except RequestedRangeNotSatisfiable:
            response.close()
            raise

    def _committed(self, channel: Channel, filename: str) -> FileRecord | None:
        """The record of a file, if committed: only those are served (a blob whose
        upload never committed, or that is being deleted, is not).

        PythonStore.open_blob checks the same, but by reading and parsing the whole
        project document on every download; here the parsed document is cached, and
        checked with one ``stat`` like the pages.
        """
        try:
            name = manage.project_of(filename)
        except manage.InvalidTargetError:
            return None
        try:
            storage_etag = self.storage.stat(self.store.project_key(channel, name)).etag
        except FileNotFoundError:
            return None
        cache_key = (channel.name, "records", name)
        records: dict[str, FileRecord] | None = self.cache.get(cache_key, storage_etag)
        if records is None:
            project = self.store.project(channel, name)
            if project is None:
                return None
            records = {record.filename: record for record in project.files}
            weight = sum(512 + len(filename) for filename in records)
            self.cache.put(cache_key, project.stat.etag, records, weight)
        return records.get(filename)

    # -- yank, unyank, delete ----------------------------------------------------

    def _admin(self, environ: WSGIEnvironment, channel: Channel, action: str) -> Response:
        authorize(environ, channel, Scope.ADMIN)
        if environ.get("REQUEST_METHOD") != "POST":
            raise http_error(
                405, f"Send a POST with a form to {action} files.", headers=[("Allow", "POST")]
            )
        request = Request(environ)
        request.max_content_length = MAX_ADMIN_FORM
        request.max_form_memory_size = MAX_ADMIN_FORM
        try:
            form = request.form
        except RequestEntityTooLarge:
            raise http_error(413, f"The form is larger than {MAX_ADMIN_FORM} bytes.") from None
        except BadRequest:
            raise http_error(400, "The body is not a valid form.") from None
        finally:
            request.close()
        try:
            target = manage.target(
                filename=form.get("filename"),
                project=form.get("project"),
                version=form.get("version"),
            )
            options = {"reason": form.get("reason", "")} if action == "yank" else {}
            files = _ADMIN_ACTIONS[action](self.store, channel, target, **options)
        except manage.InvalidTargetError as exc:
            raise http_error(400, str(exc)) from None
        except manage.NoSuchFileError as exc:
            raise http_error(404, str(exc)) from None
        body = {"action": action, "project": target.project, "files": files}
        return Response(json.dumps(body) + "\n", mimetype="application/json")

    # -- helpers -----------------------------------------------------------------

    @staticmethod
    def _read_only(environ: WSGIEnvironment, sentence: str) -> None:
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            raise http_error(405, sentence, headers=[("Allow", "GET, HEAD")])


def _redirect(location: str) -> Response:
    response = Response(f"Moved to {location}\n", status=301, mimetype="text/plain")
    response.headers["Location"] = location  # relative: RFC 9110 allows it
    return response


def _query(environ: WSGIEnvironment) -> list[tuple[str, str]]:
    return parse_qsl(environ.get("QUERY_STRING", ""))
