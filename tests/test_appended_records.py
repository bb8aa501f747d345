"""Records appended to their document (the thirty-first round of docs/performance.md).

A storage that :class:`~private_channels.storage.Appends` (the filesystem's; memory too)
takes a new record as a text of RFC 7464 added to the end of its document, where the
storage says so (``registry/format.json``); every read applies the texts, a text cut
short by a write that never finished is dropped, and the document is written whole
again once its texts are long enough.  A storage that cannot append (S3) writes it
whole as before.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from private_channels.channels import FORMAT_KEY, ChannelRegistry, storage_format
from private_channels.core.blobs import FileConflictError, RecordDocument, StoredFile
from private_channels.core.cache import DocumentCache
from private_channels.pypi.store import PythonStore
from private_channels.storage import (
    RS,
    Appends,
    CorruptDocumentError,
    FileSystemStorage,
    InvalidKeyError,
    MemoryStorage,
    StaleWriteError,
    Storage,
    dump_json,
    read_json,
    update_json,
)

from .fuzz import assert_linear

DOC = "channels/c/eco/index.json"


def record(filename: str, data: bytes = b"x") -> dict[str, Any]:
    return StoredFile(
        filename=filename, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
        upload_time=1.0,
    ).to_json()  # fmt: skip


def raw(storage: Storage, key: str = DOC) -> bytes:
    stream, _ = storage.open(key)
    with stream:
        return stream.read()


def whole(storage: Storage, key: str = DOC) -> bytes:
    """The document's bytes as written whole (what a version before would have stored)."""
    return dump_json(read_json(storage, key)[0])


class _Whole:
    """A storage that cannot append (as S3): everything but ``append``."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def __getattr__(self, name: str) -> Any:
        if name == "append":
            raise AttributeError(name)
        return getattr(self.storage, name)


@pytest.fixture(params=["memory", "filesystem"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """A fresh storage of each backend that appends (S3 cannot: :class:`_Whole`)."""
    if request.param == "memory":
        return MemoryStorage()
    return FileSystemStorage(tmp_path / "storage")


# -- the storages' append --------------------------------------------------------------


def test_append_adds_at_the_end_of_the_version_it_was_asked_for(storage: Storage) -> None:
    assert isinstance(storage, Appends)
    first = storage.put("k/doc.json", io.BytesIO(b"{}"))
    second = storage.append("k/doc.json", b"\x1e[1]\n", if_match=first.etag)
    assert raw(storage, "k/doc.json") == b"{}\x1e[1]\n"
    assert second == storage.stat("k/doc.json") and second.size == 7
    assert second.etag != first.etag
    with pytest.raises(StaleWriteError):  # another version now
        storage.append("k/doc.json", b"more", if_match=first.etag)
    assert raw(storage, "k/doc.json") == b"{}\x1e[1]\n"
    with pytest.raises(FileNotFoundError):
        storage.append("k/none.json", b"more", if_match=second.etag)
    assert list(storage.list("k/")) == ["k/doc.json"]


WAYS = ["unnamed", "named", "walk", "let go"]


def _way(storage: FileSystemStorage, way: str) -> FileSystemStorage:
    """``storage`` writing as on Linux (through the key's directory opened beneath the
    root), through named temp files, through the lstat walk, or making its calls as
    ``os`` does (tests/test_storage.py: ``_writing``, ``_resolving``)."""
    from private_channels.storage import filesystem

    if way == "named":
        storage._unnamed = False
    elif way == "walk":
        storage._openat2 = None
    elif way == "let go":
        storage._held_stat = None
        storage._calls = filesystem._Calls()
    return storage


@pytest.mark.parametrize("way", WAYS)
def test_the_filesystem_appends_whichever_way(tmp_path: Path, way: str) -> None:
    storage = _way(FileSystemStorage(tmp_path / "storage"), way)
    stat = storage.put("k/doc.json", io.BytesIO(b"{}"))
    for n in range(3):
        stat = storage.append("k/doc.json", b"\x1e[%d]\n" % n, if_match=stat.etag)
    assert raw(storage, "k/doc.json") == b"{}\x1e[0]\n\x1e[1]\n\x1e[2]\n"
    assert stat == storage.stat("k/doc.json")
    with pytest.raises(StaleWriteError):
        storage.append("k/doc.json", b"x", if_match="0-0-0")
    with pytest.raises(FileNotFoundError):
        storage.append("k/gone.json", b"x", if_match=stat.etag)


@pytest.mark.parametrize("way", WAYS)
def test_the_filesystem_never_appends_through_a_link(tmp_path: Path, way: str) -> None:
    storage = _way(FileSystemStorage(tmp_path / "storage"), way)
    outside = tmp_path / "outside.json"
    outside.write_bytes(b"{}")
    stat = storage.put("k/doc.json", io.BytesIO(b"{}"))
    (tmp_path / "storage/k/doc.json").unlink()
    (tmp_path / "storage/k/doc.json").symlink_to(outside)
    with pytest.raises((FileNotFoundError, StaleWriteError, InvalidKeyError)):
        storage.append("k/doc.json", b"\x1e[1]\n", if_match=stat.etag)
    assert outside.read_bytes() == b"{}"


def test_an_append_that_fails_takes_its_bytes_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = FileSystemStorage(tmp_path / "storage")
    stat = storage.put("k/doc.json", io.BytesIO(b"{}"))

    def fails(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", fails)
    with pytest.raises(OSError, match="Input/output"):
        storage.append("k/doc.json", b"\x1e[1]\n", if_match=stat.etag)
    assert raw(storage, "k/doc.json") == b"{}"


def test_a_put_after_the_read_makes_the_append_stale(tmp_path: Path) -> None:
    """An append and a replacing write exclude each other by the key's lock, and the
    append compares the very file it opened."""
    storage = FileSystemStorage(tmp_path / "storage")
    read = storage.put("k/doc.json", io.BytesIO(b"{}"))
    storage.put("k/doc.json", io.BytesIO(b"{}"), if_match=read.etag)  # same bytes, new file
    with pytest.raises(StaleWriteError):
        storage.append("k/doc.json", b"\x1e[1]\n", if_match=read.etag)
    assert raw(storage, "k/doc.json") == b"{}"


# -- reading a document with texts -----------------------------------------------------


def test_a_read_applies_the_texts_in_order(storage: Storage) -> None:
    body = (
        b'{"files":{"a":{"n":1}},"name":"x"}'
        + RS + b'["files","b",{"n":2}]\n'
        + RS + b'["files","a",{"n":3,"none":null}]\n'
        + RS + b'["name","y"]\n'
    )  # fmt: skip
    storage.put(DOC, io.BytesIO(body))
    assert read_json(storage, DOC)[0] == {
        "files": {"a": {"n": 3, "none": None}, "b": {"n": 2}}, "name": "y",
    }  # fmt: skip


@pytest.mark.parametrize(
    "tail",
    [
        RS + b'["files","b",{"n":2}',  # cut short, last
        RS + b'["files","b",{"n":2}]',  # its LF never written
        RS + b'["files","b"' + RS + b'["files","c",{"n":3}]\n',  # cut short, then another
        RS + b'["files","b",{"n":2}]\x00\x00\x00',  # a size written before the bytes
    ],
)
def test_a_text_cut_short_is_dropped(storage: Storage, tail: bytes) -> None:
    storage.put(DOC, io.BytesIO(b'{"files":{"a":{"n":1}}}' + tail))
    doc = read_json(storage, DOC)[0]
    assert doc["files"]["a"] == {"n": 1} and "b" not in doc["files"]
    assert doc["files"].get("c") == ({"n": 3} if b'"c"' in tail else None)  # read after


@pytest.mark.parametrize(
    "tail",
    [
        RS + b"not json\n",
        RS + b'{"files":{}}\n',  # not [key, ..., value]
        RS + b'["files"]\n',
        RS + b"[1,2]\n",
        RS + b'["name","x",1]\n',  # "name" holds no object
        RS + b'["missing","x",1]\n',
    ],
)
def test_a_malformed_text_makes_the_document_corrupt(storage: Storage, tail: bytes) -> None:
    storage.put(DOC, io.BytesIO(b'{"files":{},"name":"n"}' + tail))
    with pytest.raises(CorruptDocumentError, match=r"index\.json"):
        read_json(storage, DOC)


@given(st.binary(max_size=300), st.binary(max_size=300))
def test_any_bytes_read_as_a_document_or_corrupt(head: bytes, tail: bytes) -> None:
    storage = MemoryStorage()
    storage.put(DOC, io.BytesIO(head + RS + tail))
    with contextlib.suppress(CorruptDocumentError):
        read_json(storage, DOC)


@given(st.data())
def test_texts_read_cost_linear_time(data: st.DataObject) -> None:
    unit = data.draw(
        st.sampled_from([
            RS + b'["files","a",{"n":1}]\n', RS + b'["files","a"', RS + b"[[[[", RS, b"\n",
            RS + b'["a","b","c","d","e","f",1]\n',
        ])
    )  # fmt: skip
    storage = MemoryStorage()

    def make(n: int) -> Any:
        storage.put(DOC, io.BytesIO(b'{"files":{},"a":{}}' + unit * (n // len(unit))))

        def read() -> None:
            with contextlib.suppress(CorruptDocumentError):
                read_json(storage, DOC)

        return read

    assert_linear(make, repr(unit))


def test_update_json_appends_where_it_can_and_writes_whole_where_not(storage: Storage) -> None:
    update_json(storage, DOC, lambda doc: {"n": 0})

    def bump(doc: dict[str, int]) -> dict[str, int]:
        return {"n": doc["n"] + 1}

    def append(new: dict[str, int], raw: bytes) -> bytes:
        return RS + dump_json(["n", new["n"]]) + b"\n"

    update_json(storage, DOC, bump, append=append)
    assert raw(storage) == b'{"n":0}' + RS + b'["n",1]\n'
    update_json(_Whole(storage), DOC, bump, append=append)  # type: ignore[arg-type]
    assert raw(storage) == b'{"n":2}'
    assert read_json(storage, DOC)[0] == {"n": 2}


# -- records appended ------------------------------------------------------------------


def test_records_are_appended_and_read_as_the_document_written_whole(storage: Storage) -> None:
    appended = RecordDocument(storage, DOC, initial={"name": "x"}, appends=True)
    plain = MemoryStorage()
    written_whole = RecordDocument(plain, DOC, initial={"name": "x"})
    for name in ("b-1.whl", "a-1.whl", "c-1.whl"):
        assert appended.add(record(name))[0]
        assert written_whole.add(record(name))[0]
    stored = raw(storage)
    assert stored.count(RS) == 2  # the first made the document, whole
    assert stored.endswith(RS + dump_json(["files", "c-1.whl", record("c-1.whl")]) + b"\n")
    assert whole(storage) == raw(plain)
    # The same file again writes nothing; another file of the name is refused.
    etag = storage.stat(DOC).etag
    assert not appended.add(record("a-1.whl"))[0]
    assert storage.stat(DOC).etag == etag
    with pytest.raises(FileConflictError):
        appended.add(record("a-1.whl", b"other"))


def test_a_document_is_written_whole_again_once_its_texts_are_long_enough(
    storage: Storage,
) -> None:
    document = RecordDocument(storage, DOC, appends=True)
    document.add(record("first.whl"))
    sizes = []
    for i in range(40):
        document.add(record(f"p-{i:02d}.whl"))
        stored = raw(storage)
        before = stored.find(RS)
        sizes.append(0 if before < 0 else len(stored) - before)
        assert sizes[-1] <= max(RecordDocument.APPENDED_BYTES, (before if before > 0 else 0) // 2)
    assert 0 in sizes[1:] and max(sizes) > 0  # compacted, then appended again
    assert sorted(read_json(storage, DOC)[0]["files"]) == [
        "first.whl",
        *(f"p-{i:02d}.whl" for i in range(40)),
    ]


def test_a_text_cut_short_is_gone_after_the_next_commit(storage: Storage) -> None:
    document = RecordDocument(storage, DOC, appends=True)
    document.add(record("a.whl"))
    document.add(record("b.whl"))
    # An append killed halfway: its bytes are there, its record never reported done.
    storage.put(DOC, io.BytesIO(raw(storage) + RS + b'["files","lost.whl",{"file'))
    assert sorted(read_json(storage, DOC)[0]["files"]) == ["a.whl", "b.whl"]
    assert document.add(record("c.whl"))[0]
    assert RS not in raw(storage)  # written whole: nothing appended after the cut
    assert sorted(read_json(storage, DOC)[0]["files"]) == ["a.whl", "b.whl", "c.whl"]


def test_a_deleted_filename_uploaded_again_is_written_whole(storage: Storage) -> None:
    document = RecordDocument(storage, DOC, appends=True)
    document.add(record("a.whl"))
    document.add(record("b.whl"))
    document.update(lambda r: None if r["filename"] == "a.whl" else r)
    document.add(record("c.whl"))
    assert RS in raw(storage)
    assert document.add(record("a.whl"), reuse=True)[0]
    assert RS not in raw(storage)
    doc = read_json(storage, DOC)[0]
    assert sorted(doc["files"]) == ["a.whl", "b.whl", "c.whl"] and doc["deleted"] == []


def test_another_process_s_appended_records_are_read_alone(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process that committed a version reads only the texts another appended since."""
    from private_channels.core import blobs

    ours, theirs = DocumentCache(1 << 20), DocumentCache(1 << 20)
    RecordDocument(storage, DOC, kept=ours, appends=True).add(record("a.whl"))
    RecordDocument(storage, DOC, kept=ours, appends=True).add(record("b.whl"))
    RecordDocument(storage, DOC, kept=theirs, appends=True).add(record("c.whl"))
    RecordDocument(storage, DOC, kept=theirs, appends=True).add(record("d.whl"))
    parsed: list[bytes] = []
    real = blobs.appended_sets
    monkeypatch.setattr(blobs, "appended_sets", lambda tail: parsed.append(tail) or real(tail))
    document = RecordDocument(storage, DOC, kept=ours, appends=True)
    assert document.add(record("e.whl"))[0]
    assert len(parsed) == 1 and parsed[0].count(RS) == 2  # c and d, not b
    assert sorted(read_json(storage, DOC)[0]["files"]) == [
        "a.whl", "b.whl", "c.whl", "d.whl", "e.whl"
    ]  # fmt: skip


def test_racing_appends_lose_nothing(storage: Storage) -> None:
    RecordDocument(storage, DOC, appends=True).add(record("first.whl"))
    errors: list[BaseException] = []

    def upload(worker: int) -> None:
        try:
            cache = DocumentCache(1 << 20)  # a process of its own
            for i in range(15):
                document = RecordDocument(storage, DOC, kept=cache, appends=True)
                document.add(record(f"w{worker}-{i}.whl"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=upload, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    files = read_json(storage, DOC)[0]["files"]
    assert len(files) == 1 + 6 * 15


# -- which storages append -------------------------------------------------------------


def _upload_twice(storage: Storage) -> bytes:
    channel = ChannelRegistry(storage).get("c") or ChannelRegistry(storage).create("c")
    store = PythonStore(storage)
    for version in ("1.0", "1.1"):
        data = f"wheel {version}".encode()
        filename = f"demo-{version}-py3-none-any.whl"
        digests = hashlib.sha256(data).hexdigest()
        from private_channels.pypi.store import FileRecord

        file_record = FileRecord(
            filename=filename, size=len(data), sha256=digests, upload_time=1.0,
            project="demo", version=version, flat=store.flat_blobs, blake2b_256="00" * 32,
        )  # fmt: skip
        store.add_file(channel, file_record, io.BytesIO(data), display_name="demo")
    return raw(storage, store.project_key(channel, "demo"))


def test_only_a_storage_that_says_so_appends_records(storage: Storage) -> None:
    assert _upload_twice(storage).count(RS) == 1
    assert storage_format(storage).appended_records


def test_a_storage_of_an_earlier_version_keeps_its_documents_whole(storage: Storage) -> None:
    """What the versions before read: a storage of the thirtieth round (flat blobs)
    and one made before it (no word at all)."""
    for word in (b'{"blobs": "flat"}', None):
        for key in list(storage.list("")):
            storage.delete(key)
        ChannelRegistry(storage).create("c")
        if word is None:
            storage.delete(FORMAT_KEY)
        else:
            storage.put(FORMAT_KEY, io.BytesIO(word))
        assert RS not in _upload_twice(storage)


def test_the_filesystem_append_leaves_no_file_behind(tmp_path: Path) -> None:
    storage = FileSystemStorage(tmp_path / "storage")
    document = RecordDocument(storage, DOC, appends=True)
    document.add(record("a.whl"))
    document.add(record("b.whl"))  # the first append makes the key's lock file
    names = sorted(os.listdir(tmp_path / "storage/channels/c/eco"))
    inode = os.stat(tmp_path / "storage" / DOC).st_ino
    document.add(record("c.whl"))
    assert sorted(os.listdir(tmp_path / "storage/channels/c/eco")) == names
    assert os.stat(tmp_path / "storage" / DOC).st_ino == inode  # the same file, grown


OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["add", "add", "add", "delete"]),
        st.sampled_from(["a.whl", "b.whl", "c.whl", "d.whl", "e.whl"]),
        st.sampled_from([b"1", b"2"]),
        st.booleans(),
    ),
    max_size=40,
)


@given(OPERATIONS, st.integers(min_value=0, max_value=600))
def test_appended_documents_read_as_documents_written_whole(
    operations: list[tuple[str, str, bytes, bool]], appended_bytes: int
) -> None:
    """Whatever commits, deletions and uploads again, with texts appended or not, a
    reader sees the same document, and each commit the same outcome."""
    appending, plain = MemoryStorage(), MemoryStorage()
    cache = DocumentCache(1 << 20)

    def outcome(document: RecordDocument, operation: tuple[str, str, bytes, bool]) -> object:
        kind, filename, data, reuse = operation
        try:
            if kind == "delete":
                return len(document.update(lambda r: None if r["filename"] == filename else r))
            return document.add(record(filename, data), reuse=reuse)[0]
        except FileConflictError as exc:
            return type(exc)

    for operation in operations:
        document = RecordDocument(appending, DOC, kept=cache, appends=True)
        document.APPENDED_BYTES = appended_bytes
        assert outcome(document, operation) == outcome(RecordDocument(plain, DOC), operation)
        try:
            expected = read_json(plain, DOC)[0]
        except FileNotFoundError:
            continue
        assert read_json(appending, DOC)[0] == expected
