"""Serves ``src/contrib`` and ``bin/`` of a channel as a CRAN-like repository.

::

    app = CranRepositoryMiddleware(app, storage)

    # Rscript -e 'install.packages("abc", repos = "http://HOST/api/repo/t/TOKEN/CHANNEL")'

What it serves, under ``P/<CHANNEL>/`` (the layout R's ``contrib.url()`` expects):

- ``src/contrib/PACKAGES``, ``PACKAGES.gz``, ``PACKAGES.rds`` and the latest
  ``<pkg>_<ver>.tar.gz`` of each package; older versions under
  ``src/contrib/Archive/<pkg>/``, listed in ``src/contrib/Meta/archive.rds`` (which
  ``remotes::install_version`` reads; ``install.packages`` never looks in Archive/).
- ``bin/windows/contrib/<x.y>/`` (``.zip``) and ``bin/macosx[/<platform>]/contrib/<x.y>/``
  (``.tgz``), each with its own index files.
- ``__linux__/<distribution>/src/contrib/``, as Posit Package Manager serves Linux
  binaries: the same indexes as ``src/contrib``, but a download is the Linux binary of
  that very version when one was uploaded for the distribution, the R version and the
  platform that R's ``User-Agent`` names, and the source otherwise (``Vary: User-Agent``).
  As with Package Manager, R must send its ``HTTPUserAgent`` option, which R 4.2's
  libcurl does only once it is set explicitly::

      options(HTTPUserAgent = sprintf("R/%s R (%s)", getRversion(), paste(getRversion(),
          R.version["platform"], R.version["arch"], R.version["os"])))

R asks for ``PACKAGES.rds`` first and falls back to ``PACKAGES.gz`` then ``PACKAGES``;
all three are rendered from one snapshot of the directory's index document and cached
by its ETag, so they agree with each other and are never half-written.  A directory
nothing was uploaded to serves empty indexes, so R says "not available" rather than
warning that the repository is broken.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response
from werkzeug.wsgi import wrap_file

from ..auth import authorize
from ..errors import http_error
from ..routing import current_channel
from ..tokens import Scope
from .description import InvalidPackageError, parse_built
from .index import INDEX_FILES, render, render_archive_rds
from .store import (
    DIRECTORY_PATTERN,
    DISTRIBUTION_PATTERN,
    CranRecord,
    CranStore,
    Directory,
    linux_directory,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from ..channels import Channel
    from ..storage import Storage

__all__ = ["CranRepositoryMiddleware"]

_NAME = r"[A-Za-z][A-Za-z0-9.]*[A-Za-z0-9]"
_FILE = rf"{_NAME}_[0-9][0-9.-]*\.(?:tar\.gz|zip|tgz)"
# The directory part has a variable depth (bin/macosx[/<platform>]/contrib/<x.y>),
# which regular expressions say more plainly than a werkzeug rule map.
_INDEX = re.compile(rf"/(?P<dir>{DIRECTORY_PATTERN})/(?P<name>PACKAGES(?:\.gz|\.rds)?)")
_DOWNLOAD = re.compile(rf"/(?P<dir>{DIRECTORY_PATTERN})/(?P<file>{_FILE})")
_ARCHIVED = re.compile(rf"/src/contrib/Archive/(?P<package>{_NAME})/(?P<file>{_FILE})")
_META = "/src/contrib/Meta/archive.rds"
_ROOTS = ("/src/", "/bin/", "/__linux__/")
# Posit Package Manager's layout for Linux binaries: a repository per distribution whose
# src/contrib serves, for each file, the binary built for the asking R if there is one.
_LINUX = re.compile(rf"/__linux__/(?P<distribution>{DISTRIBUTION_PATTERN})(?=/src/)")
# The User-Agent that Posit Package Manager asks R users to set (R 4.2's libcurl sends
# only "libcurl/<version>" otherwise): "R/4.2.2 R (4.2.2 x86_64-pc-linux-gnu x86_64
# linux-gnu)"; the "R (...)" part alone is R's own HTTPUserAgent option.
_R_AGENT = re.compile(r"\bR \((?P<r>[0-9]+\.[0-9]+)\.[0-9]+\S* (?P<platform>\S+) \S+ \S+\)")

_MIMETYPES = {
    "PACKAGES": "text/plain; charset=utf-8",
    ".gz": "application/gzip",
    ".tgz": "application/gzip",
    ".zip": "application/zip",
    ".rds": "application/octet-stream",
}


def _mimetype(name: str) -> str:
    for suffix, mimetype in _MIMETYPES.items():
        if name.endswith(suffix):
            return mimetype
    return "application/octet-stream"


class CranRepositoryMiddleware:
    def __init__(
        self,
        app: WSGIApplication,
        storage: Storage,
        *,
        cache_size: int = 256,
        redirect_downloads: int = 0,
    ) -> None:
        """``cache_size``: how many rendered index files (and parsed index documents)
        each process keeps.  ``redirect_downloads`` (seconds, 0 = off): on a storage
        that presigns URLs (S3), answer a package download with a 302 to a URL of the
        store valid that long, so that large files never pass through this process."""
        self.app = app
        self.store = CranStore(storage)
        presign = getattr(storage, "presigned_url", None)
        self.redirect_downloads = redirect_downloads if presign is not None else 0
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, str, str], tuple[bytes, str]] = OrderedDict()
        self._directories: OrderedDict[str, Directory] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        if not path.startswith(_ROOTS):
            return self.app(environ, start_response)
        try:
            response = self.route(environ, path)
        except HTTPException as error:
            return error(environ, start_response)
        if response is None:
            return self.app(environ, start_response)
        return response(environ, start_response)

    def route(self, environ: WSGIEnvironment, path: str) -> Response | None:
        """The response for a path this middleware owns, ``None`` for any other."""
        linux = _LINUX.match(path)
        distribution = None
        if linux is not None:
            distribution, path = linux["distribution"], path[linux.end() :]
        index = _INDEX.fullmatch(path)
        download = _DOWNLOAD.fullmatch(path)
        archived = _ARCHIVED.fullmatch(path)
        if not (index or download or archived or path == _META):
            return None
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            raise http_error(
                405, "This URL is read-only; upload with POST to the channel URL itself.",
                headers=[("Allow", "GET, HEAD")],
            )  # fmt: skip
        channel = current_channel(environ)
        authorize(environ, channel, Scope.READ)
        if index:
            directory = self.directory(channel, index["dir"])
            return self.index_file(environ, channel, directory, index["name"])
        if path == _META:
            directory = self.directory(channel, "src/contrib")
            return self.index_file(environ, channel, directory, "archive.rds")
        if download:
            directory = self.directory(channel, download["dir"])
            record = directory.find(download["file"])
            # CRAN keeps only the latest source in src/contrib; older ones are archived.
            if record is None or (
                directory.path == "src/contrib" and not directory.is_latest(record)
            ):
                raise http_error(404, f"{download['file']} is not in {download['dir']}/.")
            if distribution is not None and directory.path == "src/contrib":
                binary = self.linux_binary(environ, channel, distribution, record)
                return self.package_file(environ, channel, binary or record, vary=True)
            return self.package_file(environ, channel, record)
        assert archived is not None
        directory = self.directory(channel, "src/contrib")
        record = directory.find(archived["file"])
        if record is None or record.package != archived["package"] or directory.is_latest(record):
            raise http_error(404, f"{archived['file']} is not in the archive.")
        return self.package_file(environ, channel, record)

    def directory(self, channel: Channel, path: str) -> Directory:
        """A snapshot of one directory's records, parsed once per document version.

        A ``stat`` says whether the snapshot kept from an earlier request is still the
        current one; only a changed document is read and parsed again.
        """
        key = self.store.index_key(channel, path)
        try:
            etag = self.store.storage.stat(key).etag
        except FileNotFoundError:
            return Directory(path=path, records=(), stat=None)
        with self._lock:
            kept = self._directories.get(key)
            if kept is not None and kept.stat is not None and kept.stat.etag == etag:
                self._directories.move_to_end(key)
                return kept
        directory = self.store.directory(channel, path)
        with self._lock:
            self._directories[key] = directory
            while len(self._directories) > self.cache_size:
                self._directories.popitem(last=False)
        return directory

    def linux_binary(
        self, environ: WSGIEnvironment, channel: Channel, distribution: str, record: CranRecord
    ) -> CranRecord | None:
        """The binary of ``record``'s very version built for the R that asks, if any."""
        agent = _R_AGENT.search(str(environ.get("HTTP_USER_AGENT", "")))
        if agent is None:
            return None
        directory = self.directory(channel, linux_directory(distribution, agent["r"]))
        binary = directory.find(record.filename)  # the same name: the same version
        if binary is None:
            return None
        try:
            platform = parse_built(binary.fields.get("Built") or "").platform
        except InvalidPackageError:
            return None
        # An empty platform: no compiled code, good for any architecture.
        return binary if platform in ("", agent["platform"]) else None

    def rendered(self, channel: Channel, directory: Directory, name: str) -> tuple[bytes, str]:
        """An index file's bytes and strong ETag, rendered once per document version."""
        version = directory.stat.etag if directory.stat is not None else "-"
        key = (self.store.index_key(channel, directory.path), version, name)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        body = render_archive_rds(directory) if name == "archive.rds" else render(directory, name)
        entry = (body, hashlib.sha256(body).hexdigest()[:32])
        with self._lock:
            self._cache[key] = entry
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return entry

    def index_file(
        self, environ: WSGIEnvironment, channel: Channel, directory: Directory, name: str
    ) -> Response:
        assert name in (*INDEX_FILES, "archive.rds")
        body, etag = self.rendered(channel, directory, name)
        response = Response(body, mimetype=_mimetype(name))
        response.set_etag(etag)
        # Indexes change with every upload: revalidate (cheap, with the ETag) each time.
        response.cache_control.no_cache = True
        response.cache_control.private = True
        return response.make_conditional(environ)

    def package_file(
        self, environ: WSGIEnvironment, channel: Channel, record: CranRecord, *, vary: bool = False
    ) -> Response:
        if self.redirect_downloads:
            # The store sends the bytes; the presigned URL is made locally, no request.
            url = self.store.storage.presigned_url(  # type: ignore[attr-defined]
                self.store.blob_key(channel, record), self.redirect_downloads
            )
            redirect = Response(status=302, headers={"Location": url})
            redirect.cache_control.private = True
            redirect.cache_control.no_store = True  # the URL expires
            if vary:
                redirect.vary.add("User-Agent")
            return redirect
        response = Response(mimetype=_mimetype(record.filename))
        if vary:
            response.vary.add("User-Agent")
        response.content_length = record.size
        response.set_etag(record.sha256)
        response.last_modified = record.upload_time  # type: ignore[assignment]
        response.cache_control.private = True
        if environ.get("REQUEST_METHOD") == "GET":
            try:
                stream, _ = self.store.open_blob(channel, record)
            except FileNotFoundError:
                # Only if someone removed the file behind the index's back.
                raise http_error(404, f"{record.filename} is listed but missing.") from None
            response.response = wrap_file(environ, stream)
            response.direct_passthrough = True
        try:
            response.make_conditional(environ, accept_ranges=True, complete_length=record.size)
        except HTTPException:
            response.close()  # 416: the open blob (a file, an S3 connection) goes back now
            raise
        if response.status_code in (304, 412):
            response.close()
            response.response = []
        return response
