"""The storage protocol: blobs keyed by path-like strings.

Everything private-channels keeps (packages, index records, channels, tokens) lives in
one :class:`Storage`.  The protocol is shaped so that an object store implements it
exactly: no rename, no directories, no locks shared between hosts.  Mutable records
are updated optimistically, by compare-and-swap on their ETag::

    from private_channels.storage import MemoryStorage, update_json

    storage = MemoryStorage()
    update_json(storage, "counters/uploads.json", lambda doc: {"n": (doc or {}).get("n", 0) + 1})

A backend that can add bytes to the end of a key in place (:class:`Appends`: the
filesystem's) lets a document take a change as a text appended to it instead of being
written whole (:func:`update_json`'s ``append``): the document is then followed by
texts of RFC 7464 (``RS`` JSON ``LF``), each ``[key, ..., value]``, which sets the
value at that path, and every read applies them (:func:`read_json`).

Not-found is the builtin :class:`FileNotFoundError`; an existing key on create is
:class:`FileExistsError`; a lost race on a compare-and-swap is :class:`StaleWriteError`;
a JSON document that does not parse, or lacks what its reader needs, is
:class:`CorruptDocumentError`, which names the key.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any, Protocol, TypeVar, runtime_checkable

__all__ = [
    "RS",
    "Appends",
    "CleansIncompleteWrites",
    "CorruptDocumentError",
    "InvalidKeyError",
    "JSONRead",
    "PresignsURLs",
    "StaleWriteError",
    "Stat",
    "Storage",
    "TellsWrites",
    "appended_sets",
    "apply_sets",
    "copy_storage",
    "read_bytes",
    "read_document",
    "read_json",
    "sweep",
    "update_json",
    "validate_key",
]

CHUNK_SIZE = 1024 * 1024

# Letters, digits and the punctuation that package filenames use; every segment must
# start with a letter, digit or underscore so that "." and ".." (and the backends' own
# hidden temp and lock files) can never be named.
_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+~=,@-]*\Z")
MAX_KEY_LENGTH = 1024
# A segment is a file or directory name on the filesystem backend, where most file
# systems stop at 255 bytes (ASCII here); the same bound on every backend makes a name
# that one of them could not hold an InvalidKeyError everywhere, never an OSError.
MAX_SEGMENT_LENGTH = 255
# A whole key at once, segments of their bounded length (every storage call checks one,
# and the loop of validate_key only runs to say what is wrong): segments never hold "/",
# so the match is linear in the key's length.
_KEY = re.compile(
    r"(?:[A-Za-z0-9_][A-Za-z0-9._+~=,@-]{0,254}/)*[A-Za-z0-9_][A-Za-z0-9._+~=,@-]{0,254}\Z"
)


class InvalidKeyError(ValueError):
    """A key that could escape the storage root or that no backend can hold."""


class CorruptDocumentError(OSError):
    """A stored JSON document that is not JSON, or not the shape its reader needs.

    An :class:`OSError`, like the storage's other failures: nothing a client sent can
    cure it, and its message names the document for whoever reads the server's log.
    """

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"storage document {key!r} is damaged: {reason}")
        self.key = key


class StaleWriteError(Exception):
    """A conditional write lost a race: the key changed since its ETag was read."""


@dataclass(frozen=True)
class Stat:
    size: int
    mtime: float  # seconds since the epoch
    etag: str


@runtime_checkable
class Storage(Protocol):
    """A flat namespace of immutable-per-version blobs.

    Keys are ``/``-separated strings (see :func:`validate_key`); listing is by plain
    string prefix, like an object store, and never shows directories.
    """

    def open(self, key: str) -> tuple[IO[bytes], Stat]:
        """Open ``key`` for streaming reads; the stat describes the version opened."""
        ...

    def stat(self, key: str) -> Stat: ...

    def put(self, key: str, data: IO[bytes], *, if_match: str | None = None) -> Stat:
        """Write ``key`` atomically from a stream, replacing any previous version.

        With ``if_match``, write only if the current version has that ETag; otherwise
        raise :class:`StaleWriteError` (also when the key does not exist).
        """
        ...

    def create(self, key: str, data: IO[bytes]) -> Stat:
        """Write ``key`` only if it does not exist yet, else raise :class:`FileExistsError`."""
        ...

    def list(self, prefix: str) -> Iterator[str]:
        """Yield every key that starts with ``prefix``, in sorted order."""
        ...

    def delete(self, key: str, *, if_match: str | None = None) -> None: ...


@runtime_checkable
class PresignsURLs(Protocol):
    """A storage whose clients can fetch a key themselves, by a URL signed for a while
    (S3): downloads may then be answered with a redirect instead of the bytes."""

    def presigned_url(self, key: str, expires: int) -> str:
        """A URL that reads ``key`` for ``expires`` seconds, made without a request."""
        ...


@runtime_checkable
class TellsWrites(Protocol):
    """A storage that can tell, for the price of reading a number, whether anything was
    written to it since: what lets a process keep whole answers (``core.answers``)."""

    def writes(self) -> Callable[[], int] | None:
        """A function of no arguments whose value changes after every write (``put``,
        ``create``, ``delete``) that may have changed the data, made through any storage
        object over the same data, in any process that can reach it, once that write is
        done; ``None`` when this one cannot tell (a file system other processes reach
        over a network)."""
        ...


@runtime_checkable
class Appends(Protocol):
    """A storage that adds bytes to the end of a key in place, durably, for less than
    writing it whole (the filesystem's: no new file, no rename), and whose every
    writer of the key excludes the others meanwhile."""

    def append(self, key: str, data: bytes, *, if_match: str) -> Stat:
        """Add ``data`` to the end of ``key`` if its current version has the ETag
        ``if_match``, else raise :class:`StaleWriteError` (:class:`FileNotFoundError`
        where it is gone); the new version's stat."""
        ...


@runtime_checkable
class CleansIncompleteWrites(Protocol):
    """A storage that keeps something of a write killed halfway (the filesystem's
    hidden temporary files, S3's unfinished multipart uploads) and can remove it."""

    def clean_incomplete_writes(self, prefix: str, *, older_than: float) -> list[str]:
        """Remove what writes under ``prefix`` begun before ``older_than`` (seconds
        since the epoch) and never finished left; return a name for each."""
        ...


def validate_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidKeyError(f"storage key must be 1 to {MAX_KEY_LENGTH} characters")
    if _KEY.match(key):
        return key
    for segment in key.split("/"):
        if len(segment) > MAX_SEGMENT_LENGTH:
            raise InvalidKeyError(
                f"storage key segment {segment[:40]!r}... is longer than {MAX_SEGMENT_LENGTH}"
            )
        if not _SEGMENT.match(segment):
            raise InvalidKeyError(f"storage key {key!r} has an invalid segment {segment!r}")
    return key


def validate_prefix(prefix: str) -> str:
    """A prefix is a key, or a key followed by ``/``, or part of a last segment."""
    if prefix == "":
        return prefix
    head, _, last = prefix.rpartition("/")
    if head:
        validate_key(head)
    if last and not re.fullmatch(r"[A-Za-z0-9._+~=,@-]*", last):
        raise InvalidKeyError(f"storage prefix {prefix!r} has an invalid last segment")
    if last.startswith(".") or (not head and prefix.startswith("/")):
        raise InvalidKeyError(f"storage prefix {prefix!r} is not allowed")
    return prefix


T = TypeVar("T")


def read_bytes(storage: Storage, key: str, *, limit: int = 64 * 1024 * 1024) -> tuple[bytes, Stat]:
    """Read a small blob whole, refusing anything larger than ``limit`` bytes."""
    # A backend may read whole in fewer steps than open() and read() (the filesystem's).
    read_whole: Callable[[str, int], tuple[bytes, Stat]] | None = getattr(
        storage, "read_whole", None
    )
    if read_whole is not None:
        return read_whole(key, limit)
    return read_stream(*storage.open(key), key, limit)


def read_stream(stream: IO[bytes], stat: Stat, key: str, limit: int) -> tuple[bytes, Stat]:
    """:func:`read_bytes` of the ``stream`` :meth:`Storage.open` gave for ``key``; closes it."""
    with stream:
        # Asked for its size and one byte more (a file that grew since its stat shows
        # in the next read), not for limit + 1 bytes: that would allocate as many.
        data = stream.read(min(stat.size, limit) + 1)
        if len(data) > stat.size and len(data) <= limit:
            data += stream.read(limit + 1 - len(data))
    if len(data) > limit:
        raise ValueError(f"storage key {key!r} is larger than {limit} bytes")
    return data, stat


#: RFC 7464's record separator, which starts each text appended to a document.  JSON
#: itself never holds the byte (a string escapes it), so the first one ends the document.
RS = b"\x1e"


def appended_sets(tail: bytes) -> list[list[Any]]:
    """The texts appended to a document (``tail``: from its first :data:`RS` on), each
    ``[key, ..., value]``.  A text not ended by its ``LF`` was cut short by a write that
    never finished, whose change was never reported done: it is dropped, as RFC 7464
    has a parser drop a truncated text.  ``ValueError`` for any other malformed one."""
    texts = [text for text in tail.split(RS)[1:] if text.endswith(b"\n")]
    sets = json.loads(b"[" + b",".join(texts) + b"]")
    for path in sets:
        if type(path) is not list or len(path) < 2 or not all(type(k) is str for k in path[:-1]):
            raise ValueError(f"an appended text is not [key, ..., value]: {path!r:.80}")
    return sets  # type: ignore[no-any-return]


def apply_sets(doc: Any, sets: list[list[Any]]) -> Any:
    """``doc`` with each of :func:`appended_sets`' paths set, in order (in place)."""
    for path in sets:
        *keys, last, value = path
        target = doc
        for key in keys:
            target = target.get(key) if type(target) is dict else None
        if type(target) is not dict:
            raise ValueError(f"an appended text sets {path[:-1]!r:.80} in no object")
        target[last] = value
    return doc


def _loads(key: str, data: bytes) -> Any:
    try:
        end = data.find(RS)
        if end < 0:
            return json.loads(data)
        return apply_sets(json.loads(data[:end]), appended_sets(data[end:]))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise CorruptDocumentError(key, str(exc)) from None


def read_json(storage: Storage, key: str) -> tuple[Any, Stat]:
    """A JSON document and its stat; :class:`CorruptDocumentError` if it is not JSON."""
    data, stat = read_bytes(storage, key)
    return _loads(key, data), stat


def read_document(storage: Storage, key: str, parse: Callable[[Any], T]) -> tuple[T, Stat]:
    """``parse`` applied to the JSON document at ``key``, and its stat.

    What ``parse`` raises on a document of the wrong shape (a missing key, a wrong
    type or value) becomes :class:`CorruptDocumentError`, naming the document::

        channel, stat = read_document(storage, key, lambda doc: Channel(**doc))
    """
    doc, stat = read_json(storage, key)
    try:
        return parse(doc), stat
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CorruptDocumentError(key, f"{type(exc).__name__}: {exc}") from None


@dataclass
class JSONRead:
    """A JSON document as read from a key (``stat`` ``None`` and ``raw`` empty when it
    did not exist), to hand to :func:`update_json` as its ``current``."""

    raw: bytes
    stat: Stat | None
    doc: Any

    @classmethod
    def of(
        cls, storage: Storage, key: str, *, known: Callable[[bytes], Any] | None = None
    ) -> JSONRead:
        """Read and parse ``key``; ``known(raw)`` may give the document without parsing
        it (from an earlier version the caller holds), or ``None`` to have it parsed."""
        try:
            raw, stat = read_bytes(storage, key)
        except FileNotFoundError:
            return cls(b"", None, None)
        doc = known(raw) if known is not None else None
        return cls(raw, stat, _loads(key, raw) if doc is None else doc)


# One encoder for every document: json.dumps makes a new one for each call with these
# options (a few µs, as much as encoding a small record).
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def dump_json(doc: Any) -> bytes:
    return _ENCODER.encode(doc).encode()


def update_json(
    storage: Storage,
    key: str,
    change: Callable[[Any], T],
    *,
    attempts: int = 50,
    current: JSONRead | None = None,
    encode: Callable[[T, bytes], bytes] | None = None,
    append: Callable[[T, bytes], bytes | None] | None = None,
    written: Callable[[T, bytes, Stat], None] | None = None,
) -> T:
    """Apply ``change`` to the JSON document at ``key`` with compare-and-swap.

    ``change`` gets the current document (``None`` when absent) and returns the new one;
    it may run several times when other writers race (each time on a fresh copy, so
    changing it in place is fine).  A result equal to what is stored writes nothing.
    ``current``, a :class:`JSONRead` of the key made just before, saves the first
    attempt its read (should the key have changed since, the write fails and the next
    attempt reads afresh); ``change`` may change its document in place.
    ``encode(new, raw)`` makes the bytes stored, the same as :func:`dump_json`'s of
    ``new``, perhaps from ``raw``, the bytes of the version ``change`` was given (empty
    for none); ``written(new, encoded, stat)`` learns what was stored.
    ``append(new, raw)``, where the storage :class:`Appends`, may instead give texts
    (:data:`RS`) whose :func:`appended_sets` make ``new`` of ``raw``'s document, to add
    to the stored bytes in place, or ``None`` to write the document whole.
    """
    appends = getattr(storage, "append", None) if append is not None else None
    for _ in range(attempts):
        if current is not None:
            raw, stat_or_none, doc = current.raw, current.stat, current.doc
            current = None
        else:
            try:
                raw, stat = read_bytes(storage, key)
            except FileNotFoundError:
                raw, stat_or_none = b"", None
            else:
                stat_or_none = stat
            doc = _loads(key, raw) if raw else None
        new = change(doc)
        if new is None and stat_or_none is None:
            return new  # absent and to stay absent
        if appends is not None and stat_or_none is not None and new is not None:
            assert append is not None
            piece = append(new, raw)
            if piece is not None:
                try:
                    stored = appends(key, piece, if_match=stat_or_none.etag)
                except (FileNotFoundError, StaleWriteError):
                    continue
                if written is not None:
                    written(new, raw + piece, stored)
                return new
        encoded = dump_json(new) if encode is None else encode(new, raw)
        if encoded == raw:
            return new
        body = io.BytesIO(encoded)
        try:
            if stat_or_none is None:
                stored = storage.create(key, body)
            else:
                stored = storage.put(key, body, if_match=stat_or_none.etag)
        except (FileExistsError, StaleWriteError):
            continue
        if written is not None:
            written(new, encoded, stored)
        return new
    raise StaleWriteError(f"gave up updating {key!r} after {attempts} conflicting writes")


def sweep(storage: Storage, prefix: str, keep: set[str], *, older_than: float) -> list[str]:
    """Delete every key under ``prefix`` that is not in ``keep`` and was last written
    before ``older_than`` (seconds since the epoch); return the keys deleted.

    For garbage left by writers that died between writing a blob and committing the
    record that names it.  A key rewritten since its stat survives where ETags change
    on every write (``if_match``); elsewhere the age bound is what protects a write in
    progress, so writers renew a blob they find already there.
    """
    removed: list[str] = []
    for key in storage.list(prefix):
        if key in keep:
            continue
        try:
            stat = storage.stat(key)
            if stat.mtime < older_than:
                storage.delete(key, if_match=stat.etag)
                removed.append(key)
        except (FileNotFoundError, StaleWriteError):
            continue
    return removed


def copy_storage(source: Storage, destination: Storage) -> tuple[int, int]:
    """Copy every key of ``source`` into ``destination``, which must be empty; return
    the number of keys and of bytes copied.

    A whole deployment moves this way (the filesystem to S3, a backup and its restore):
    channels, tokens (and the key that hashes them, so every token keeps working) and
    packages.  Each key is created, never overwritten, streamed one block at a time,
    and checked by size once written.  Writers must be stopped meanwhile: a key
    written to ``source`` during the copy may or may not be in the copy.
    """
    if next(iter(destination.list("")), None) is not None:
        raise FileExistsError("the destination storage is not empty")
    keys = size = 0
    for key in source.list(""):
        stream, stat = source.open(key)
        with stream:
            written = destination.create(key, stream)
        if written.size != stat.size:
            raise OSError(f"{key!r} was copied with {written.size} of its {stat.size} bytes")
        keys += 1
        size += written.size
    return keys, size
