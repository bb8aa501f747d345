"""Content-addressed blobs, and the records that commit them, for every ecosystem.

::

    digests = hash_stream(spooled)                        # size, sha256, md5, blake2b
    files = RecordDocument(storage, "channels/team/pypi/projects/demo.json")
    added = store_blob(
        storage,
        {blob_key: spooled},                              # the file (and what derives from it)
        commit=lambda: files.add(record.to_json()),
        referenced=lambda: files.holds(record.filename, record.sha256),
    )

A package file is stored as a blob under a key that names its sha256, so two uploads
that race on one filename can never overwrite each other's bytes; it exists for the
indexes once a record naming it is committed to a JSON document by compare-and-swap
(:func:`~..storage.update_json`), so any number of processes on one storage lose
nothing.  :func:`store_blob` writes the blob first and then commits; when the commit
fails (a conflict, a full disk, a lost race) the blob it created is removed again,
so a rejected upload leaves nothing, and an upload that raced it with the same bytes
puts it back (see the function).  A process killed between the two steps leaves an
orphan blob that nothing serves, which :func:`collect_garbage` removes with the hidden
temporary files of writes that never finished.
"""

from __future__ import annotations

import bisect
import contextlib
import copy
import functools
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from functools import cached_property
from typing import IO, TYPE_CHECKING, Any, Generic, Self, TypeVar

from ..channels import Channel, StorageFormat, storage_format
from ..storage import (
    RS,
    CleansIncompleteWrites,
    JSONRead,
    Stat,
    Storage,
    appended_sets,
    apply_sets,
    dump_json,
    read_document,
    read_json,
    sweep,
    update_json,
)
from ..storage.base import CHUNK_SIZE, MAX_SEGMENT_LENGTH
from .cache import DocumentCache
from .limits import Limits

if TYPE_CHECKING:
    from ..tokens import Token

__all__ = [
    "ChannelStore",
    "DeletedFilenameError",
    "Digests",
    "FileConflictError",
    "RecordDocument",
    "RecordSnapshot",
    "StoredFile",
    "blob_key",
    "collect_garbage",
    "hash_stream",
    "store_blob",
]

T = TypeVar("T")


class FileConflictError(FileExistsError):
    """The filename is taken in that place: by other bytes, or by a deleted file."""


class DeletedFilenameError(FileConflictError):
    """The filename was deleted and may not be used again."""


@dataclass(frozen=True)
class Digests:
    """Every digest any ecosystem publishes for a file, from one pass over it."""

    size: int
    sha256: str
    md5: str
    blake2_256: str


def hash_stream(stream: IO[bytes]) -> Digests:
    """Hash a seekable stream from its start, and leave it at its start."""
    sha256 = hashlib.sha256()
    md5 = hashlib.md5(usedforsecurity=False)
    blake2 = hashlib.blake2b(digest_size=32)
    size = 0
    stream.seek(0)
    while chunk := stream.read(CHUNK_SIZE):
        size += len(chunk)
        sha256.update(chunk)
        md5.update(chunk)
        blake2.update(chunk)
    stream.seek(0)
    return Digests(size, sha256.hexdigest(), md5.hexdigest(), blake2.hexdigest())


#: The longest suffix of a key kept beside a blob (PyPI's ``.metadata``, ``.pkg-info``),
#: which a flat blob's name leaves room for.
_BESIDE_ROOM = len(".pkg-info")


@dataclass(frozen=True, kw_only=True)
class StoredFile:
    """What every ecosystem records of a file; each adds its own format's fields."""

    filename: str
    size: int
    sha256: str
    upload_time: float  # seconds since the epoch
    uploader: str | None = None  # token id
    #: Whether the blob is ``blobs/<sha256>-<filename>``, an entry of the folder of blobs,
    #: rather than ``blobs/<sha256>/<filename>``, in a folder of its own: on a local disk
    #: a directory made for every upload (docs/performance.md, thirtieth round).  Only
    #: in a storage that says so (:attr:`ChannelStore.flat_blobs`), which no version
    #: before flat blobs reads; every record says where its own blob is.
    flat: bool = False

    @classmethod
    def uploaded(
        cls,
        filename: str,
        digests: Digests,
        token: Token | None,
        *,
        flat: bool = False,
        **fields: Any,
    ) -> Self:
        """The record of a file uploaded now by ``token``, with the ecosystem's ``fields``;
        its blob flat with ``flat`` (the store's :attr:`~ChannelStore.flat_blobs`) where
        the name fits (:meth:`fits_flat`)."""
        return cls(
            filename=filename,
            size=digests.size,
            sha256=digests.sha256,
            upload_time=time.time(),
            uploader=token.id if token is not None else None,
            flat=flat and cls.fits_flat(filename),
            **fields,
        )

    @classmethod
    def stored_name(cls, filename: str) -> str:
        """The file's name in its blob's key (an ecosystem whose filenames may hold what
        no key may changes it)."""
        return filename

    @classmethod
    def fits_flat(cls, filename: str) -> bool:
        """Whether a flat blob's name (:attr:`flat`) fits one segment of a key, with room
        for the suffix of a key kept beside it."""
        # <sha256>-<name><suffix>
        return 64 + 1 + len(cls.stored_name(filename)) + _BESIDE_ROOM <= MAX_SEGMENT_LENGTH

    @property
    def blob_name(self) -> str:
        """The blob's key below a folder of blobs (``.../blobs/``)."""
        return f"{self.sha256}{'-' if self.flat else '/'}{self.stored_name(self.filename)}"

    @property
    def blob(self) -> str:
        """The blob's key below the ecosystem's prefix of the channel."""
        return f"blobs/{self.blob_name}"

    def to_json(self) -> dict[str, Any]:
        # What dataclasses.asdict gives, without its recursion into every plain value
        # (14 µs a Python record with it, 5 without): only containers are copied, deeply.
        return {
            name: copy.deepcopy(value) if isinstance(value, dict | list | tuple) else value
            for name in _field_order(type(self))  # type: ignore[arg-type]
            for value in (getattr(self, name),)
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Self:
        # Fields a later version added are skipped, so an older server can still read.
        known = _field_names(cls)  # type: ignore[arg-type]
        return cls(**{k: v for k, v in doc.items() if k in known})


@functools.cache
def _field_order(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


@functools.cache
def _field_names(cls: type) -> frozenset[str]:
    # Asked for each record of a document read (tens of thousands in a large index).
    return frozenset(f.name for f in fields(cls))


def blob_key(blobs: str, record: StoredFile) -> str:
    """Where the blob of ``record`` lives below a folder of blobs (``.../blobs/``)."""
    return f"{blobs}{record.blob_name}"


F = TypeVar("F", bound=StoredFile)


@dataclass(frozen=True, kw_only=True)
class RecordSnapshot(Generic[F]):
    """The records of one :class:`RecordDocument` as read at one version, immutable.

    A read side keeps snapshots, and what it derives from them, while the document's
    storage ETag (``stat.etag``) is unchanged; ``stat`` is ``None`` for a document that
    does not exist (no records).
    """

    records: tuple[F, ...]
    stat: Stat | None

    @property
    def version(self) -> str:
        """What caches of this snapshot are valid for: the document's ETag."""
        return self.stat.etag if self.stat is not None else "-"

    @cached_property
    def _by_filename(self) -> dict[str, F]:
        return {r.filename: r for r in self.records}

    def find(self, filename: str) -> F | None:
        return self._by_filename.get(filename)


class _Committed:
    """A version of a record document as this process committed it: the document, its
    bytes and stat, and its records' names in their order when its bytes are known to
    be of the shape :func:`_spliced` relies on (:meth:`RecordDocument.add`)."""

    __slots__ = ("doc", "encoded", "names", "stat")

    def __init__(
        self, doc: dict[str, Any], encoded: bytes, stat: Stat, names: list[str] | None
    ) -> None:
        self.doc, self.encoded, self.stat, self.names = doc, encoded, stat, names

    def read(self) -> JSONRead:
        """A read of this version whose document the caller may change (its records
        stay shared, and a change replaces a record rather than changing it)."""
        doc = {**self.doc, "files": dict(self.doc["files"])}
        if "deleted" in doc:
            doc["deleted"] = list(doc["deleted"])
        return JSONRead(self.encoded, self.stat, doc)


def _around(doc: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """The bytes of a record document before its records' and after them."""
    others = sorted(name for name in doc if name != "files")
    head = b"".join(dump_json(name) + b":" + dump_json(doc[name]) + b"," for name in others
                    if name < "files")  # fmt: skip
    tail = b"".join(b"," + dump_json(name) + b":" + dump_json(doc[name]) for name in others
                    if name > "files")  # fmt: skip
    return b"{" + head + b'"files":{', b"}" + tail + b"}"


def _spliced(
    raw: bytes, doc: Mapping[str, Any], filename: str, names: list[str] | None = None
) -> tuple[bytes, list[str] | None] | None:
    """:func:`~..storage.dump_json` of the record document ``doc``, byte for byte, made
    from ``raw``, that of the same document without the record of ``filename``: the
    record's bytes put where they belong among the others', which are not encoded
    again.  A commit to a document of 350 records costs some 25 µs so (160 where it
    must first read every record to tell the shape, below), against 1 ms for encoding
    it whole (docs/performance.md, twenty-third round).  With the bytes,
    the names of the new version's records in order, or ``None`` if it is not of the
    shape (below) itself.

    ``None`` when ``raw`` is not of the shape the splice relies on, and the document is
    then encoded whole: the keys beside ``files`` must be the same, and every record
    a JSON object that holds no other, so that each ``":{`` in the records' bytes starts
    a record (in a string it would be ``\\":{``).  ``names``, those of ``raw``'s records
    in order, says that ``raw`` is of that shape (a version made by a splice), which
    spares reading every record to tell.
    """
    files = doc["files"]
    head, tail = _around(doc)
    start, end = len(head), len(raw) - len(tail)
    if end < start or not raw.startswith(head) or not raw.endswith(tail):
        return None
    if names is None:
        if not all(type(record) is dict for record in files.values()):
            return None
        if raw.count(b'":{', start, end) != len(files) - 1:
            return None  # a record that holds an object (or stands for more than one)
        names = sorted(name for name in files if name != filename)
    record = files[filename]
    piece = dump_json(filename) + b":" + dump_json(record)
    at = bisect.bisect(names, filename)
    plain = type(record) is dict and piece.count(b'":{') == 1
    made = [*names[:at], filename, *names[at:]] if plain else None
    if at == len(names):  # the last record: at the end, after a comma unless the first
        return raw[:end] + (b"," if names else b"") + piece + raw[end:], made
    before = dump_json(names[at]) + b":{"
    if at == 0:
        if not raw.startswith(before, start):
            return None
        return raw[:start] + piece + b"," + raw[start:], made
    found = raw.find(b"," + before, start, end)
    if found < 0:
        return None
    return raw[:found] + b"," + piece + raw[found:], made


def _common_prefix(a: bytes, b: bytes, i: int = 0, j: int = 0, block: int = 4096) -> int:
    """How many bytes ``a[i:]`` and ``b[j:]`` begin with alike (compared a block at a
    time, then halving)."""
    size, same = min(len(a) - i, len(b) - j), 0
    while same + block <= size and a[i + same : i + same + block] == b[j + same : j + same + block]:
        same += block
    low, high = same, min(same + block, size)
    while low < high:  # alike up to low; they differ before high + 1, if at all
        middle = (low + high + 1) // 2
        if a[i + same : i + middle] == b[j + same : j + middle]:
            low = middle
        else:
            high = middle - 1
    return low


_DECODER = json.JSONDecoder()


def _unspliced(old: _Committed, raw: bytes) -> tuple[dict[str, Any], list[str]] | None:
    """The record document whose bytes are ``raw``, made from ``old``, a version of it
    this process committed, when ``raw`` is ``old``'s bytes with records put in (as
    other processes' :func:`_spliced` put them): only those are parsed, the others are
    ``old``'s.  With its records' names in order.  Reading a document of 350 records
    that another process put one in since costs some 35 µs so, against 600 for parsing
    it whole (docs/performance.md, twenty-third round).

    ``None`` after any other change, and ``raw`` is parsed whole.  ``old`` must be of
    the shape :func:`_spliced` relies on (its ``names`` known), so that where a record
    was put is found by the first ``":{`` after the first byte that differs: the one
    of the record put before.
    """
    names, before = old.names, old.encoded
    if names is None or len(raw) <= len(before):
        return None
    head, tail = _around(old.doc)
    start, end = len(head), len(before) - len(tail)
    try:
        text = raw.decode("ascii")  # dump_json writes nothing else
    except UnicodeDecodeError:
        return None
    added: dict[str, Any] = {}
    last: tuple[int, str] | None = None  # where the record put in last went, its name
    b = r = 0  # before[:b] and raw[:r] are alike, but for the records put in
    while len(raw) - r > len(before) - b:
        differs = b + _common_prefix(before, raw, b, r)
        if not start <= differs <= end:
            return None  # not among the records
        key_end = before.find(b'":{', differs, end)
        if key_end < 0:  # after the last record
            at, put = len(names), end
        else:  # before the record whose name ends there
            opens = before.rfind(b'"', start, key_end)
            try:
                name = json.loads(before[opens : key_end + 1])
            except ValueError:
                return None
            at = bisect.bisect_left(names, name)
            if at == len(names) or names[at] != name:
                return None
            put = start if at == 0 else opens - 1
        if not b <= put <= differs:
            return None
        here = r + put - b  # a comma and the record, or the record and a comma (the first)
        try:
            if at > 0 and text[here] != ",":
                return None
            filename, colon = _DECODER.raw_decode(text, here + (at > 0))
            if text[colon] != ":":
                return None
            record, after = _DECODER.raw_decode(text, colon + 1)
        except (ValueError, IndexError, RecursionError):
            return None
        if type(filename) is not str or type(record) is not dict:
            return None
        if raw.count(b'":{', here, after) != 1:
            return None  # a record that holds an object
        previous = last[1] if last is not None and last[0] == at else names[at - 1] if at else None
        if (previous is not None and not previous < filename) or (
            at < len(names) and names[at] <= filename
        ):
            return None  # not where dump_json puts it (or a name it holds already)
        added[filename], last = record, (at, filename)
        b, r = put, after + (at == 0 and text[after : after + 1] == ",")
    if len(raw) - r != len(before) - b or not raw.endswith(memoryview(before)[b:]):
        return None
    doc = {**old.doc, "files": {**old.doc["files"], **added}}
    if "deleted" in doc:
        doc["deleted"] = list(doc["deleted"])
    return doc, sorted([*names, *added])


class RecordDocument:
    """A JSON document of file records keyed by filename, changed by compare-and-swap.

    Its shape is ``{"files": {filename: record}, "deleted": [filename, ...], ...}``;
    an ecosystem may keep more keys beside (a display name), given as ``initial``.

    A commit puts its record's bytes among the stored ones (:func:`_spliced`) rather
    than encoding the document again, and with ``kept`` (the store's cache) the version
    a commit of this process wrote is kept there, so that the next commit to the
    document through this process, if no other wrote it since (one stat tells), neither
    reads nor parses it: an upload costs about the same whether the document holds ten
    files or thousands.  Only documents of up to :data:`KEPT_BYTES` bytes are kept.  A
    version another process wrote (gunicorn's other worker) is read, and parsed whole
    unless it is the kept one with a record put in (:func:`_unspliced`).

    With ``appends`` (the storage's word: :attr:`ChannelStore.appends`), where the
    storage :class:`~..storage.Appends`, a new record is instead appended to the stored
    bytes as a text of RFC 7464 (``["files", filename, record]``,
    :func:`~..storage.update_json`'s ``append``): no new file and no rename
    (docs/performance.md, thirty-first round).  A commit whose text would take the
    texts past :data:`APPENDED_BYTES`, or past half the document before them where that
    is more, writes the document whole again instead, so a read never applies more.
    """

    #: The largest document whose committed version is kept (encoded); what it takes
    #: in the cache is counted at four times that (its parsed records and its bytes).
    KEPT_BYTES = 2 * 1024 * 1024
    #: What the texts appended to a document may come to at least (``appends``).
    APPENDED_BYTES = 4096

    def __init__(
        self,
        storage: Storage,
        key: str,
        *,
        initial: Mapping[str, Any] | None = None,
        kept: DocumentCache | None = None,
        appends: bool = False,
    ):
        self.storage = storage
        self.key = key
        self.initial = dict(initial or {})
        self.kept = kept
        self.appends = appends
        self._read: JSONRead | None = None
        self._names: list[str] | None = None  # of the version read, when of the shape

    def _current(self) -> JSONRead:
        """The document as stored now: the version this process committed last when
        it is still the stored one, else read and parsed."""
        self._names = None
        # Only a document this process committed is worth the stat first: any other is
        # read at once (one request to an object store, not two).
        if self.kept is not None and self.kept.holds(("committed", self.key)):
            try:
                etag = self.storage.stat(self.key).etag
            except FileNotFoundError:
                return JSONRead(b"", None, None)
            committed = self.kept.get(("committed", self.key), etag)
            if committed is not None:
                self._names = committed.names
                return committed.read()  # type: ignore[no-any-return]
            # Another process's version, most often this one's with a record put in.
            older = self.kept.latest(("committed", self.key))
            if older is not None:
                return JSONRead.of(
                    self.storage, self.key, known=lambda raw: self._grown(older, raw)
                )
        return JSONRead.of(self.storage, self.key)

    def _grown(self, older: _Committed, raw: bytes) -> dict[str, Any] | None:
        before = older.encoded
        if raw[len(before) : len(before) + 1] == RS and raw.startswith(before):
            # Another process appended records to the version kept: only they are read.
            try:
                sets = appended_sets(raw[len(before) :])
            except (ValueError, RecursionError):
                return None
            if not all(len(path) == 3 and path[0] == "files" for path in sets):
                return None  # not only records (never written so): read whole
            return apply_sets(older.read().doc, sets)  # type: ignore[no-any-return]
        grown = _unspliced(older, raw)
        if grown is None:
            return None
        doc, self._names = grown
        return doc

    def read(self) -> dict[str, Any] | None:
        """The document as stored now; the next :meth:`add` starts from this very read
        (one read and parse of the document per upload, not two)."""
        self._read = self._current()
        doc = self._read.doc
        return None if doc is None else dict(doc)

    @staticmethod
    def is_new(doc: Mapping[str, Any] | None, filename: str, sha256: str, *, reuse: bool) -> bool:
        """Whether the document lacks the file; raise if it may not be added.

        Looks at the one record by its filename, so the cost of an upload does not grow
        with the number of files.  A deleted filename is reusable only with ``reuse``.
        """
        if doc is None:
            return True
        if not reuse and filename in doc.get("deleted", ()):
            raise DeletedFilenameError(filename)
        old = doc["files"].get(filename)
        if old is None:
            return True
        if old["sha256"] != sha256:
            raise FileConflictError(filename)
        return False

    def add(
        self,
        record: Mapping[str, Any],
        *,
        reuse: bool = False,
        check: Callable[[Mapping[str, Any]], None] | None = None,
    ) -> tuple[bool, dict[str, Any]]:
        """Commit ``record``; whether it is new (not the very same file again), and the
        document as committed (not to be changed: it may be kept).

        ``check(doc)`` runs on the document the commit would change, every time it is
        read, and raises to refuse a new file (an ecosystem's own rule across files,
        such as one sdist per Python release), so that two racing uploads cannot both
        pass it."""
        added, reused = [False], [False]

        def change(doc: dict[str, Any] | None) -> dict[str, Any]:
            doc = doc or {**self.initial, "files": {}, "deleted": []}
            added[0] = self.is_new(doc, record["filename"], record["sha256"], reuse=reuse)
            if added[0] and check is not None:
                check(doc)
            doc["files"].setdefault(record["filename"], dict(record))
            reused[0] = record["filename"] in doc.get("deleted", ())
            if reused[0]:
                doc["deleted"].remove(record["filename"])
            return doc

        current, self._read = self._read, None
        if current is None and self.kept is not None:
            current = self._current()
        # The names of the version the first attempt starts from, when known; a later
        # attempt reads the document afresh.
        first, names = (current.raw if current is not None else None), self._names
        made: list[list[str] | None] = [None]

        def encode(doc: dict[str, Any], raw: bytes) -> bytes:
            # ``raw`` is the version ``change`` was given, which lacked the record if new.
            made[0] = None
            if not added[0] and raw:
                return raw  # the very same file again: nothing to write
            if added[0] and raw:
                spliced = _spliced(raw, doc, record["filename"], names if raw is first else None)
                if spliced is not None:
                    encoded, made[0] = spliced
                    return encoded
            return dump_json(doc)

        def written(doc: dict[str, Any], encoded: bytes, stat: Stat) -> None:
            if self.kept is not None and len(encoded) <= self.KEPT_BYTES:
                committed = _Committed(doc, encoded, stat, made[0])
                self.kept.put(("committed", self.key), stat.etag, committed, 4 * len(encoded))

        def append(doc: dict[str, Any], raw: bytes) -> bytes | None:
            made[0] = None
            if not added[0] or reused[0]:
                return None  # nothing to write, or a change beside the record's
            end = raw.find(RS)
            if end >= 0 and not raw.endswith(b"\n"):
                return None  # a text cut short by a write that never finished: rewrite
            filename = record["filename"]
            piece = RS + dump_json(["files", filename, doc["files"][filename]]) + b"\n"
            before = len(raw) if end < 0 else end
            if len(raw) - before + len(piece) > max(self.APPENDED_BYTES, before // 2):
                return None  # enough appended: the document written whole again
            return piece

        doc = update_json(
            self.storage, self.key, change, current=current, encode=encode,
            append=append if self.appends else None, written=written,
        )  # fmt: skip
        return added[0], doc

    def remove(self, record: Mapping[str, Any]) -> None:
        """Take back a commit of exactly ``record`` (another upload's record stays)."""

        def change(doc: dict[str, Any] | None) -> dict[str, Any] | None:
            if doc is not None and doc["files"].get(record["filename"]) == dict(record):
                del doc["files"][record["filename"]]
            return doc

        update_json(self.storage, self.key, change)

    def holds(self, filename: str, sha256: str) -> bool:
        doc = self.read()
        old = doc["files"].get(filename) if doc is not None else None
        return old is not None and old["sha256"] == sha256

    def update(
        self, change: Callable[[dict[str, Any]], dict[str, Any] | None]
    ) -> list[dict[str, Any]]:
        """Replace records: ``change(record) -> record | None`` (``None`` deletes).

        Deleted filenames are remembered in ``deleted``, so that they are not uploaded
        again unless the place allows it.  Returns the records deleted.
        """
        removed: list[dict[str, Any]] = []

        def apply(doc: dict[str, Any] | None) -> dict[str, Any] | None:
            removed.clear()
            if doc is None:
                return None
            kept: dict[str, Any] = {}
            for filename, old in doc["files"].items():
                new = change(old)
                if new is None:
                    removed.append(old)
                    deleted = doc.setdefault("deleted", [])
                    if filename not in deleted:
                        deleted.append(filename)
                else:
                    kept[filename] = new
            doc["files"] = kept
            return doc

        update_json(self.storage, self.key, apply)
        return removed


def store_blob(
    storage: Storage,
    blobs: Mapping[str, IO[bytes]],
    *,
    commit: Callable[[], T],
    referenced: Callable[[], bool],
) -> T:
    """Write ``blobs`` (key to seekable stream), then ``commit()`` the record naming them.

    A key that exists already holds the same bytes (it names their sha256): a racing
    upload of this very file, or the orphan of an interrupted one.  Writing it again
    renews its modification time, so that :func:`collect_garbage` spares it until the
    commit.

    When ``commit`` raises, the blobs this call created are deleted again, so a
    rejected upload leaves nothing behind.  An upload of the same bytes racing this
    one may have committed meanwhile (its blob write found ours and only renewed it):
    ``referenced()`` is asked after the delete, and the blobs are put back when a
    record names them.  That upload checks the other way round, after its commit: a
    blob it did not create is put back if it has gone.  Between the two checks no
    committed record can be left without its blob.
    """
    created: list[str] = []
    for key, stream in blobs.items():
        stream.seek(0)
        try:
            storage.create(key, stream)
            created.append(key)
        except FileExistsError:
            stream.seek(0)
            storage.put(key, stream)
    try:
        result = commit()
    except BaseException:
        for key in created:
            with contextlib.suppress(FileNotFoundError):
                storage.delete(key)
        with contextlib.suppress(Exception):
            if created and referenced():
                _put_back(storage, blobs, created)
        raise
    renewed = [key for key in blobs if key not in created]
    if renewed:
        _put_back(storage, blobs, renewed)
    return result


def _put_back(storage: Storage, blobs: Mapping[str, IO[bytes]], keys: Iterable[str]) -> None:
    for key in keys:
        try:
            storage.stat(key)
        except FileNotFoundError:
            stream = blobs[key]
            stream.seek(0)
            storage.put(key, stream)


def forget(storage: Storage, keys: Iterable[str]) -> None:
    """Delete blobs that may be gone already."""
    for key in keys:
        with contextlib.suppress(FileNotFoundError):
            storage.delete(key)


def collect_garbage(
    storage: Storage, prefix: str, referenced: set[str], *, grace: float
) -> list[str]:
    """Remove what no record names under ``prefix``, older than ``grace`` seconds.

    That is the blobs of uploads killed between their blob and their commit, and the
    hidden temporary files of writes killed halfway (on a backend that keeps them).
    The grace period spares uploads in progress.  Returns the keys removed.
    """
    older_than = time.time() - grace
    removed = sweep(storage, prefix, referenced, older_than=older_than)
    if isinstance(storage, CleansIncompleteWrites):
        removed += storage.clean_incomplete_writes(prefix, older_than=older_than)
    return removed


class ChannelStore:
    """What an ecosystem keeps of a channel, under ``channels/<CHANNEL>/<folder>/``.

    Blobs live under ``blobs/`` there; a subclass says which blobs its records name
    (:meth:`referenced`), and :meth:`collect_garbage` removes the others.
    """

    #: The ecosystem's folder in every channel: ``pypi``, ``cran``, ...
    folder: str
    #: The bytes :meth:`derived` keeps, about (10,000 listed projects take some 4 MB),
    #: with the versions of documents this process committed (:class:`RecordDocument`).
    derived_bytes = 32 * 1024 * 1024

    def __init__(self, storage: Storage, *, limits: Limits | None = None) -> None:
        self.storage = storage
        #: What reading a stored archive again may cost (the server's own bounds).
        self.limits = limits or Limits()
        self._derived = DocumentCache(self.derived_bytes)

    def prefix(self, channel: Channel) -> str:
        return f"{channel.prefix}{self.folder}/"

    @cached_property
    def format(self) -> StorageFormat:
        """What the storage says of itself (:func:`~..channels.storage_format`), read at
        the first upload, which comes after the storage's first channel, which says it."""
        return storage_format(self.storage)

    @property
    def flat_blobs(self) -> bool:
        """Whether files uploaded now get flat blobs (:attr:`StoredFile.flat`)."""
        return self.format.flat_blobs

    @property
    def appends(self) -> bool:
        """Whether a record uploaded now may be appended to its document as a text
        (:class:`RecordDocument`'s ``appends``)."""
        return self.format.appended_records

    def uploaded(
        self, record: type[F], filename: str, digests: Digests, token: Token | None, **fields: Any
    ) -> F:
        """The ``record`` of a file uploaded now (:meth:`StoredFile.uploaded`), its blob
        flat where this storage keeps them so (:attr:`flat_blobs`): the one place every
        ecosystem's upload makes its record."""
        return record.uploaded(filename, digests, token, flat=self.flat_blobs, **fields)

    def referenced(self, channel: Channel) -> set[str]:
        """The keys of every blob a committed record names."""
        raise NotImplementedError

    def upstream_key(self, channel: Channel, kind: str, name: str = "") -> str:
        """Where the ecosystem keeps what it has of the channel's upstream: ``pages``,
        ``files`` records, ``blobs``...  Apart from the channel's own files, so that
        nothing fetched from an upstream is ever written over one of them."""
        return f"{self.prefix(channel)}upstream/{kind}/{name}"

    def upstream_referenced(self, channel: Channel) -> set[str]:
        """The keys of every upstream blob a record of a fetched file names (each
        ``upstream/files/`` document holds such records, as :mod:`~.proxy` commits them)."""
        folder, blobs = self.upstream_key(channel, "files"), self.upstream_key(channel, "blobs")
        referenced: set[str] = set()
        for key in self.storage.list(folder):
            if key.endswith(".json"):
                doc, _ = read_json(self.storage, key)
                for raw in doc["files"].values():
                    referenced.add(blob_key(blobs, StoredFile.from_json(raw)))
        return referenced

    def read_records(self, key: str, record: type[F]) -> RecordSnapshot[F]:
        """The records of the index document at ``key`` (none, and no stat, when nothing
        was uploaded there yet)."""
        try:
            records, stat = read_document(
                self.storage,
                key,
                lambda doc: tuple(record.from_json(r) for r in doc["files"].values()),
            )
        except FileNotFoundError:
            return RecordSnapshot(records=(), stat=None)
        return RecordSnapshot(records=records, stat=stat)

    def derived(self, key: str, what: str, make: Callable[[], tuple[T, int]]) -> T | None:
        """What ``make`` derives from the document at ``key`` (the value, and about the
        bytes it holds), kept while the document's ETag stays the same; ``what`` names
        the derivation.  ``None`` when there is no such document.

        A listing of every package of a channel reads each document again only once it
        changed: a ``stat`` of each instead of a read and a parse.  A value that
        ``make`` derived from a version newer than the stat's is kept under the older
        ETag, which no later stat finds, so it is made again, never served stale.
        """
        try:
            etag = self.storage.stat(key).etag
        except FileNotFoundError:
            return None
        return self._derived.get_or_make((what, key), etag, make)

    def collect_garbage(self, channel: Channel, *, grace: float = 3600.0) -> list[str]:
        """Remove blobs no record names, once older than ``grace`` seconds.

        Such blobs are left by uploads whose process died between writing the blob and
        committing its record; nothing serves them meanwhile, and an upload renews its
        blob's modification time right before it commits, so the grace period spares
        uploads in progress.  The same goes for fetches from an upstream, whose blobs
        live under :meth:`upstream_key` ``blobs`` (a fetched file is never removed), and
        for the hidden temporary files of writes killed halfway, anywhere in the
        ecosystem's folder (on a backend that keeps them).  Returns the keys removed.
        """
        older_than = time.time() - grace
        own, upstream = f"{self.prefix(channel)}blobs/", self.upstream_key(channel, "blobs")
        removed = sweep(self.storage, own, self.referenced(channel), older_than=older_than)
        removed += sweep(
            self.storage, upstream, self.upstream_referenced(channel), older_than=older_than
        )
        if isinstance(self.storage, CleansIncompleteWrites):
            # In every folder of the ecosystem's: a document's write killed between its
            # link and its rename leaves a hidden file beside the document too.
            prefix = self.prefix(channel)
            removed += self.storage.clean_incomplete_writes(prefix, older_than=older_than)
        return removed
