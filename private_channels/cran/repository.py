"""Serves ``src/contrib`` and ``bin/`` of a channel as a CRAN-like repository.

::

    app = CranRepositoryMiddleware(app, storage)

    # Rscript -e 'install.packages("abc", repos = "http://HOST/api/repo/t/TOKEN/CHANNEL")'

What it serves, under ``P/<CHANNEL>/`` (the layout R's ``contrib.url()`` expects):

- ``src/contrib/PACKAGES``, ``PACKAGES.gz``, ``PACKAGES.rds`` and the latest
  ``<pkg>_<ver>.tar.gz`` of each package; older versions under
  ``src/contrib/Archive/<pkg>/``, listed in ``src/contrib/Meta/archive.rds`` (which
  ``remotes::install_version`` reads; ``install.packages`` never looks in Archive/).
  Yanked files are in no ``PACKAGES`` file, are listed in the archive, and are also
  still served at ``src/contrib/<file>``.
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

On a channel with a CRAN upstream, the index files list the upstream's packages beside
the channel's own, except every name the channel has (in any directory), unless its
allowlist names it; the upstream's packages are fetched on first request, checked
against their ``MD5sum`` and kept in storage, and ``Archive/`` and ``Meta/archive.rds``
are merged the same way (see :mod:`~private_channels.cran.upstream` and
:mod:`~private_channels.core.proxy`).

R asks for ``PACKAGES.rds`` first and falls back to ``PACKAGES.gz`` then ``PACKAGES``;
all three are rendered from one snapshot of the directory's index document and kept in
the core's cache (:class:`~..core.cache.DocumentCache`) by its ETag, so they agree with
each other and are never half-written.  Packages go out through the core's one download
response (:func:`~..core.download.file_response`).  A directory
nothing was uploaded to serves empty indexes, so R says "not available" rather than
warning that the repository is broken.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from werkzeug.utils import get_content_type

from ..core.answers import offer
from ..core.blobs import RecordDocument
from ..core.cache import DocumentCache
from ..core.document import DocumentResponse
from ..core.download import file_response
from ..core.proxy import (
    STATE_HEADER,
    Snapshot,
    UpstreamFile,
    UpstreamHashMismatchError,
    UpstreamUnavailableError,
    blob_key,
)
from ..core.reader import ReadMiddleware
from ..core.upstream import UpstreamError, UpstreamNotFoundError
from ..errors import http_error
from .description import InvalidPackageError, parse_built
from .index import (
    INDEX_FILES,
    gzip_packages,
    render,
    render_archive,
    render_archive_rds,
    render_rows,
)
from .store import (
    DIRECTORY_PATTERN,
    DISTRIBUTION_PATTERN,
    CranRecord,
    CranStore,
    Directory,
    linux_directory,
    listing_order,
)
from .upstream import (
    archive_entries,
    file_index,
    first_seen_times,
    merge_rows,
    parse_archive,
    parse_packages,
    upstream_rows,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication, WSGIEnvironment

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
# One way only to match each part (the patch level's digits are not also "\S*"), so the
# search stays linear in the agent.
_R_AGENT = re.compile(r"\bR \((?P<r>[0-9]{1,3}\.[0-9]{1,3})\.[0-9]\S* (?P<platform>\S+) \S+ \S+\)")
# R's own agent is some 60 characters; a longer one is not R's, and is not searched.
MAX_AGENT = 512
# The longest path below a channel that this layout holds: a directory
# (bin/macosx/<platform>/contrib/<x.y>) and a filename; longer ones are not parsed.
MAX_PATH = 512

_MIMETYPES = {
    "PACKAGES": "text/plain",  # werkzeug adds "; charset=utf-8" to text types
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


class CranRepositoryMiddleware(ReadMiddleware[CranStore]):
    """Everything under ``src/``, ``bin/`` and ``__linux__/`` of a channel; the options
    are :class:`~..core.reader.ReadMiddleware`'s."""

    store_type = CranStore

    def __init__(self, app: WSGIApplication, storage: Storage, **options: Any) -> None:
        super().__init__(app, storage, **options)
        # Parsed directories apart from renderings: the src/contrib of 10,000 packages
        # with 3 versions each weighs some 17 MB, more than a quarter of the page cache,
        # and every download of a package looks its record up in it.
        self.snapshots = DocumentCache(self.cache_bytes, max_entry=self.cache_bytes)
        # One thread reads and parses a directory that is not kept; the others asking
        # for it meanwhile wait for its snapshot rather than parse it too (R clients
        # at once on a cold process: a 14 MB document is some 35 MB parsed, each):
        # DocumentCache.snapshot, a flight per directory and version.

    def route(self, environ: WSGIEnvironment, path: str) -> WSGIApplication | None:
        if not path.startswith(_ROOTS) or len(path) > MAX_PATH:
            return None
        linux = _LINUX.match(path)
        distribution = None
        if linux is not None:
            distribution, path = linux["distribution"], path[linux.end() :]
        index = _INDEX.fullmatch(path)
        download = _DOWNLOAD.fullmatch(path)
        archived = _ARCHIVED.fullmatch(path)
        if not (index or download or archived or path == _META):
            return None
        channel = self.readable(environ)
        proxied = channel.cran_upstream is not None
        if index:
            if proxied:
                directory = self.directory(channel, index["dir"])
                return self.merged_index(environ, channel, directory, index["name"])
            return self.index_file(environ, channel, index["dir"], index["name"])
        if path == _META:
            if proxied:
                directory = self.directory(channel, "src/contrib")
                return self.merged_index(environ, channel, directory, "archive.rds")
            return self.index_file(environ, channel, "src/contrib", "archive.rds")
        if download:
            directory = self.directory(channel, download["dir"])
            record = directory.find(download["file"])
            if record is None and proxied:
                return self.upstream_file(environ, channel, directory.path, download["file"])
            # CRAN keeps only the latest source in src/contrib; older ones are archived.
            # A yanked file stays at the URL it had (and in the archive).
            if record is None or (
                directory.path == "src/contrib"
                and not directory.is_latest(record)
                and record.yanked is None
            ):
                raise http_error(404, f"{download['file']} is not in {download['dir']}/.")
            if distribution is not None and directory.path == "src/contrib":
                binary = self.linux_binary(environ, channel, distribution, record)
                return self.package_file(environ, channel, binary or record, vary=True)
            return self.package_file(environ, channel, record)
        assert archived is not None
        directory = self.directory(channel, "src/contrib")
        record = directory.find(archived["file"])
        if record is None and proxied:
            return self.upstream_file(
                environ, channel, "src/contrib", archived["file"], archived=archived["package"]
            )
        if record is None or record.package != archived["package"] or directory.is_latest(record):
            raise http_error(404, f"{archived['file']} is not in the archive.")
        return self.package_file(environ, channel, record)

    def directory(self, channel: Channel, path: str) -> Directory:
        """A snapshot of one directory's records, parsed once per document version.

        A ``stat`` says whether the snapshot kept from an earlier request is still the
        current one; only a changed document is read and parsed again.
        """
        try:
            etag = self.store.storage.stat(self.store.index_key(channel, path)).etag
        except FileNotFoundError:
            return Directory(path=path, records=(), stat=None)
        return self._snapshot(channel, path, etag)

    def _snapshot(self, channel: Channel, path: str, etag: str) -> Directory:
        """The snapshot of the document version ``etag`` (a stat just found it), parsed
        once however many requests ask for it at once (the cache's single flight)."""

        def read() -> tuple[Directory, int, str | None]:
            directory = self.store.directory(channel, path)
            if directory.stat is None:
                return directory, 0, None
            # About what the parsed records hold: their DESCRIPTION fields mostly.
            weight = sum(512 + sum(map(len, filter(None, r.fields.values())))
                         for r in directory.records)  # fmt: skip
            return directory, weight, directory.stat.etag

        key = ("directory", self.store.index_key(channel, path))
        directory: Directory = self.snapshots.snapshot(key, etag, read)[0]
        return directory

    def linux_binary(
        self, environ: WSGIEnvironment, channel: Channel, distribution: str, record: CranRecord
    ) -> CranRecord | None:
        """The binary of ``record``'s very version built for the R that asks, if any."""
        text = str(environ.get("HTTP_USER_AGENT", ""))
        agent = _R_AGENT.search(text) if len(text) <= MAX_AGENT else None
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

    def rendered(self, channel: Channel, path: str, name: str) -> tuple[bytes, str]:
        """An index file's bytes and strong ETag, rendered once per document version.

        A rendering kept from an earlier request costs a ``stat`` of the directory's
        document; only a changed document is read (and parsed, and rendered) again.
        """
        try:
            version = self.store.storage.stat(self.store.index_key(channel, path)).etag
        except FileNotFoundError:
            version = "-"
        return self._rendered(channel, path, name, version)

    def _rendered(self, channel: Channel, path: str, name: str, version: str) -> tuple[bytes, str]:
        def render_it() -> tuple[tuple[bytes, str], int, str | None]:
            if version == "-":
                directory, read = Directory(path=path, records=(), stat=None), "-"
            else:
                directory = self._snapshot(channel, path, version)
                read = directory.stat.etag if directory.stat is not None else "-"
            if name == "archive.rds":
                body = render_archive_rds(directory)
            elif name == "PACKAGES.gz":  # the PACKAGES text, rendered once for both
                body = gzip_packages(self._rendered(channel, path, "PACKAGES", read)[0])
            else:
                body = render(directory, name)
            return (body, hashlib.sha256(body).hexdigest()[:32]), len(body), read

        key = ("rendered", self.store.index_key(channel, path), name)
        rendered: tuple[bytes, str] = self.cache.snapshot(key, version, render_it)[0]
        return rendered

    def index_file(
        self, environ: WSGIEnvironment, channel: Channel, path: str, name: str
    ) -> DocumentResponse:
        assert name in (*INDEX_FILES, "archive.rds")
        body, etag = self.rendered(channel, path, name)
        # Decided by the path, the credentials and the storage (not so a merged index,
        # whose upstream part ages with time).
        return offer(environ, self._index_response(body, etag, name), size=len(body))

    @staticmethod
    def _index_response(
        body: bytes, etag: str, name: str, headers: Iterable[tuple[str, str]] = ()
    ) -> DocumentResponse:
        # Indexes change with every upload: revalidate (cheap, with the ETag) each time.
        return DocumentResponse(
            body,
            etag=etag,
            # werkzeug's Response used to add the charset to text/plain; so does this.
            content_type=get_content_type(_mimetype(name), "utf-8"),
            cache_control="no-cache, private",
            headers=headers,
        )

    # -- the upstream ----------------------------------------------------------------

    def local_names(self, channel: Channel) -> tuple[frozenset[str], str]:
        """Every R package name the channel has, in any of its directories, and a
        signature of the documents they come from (it changes when they do)."""
        prefix = f"{self.store.prefix(channel)}index/"
        directories = []
        for key in self.storage.list(prefix):
            path = key[len(prefix) :].removesuffix(".json")
            try:
                directories.append(self.directory(channel, path))
            except ValueError:
                continue  # not a document of this layout
        signature = "|".join(f"{d.path}={d.stat.etag if d.stat else '-'}" for d in directories)
        names: frozenset[str] = self.cache.get_or_make(
            ("local-names", prefix),
            signature,
            lambda: (frozenset(r.package for d in directories for r in d.records), 4096),
        )
        return names, signature

    def upstream_index(self, channel: Channel, path: str) -> Snapshot:
        """The stored upstream ``PACKAGES`` of directory ``path`` (its data ``None`` when
        the upstream has none, or failed with nothing stored: then its state is
        ``unavailable``, see :data:`~..core.proxy.STATE_HEADER`)."""
        upstream = channel.cran_upstream
        assert upstream is not None
        base = urljoin(upstream.url, f"{path}/")

        def fetch(etag: str | None, modified: str | None) -> Any:
            try:
                return self.proxy.client.get(
                    upstream, f"{base}PACKAGES.gz", accept="*/*", etag=etag, last_modified=modified
                )
            except UpstreamNotFoundError:  # a repository may have the plain file only
                return self.proxy.client.get(
                    upstream, f"{base}PACKAGES", accept="*/*", etag=etag, last_modified=modified
                )

        try:
            return self.proxy.document(
                self.upstream_key(channel, "index", path),
                ttl=channel.upstream_ttl,
                fetch=fetch,
                parse=lambda fetched, old, now: parse_packages(
                    fetched, path, old, now, max_size=self.limits.max_upstream_page
                ),
            )
        except UpstreamUnavailableError:
            return Snapshot("unavailable", "-", 0.0)

    def upstream_archive(self, channel: Channel) -> Snapshot:
        """The stored upstream ``Meta/archive.rds``, as :meth:`upstream_index`."""
        upstream = channel.cran_upstream
        assert upstream is not None
        url = urljoin(upstream.url, "src/contrib/Meta/archive.rds")
        try:
            return self.proxy.document(
                self.upstream_key(channel, "archive", "src/contrib"),
                ttl=channel.upstream_ttl,
                fetch=lambda etag, modified: self.proxy.client.get(
                    upstream, url, accept="*/*", etag=etag, last_modified=modified
                ),
                parse=lambda fetched, old, now: parse_archive(
                    fetched.body, max_size=self.limits.max_upstream_page
                ),
            )
        except UpstreamUnavailableError:
            return Snapshot("unavailable", "-", 0.0)

    def merged_index(
        self, environ: WSGIEnvironment, channel: Channel, directory: Directory, name: str
    ) -> DocumentResponse:
        """An index file of the channel's packages and its upstream's (see the module)."""
        local_names, signature = self.local_names(channel)
        allowed = channel.upstream_allow
        if name == "archive.rds":
            snapshot = self.upstream_archive(channel)

            def make() -> tuple[tuple[bytes, str], int]:
                mine = [(r.package, r.filename, float(r.size), r.upload_time)
                        for r in directory.archived()]  # fmt: skip
                taken = {filename for _, filename, _, _ in mine}
                theirs = archive_entries(
                    snapshot.data or {}, local_names=local_names, allowed=allowed
                )
                body = render_archive([*mine, *(e for e in theirs if e[1] not in taken)])
                return (body, hashlib.sha256(body).hexdigest()[:32]), len(body)

            offered = "archive"
        else:
            snapshot = self.upstream_index(channel, directory.path)
            cutoff = self.cutoff(channel)
            offered = "all"
            if cutoff is not None:
                # What the minimum age lets through changes with time alone: the rows
                # offered change exactly when the cutoff passes a first-seen time.
                index_key = self.upstream_key(channel, "index", directory.path)
                times = self.proxy.derived(index_key, snapshot, "times", first_seen_times)
                offered = str(bisect.bisect_right(times, cutoff))

            def make() -> tuple[tuple[bytes, str], int]:
                rows = upstream_rows(snapshot.data or {}, directory.path, cutoff)
                merged = merge_rows(
                    directory.latest(), rows, local_names=local_names, allowed=allowed
                )
                merged.sort(key=lambda row: listing_order(row.package, row.filename))
                body = render_rows(merged, directory.path, name)
                return (body, hashlib.sha256(body).hexdigest()[:32]), len(body)

        own = directory.stat.etag if directory.stat is not None else "-"
        key = ("merged", self.store.index_key(channel, directory.path), name)
        valid = "\0".join((own, signature, snapshot.etag, ",".join(allowed), offered))
        body, etag = self.cache.get_or_make(key, valid, make)
        return self._index_response(body, etag, name, [(STATE_HEADER, snapshot.state)])

    def upstream_file(
        self,
        environ: WSGIEnvironment,
        channel: Channel,
        path: str,
        filename: str,
        *,
        archived: str | None = None,
    ) -> WSGIApplication:
        """A package file of the upstream: from storage if fetched before, else fetched
        now, checked against the ``MD5sum`` upstream lists, and stored.  ``archived``
        names the package of an ``Archive/`` request."""
        upstream = channel.cran_upstream
        assert upstream is not None
        package = archived or filename.partition("_")[0]
        local_names, _ = self.local_names(channel)
        missing = f"{filename} is not in {path}/." if not archived else (
            f"{filename} is not in the archive.")  # fmt: skip
        if package in local_names and package not in channel.upstream_allow:
            raise http_error(404, missing)  # the guard: the channel's own name
        blobs = self.upstream_key(channel, "blobs")
        files = RecordDocument(
            self.storage, self.upstream_key(channel, "files", f"{path}/{package}.json")
        )
        record = self.proxy.records(files).get(filename)
        if record is not None:  # fetched before: the upstream is not asked
            return self._upstream_response(environ, blobs, record, "cached")
        snapshot = self.upstream_index(channel, path)
        index_key = self.upstream_key(channel, "index", path)
        known = self.proxy.derived(
            index_key, snapshot, "files", lambda stored: file_index(stored, path)
        ).get(filename)
        # Only a file this channel lists (the version offered, after the minimum age);
        # in Archive/, any, checked when it is a version this channel saw listed
        # (upstream's archive.rds publishes no hash for the others).
        if archived is None and (known is None or not known.offered(self.cutoff(channel))):
            raise http_error(404, missing)
        base = urljoin(upstream.url, f"{path}/")
        urls = [] if archived else [f"{base}{filename}"]
        if path == "src/contrib":  # where upstream moved it when a newer version came
            urls.append(f"{base}Archive/{package}/{filename}")
        for url in urls:
            try:
                record, state = self.proxy.file(
                    upstream,
                    url,
                    document=files,
                    blobs=blobs,
                    filename=filename,
                    expected=("md5", known.md5) if known is not None else None,
                    allow_md5=True,
                )
            except UpstreamNotFoundError:
                continue
            except UpstreamHashMismatchError as exc:
                raise http_error(502, str(exc)) from None
            except UpstreamError as exc:
                raise http_error(502, f"The upstream did not deliver {filename}: {exc}") from None
            return self._upstream_response(environ, blobs, record, state)
        raise http_error(404, missing)

    def _upstream_response(
        self, environ: WSGIEnvironment, blobs: str, record: UpstreamFile, state: str
    ) -> WSGIApplication:
        return file_response(
            environ,
            self.storage,
            blob_key(blobs, record),
            etag=record.sha256,
            mimetype=_mimetype(record.filename),
            cache_control="private",
            redirect=self.redirect_downloads,
            not_found=f"{record.filename} is stored but its content is missing.",
            headers=[(STATE_HEADER, state)],
        )

    def package_file(
        self, environ: WSGIEnvironment, channel: Channel, record: CranRecord, *, vary: bool = False
    ) -> WSGIApplication:
        return file_response(
            environ,
            self.store.storage,
            self.store.blob_key(channel, record),
            etag=record.sha256,
            mimetype=_mimetype(record.filename),
            cache_control="private",
            redirect=self.redirect_downloads,
            vary=["User-Agent"] if vary else [],
            not_found=f"{record.filename} is listed but missing.",
            keep=True,
        )
