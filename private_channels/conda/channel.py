"""Serves a channel's conda packages as a conda channel, for conda, mamba, pixi and rattler.

::

    app = CondaChannelMiddleware(app, storage)

    # pixi: channels = ["https://HOST/api/repo/t/TOKEN/CHANNEL"]

What it serves, under ``P/<CHANNEL>/`` (and ``P/t/<TOKEN>/<CHANNEL>/``):

- ``channeldata.json``;
- for every conda subdir (``noarch``, ``linux-64``, ``osx-arm64``...):
  ``<subdir>/repodata.json``, ``repodata.json.zst`` and ``repodata.json.bz2``; CEP-16's
  ``repodata_shards.msgpack.zst`` and ``shards/<sha256>.msgpack.zst``; and the package
  files, ``<subdir>/<name>-<version>-<build>.conda`` or ``.tar.bz2``.  A subdir with no
  packages serves a valid empty repodata (clients require ``noarch/repodata.json``).
- Any other file under a subdir answers 404 to a caller allowed to read: clients ask
  for ``current_repodata.json`` or the shard index first, and fall back only on a 404.

Every document is rendered by :mod:`.render` from one snapshot of the subdir's index
document and kept in the core's cache (:class:`~..core.cache.DocumentCache`) under that
document's storage ETag, which one ``stat`` checks on every request: an upload through
any process is seen by every other on its next request.  Indexes are revalidated on
every use (``no-cache`` and a strong ETag: a 304 while nothing changed); shards are
named by their hash and cached as immutable.  Packages go out through the core's
download response (:func:`~..core.download.file_response`), with ETag and ranges.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from ..core.answers import offer
from ..core.download import document_response, file_response
from ..core.reader import ReadMiddleware
from ..errors import http_error
from .package import SUBDIRS, InvalidPackageError, parse_filename
from .render import (
    EXTRA,
    MissingExtraError,
    channeldata_json,
    compress_bz2,
    repodata_json,
    sharded,
    zstd,
)
from .store import CondaStore, Subdir

if TYPE_CHECKING:
    from collections.abc import Callable

    from _typeshed.wsgi import WSGIApplication, WSGIEnvironment

    from ..channels import Channel

__all__ = ["CondaChannelMiddleware"]

SHARD_INDEX = "repodata_shards.msgpack.zst"
_SHARD_PREFIX = "shards/"
_SHARD_SUFFIX = ".msgpack.zst"
_DOCUMENTS = {
    # name: (mimetype, rendered from the repodata.json bytes)
    "repodata.json": ("application/json", None),
    "repodata.json.zst": ("application/zstd", zstd),
    "repodata.json.bz2": ("application/x-bzip2", compress_bz2),
}
_IMMUTABLE = "private, max-age=31536000, immutable"


class CondaChannelMiddleware(ReadMiddleware[CondaStore]):
    """``channeldata.json`` and every conda subdir of a channel; the options are
    :class:`~..core.reader.ReadMiddleware`'s."""

    store_type = CondaStore

    def route(self, environ: WSGIEnvironment, path: str) -> WSGIApplication | None:
        subdir_name, _, rest = path.removeprefix("/").partition("/")
        if path == "/channeldata.json":
            channel = self.readable(environ)
            body, etag = self.channeldata(channel)
            response = document_response(environ, body, etag=etag, mimetype="application/json")
            return offer(environ, response, size=len(body))
        if subdir_name not in SUBDIRS or not rest:
            return None
        channel = self.readable(environ)
        subdir = self.subdir(channel, subdir_name)
        if rest in _DOCUMENTS:
            mimetype, _ = _DOCUMENTS[rest]
            body, etag = self.rendered(channel, subdir, rest)
            response = document_response(environ, body, etag=etag, mimetype=mimetype)
            return offer(environ, response, size=len(body))
        if rest == SHARD_INDEX:
            index, _ = self.shards(channel, subdir)
            etag = hashlib.sha256(index).hexdigest()[:32]
            response = document_response(environ, index, etag=etag, mimetype="application/zstd")
            return offer(environ, response, size=len(index))
        if rest.startswith(_SHARD_PREFIX) and rest.endswith(_SHARD_SUFFIX):
            return self.shard(
                environ, channel, subdir, rest[len(_SHARD_PREFIX) : -len(_SHARD_SUFFIX)]
            )
        return self.package_file(environ, channel, subdir, rest)

    def subdir(self, channel: Channel, name: str) -> Subdir:
        """A snapshot of one subdir's records, parsed once per document version."""
        key = self.store.index_key(channel, name)
        try:
            etag = self.storage.stat(key).etag
        except FileNotFoundError:
            return Subdir(name, records=(), stat=None)

        def read() -> tuple[Subdir, int, str | None]:
            subdir = self.store.subdir(channel, name)
            # About what the parsed records hold: index.json's lists, mostly.
            weight = sum(1024 + len(str(r.index)) + len(str(r.about)) for r in subdir.records)
            return subdir, weight, subdir.version

        # Parsed once however many requests ask for it at once (the cache's flights).
        subdir: Subdir = self.cache.snapshot(("subdir", key), etag, read)[0]
        return subdir

    def _cached(
        self, key: tuple[str, ...], version: str, make: Callable[[], bytes]
    ) -> tuple[bytes, str]:
        """A rendered document and its strong ETag, made once per document version."""

        def made() -> tuple[tuple[bytes, str], int]:
            body = make()
            return (body, hashlib.sha256(body).hexdigest()[:32]), len(body)

        cached: tuple[bytes, str] = self.cache.get_or_make(key, version, made)
        return cached

    def rendered(self, channel: Channel, subdir: Subdir, name: str) -> tuple[bytes, str]:
        """``repodata.json`` or one of its compressed forms, and its ETag."""
        key = self.store.index_key(channel, subdir.name)
        _, compress = _DOCUMENTS[name]
        if compress is None:
            return self._cached(("rendered", key, name), subdir.version,
                                lambda: repodata_json(subdir))  # fmt: skip
        plain, _ = self.rendered(channel, subdir, "repodata.json")
        try:
            return self._cached(("rendered", key, name), subdir.version, lambda: compress(plain))
        except MissingExtraError:
            raise http_error(404, f"This server serves no {name}; use repodata.json.") from None

    def shards(self, channel: Channel, subdir: Subdir) -> tuple[bytes, dict[str, bytes]]:
        """The shard index of a snapshot and its shards (every shard also kept by its
        hash, so that one rendered for an older snapshot stays there while it is cached)."""
        key = ("sharded", self.store.index_key(channel, subdir.name))

        def make() -> tuple[tuple[bytes, dict[str, bytes]], int]:
            try:
                index, shards = sharded(subdir)
            except MissingExtraError:
                raise http_error(
                    404, f"This server serves no sharded repodata ({EXTRA}); use repodata.json."
                ) from None
            for digest, body in shards.items():
                self.cache.put(("shard", digest), "immutable", body, len(body))
            return (index, shards), len(index) + sum(map(len, shards.values()))

        rendered: tuple[bytes, dict[str, bytes]] = self.cache.get_or_make(key, subdir.version, make)
        return rendered

    def shard(
        self, environ: WSGIEnvironment, channel: Channel, subdir: Subdir, digest: str
    ) -> WSGIApplication:
        _, shards = self.shards(channel, subdir)
        body: bytes | None = shards.get(digest) or self.cache.get(("shard", digest), "immutable")
        if body is None:
            raise http_error(404, f"No shard {digest[:64]!r} in {subdir.name}/; fetch "
                                  f"{SHARD_INDEX} again.")  # fmt: skip
        return document_response(
            environ, body, etag=digest, mimetype="application/zstd", cache_control=_IMMUTABLE
        )

    def channeldata(self, channel: Channel) -> tuple[bytes, str]:
        subdirs = [self.subdir(channel, name) for name in self.store.subdir_names(channel)]
        version = ",".join(f"{s.name}={s.version}" for s in subdirs)
        key = ("channeldata", self.store.prefix(channel))
        return self._cached(key, version, lambda: channeldata_json(subdirs))

    def package_file(
        self, environ: WSGIEnvironment, channel: Channel, subdir: Subdir, filename: str
    ) -> WSGIApplication:
        record = subdir.find(filename)
        if record is None:
            try:
                parse_filename(filename)
            except InvalidPackageError:
                raise http_error(404, f"Nothing is at {subdir.name}/{filename[:100]}.") from None
            raise http_error(404, f"{filename} is not in {subdir.name}/.")
        return file_response(
            environ,
            self.storage,
            self.store.blob_key(channel, record),
            etag=record.sha256,
            mimetype="application/octet-stream",
            cache_control="private",
            redirect=self.redirect_downloads,
            not_found=f"{filename} is listed but missing.",
            keep=True,
        )
