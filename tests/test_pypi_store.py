"""The Python records of a channel: commit point, idempotence, conflicts, races."""

from __future__ import annotations

import hashlib
import io
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

import pytest
from packaging.utils import canonicalize_name

from private_channels.channels import Channel, ChannelRegistry
from private_channels.pypi.metadata import parse_filename, read_distribution
from private_channels.pypi.store import (
    DeletedFilenameError,
    FileConflictError,
    FileRecord,
    PythonStore,
)
from private_channels.storage import MemoryStorage, Stat, Storage
from private_channels.storage.base import PresignsURLs

from .packages import make_sdist, make_wheel


def record(filename: str, data: bytes, project: str = "demo", *, flat: bool = True) -> FileRecord:
    """A record as an upload makes it (``flat=False``: as one made before flat blobs)."""
    return FileRecord(
        filename=filename,
        project=canonicalize_name(project),
        version=str(parse_filename(filename).version),
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        blake2b_256=hashlib.blake2b(data, digest_size=32).hexdigest(),
        upload_time=time.time(),
        flat=flat,
    )


def test_add_same_conflict_delete(storage: Storage) -> None:
    channel = ChannelRegistry(storage).create("c")
    store = PythonStore(storage)
    name = "demo-1.0-py3-none-any.whl"
    assert store.add_file(
        channel,
        record(name, b"A"),
        io.BytesIO(b"A"),
        display_name="Demo",
        metadata=b"Metadata-Version: 2.1\n",
    )
    assert not store.add_file(channel, record(name, b"A"), io.BytesIO(b"A"), display_name="Demo")
    before = sorted(storage.list(""))
    with pytest.raises(FileConflictError):
        store.add_file(channel, record(name, b"B"), io.BytesIO(b"B"), display_name="Demo")
    assert sorted(storage.list("")) == before  # the rejected bytes left nothing
    project = store.project(channel, "DEMO")
    assert project is not None and project.display_name == "Demo"
    assert [f.filename for f in project.files] == [name]
    assert store.projects(channel)[0] == {"demo": "Demo"}
    store.update_files(channel, "demo", lambda r: None)
    assert store.project(channel, "demo").files == ()  # type: ignore[union-attr]
    assert not any("/blobs/" in key for key in storage.list(""))
    with pytest.raises(DeletedFilenameError):
        store.add_file(channel, record(name, b"A"), io.BytesIO(b"A"), display_name="Demo")


def test_files_stored_before_flat_blobs_are_served_kept_beside_and_deleted_in_place(
    storage: Storage,
) -> None:
    """A channel holds both layouts at once: each record names its own blob's key."""
    channel = ChannelRegistry(storage).create("c")
    store = PythonStore(storage)
    store.derives_beside = False
    prefix = f"{store.prefix(channel)}blobs/"
    old, new = record("demo-1.0.tar.gz", b"O", flat=False), record("demo-2.0.tar.gz", b"N")
    for each in (old, new):
        store.add_file(channel, each, io.BytesIO(each.filename.encode()), display_name="demo",
                       pkg_info=b"Metadata-Version: 2.1\n")  # fmt: skip
    assert set(storage.list(prefix)) == {
        f"{prefix}{old.sha256}/demo-1.0.tar.gz",
        f"{prefix}{old.sha256}/demo-1.0.tar.gz.pkg-info",
        f"{prefix}{new.sha256}-demo-2.0.tar.gz",
        f"{prefix}{new.sha256}-demo-2.0.tar.gz.pkg-info",
    }
    for each in (old, new):
        with store.open_blob(channel, each.sha256, each.filename)[0] as stream:
            assert stream.read() == each.filename.encode()
        assert store.read_metadata(channel, each, limit=100) == b"Metadata-Version: 2.1\n"
    assert set(storage.list(prefix)) <= store.referenced(channel)
    assert store.collect_garbage(channel, grace=-1) == []
    store.update_files(channel, "demo", lambda r: None if r.version == "1.0" else r)
    assert set(storage.list(prefix)) == {
        f"{prefix}{new.sha256}-demo-2.0.tar.gz",
        f"{prefix}{new.sha256}-demo-2.0.tar.gz.pkg-info",
    }


def test_metadata_digest_comes_from_the_stored_metadata(storage: Storage) -> None:
    """The index promises a METADATA file (PEP 658) exactly when one is stored."""
    channel = ChannelRegistry(storage).create("c")
    store = PythonStore(storage)
    claims = replace(record("demo-1.0.tar.gz", b"S"), metadata_sha256="0" * 64)
    store.add_file(channel, claims, io.BytesIO(b"S"), display_name="demo")
    wheel = record("demo-1.0-py3-none-any.whl", b"W")
    store.add_file(channel, wheel, io.BytesIO(b"W"), display_name="demo", metadata=b"M")
    project = store.project(channel, "demo")
    assert project is not None
    digests = {f.filename: f.metadata_sha256 for f in project.files}
    assert digests == {
        "demo-1.0.tar.gz": None,
        "demo-1.0-py3-none-any.whl": hashlib.sha256(b"M").hexdigest(),
    }


def test_concurrent_uploads_all_land(storage: Storage) -> None:
    channel = ChannelRegistry(storage).create("c")
    store = PythonStore(storage)
    results: list[bool] = []

    def upload(n: int) -> None:
        data = f"file {n}".encode()
        results.append(
            store.add_file(
                channel, record(f"demo-1.{n}.tar.gz", data), io.BytesIO(data), display_name="demo"
            )
        )

    def same() -> None:
        results.append(
            store.add_file(
                channel, record("demo-9.tar.gz", b"S"), io.BytesIO(b"S"), display_name="demo"
            )
        )

    threads = [threading.Thread(target=upload, args=(n,)) for n in range(10)]
    threads += [threading.Thread(target=same) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    project = store.project(channel, "demo")
    assert project is not None
    assert len(project.files) == 11
    assert results.count(True) == 11 and results.count(False) == 3


class _Hooked:
    """A storage that runs ``hook`` once, right after the first create of a matching key."""

    def __init__(self, storage: Storage, match: str, hook: Callable[[], None]) -> None:
        self.storage = storage
        self.match = match
        self.hook: Callable[[], None] | None = hook

    def __getattr__(self, name: str) -> Any:
        return getattr(self.storage, name)

    def create(self, key: str, data: IO[bytes]) -> Stat:
        stat = self.storage.create(key, data)
        if self.match in key and self.hook is not None:
            hook, self.hook = self.hook, None
            hook()
        return stat


def test_losing_a_race_of_the_same_file_keeps_the_winners_blob(storage: Storage) -> None:
    channel = ChannelRegistry(storage).create("c")
    name = "demo-1.0.tar.gz"

    def other_client_commits_first() -> None:
        assert PythonStore(storage).add_file(
            channel, record(name, b"A"), io.BytesIO(b"A"), display_name="demo"
        )

    hooked = PythonStore(_Hooked(storage, "/blobs/", other_client_commits_first))  # type: ignore[arg-type]
    assert not hooked.add_file(channel, record(name, b"A"), io.BytesIO(b"A"), display_name="demo")
    sha = hashlib.sha256(b"A").hexdigest()
    stream, _ = PythonStore(storage).open_blob(channel, sha, name)
    with stream:
        assert stream.read() == b"A"


def test_conflict_found_at_commit_removes_the_blob(storage: Storage) -> None:
    channel = ChannelRegistry(storage).create("c")
    name = "demo-1.0-py3-none-any.whl"
    store = PythonStore(storage)
    store.add_file(channel, record("demo-0.1.tar.gz", b"0"), io.BytesIO(b"0"), display_name="demo")
    before = sorted(storage.list(""))

    def other_bytes_commit_first() -> None:
        store.add_file(channel, record(name, b"B"), io.BytesIO(b"B"), display_name="demo")

    hooked = PythonStore(_Hooked(storage, "/blobs/", other_bytes_commit_first))  # type: ignore[arg-type]
    with pytest.raises(FileConflictError):
        hooked.add_file(
            channel, record(name, b"A"), io.BytesIO(b"A"), display_name="demo", metadata=b"M"
        )
    after = set(storage.list(""))
    sha_a = hashlib.sha256(b"A").hexdigest()
    assert not any(sha_a in key for key in after)
    assert len(after - set(before)) == 1  # B's blob; its record is in the same document


def _orphan(storage: Storage, channel: Channel, data: bytes, filename: str) -> str:
    """What a process killed between writing a blob and committing its record leaves."""
    key = PythonStore(storage).blob_key(channel, record(filename, data))
    storage.create(key, io.BytesIO(data))
    return key


def test_orphan_blobs_are_invisible_and_collected(storage: Storage) -> None:
    channel = ChannelRegistry(storage).create("c")
    store = PythonStore(storage)
    store.derives_beside = False  # b"W" is no wheel to read a METADATA from: keep this one
    sha = hashlib.sha256(b"A").hexdigest()
    orphan = _orphan(storage, channel, b"A", "demo-1.0.tar.gz")
    with pytest.raises(FileNotFoundError):
        store.open_blob(channel, sha, "demo-1.0.tar.gz")
    store.add_file(
        channel,
        record("demo-2.0-py3-none-any.whl", b"W"),
        io.BytesIO(b"W"),
        display_name="demo",
        metadata=b"Metadata-Version: 2.1\n",
    )
    wheel_sha = hashlib.sha256(b"W").hexdigest()
    for wrong in [
        (sha, "demo-2.0-py3-none-any.whl"),  # a real filename under another sha256
        (wheel_sha, "demo-2.0-py3-none-any.whl.metadata.metadata"),
        (wheel_sha, "not-a-distribution"),
        (wheel_sha, "_demo-2.0-py3-none-any.whl"),  # parses, but names no valid key
    ]:
        with pytest.raises(FileNotFoundError):
            store.open_blob(channel, *wrong)
    stream, _ = store.open_blob(channel, wheel_sha, "demo-2.0-py3-none-any.whl.metadata")
    with stream:
        assert stream.read() == b"Metadata-Version: 2.1\n"
    assert store.collect_garbage(channel) == []  # young orphans may be uploads in progress
    time.sleep(0.05)
    assert store.collect_garbage(channel, grace=0.01) == [orphan]
    committed = sorted(storage.list(""))
    assert store.collect_garbage(channel, grace=0) == []
    assert sorted(storage.list("")) == committed
    # An upload of the orphan's very bytes lands normally after all.
    assert store.add_file(
        channel, record("demo-1.0.tar.gz", b"A"), io.BytesIO(b"A"), display_name="demo"
    )
    with store.open_blob(channel, sha, "demo-1.0.tar.gz")[0] as stream:
        assert stream.read() == b"A"


def test_upload_over_an_orphan_renews_it(storage: Storage) -> None:
    channel = ChannelRegistry(storage).create("c")
    store = PythonStore(storage)
    orphan = _orphan(storage, channel, b"A", "demo-1.0.tar.gz")
    old = storage.stat(orphan)
    time.sleep(1.05)  # S3 keeps modification times to the second
    store.add_file(channel, record("demo-1.0.tar.gz", b"A"), io.BytesIO(b"A"), display_name="d")
    # So that collect_garbage's grace period spares it until the record commits.
    assert storage.stat(orphan).mtime > old.mtime


def test_collect_garbage_repairs_a_missing_project_name(storage: Storage) -> None:
    channel = ChannelRegistry(storage).create("c")
    store = PythonStore(storage)
    store.add_file(channel, record("demo-1.0.tar.gz", b"A"), io.BytesIO(b"A"), display_name="Demo")
    storage.delete(store.projects_key(channel))  # as if killed right after the commit
    assert store.projects(channel)[0] == {}
    store.collect_garbage(channel)
    assert store.projects(channel)[0] == {"demo": "Demo"}
    storage.delete(store.projects_key(channel))
    # Re-running the upload repairs it too.
    store.add_file(channel, record("demo-1.0.tar.gz", b"A"), io.BytesIO(b"A"), display_name="Demo")
    assert store.projects(channel)[0] == {"demo": "Demo"}


class _FailingCommits:
    """A storage whose project documents cannot be written: a crash before the commit."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def __getattr__(self, name: str) -> Any:
        return getattr(self.storage, name)

    def create(self, key: str, data: IO[bytes]) -> Stat:
        if "/projects/" in key:
            raise OSError("disk full")
        return self.storage.create(key, data)


def test_a_failed_commit_leaves_nothing(storage: Storage) -> None:
    """SPEC.md: nothing of a rejected upload stays, not even until a collection."""
    channel = ChannelRegistry(storage).create("c")
    before = sorted(storage.list(""))
    failing = PythonStore(_FailingCommits(storage))  # type: ignore[arg-type]
    name = "demo-1.0-py3-none-any.whl"
    with pytest.raises(OSError, match="disk full"):
        failing.add_file(channel, record(name, b"A"), io.BytesIO(b"A"), display_name="demo")
    store = PythonStore(storage)
    assert store.project(channel, "demo") is None and store.projects(channel)[0] == {}
    with pytest.raises(FileNotFoundError):
        store.open_blob(channel, hashlib.sha256(b"A").hexdigest(), name)
    assert sorted(storage.list("")) == before
    assert store.collect_garbage(channel, grace=-1) == []


def test_what_is_kept_beside_a_file_is_read_from_it_when_missing(
    storage: Storage, tmp_path: Path
) -> None:
    """A local store writes a wheel's METADATA and an sdist's PKG-INFO on their first
    read, from the file; an object store with the upload.  Either way, one that is
    missing (a copy of a channel may lack it) is read from the file again, and kept;
    a METADATA whose digest is not the record's is not."""
    channel = ChannelRegistry(storage).create("c")
    store = PythonStore(storage)
    assert store.derives_beside == (not isinstance(storage, PresignsURLs))
    uploaded = {}
    for path in (make_wheel(tmp_path, "demo", "1.0"), make_sdist(tmp_path, "demo", "1.0")):
        data = path.read_bytes()
        dist = read_distribution(path.name, io.BytesIO(data))
        wheel = path.name.endswith(".whl")
        store.add_file(
            channel, record(path.name, data), io.BytesIO(data), display_name="demo",
            metadata=dist.metadata if wheel else None, pkg_info=None if wheel else dist.metadata,
        )  # fmt: skip
        uploaded[path.name] = dist.metadata
    files = {r.filename: r for r in store.project(channel, "demo").files}  # type: ignore[union-attr]
    for filename, text in uploaded.items():
        rec, key = files[filename], store.beside_key(channel, files[filename])
        assert key.endswith(".metadata" if filename.endswith(".whl") else ".pkg-info")
        kept = [key] if not store.derives_beside else []
        assert [k for k in storage.list(key.rpartition("/")[0] + "/") if k == key] == kept
        for _ in range(2):  # derived (or as uploaded), then deleted and derived again
            assert store.read_metadata(channel, rec, limit=1 << 20) == text
            with storage.open(key)[0] as stream:
                assert stream.read() == text
            storage.delete(key)
    wheel = files["demo-1.0-py3-none-any.whl"]
    with store.open_blob(channel, wheel.sha256, wheel.filename + ".metadata")[0] as stream:
        assert stream.read() == uploaded[wheel.filename]
    storage.delete(store.beside_key(channel, wheel))
    wrong = replace(wheel, metadata_sha256="0" * 64)
    assert store.read_metadata(channel, wrong, limit=1 << 20) is None
    assert not store.keep_beside(channel, wrong)
    assert list(storage.list(store.beside_key(channel, wheel))) == []


def test_what_cannot_be_kept_beside_a_file_is_not_an_error(tmp_path: Path) -> None:
    """A storage that refuses the write (read-only here): no METADATA, no failure."""

    class ReadOnly(MemoryStorage):
        refuse = False

        def create(self, key: str, data: IO[bytes]) -> Stat:
            if self.refuse:
                raise PermissionError(f"read-only: {key}")
            return super().create(key, data)

    storage = ReadOnly()
    channel = ChannelRegistry(storage).create("c")
    store = PythonStore(storage)
    path = make_wheel(tmp_path, "demo", "1.0")
    data = path.read_bytes()
    dist = read_distribution(path.name, io.BytesIO(data))
    store.add_file(channel, record(path.name, data), io.BytesIO(data), display_name="demo",
                   metadata=dist.metadata)  # fmt: skip
    storage.refuse = True
    (wheel,) = store.project(channel, "demo").files  # type: ignore[union-attr]
    assert store.read_metadata(channel, wheel, limit=1 << 20) is None
    assert not store.keep_beside(channel, wheel)
    with pytest.raises(FileNotFoundError):
        store.open_blob(channel, wheel.sha256, wheel.filename + ".metadata")
