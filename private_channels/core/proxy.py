"""What the upstream proxy of every ecosystem shares: upstream documents kept in storage
and revalidated after a TTL, and upstream files fetched once into blobs.

::

    proxy = UpstreamProxy(storage, DocumentCache(64 * MiB), UpstreamClient(limits))
    snapshot = proxy.document(
        "channels/team/pypi/upstream/pages/demo",
        ttl=channel.upstream_ttl,
        fetch=lambda etag, modified: client.get(upstream, url, accept=..., etag=etag, ...),
        parse=lambda fetched, old, now: {...},    # JSON-ready data from hostile bytes
    )
    snapshot.data, snapshot.state                 # state: "cached", "fetched", "stale"...

    record, state = proxy.file(upstream, file_url, document=RecordDocument(...),
                               blobs="channels/team/pypi/upstream/blobs/",
                               filename="demo-1.0.tar.gz", expected=("sha256", "ab12..."))

A **document** is what an ecosystem keeps of one upstream page (a Python project page,
a ``PACKAGES`` file): the data its ``parse`` made of the upstream's bytes, at
``<key>.json``, and a small state at ``<key>.state.json`` (when upstream last confirmed
it, its ``ETag`` and ``Last-Modified``, and the last failure).  Both live in the storage,
so every process of the channel shares them and they survive restarts.  Within the TTL
the stored copy is used as it is; after it, upstream is asked again with
``If-None-Match`` / ``If-Modified-Since`` (a 304 only renews the state).  When upstream
is down, slow, refusing or answers something that does not parse, the last stored copy
is served (``stale``) and upstream is not asked again for :data:`RETRY` seconds, so an
outage does not make every request wait for a timeout.  A 404 is remembered for the TTL
too.  Within one process, one request at a time refreshes a document; the others wait
for it and use its result.

A **file** is fetched from upstream once, into a temporary file bounded by
``Limits.max_upstream_file``, checked against the hash the upstream published, and
stored as a content-addressed blob with a record (:mod:`~.blobs`), under the
ecosystem's upstream prefix: nothing fetched from upstream is ever written where the
channel's own files live.  After that it is served from storage, with or without the
upstream.

Every response that involved an upstream says how in :data:`STATE_HEADER`.
"""

from __future__ import annotations

import hashlib
import io
import re
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ..storage import dump_json, read_json
from .blobs import (
    FileConflictError,
    RecordDocument,
    StoredFile,
    blob_key,
    hash_stream,
    store_blob,
)
from .upstream import UpstreamClient, UpstreamError, UpstreamNotFoundError, display_url, logger

if TYPE_CHECKING:
    from typing import IO

    from ..channels import Upstream
    from ..storage import Storage
    from .cache import DocumentCache
    from .upstream import Fetched

__all__ = [
    "RETRY",
    "STATE_HEADER",
    "STRONG_HASHES",
    "Snapshot",
    "UpstreamFile",
    "UpstreamHashMismatchError",
    "UpstreamProxy",
    "UpstreamUnavailableError",
    "blob_key",
    "hash_label",
    "valid_hash",
]

#: The response header that says what the upstream had to do with an answer:
#: ``cached`` (served from storage, upstream not asked), ``fetched`` (upstream asked
#: and answered with something new), ``revalidated`` (upstream said the copy is
#: current), ``stale`` (upstream failed; the last stored copy is served) and
#: ``unavailable`` (upstream failed and nothing of it is stored: the channel's own
#: packages alone are served).
STATE_HEADER: Final = "X-Private-Channels-Upstream"
#: Seconds during which an upstream that just failed is not asked again.
RETRY: Final = 30.0
#: The hashes an upstream file may be checked with, strongest first; md5 only where
#: the format has nothing else (R's ``MD5sum``), and only when the caller allows it.
STRONG_HASHES: Final = ("sha256", "sha512", "sha384", "sha3_256", "sha3_512", "blake2b")
_HEX = re.compile(r"[0-9a-f]+\Z")
T = TypeVar("T")
_STRIPES = 64


class UpstreamUnavailableError(UpstreamError):
    """The upstream failed, and nothing of what was asked is stored."""


class UpstreamHashMismatchError(UpstreamError):
    """A file from upstream does not match the hash the upstream published for it."""


def hash_label(algorithm: str, hexdigest: str) -> str:
    return f"{algorithm}={hexdigest}"


def valid_hash(algorithm: str, hexdigest: str, *, allow_md5: bool = False) -> bool:
    """Whether ``algorithm`` is one to check with and ``hexdigest`` is a digest of it."""
    if algorithm not in STRONG_HASHES and not (allow_md5 and algorithm == "md5"):
        return False
    size = hashlib.new(algorithm).digest_size * 2
    return len(hexdigest) == size and bool(_HEX.match(hexdigest))


@dataclass(frozen=True)
class Snapshot:
    """An upstream document as the channel has it.

    ``etag`` is the storage ETag of the stored data (``"-"`` when the upstream has no
    such document: it answered 404): what is derived from the data (a rendered index)
    is valid for it, so that a request answered from such a derived value never reads
    the data itself (:attr:`data` reads it, through the cache, on first use).
    """

    state: str
    etag: str
    fetched: float
    _load: Callable[[], Any] | None = field(default=None, repr=False, compare=False)

    @property
    def data(self) -> Any:
        """The stored data, ``None`` when the upstream has no such document."""
        return self._load() if self._load is not None else None


@dataclass(frozen=True, kw_only=True)
class UpstreamFile(StoredFile):
    """A file fetched from an upstream; ``upload_time`` is when it was fetched."""

    #: The hash the upstream published and the file was checked against
    #: (``sha256=<hex>``), empty when the upstream published none.
    source: str = ""
    #: Where it came from, without credentials.
    url: str = ""


class UpstreamProxy:
    """Upstream documents and files of any ecosystem, kept in ``storage``.

    ``cache`` keeps parsed documents and file records by their storage ETag (the read
    middleware's own cache); ``clock`` is the time used for TTLs and ages.
    """

    def __init__(
        self,
        storage: Storage,
        cache: DocumentCache,
        client: UpstreamClient,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.storage = storage
        self.cache = cache
        self.client = client
        self._clock = clock
        self._locks = [threading.Lock() for _ in range(_STRIPES)]

    def now(self) -> float:
        return self._clock() if self._clock is not None else time.time()

    def _lock(self, key: str) -> threading.Lock:
        return self._locks[hash(key) % _STRIPES]

    # -- documents -------------------------------------------------------------------

    def document(
        self,
        key: str,
        *,
        ttl: float,
        fetch: Callable[[str | None, str | None], Fetched],
        parse: Callable[[Fetched, Any, float], Any],
    ) -> Snapshot:
        """The document at ``key``, refreshed from upstream once older than ``ttl``.

        ``fetch(etag, last_modified)`` asks the upstream (with the validators of the
        stored copy, if any); ``parse(fetched, old_data, now)`` makes the data to store
        from a 200 and may raise :class:`ValueError` for what does not parse.  Raises
        :class:`UpstreamUnavailableError` when the upstream fails and nothing is stored.
        """
        snapshot = self._usable(key, ttl)
        if snapshot is not None:
            return snapshot
        with self._lock(key):
            snapshot = self._usable(key, ttl)  # refreshed while this request waited?
            if snapshot is not None:
                return snapshot
            return self._refresh(key, fetch, parse)

    def stored(self, key: str) -> Snapshot | None:
        """The stored document as it is, without asking the upstream (``None``: never
        fetched, or the upstream had none)."""
        state = self._state(key)
        if state is None or state.get("missing") or not state.get("fetched"):
            return None
        return self._snapshot(key, state, "cached")

    def _state(self, key: str) -> dict[str, Any] | None:
        try:
            state, _ = read_json(self.storage, f"{key}.state.json")
        except FileNotFoundError:
            return None
        return dict(state)

    def _usable(self, key: str, ttl: float) -> Snapshot | None:
        """The stored copy if it may be used without asking upstream, else ``None``."""
        state = self._state(key)
        if state is None:
            return None
        now = self.now()
        fetched = float(state.get("fetched") or 0.0)
        if fetched and now - fetched < ttl:
            return self._snapshot(key, state, "cached")
        failed = state.get("failed")
        if failed is not None and 0 <= now - float(failed) < RETRY:
            if fetched:
                return self._snapshot(key, state, "stale")
            raise UpstreamUnavailableError(
                str(state.get("error") or "The upstream did not answer.")
            )
        return None

    def _snapshot(self, key: str, state: dict[str, Any], how: str) -> Snapshot:
        fetched = float(state.get("fetched") or 0.0)
        if state.get("missing"):
            return Snapshot(how, "-", fetched)
        etag = self.storage.stat(f"{key}.json").etag
        return Snapshot(how, etag, fetched, lambda: self._data(key)[0])

    def derived(
        self, key: str, snapshot: Snapshot, name: str, make: Callable[[Any], tuple[T, int]]
    ) -> T:
        """``make(data)``'s value (and weight) for the document at ``key``, kept for the
        snapshot's version: a compact view of a large document (an index of filenames)
        that later requests use without reading the document."""

        def made() -> tuple[T, int]:
            return make(snapshot.data)

        value: T = self.cache.get_or_make(("derived", key, name), snapshot.etag, made)
        return value

    def _data(self, key: str) -> tuple[Any, str]:
        data_key = f"{key}.json"
        etag = self.storage.stat(data_key).etag
        found = self.cache.get(("upstream", data_key), etag)
        if found is None:
            data, stat = read_json(self.storage, data_key)
            # Parsed JSON takes several times its bytes in memory.
            self.cache.put(("upstream", data_key), stat.etag, (data,), 4 * stat.size)
            return data, stat.etag
        return found[0], etag

    def _refresh(
        self,
        key: str,
        fetch: Callable[[str | None, str | None], Fetched],
        parse: Callable[[Fetched, Any, float], Any],
    ) -> Snapshot:
        state = self._state(key) or {}
        has_data = bool(state.get("fetched")) and not state.get("missing")
        now = self.now()
        try:
            if has_data:
                fetched = fetch(state.get("etag"), state.get("last_modified"))
            else:
                fetched = fetch(None, None)
            if fetched.status == 304 and has_data:
                how = "revalidated"
            else:
                old = self._data(key)[0] if has_data else None
                data = parse(fetched, old, now)
                self._put(f"{key}.json", data)
                how = "fetched"
        except UpstreamNotFoundError:
            self._put(f"{key}.state.json", {"fetched": now, "missing": True})
            return Snapshot("fetched", "-", now)
        except (UpstreamError, ValueError) as exc:
            sentence = str(exc) if isinstance(exc, UpstreamError) else f"is unusable: {exc}"
            logger.warning("upstream %s failed: %s", key, sentence)
            self._put(f"{key}.state.json", {**state, "failed": now, "error": sentence})
            if state.get("fetched"):  # what the upstream said last: a page, or a 404
                return self._snapshot(key, state, "stale")
            raise UpstreamUnavailableError(sentence) from None
        self._put(
            f"{key}.state.json",
            {
                "fetched": now,
                "etag": fetched.etag if fetched.status == 200 else state.get("etag"),
                "last_modified": (
                    fetched.last_modified if fetched.status == 200 else state.get("last_modified")
                ),
                "failed": None,
            },
        )
        return self._snapshot(key, {"fetched": now}, how)

    def _put(self, key: str, doc: Any) -> None:
        self.storage.put(key, io.BytesIO(dump_json(doc)))

    # -- files -----------------------------------------------------------------------

    def records(self, document: RecordDocument) -> dict[str, UpstreamFile]:
        """The files fetched into ``document``, by filename (parsed once per version)."""
        try:
            etag = self.storage.stat(document.key).etag
        except FileNotFoundError:
            return {}
        found: dict[str, UpstreamFile] | None = self.cache.get(("records", document.key), etag)
        if found is None:
            doc, stat = read_json(self.storage, document.key)
            found = {name: UpstreamFile.from_json(raw) for name, raw in doc["files"].items()}
            weight = sum(512 + len(name) for name in found)
            self.cache.put(("records", document.key), stat.etag, found, weight)
        return found

    def file(
        self,
        upstream: Upstream,
        url: str,
        *,
        document: RecordDocument,
        blobs: str,
        filename: str,
        expected: tuple[str, str] | None,
        allow_md5: bool = False,
        max_bytes: int | None = None,
    ) -> tuple[UpstreamFile, str]:
        """The stored copy of an upstream file, fetched first if there is none.

        ``expected`` is the ``(algorithm, hexdigest)`` the upstream published (``None``
        only where its format publishes none); a file that does not match is refused
        with :class:`UpstreamHashMismatchError` and nothing is stored.  Returns the
        record and ``"cached"`` or ``"fetched"``.
        """
        label = hash_label(*expected) if expected else ""
        record = self.records(document).get(filename)
        if record is not None and (not label or record.source in ("", label)):
            return record, "cached"
        if record is not None:
            raise UpstreamError(
                f"{filename} was stored from upstream with other bytes than upstream now "
                "lists; the stored copy stays."
            )
        with self._lock(f"{document.key}\0{filename}"):
            record = self.records(document).get(filename)
            if record is not None:
                return record, "cached"
            with tempfile.TemporaryFile() as spool:
                self.client.download(upstream, url, spool, max_bytes=max_bytes)
                record = self._checked(spool, filename, url, expected, allow_md5)
                key = blob_key(blobs, record)
                try:
                    store_blob(
                        self.storage,
                        {key: spool},
                        commit=lambda: document.add(record.to_json()),
                        referenced=lambda: document.holds(record.filename, record.sha256),
                    )
                except FileConflictError:
                    raise UpstreamError(
                        f"{filename} was stored from upstream with other bytes already."
                    ) from None
            return record, "fetched"

    def _checked(
        self,
        spool: IO[bytes],
        filename: str,
        url: str,
        expected: tuple[str, str] | None,
        allow_md5: bool,
    ) -> UpstreamFile:
        digests = hash_stream(spool)
        if expected is not None:
            algorithm, hexdigest = expected
            if not valid_hash(algorithm, hexdigest, allow_md5=allow_md5):
                raise UpstreamHashMismatchError(f"{filename} has no hash this server can check.")
            known = {"sha256": digests.sha256, "md5": digests.md5}
            actual = known.get(algorithm) or _digest(spool, algorithm)
            if actual != hexdigest:
                raise UpstreamHashMismatchError(
                    f"{filename} from {display_url(url)} does not match the {algorithm} "
                    "hash its upstream lists; it was not stored."
                )
        return UpstreamFile(
            filename=filename,
            size=digests.size,
            sha256=digests.sha256,
            upload_time=self.now(),
            source=hash_label(*expected) if expected else "",
            url=display_url(url),
        )


def _digest(spool: IO[bytes], algorithm: str) -> str:
    hasher = hashlib.new(algorithm)
    spool.seek(0)
    while chunk := spool.read(1024 * 1024):
        hasher.update(chunk)
    spool.seek(0)
    return hasher.hexdigest()
