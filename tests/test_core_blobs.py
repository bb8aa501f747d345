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
from hypothesis import assume, example, given
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
from private_channels.core.cache import DocumentCache
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


def test_an_uploaded_record_keeps_its_blob_flat_when_its_name_fits_one_segment() -> None:
    digests = hash_stream(io.BytesIO(b"x"))
    sha = digests.sha256
    record = FileRecord.uploaded("demo-1.0-py3-none-any.whl", digests, None, flat=True,
                                 project="demo", version="1.0", blake2b_256="")  # fmt: skip
    assert record.flat and record.blob == f"blobs/{sha}-demo-1.0-py3-none-any.whl"
    assert not dataclasses.replace(record, flat=False).flat
    assert not StoredFile.uploaded("demo-1.0.zip", digests, None).flat  # the storage's word
    # With room for the longest key kept beside it (".pkg-info") in 255 characters.
    fits, longer = "a" * (255 - 65 - 9 - 4) + ".zip", "a" * (255 - 65 - 9 - 3) + ".zip"
    assert StoredFile.uploaded(fits, digests, None, flat=True).blob == f"blobs/{sha}-{fits}"
    assert StoredFile.uploaded(longer, digests, None, flat=True).blob == f"blobs/{sha}/{longer}"
    # A conda epoch's "!" is "=" in the key, flat or not.
    conda = CondaRecord.uploaded("x-1!2.0-0.conda", digests, None, flat=True,
                                 md5="", subdir="", name="x")  # fmt: skip
    assert conda.blob == f"blobs/{sha}-x-1=2.0-0.conda"
    assert dataclasses.replace(conda, flat=False).blob == f"blobs/{sha}/x-1=2.0-0.conda"


def test_a_record_made_before_flat_blobs_names_its_blob_in_a_folder_of_its_own() -> None:
    record = stored(b"x")
    old = {k: v for k, v in dataclasses.replace(record, flat=True).to_json().items() if k != "flat"}
    assert StoredFile.from_json(old) == record and not record.flat
    assert record.blob == f"blobs/{record.sha256}/f-1.0.zip"
    assert StoredFile.from_json(dataclasses.replace(record, flat=True).to_json()).flat


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
# Few characters, JSON's own among them: names that recur as a record's keys and in
# its strings, and strings that look like the bytes a record starts with.
NAMES = st.text(alphabet='ab-.é":{,\\', max_size=4)
STRINGS = st.text(max_size=5) | NAMES | st.sampled_from(['","a":{', '\\","a":{', '":{', "}"])
DOCUMENT_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | FLOATS | STRINGS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NAMES, inner, max_size=3),
    max_leaves=8,
)
RECORDS_OF_A_DOCUMENT = st.dictionaries(
    NAMES | st.text(max_size=6), st.dictionaries(NAMES, DOCUMENT_VALUES, max_size=4), max_size=6
)
RECORD_DOCUMENTS = st.fixed_dictionaries(
    {"files": RECORDS_OF_A_DOCUMENT},
    optional={"deleted": st.lists(NAMES, max_size=3), "name": st.text(max_size=4),
              "about": DOCUMENT_VALUES, "zz": DOCUMENT_VALUES},
)  # fmt: skip


@given(RECORD_DOCUMENTS, NAMES | st.text(max_size=6), st.dictionaries(NAMES, DOCUMENT_VALUES))
# A record holding an object under the name of the record the new one goes before.
@example({"files": {"": {"": None, "a": {}}, "a": {}}}, "0", {})
@example({"files": {"": {"a": {}, "b": 1}, "a": {}}}, "0", {"c": {}})
# ... and a record that is no object, which would hide that one from a count.
@example({"files": {"": [], "0": {"0": 1, "a": {}}, "a": {}}}, "1", {})
# A deleted name taken back: the bytes before the records change too.
@example({"deleted": ["b"], "files": {"a": {}}}, "b", {})
def test_a_record_spliced_into_a_document_is_dump_json_byte_for_byte(
    doc: dict[str, Any], filename: str, record: dict[str, Any]
) -> None:
    """Whatever the records hold (objects, names that are other records' filenames,
    strings that look like a record's start, non-ASCII), a splice is exactly the bytes
    of the document encoded whole, or is not made."""
    from private_channels.core.blobs import _spliced
    from private_channels.storage import dump_json

    assume(filename not in doc["files"])  # a commit splices only a new record in
    raw = dump_json(doc)
    new = {**doc, "files": {**doc["files"], filename: record}}
    if filename in doc.get("deleted", ()):  # a deleted name taken back, as add() does
        new["deleted"] = [name for name in doc["deleted"] if name != filename]
    spliced = _spliced(raw, new, filename)
    if spliced is not None:
        encoded, names = spliced
        assert encoded == dump_json(new)
        # The names it gives say the new version is of the shape: a splice that trusts
        # them is the one that reads every record to tell.
        if names is not None:
            assert names == sorted(new["files"])
            last = {**new, "files": {**new["files"], "~~~~~~~": {"a": 1}}}
            assert _spliced(encoded, last, "~~~~~~~", names) == _spliced(encoded, last, "~~~~~~~")
            assert _spliced(encoded, last, "~~~~~~~", names)[0] == dump_json(last)  # type: ignore[index]
    # A document whose other keys changed (a deleted name taken back) is not spliced.
    if "deleted" in doc:
        changed = {**new, "deleted": [*doc["deleted"], "x"]}
        assert _spliced(raw, changed, filename) is None


@given(
    st.lists(st.from_regex(r"[a-z][a-z0-9_.-]{0,20}\.(zip|whl|tar\.gz)", fullmatch=True),
             unique=True, min_size=1, max_size=40),
    st.data(),
)  # fmt: skip
def test_records_of_plain_fields_are_spliced_wherever_their_name_sorts(
    filenames: list[str], data: st.DataObject
) -> None:
    """What the ecosystems commit (plain filenames, records of plain values) is spliced
    in, first, last or between, not encoded whole."""
    from private_channels.core.blobs import _spliced
    from private_channels.storage import dump_json

    new = data.draw(st.sampled_from(filenames))
    plain = st.fixed_dictionaries({"sha256": st.text(max_size=8), "size": st.integers(),
                                   "depends": st.lists(st.text(max_size=4), max_size=2),
                                   "yanked": st.none() | st.text(max_size=5)})  # fmt: skip
    files = {name: data.draw(plain) for name in filenames}
    doc = {"name": "demo", "deleted": data.draw(st.lists(st.text(max_size=4), max_size=2)),
           "files": {name: record for name, record in files.items() if name != new}}  # fmt: skip
    spliced = _spliced(dump_json(doc), {**doc, "files": files}, new)
    assert spliced == (dump_json({**doc, "files": files}), sorted(files))


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


def test_a_kept_version_spares_the_next_commit_its_read_until_another_writes(
    storage: Storage,
) -> None:
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
    for data, filename in [(b"E", "e-1.0.zip"), (b"0", "0-1.0.zip"), (b"c2", "c-2.0.zip")]:
        assert _kept_add(counting, cache, data, filename)  # last, first, between
        stored_bytes, _ = storage.open(DOC)
        with stored_bytes:
            assert stored_bytes.read() == dump_json_of(storage)
    assert counting.reads == 1


def test_a_commit_splices_its_record_in_and_encodes_the_document_whole_only_if_it_must(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stored records are not encoded again, by a process that committed the
    version stored or by one that read it; a record holding an object makes the next
    commit encode the whole document, the same bytes."""
    from private_channels.core import blobs

    encoded: list[Any] = []
    whole = blobs.dump_json

    def counting(doc: Any) -> bytes:
        if isinstance(doc, dict) and "files" in doc:
            encoded.append(sorted(doc["files"]))
        return whole(doc)

    monkeypatch.setattr(blobs, "dump_json", counting)
    caches = [DocumentCache(1 << 20), DocumentCache(1 << 20)]
    for i in range(6):
        assert _kept_add(storage, caches[i % 2], b"%d" % i, f"p-{i}.0.zip")
    assert encoded == [["p-0.0.zip"]]  # the first commit, to no document
    document = RecordDocument(storage, DOC, kept=caches[0])
    assert document.add({"filename": "q.zip", "sha256": "0", "about": {"a": 1}})[0]
    assert _kept_add(storage, caches[1], b"6", "p-6.0.zip")
    assert encoded[1:] == [[*(f"p-{i}.0.zip" for i in range(7)), "q.zip"]]
    stored_bytes, _ = storage.open(DOC)
    with stored_bytes:
        assert stored_bytes.read() == dump_json_of(storage)


def dump_json_of(storage: Storage) -> bytes:
    from private_channels.storage import dump_json, read_json

    return dump_json(read_json(storage, DOC)[0])


PLAIN_RECORDS = st.fixed_dictionaries(
    {"sha256": STRINGS, "size": st.integers(), "upload_time": FLOATS,
     "depends": st.lists(STRINGS, max_size=2), "yanked": st.none() | STRINGS}
)  # fmt: skip


@given(
    st.dictionaries(NAMES | st.text(max_size=6), PLAIN_RECORDS, max_size=6),
    st.lists(NAMES, max_size=2),
    NAMES | st.text(max_size=6),
    PLAIN_RECORDS | st.dictionaries(NAMES, DOCUMENT_VALUES, max_size=3),
    st.sampled_from(
        ["put in", "two put in", "one changed", "one taken out", "deleted", "put in, one after"]
    ),
)
def test_another_process_s_version_is_made_from_this_one_s_by_parsing_its_new_records(
    files: dict[str, Any], deleted: list[str], filename: str, record: Any, change: str
) -> None:
    """From a version this process committed, the next is made by parsing only the
    records other processes put in: exactly what parsing it whole gives, with its
    records' names in order; or, after any other change, not at all."""
    from private_channels.core.blobs import _Committed, _spliced, _unspliced
    from private_channels.storage import dump_json

    assume(filename not in files)
    doc = {"deleted": deleted, "files": files, "name": "demo"}
    raw = dump_json(doc)
    # Names kept only for a version of the shape (each ``":{`` a record's start).
    shaped = raw.count(b'":{') == len(files) + 1
    ours = _Committed(doc, raw, Stat(len(raw), 0.0, "1"), sorted(files) if shaped else None)
    theirs: dict[str, Any] = {**doc, "files": {**files, filename: record}}
    if change == "two put in":
        theirs["files"]["~~~~~~~"] = {}
    elif change == "one changed" and files:
        theirs = {**doc, "files": {**files, min(files): {**files[min(files)], "yanked": "x"}}}
    elif change == "one taken out" and files:
        theirs = {**doc, "files": {k: v for k, v in files.items() if k != min(files)}}
    elif change == "deleted":
        theirs["deleted"] = [*deleted, "x"]
    elif change == "put in, one after" and max(files, default="") > filename:
        later = max(files)  # changed to bytes as long: only the bytes after tell
        theirs["files"][later] = {**files[later], "size": files[later]["size"] ^ 1}
    grown = _unspliced(ours, dump_json(theirs))
    if grown is not None:
        assert grown == (theirs, sorted(theirs["files"]))
        assert grown[0] == json.loads(dump_json(theirs))
        # The names it gives say the version is of the shape a splice relies on.
        last = {**theirs, "files": {**theirs["files"], "~~~~~~~~": {}}}
        trusted = _spliced(dump_json(theirs), last, "~~~~~~~~", grown[1])
        assert trusted == _spliced(dump_json(theirs), last, "~~~~~~~~")
    plain = _spliced(raw, {**doc, "files": {**files, filename: record}}, filename, ours.names)
    quoted = any('"' in name for name in [*files, filename])  # no filename holds one
    if change in ("put in", "two put in") and shaped and plain and plain[1] and not quoted:
        assert grown is not None  # what splices of records of plain values make


@pytest.mark.parametrize(
    "theirs",
    [
        b'{"files":{"a":{},"c":{},"b":{}}}',  # out of their order
        b'{"files":{"a":{},"a":{"x":1},"c":{}}}',  # a name twice
        b'{"files":{"a":{},"b":{},"c":{"y":2}}}',  # and the record after it changed
        b'{"files":{"a":{},"b":{},"c":{}},"more":1}',  # and a key after the records
        b'{"files":{"a":{},"b":{"c":{}},"c":{}}}',  # one that holds an object
        b'{"files":{"a":{},"b":[{"c":{}}],"c":{}}}',  # one that is no object
        b'{"files":{"a":{"y":2},"b":{},"c":{"y":1}}}',  # and one before it changed
        b'{"files":{"a":{"y":1},"b":{},"c":{"y":2}}}',  # as long, after it
    ],
)
def test_another_process_s_version_is_parsed_whole_unless_it_is_this_one_s_and_one_record(
    theirs: bytes,
) -> None:
    from private_channels.core.blobs import _Committed, _unspliced

    ours = {"files": {"a": {"y": 1}, "c": {"y": 1}}}
    raw = b'{"files":{"a":{"y":1},"c":{"y":1}}}'
    committed = _Committed(ours, raw, Stat(0, 0.0, "1"), ["a", "c"])
    theirs = theirs.replace(b'"a":{}', b'"a":{"y":1}').replace(b'"c":{}', b'"c":{"y":1}')
    assert _unspliced(committed, theirs) is None
    plain = b'{"files":{"a":{"y":1},"b":{"z":null},"c":{"y":1}}}'
    assert _unspliced(committed, plain) == ({"files": {**ours["files"], "b": {"z": None}}},
                                             ["a", "b", "c"])  # fmt: skip


def test_a_commit_after_another_process_put_its_record_in_parses_that_record_alone(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes taking turns on a document (gunicorn's workers): once each has
    committed a version of the shape, neither parses the other's whole; a change of
    another kind (a yank) is parsed whole, and nothing is lost either way."""
    from private_channels.storage import base

    parsed, loads = [], base._loads
    monkeypatch.setattr(base, "_loads", lambda key, data: parsed.append(key) or loads(key, data))
    caches = [DocumentCache(1 << 20), DocumentCache(1 << 20)]
    for i in range(8):
        assert _kept_add(storage, caches[i % 2], b"%d" % i, f"p-{i}.0.zip")
    # The second process's first read, and the first's read of the second's version
    # of a document it had encoded whole (no names kept): then none.
    assert parsed == [DOC, DOC]
    RecordDocument(storage, DOC).update(
        lambda record: {**record, "yanked": True} if record["filename"] == "p-3.0.zip" else record
    )
    parsed.clear()
    assert _kept_add(storage, caches[0], b"8", "p-8.0.zip")
    assert _kept_add(storage, caches[1], b"9", "p-9.0.zip")
    # The yank's version, by the first; then that with p-8 put in, by the second, for
    # whom it is not its own version with one record more.
    assert parsed == [DOC, DOC]
    files = RecordDocument(storage, DOC).read()["files"]  # type: ignore[index]
    assert sorted(files) == [f"p-{i}.0.zip" for i in range(10)]
    assert files["p-3.0.zip"]["yanked"] is True
    stored_bytes, _ = storage.open(DOC)
    with stored_bytes:
        assert stored_bytes.read() == dump_json_of(storage)


def test_a_failed_commit_leaves_the_kept_version_as_it_was(storage: Storage) -> None:
    """The commit changes a copy: a record whose write failed (its blob removed again)
    must not reach the next commit through the kept version."""
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
    counting, cache = _Counting(storage), DocumentCache(1 << 20)
    assert _kept_add(counting, cache, b"A", "a-1.0.zip")
    monkeypatch.setattr(RecordDocument, "KEPT_BYTES", len(dump_json_of(storage)))
    counting.reads = 0
    assert _kept_add(counting, cache, b"B", "b-1.0.zip")  # the one kept: no read
    assert _kept_add(counting, cache, b"C", "c-1.0.zip")  # larger than the bound: read
    assert _kept_add(counting, cache, b"D", "d-1.0.zip")
    assert counting.reads == 2
    assert _filenames(storage) == ["a-1.0.zip", "b-1.0.zip", "c-1.0.zip", "d-1.0.zip"]
