"""Serves the PEP 503/691 simple index and the files it links.

::

    app = SimpleIndexMiddleware(app, storage)      # below ChannelMiddleware

Under a channel (``SCRIPT_NAME`` ends with ``/<CHANNEL>``) it owns:

- ``GET|HEAD /simple/`` and ``/simple/<project>/``: the index, HTML (PEP 503) or
  JSON (PEP 691) by the ``Accept`` header, HTML when there is none;
- ``GET|HEAD /files/<sha256>/<filename>`` and ``<file URL>.metadata`` (PEP 658);
- on a channel with a Python upstream, ``GET|HEAD /files/upstream/<algorithm>/<hex>/
  <filename>`` (and its ``.metadata``): a file of an upstream project, fetched once
  and then served from storage (see :mod:`~private_channels.pypi.upstream` and
  :mod:`~private_channels.core.proxy`).

A project that exists in the channel is served from the channel alone and never waits
on the upstream, unless the channel's allowlist names it; any other project comes from
the upstream, with links back under the channel.

Everything else goes to the wrapped app.  A page costs one ``stat`` of one document
when its rendering is in this process's cache, and one read when that document changed
(an upload or a yank through any process changes its storage ETag), never a listing;
no archive is ever opened.  Files go out through the core's one download response
(:func:`~..core.download.file_response`), and pages are kept in its cache
(:class:`~..core.cache.DocumentCache`).
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from packaging.utils import canonicalize_name
from werkzeug.datastructures import MIMEAccept
from werkzeug.exceptions import HTTPException
from werkzeug.http import is_resource_modified, parse_accept_header
from werkzeug.wrappers import Response

from ..auth import authorize
from ..core.answers import PRECONDITIONS, depends, offer
from ..core.blobs import RecordDocument
from ..core.document import DocumentResponse
from ..core.download import file_response
from ..core.proxy import (
    STATE_HEADER,
    Snapshot,
    UpstreamHashMismatchError,
    UpstreamUnavailableError,
    blob_key,
    valid_hash,
)
from ..core.reader import ReadMiddleware
from ..core.upstream import UpstreamError
from ..errors import http_error
from ..redaction import redact_tokens
from ..routing import current_channel
from ..tokens import Scope
from . import manage
from .render import HTML, JSON, MEDIA_TYPES, TEXT_HTML, index_page, project_page, render
from .store import MAX_PROJECT_NAME, FileRecord, Project, PythonStore
from .upstream import (
    ACCEPT,
    allows,
    merge_pages,
    offered,
    parse_filename,
    parse_project_page,
    project_url,
    published,
    upstream_page,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication, WSGIEnvironment

    from ..channels import Channel

__all__ = ["SimpleIndexMiddleware", "negotiate"]

# Bump when the rendering changes, so that clients' cached pages stop validating.
RENDER_VERSION = "1"
FILE_MAX_AGE = 365 * 24 * 3600  # a file's URL names its sha256: it never changes

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
# pip's and uv's Accept headers are some 100 characters; a longer one is not parsed (nor
# kept in the cache of parsed headers below).
MAX_ACCEPT = 4096


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

    No header (or one longer than :data:`MAX_ACCEPT`, which is not parsed), or one
    whose best matches are all through ``*/*``, gets HTML
    (``text/html`` unless refused): PEP 691 treats a missing header as ``*/*``, and
    browsers and old tools want HTML.  Otherwise the highest quality wins, then the
    most specific match, then JSON, the most expressive format (PEP 691's advice).
    pip and uv list the JSON type first, with HTML at a lower quality, and get JSON::

        >>> negotiate("application/vnd.pypi.simple.v1+json, text/html;q=0.01")
        'application/vnd.pypi.simple.v1+json'
        >>> negotiate(None), negotiate("application/json")
        ('text/html', None)
    """
    if accept is None or not accept.strip() or len(accept) > MAX_ACCEPT:
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


@functools.lru_cache(maxsize=4096)  # pure, and asked for on every page view
def _page_etag(storage_etag: str, media_type: str) -> str:
    seed = f"{RENDER_VERSION}\0{media_type}\0{storage_etag}".encode()
    return hashlib.sha256(seed).hexdigest()[:40]


def _not_found(what: str) -> HTTPException:
    return http_error(404, f"{what} is not in this channel.")


class SimpleIndexMiddleware(ReadMiddleware[PythonStore]):
    """The read side of a channel's Python packages (see :class:`~..core.reader.ReadMiddleware`
    for the options)."""

    store_type = PythonStore

    def route(self, environ: WSGIEnvironment, path: str) -> WSGIApplication | None:
        if path == "/simple" or path.startswith("/simple/"):
            return self._simple(environ, current_channel(environ), path[len("/simple") :])
        if path.startswith("/files/upstream/"):
            channel = current_channel(environ)
            return self._upstream_file(environ, channel, path[len("/files/upstream/") :])
        if path.startswith("/files/"):
            return self._file(environ, current_channel(environ), path[len("/files/") :])
        return None

    # -- the index ---------------------------------------------------------------

    def _simple(self, environ: WSGIEnvironment, channel: Channel, rest: str) -> WSGIApplication:
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
        if len(name) > MAX_PROJECT_NAME:
            raise _not_found("A project with a name this long")
        if extra or not _PROJECT_NAME.match(name):
            raise _not_found(f"Project {name!r}")
        normalized = canonicalize_name(name)
        if redact_tokens(normalized) != normalized:
            # A token sent as a project name (P/<CHANNEL>/simple/<TOKEN>): no redirect
            # may carry it back (or to a log); no project is named like one.
            raise _not_found("A project named like a token")
        if not slash:
            return _redirect(f"{normalized}/")
        if name != normalized:
            # PEP 503: project pages live at the normalized name. Relative, so that
            # any mount prefix and a token in the path survive the redirect.
            return _redirect(f"../{normalized}/")
        return self._project(environ, channel, normalized)

    def _media_type(self, environ: WSGIEnvironment) -> str:
        # PEP 691's optional URL parameter, for people exploring with a browser.
        requested = dict(_query(environ)).get("format") if environ.get("QUERY_STRING") else None
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

    def _index(self, environ: WSGIEnvironment, channel: Channel) -> WSGIApplication:
        media_type = self._media_type(environ)

        def load() -> tuple[dict[str, Any] | None, str]:
            projects, stat = self.store.projects(channel)
            return index_page(projects), stat.etag if stat else "-"

        key = self.store.projects_key(channel)
        return self._page(environ, channel, ("index",), key, media_type, load)

    def _project(self, environ: WSGIEnvironment, channel: Channel, name: str) -> WSGIApplication:
        media_type = self._media_type(environ)
        if channel.python_upstream is not None:
            local = self._exists(self.store.project_key(channel, name))
            # The guard against dependency confusion: a name of the channel's own is
            # served from the channel alone (below), unless the allowlist names it.
            if not local or allows(channel, name):
                return self._proxied(environ, channel, name, media_type, local=local)

        def load() -> tuple[dict[str, Any] | None, str]:
            project = self.store.project(channel, name)
            if project is None:
                return None, "-"
            # The downloads that follow a page (pip's) check their file in these: kept
            # now, from this very read, instead of on the first download.
            self._keep_records(channel, project)
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
    ) -> DocumentResponse:
        try:
            storage_etag = self.storage.stat(key).etag
        except FileNotFoundError:
            if project is not None:
                raise _not_found(f"Project {project!r}") from None
            storage_etag = "-"  # a channel without Python packages: an empty index
        serialization = "json" if media_type == JSON else "html"
        cache_key = (channel.name, *page, serialization)
        page_etag = _page_etag(storage_etag, media_type)
        body = self.cache.get(cache_key, storage_etag)
        if body is None and not is_resource_modified(environ, page_etag):
            body = b""  # the client's copy is current (a 304 follows): nothing to read
        if body is None:

            def make() -> tuple[bytes, int, str | None]:
                data, read = load()
                if data is None:
                    raise _not_found(f"Project {project!r}")
                body = render(data, media_type)
                return body, len(body), read

            # Rendered once however many requests ask for it at once (the cache's flights;
            # the read's own ETag, which may be newer than the stat's, names the page).
            body, storage_etag = self.cache.snapshot(cache_key, storage_etag, make)
            page_etag = _page_etag(storage_etag, media_type)
        response = DocumentResponse(
            body,
            etag=page_etag,
            content_type=media_type if media_type == JSON else f"{media_type}; charset=utf-8",
            # Revalidated on every use: an upload must show at once, and a 304 is cheap.
            cache_control=(
                f"{'public' if channel.public else 'private'}, max-age=0, must-revalidate"
            ),
            vary=("Accept",),
        )
        # Decided by the path, the credentials, Accept and this document (the channel's
        # record, which decided the rest, the channel layer named).
        depends(environ, key, storage_etag)
        if not body:  # the 304 this request's preconditions earn, without the page
            return offer(environ, response, vary=("HTTP_ACCEPT", *PRECONDITIONS), renew=True)
        return offer(environ, response, vary=("HTTP_ACCEPT",), size=len(body), renew=True)

    # -- projects from the upstream -------------------------------------------------

    def _exists(self, key: str) -> bool:
        try:
            self.storage.stat(key)
        except FileNotFoundError:
            return False
        return True

    def _upstream_project(self, channel: Channel, name: str) -> Snapshot:
        """The stored upstream page of ``name``, refreshed when older than the TTL (its
        data ``None`` when the upstream has no such project).  Raises
        :class:`UpstreamUnavailableError` when the upstream fails and nothing is stored."""
        upstream = channel.python_upstream
        assert upstream is not None
        return self.proxy.document(
            self.upstream_key(channel, "pages", name),
            ttl=channel.upstream_ttl,
            fetch=lambda etag, modified: self.proxy.client.get(
                upstream,
                project_url(upstream, name),
                accept=ACCEPT,
                etag=etag,
                last_modified=modified,
            ),
            parse=lambda fetched, old, now: parse_project_page(fetched, name, upstream, old, now),
        )

    def _proxied(
        self, environ: WSGIEnvironment, channel: Channel, name: str, media_type: str, *, local: bool
    ) -> Response:
        upstream = channel.python_upstream
        assert upstream is not None
        try:
            snapshot = self._upstream_project(channel, name)
        except UpstreamUnavailableError:
            if not local:
                raise http_error(
                    502,
                    f"The upstream index did not answer for project {name!r} and nothing of "
                    "it is stored here; try again later.",
                ) from None
            snapshot = Snapshot("unavailable", "-", 0.0)
        stored = snapshot.data
        if stored is None and not local:
            raise http_error(404, f"Project {name!r} is neither in this channel nor upstream.")
        cutoff = self.cutoff(channel)
        key = self.store.project_key(channel, name)
        # The page changes with the stored upstream page, the channel's own project
        # document, and (with a minimum age) the number of files old enough.
        valid = "\0".join((
            snapshot.etag,
            self.storage.stat(key).etag if local else "-",
            str(len(offered(stored["files"], cutoff))) if stored and cutoff else "all",
        ))  # fmt: skip

        def make() -> tuple[bytes, int]:
            from_upstream = None
            if stored is not None:
                from_upstream = upstream_page(stored, project=name, upstream=upstream,
                                              cutoff=cutoff)  # fmt: skip
            project = self.store.project(channel, name) if local else None
            if project is not None:
                page = project_page(project)
                if from_upstream is not None:
                    page = merge_pages(page, from_upstream, deleted=project.deleted)
            elif from_upstream is not None:
                page = from_upstream
            else:  # the channel's own project was deleted meanwhile
                raise http_error(404, f"Project {name!r} is neither in this channel nor upstream.")
            body = render(page, media_type)
            return body, len(body)

        cache_key = (channel.name, "upstream-page", name, media_type)
        body: bytes = self.cache.get_or_make(cache_key, valid, make)
        content_type = media_type if media_type == JSON else f"{media_type}; charset=utf-8"
        response = Response(body, content_type=content_type)
        response.headers.add(*_VARY)
        response.set_etag(hashlib.sha256(RENDER_VERSION.encode() + body).hexdigest()[:40])
        response.headers["Cache-Control"] = (
            f"{'public' if channel.public else 'private'}, max-age=0, must-revalidate"
        )
        response.headers[STATE_HEADER] = snapshot.state
        return response.make_conditional(environ)

    def _upstream_file(
        self, environ: WSGIEnvironment, channel: Channel, rest: str
    ) -> WSGIApplication:
        authorize(environ, channel, Scope.READ)
        self._read_only(environ, "Files are read-only.")
        algorithm, _, rest = rest.partition("/")
        hexdigest, _, filename = rest.partition("/")
        upstream = channel.python_upstream
        if upstream is None or not valid_hash(algorithm, hexdigest) or "/" in filename:
            raise _not_found("This file")
        metadata = filename.endswith(".metadata")
        try:
            name, _ = parse_filename(filename.removesuffix(".metadata"))
        except ValueError:
            raise _not_found("This file") from None
        if self._exists(self.store.project_key(channel, name)) and not allows(channel, name):
            # A name of the channel's own: no upstream file of it is served, not even
            # one stored before the channel had the name.
            raise _not_found(f"File {filename!r}")
        entry = self._upstream_entry(channel, name, filename.removesuffix(".metadata"))
        if entry is None or entry["hash"] != [algorithm, hexdigest]:
            raise _not_found(f"File {filename!r}")
        cutoff = self.cutoff(channel)
        if cutoff is not None and published(entry) > cutoff:
            raise http_error(404, f"File {filename!r} is younger than this channel's minimum age.")
        if metadata and not entry.get("metadata"):
            raise _not_found(f"File {filename!r}")
        algorithm, hexdigest = entry["metadata"] if metadata else entry["hash"]
        blobs = self.upstream_key(channel, "blobs")
        files = RecordDocument(self.storage, self.upstream_key(channel, "files", f"{name}.json"))
        try:
            record, state = self.proxy.file(
                upstream,
                entry["url"] + (".metadata" if metadata else ""),
                document=files,
                blobs=blobs,
                filename=filename,
                expected=(algorithm, hexdigest),
                max_bytes=self.limits.max_metadata_size if metadata else None,
            )
        except UpstreamHashMismatchError as exc:
            raise http_error(502, str(exc)) from None
        except UpstreamError as exc:
            raise http_error(502, f"The upstream did not deliver {filename!r}: {exc}") from None
        return file_response(
            environ,
            self.storage,
            blob_key(blobs, record),
            etag=record.sha256,
            mimetype="text/plain" if metadata else "application/octet-stream",
            cache_control=(
                f"{'public' if channel.public else 'private'}, max-age={FILE_MAX_AGE}, immutable"
            ),
            redirect=0 if metadata else self.redirect_downloads,
            not_found=f"File {filename!r} is stored but its content is missing.",
            headers=[(STATE_HEADER, state)],
        )

    def _upstream_entry(self, channel: Channel, name: str, filename: str) -> dict[str, Any] | None:
        """The stored upstream entry of a file.  The upstream is asked only when the
        stored page does not list the file (it may be new there) and is past its TTL."""
        snapshot = self.proxy.stored(self.upstream_key(channel, "pages", name))
        entry = _entry_of(snapshot.data if snapshot is not None else None, filename)
        if entry is None:
            try:
                entry = _entry_of(self._upstream_project(channel, name).data, filename)
            except UpstreamUnavailableError:
                return None
        return entry

    # -- files -------------------------------------------------------------------

    def _file(self, environ: WSGIEnvironment, channel: Channel, rest: str) -> WSGIApplication:
        authorize(environ, channel, Scope.READ)
        self._read_only(environ, "Files are read-only.")
        sha256, _, filename = rest.partition("/")
        if not _SHA256.match(sha256) or not filename or "/" in filename:
            raise _not_found("This file")
        metadata = filename.endswith(".metadata")
        record = self._committed(channel, filename.removesuffix(".metadata"))
        if record is None or record.sha256 != sha256 or (metadata and not record.metadata_sha256):
            raise _not_found(f"File {filename!r}")
        respond = partial(
            file_response,
            environ,
            self.storage,
            self.store.blob_key(channel, record) + (".metadata" if metadata else ""),
            # The path names the file's sha256, and its METADATA is derived from it.
            etag=f"{sha256}-metadata" if metadata else sha256,
            mimetype="text/plain" if metadata else "application/octet-stream",
            cache_control=(
                f"{'public' if channel.public else 'private'}, max-age={FILE_MAX_AGE}, immutable"
            ),
            redirect=0 if metadata else self.redirect_downloads,
            not_found=f"File {filename!r} is not in this channel.",
            keep=True,
        )
        try:
            return respond()
        except HTTPException as error:
            # A METADATA not kept yet (uploads to a local store leave it to here).
            if not metadata or error.code != 404 or not self.store.keep_beside(channel, record):
                raise
        return respond()

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
        records: dict[str, FileRecord] | None = self.cache.get(
            (channel.name, "records", name), storage_etag
        )
        if records is None:
            project = self.store.project(channel, name)
            if project is None:
                return None
            records = self._keep_records(channel, project)
        return records.get(filename)

    def _keep_records(self, channel: Channel, project: Project) -> dict[str, FileRecord]:
        """The project's records by filename, kept for :meth:`_committed` until its
        document changes."""
        records = {record.filename: record for record in project.files}
        weight = sum(512 + len(filename) for filename in records)
        self.cache.put((channel.name, "records", project.name), project.stat.etag, records, weight)
        return records

    # -- helpers -----------------------------------------------------------------

    @staticmethod
    def _read_only(environ: WSGIEnvironment, sentence: str) -> None:
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            raise http_error(405, sentence, headers=[("Allow", "GET, HEAD")])


def _entry_of(stored: dict[str, Any] | None, filename: str) -> dict[str, Any] | None:
    for entry in stored["files"] if stored is not None else ():
        if entry["filename"] == filename:
            found: dict[str, Any] = entry
            return found
    return None


def _redirect(location: str) -> Response:
    response = Response(f"Moved to {location}\n", status=301, mimetype="text/plain")
    response.headers["Location"] = location  # relative: RFC 9110 allows it
    return response


def _query(environ: WSGIEnvironment) -> list[tuple[str, str]]:
    return parse_qsl(environ.get("QUERY_STRING", ""))
