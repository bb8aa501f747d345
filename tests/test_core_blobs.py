"""The blob-and-record core: commits, conflicts, cleanup after failures, races, garbage."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import time
from pathlib import Path
from typing import IO, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from private_channels.conda.store import CondaRecord
from private_channels.core.blobs import (
    DeletedFilenameError,
    FileConflictError,
    RecordDocument,
    StoredFile,
    collect_garbage,
    hash_stream,
    store_blob,
)
from private_channels.cran.store import CranRecord
from private_channels.pypi.store import FileRecord
from private_channels.storage import FileSystemStorage, Stat, Storage

DOC = "channels/c/eco/index.json"


def stored(data: bytes, filename: str = "f-1.0.zip") -> StoredFile:
    return StoredFile(
        filename=filename,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        upload_time=1.0,
    )


def blob_key(record: StoredFile) -> str:
    return f"channels/c/eco/{record.blob}"


def add(storage: Storage, data: bytes, *, reuse: bool = False) -> bool:
    record = stored(data)
    document = RecordDocument(storage, DOC)
    added, _ = store_blob(
        storage,
        {blob_key(record): io.BytesIO(data)},
        commit=lambda: document.add(record.to_json(), reuse=reuse),
        referenced=lambda: document.holds(record.filename, record.sha256),
    )
    return added


def test_hash_stream_gives_every_digest_and_rewinds() -> None:
    stream = io.BytesIO(b"abc" * 1000)
    stream.seek(7)
    digests = hash_stream(stream)
    assert stream.tell() == 0
    assert digests.size == 3000
    assert digests.sha256 == hashlib.sha256(b"abc" * 1000).hexdigest()
    assert digests.md5 == hashlib.md5(b"abc" * 1000, usedforsecurity=False).hexdigest()
    assert digests.blake2_256 == hashlib.blake2b(b"abc" * 1000, digest_size=32).hexdigest()


def test_records_round_trip_and_ignore_unknown_fields() -> None:
    record = stored(b"x")
    assert StoredFile.from_json({**record.to_json(), "added_later": 1}) == record


def test_add_same_conflict_delete_reuse(storage: Storage) -> None:
    assert add(storage, b"A") is True
    assert add(storage, b"A") is False
    before = sorted(storage.list(""))
    with pytest.raises(FileConflictError):
        add(storage, b"B")
    assert sorted(storage.list("")) == before
    removed = RecordDocument(storage, DOC).update(lambda record: None)
    assert [r["sha256"] for r in removed] == [stored(b"A").sha256]
    with pytest.raises(DeletedFilenameError):
        add(storage, b"B")
    assert add(storage, b"B", reuse=True) is True
    assert RecordDocument(storage, DOC).read()["deleted"] == []  # type: ignore[index]


class _Failing:
    """A storage whose record documents cannot be written, and which can run a step of
    another client at a chosen moment (a race, made deterministic)."""

    def __init__(self, storage: Storage, *, before_delete: Any = None) -> None:
        self.storage = storage
        self.before_delete = before_delete

    def __getattr__(self, name: str) -> Any:
        return getattr(self.storage, name)

    def create(self, key: str, data: IO[bytes]) -> Stat:
        if key == DOC:
            raise OSError("disk full")
        return self.storage.create(key, data)

    def put(self, key: str, data: IO[bytes], *, if_match: str | None = None) -> Stat:
        if key == DOC:
            raise OSError("disk full")
        return self.storage.put(key, data, if_match=if_match)

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        if self.before_delete is not None:
            step, self.before_delete = self.before_delete, None
            step()
        self.storage.delete(key, if_match=if_match)


def test_a_failed_commit_removes_the_blob_it_created(storage: Storage) -> None:
    before = sorted(storage.list(""))
    with pytest.raises(OSError, match="disk full"):
        add(_Failing(storage), b"A")  # type: ignore[arg-type]
    assert sorted(storage.list("")) == before


def test_a_failed_commit_leaves_a_blob_a_racing_upload_committed(storage: Storage) -> None:
    """A creates the blob, B (same bytes) finds it, renews it and commits; A's commit
    fails after that: A's cleanup must not take B's committed file away."""
    record = stored(b"A")

    def other_client_commits() -> None:
        assert add(storage, b"A") is True

    with pytest.raises(OSError):
        add(_Failing(storage, before_delete=other_client_commits), b"A")  # type: ignore[arg-type]
    stream, _ = storage.open(blob_key(record))
    with stream:
        assert stream.read() == b"A"


def test_a_committed_upload_puts_back_a_blob_a_failed_one_removed(storage: Storage) -> None:
    """The other order: B finds A's blob and renews it; A fails and deletes it before
    B commits; B, after its commit, finds its blob gone and writes it again."""
    record = stored(b"A")
    key = blob_key(record)
    storage.create(key, io.BytesIO(b"A"))  # A's blob, just written

    class _AfterRenew:
        def __init__(self) -> None:
            self.renewed = False

        def __getattr__(self, name: str) -> Any:
            return getattr(storage, name)

        def put(self, k: str, data: IO[bytes], *, if_match: str | None = None) -> Stat:
            stat = storage.put(k, data, if_match=if_match)
            if k == key and not self.renewed:
                self.renewed = True
                storage.delete(key)  # A's commit failed: A removes what it created
            return stat

    assert add(_AfterRenew(), b"A") is True  # type: ignore[arg-type]
    stream, _ = storage.open(key)
    with stream:
        assert stream.read() == b"A"


def test_collect_garbage_spares_referenced_and_young_blobs(storage: Storage) -> None:
    add(storage, b"A")
    orphan = blob_key(stored(b"O", "o-1.0.zip"))
    storage.create(orphan, io.BytesIO(b"O"))
    referenced = {blob_key(stored(b"A"))}
    assert collect_garbage(storage, "channels/c/eco/blobs/", referenced, grace=3600) == []
    time.sleep(0.05)
    assert collect_garbage(storage, "channels/c/eco/blobs/", referenced, grace=0.01) == [orphan]
    assert list(storage.list("channels/c/eco/blobs/")) == sorted(referenced)


def test_collect_garbage_removes_temporary_files_of_killed_writes(tmp_path: Path) -> None:
    storage = FileSystemStorage(tmp_path / "data")
    add(storage, b"A")
    directory = tmp_path / "data/channels/c/eco/blobs" / stored(b"A").sha256
    leftover = directory / ".tmp-killed"
    leftover.write_bytes(b"half a file")
    fresh = directory / ".tmp-in-progress"
    fresh.write_bytes(b"being written")
    old = time.time() - 7200
    os.utime(leftover, (old, old))
    removed = collect_garbage(
        storage, "channels/c/eco/blobs/", {blob_key(stored(b"A"))}, grace=3600
    )
    assert removed == [f"channels/c/eco/blobs/{stored(b'A').sha256}/.tmp-killed"]
    assert not leftover.exists() and fresh.exists()
    # Outside the prefix nothing is touched.
    elsewhere = tmp_path / "data/channels/c/.tmp-other"
    elsewhere.write_bytes(b"")
    os.utime(elsewhere, (old, old))
    collect_garbage(storage, "channels/c/eco/blobs/", set(), grace=3600)
    assert elsewhere.exists()


def test_collect_garbage_aborts_unfinished_s3_uploads(seaweedfs: Any) -> None:
    storage = seaweedfs.storage()
    client, bucket = storage.client, storage.bucket  # type: ignore[attr-defined]
    key = storage._key("channels/c/eco/blobs/x/f-1.0.zip")  # type: ignore[attr-defined]
    upload = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    try:
        assert collect_garbage(storage, "channels/c/eco/blobs/", set(), grace=3600) == []
        removed = collect_garbage(storage, "channels/c/eco/blobs/", set(), grace=-60)
        assert removed == ["channels/c/eco/blobs/x/f-1.0.zip (unfinished upload)"]
        listed = client.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", [])
        assert [u["UploadId"] for u in listed] == []
    finally:
        with contextlib.suppress(Exception):
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload)
        storage.close()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)
RECORDS = st.one_of(
    st.builds(FileRecord, project=st.just("a"), version=st.just("1.0"), blake2b_256=st.just("1")),
    st.builds(CondaRecord, md5=st.just("m"), subdir=st.just("noarch"), name=st.just("x"),
              index=st.dictionaries(st.text(max_size=4), JSON_VALUES, max_size=4),
              about=st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=3)),
    st.builds(CranRecord, package=st.just("abc"), version=st.just("1.0"), md5=st.just("m"),
              fields=st.dictionaries(st.text(max_size=4), st.none() | st.text(max_size=4))),
)  # fmt: skip


@given(RECORDS)
def test_a_record_as_json_is_what_asdict_gives_and_shares_no_container(record: Any) -> None:
    doc = record.to_json()
    assert doc == dataclasses.asdict(record) and list(doc) == list(dataclasses.asdict(record))
    for name, value in doc.items():
        if isinstance(value, dict | list):
            assert value is not getattr(record, name)
            json.dumps(value)  # and changing the copy leaves the record as it was


# -- the version a process committed, kept (RecordDocument with kept=) --------------

FLOATS = st.floats(allow_nan=False, allow_infinity=False)
DOCUMENT_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | FLOATS | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)
RECORD_DOCUMENTS = st.fixed_dictionaries(
    {"files": st.dictionaries(st.text(max_size=6), st.dictionaries(st.text(max_size=4),
                                                                   DOCUMENT_VALUES, max_size=4),
                              max_size=6)},
    optional={"deleted": st.lists(st.text(max_size=6), max_size=3), "name": st.text(max_size=4),
              "about": DOCUMENT_VALUES},
)  # fmt: skip


@given(RECORD_DOCUMENTS, st.data())
def test_a_record_document_encoded_in_pieces_is_dump_json_byte_for_byte(
    doc: dict[str, Any], data: st.DataObject
) -> None:
    """Whatever the records hold (any JSON, non-ASCII names, floats): the same bytes as
    dump_json, reusing only a piece whose record is the very same object."""
    from private_channels.core.blobs import _encode_records
    from private_channels.storage import dump_json

    encoded, pieces = _encode_records(doc, {})
    assert encoded == dump_json(doc)
    assert json.loads(encoded) == doc
    # Some records replaced by equal-looking new objects, some kept: a stale piece
    # (its record not the document's) must not be reused.
    changed = dict(doc["files"])
    for name in data.draw(st.lists(st.sampled_from(sorted(changed) or [""]), max_size=3)):
        if name in changed:
            changed[name] = {**changed[name], "yanked": "now"}
    added = data.draw(st.dictionaries(st.text(max_size=6), st.fixed_dictionaries({})))
    changed.update(added)
    new = {**doc, "files": changed}
    again, _ = _encode_records(new, pieces)
    assert again == dump_json(new)


class _Counting:
    """A storage that counts reads of the document and can fail its next write."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.reads = 0
        self.fail_next_write = False

    def __getattr__(self, name: str) -> Any:
        found = getattr(self.storage, name)
        if name != "read_whole":
            return found

        def read_whole(key: str, limit: int) -> Any:  # the filesystem's whole read
            self.reads += key == DOC
            return found(key, limit)

        return read_whole

    def open(self, key: str) -> Any:
        self.reads += key == DOC
        return self.storage.open(key)

    def put(self, key: str, data: IO[bytes], *, if_match: str | None = None) -> Stat:
        if key == DOC and self.fail_next_write:
            self.fail_next_write = False
            raise OSError("disk full")
        return self.storage.put(key, data, if_match=if_match)


def _kept_add(storage: Any, cache: Any, data: bytes, filename: str) -> bool:
    record = stored(data, filename)
    document = RecordDocument(storage, DOC, kept=cache)
    added, _ = store_blob(
        storage,
        {blob_key(record): io.BytesIO(data)},
        commit=lambda: document.add(record.to_json()),
        referenced=lambda: document.holds(record.filename, record.sha256),
    )
    return added


def _filenames(storage: Storage) -> list[str]:
    return sorted(RecordDocument(storage, DOC).read()["files"])  # type: ignore[index]


@pytest.mark.parametrize("pieces", [True, False], ids=["in-pieces", "whole"])
def test_a_kept_version_spares_the_next_commit_its_read_until_another_writes(
    storage: Storage, pieces: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Encoded in pieces (a large document's records reused) or whole (a small one)."""
    from private_channels.core import blobs
    from private_channels.core.cache import DocumentCache

    monkeypatch.setattr(blobs._own_share, "share", 1.0)  # one process, as far as it knows
    if pieces:
        monkeypatch.setattr(RecordDocument, "PIECES_FROM", 0)
    counting, cache = _Counting(storage), DocumentCache(1 << 20)
    assert _kept_add(counting, cache, b"A", "a-1.0.zip")
    assert counting.reads == 1  # a document this process never committed: read at once
    counting.reads = 0
    assert _kept_add(counting, cache, b"B", "b-1.0.zip")
    assert counting.reads == 0  # the version this process committed, kept
    # Another process (a cache of its own) commits; this one sees it and keeps both.
    assert _kept_add(storage, DocumentCache(1 << 20), b"C", "c-1.0.zip")
    assert _kept_add(counting, cache, b"D", "d-1.0.zip")
    assert counting.reads == 1
    assert _filenames(storage) == ["a-1.0.zip", "b-1.0.zip", "c-1.0.zip", "d-1.0.zip"]
    # The very same file again changes nothing; a conflicting one is refused as ever.
    assert not _kept_add(counting, cache, b"D", "d-1.0.zip")
    with pytest.raises(FileConflictError):
        _kept_add(counting, cache, b"other bytes", "d-1.0.zip")
    stored_bytes, _ = storage.open(DOC)
    with stored_bytes:
        assert stored_bytes.read() == dump_json_of(storage)
    # D was committed to another process's version: encoded whole, its records new
    # objects that no piece fits.  The next commit, to this process's own version,
    # makes the pieces that the one after it reuses.
    kept = cache.get(("committed", DOC), storage.stat(DOC).etag)
    assert kept.pieces == {}
    assert _kept_add(counting, cache, b"E", "e-1.0.zip")
    kept = cache.get(("committed", DOC), storage.stat(DOC).etag)
    assert sorted(kept.pieces) == (_filenames(storage) if pieces else [])
    assert _kept_add(counting, cache, b"F", "f-1.0.zip")
    stored_bytes, _ = storage.open(DOC)
    with stored_bytes:
        assert stored_bytes.read() == dump_json_of(storage)
    if pieces:
        again = cache.get(("committed", DOC), storage.stat(DOC).etag).pieces
        assert again["a-1.0.zip"] is kept.pieces["a-1.0.zip"]  # reused, not encoded again


def test_processes_taking_turns_encode_whole_and_one_alone_in_pieces(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where two processes take turns on a document at random (gunicorn's workers),
    a process finds its own version again about half the time, too seldom for pieces
    to pay: it encodes whole, even after a commit of its own.  One process alone keeps
    making and reusing them.  The bytes are the same either way."""
    import random

    from private_channels.core import blobs
    from private_channels.core.cache import DocumentCache

    monkeypatch.setattr(blobs._own_share, "share", 1.0)
    monkeypatch.setattr(RecordDocument, "PIECES_FROM", 0)
    caches, rng = [DocumentCache(1 << 20), DocumentCache(1 << 20)], random.Random(3)

    def pieces(cache: DocumentCache) -> dict[str, Any]:
        return cache.get(("committed", DOC), storage.stat(DOC).etag).pieces  # type: ignore[no-any-return]

    made = []
    for i in range(100):
        cache = caches[rng.randrange(2)]
        assert _kept_add(storage, cache, b"%d" % i, f"p-{i}.0.zip")
        made.append(bool(pieces(cache)))
    assert blobs._own_share.share < blobs._OwnShare.PIECES_PAY
    assert sum(made[50:]) <= 5, made  # about one commit in four made them before
    # The other's version, then this process's own twice: whole all the same.
    for i, cache in [(100, caches[1]), (101, caches[0]), (102, caches[0])]:
        assert _kept_add(storage, cache, b"%d" % i, f"p-{i}.0.zip")
        assert pieces(cache) == {}
    stored_bytes, _ = storage.open(DOC)
    with stored_bytes:
        assert stored_bytes.read() == dump_json_of(storage)
    # Alone again: its own version every time, the share climbs back, pieces are made.
    alone = caches[0]
    for i in range(103, 160):
        assert _kept_add(storage, alone, b"%d" % i, f"p-{i}.0.zip")
    assert blobs._own_share.share > blobs._OwnShare.PIECES_PAY
    assert sorted(pieces(alone)) == _filenames(storage)


def dump_json_of(storage: Storage) -> bytes:
    from private_channels.storage import dump_json, read_json

    return dump_json(read_json(storage, DOC)[0])


def test_a_failed_commit_leaves_the_kept_version_as_it_was(storage: Storage) -> None:
    """The commit changes a copy: a record whose write failed (its blob removed again)
    must not reach the next commit through the kept version."""
    from private_channels.core.cache import DocumentCache

    counting, cache = _Counting(storage), DocumentCache(1 << 20)
    assert _kept_add(counting, cache, b"A", "a-1.0.zip")
    counting.reads, counting.fail_next_write = 0, True
    with pytest.raises(OSError, match="disk full"):
        _kept_add(counting, cache, b"B", "b-1.0.zip")
    assert _kept_add(counting, cache, b"C", "c-1.0.zip")
    assert _filenames(storage) == ["a-1.0.zip", "c-1.0.zip"]
    assert counting.reads == 0


def test_only_documents_up_to_a_bound_are_kept(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    from private_channels.core.cache import DocumentCache

    counting, cache = _Counting(storage), DocumentCache(1 << 20)
    assert _kept_add(counting, cache, b"A", "a-1.0.zip")
    monkeypatch.setattr(RecordDocument, "KEPT_BYTES", len(dump_json_of(storage)))
    counting.reads = 0
    assert _kept_add(counting, cache, b"B", "b-1.0.zip")  # the one kept: no read
    assert _kept_add(counting, cache, b"C", "c-1.0.zip")  # larger than the bound: read
    assert _kept_add(counting, cache, b"D", "d-1.0.zip")
    assert counting.reads == 2
    assert _filenames(storage) == ["a-1.0.zip", "b-1.0.zip", "c-1.0.zip", "d-1.0.zip"]
