"""The Python records of a channel: commit point, idempotence, conflicts, races."""

from __future__ import annotations

import hashlib
import io
import threading
import time

import pytest
from packaging.utils import canonicalize_name

from private_channels.channels import ChannelRegistry
from private_channels.pypi.store import (
    DeletedFilenameError,
    FileConflictError,
    FileRecord,
    PythonStore,
)
from private_channels.storage import Storage


def record(filename: str, data: bytes, project: str = "demo") -> FileRecord:
    return FileRecord(
        filename=filename,
        project=canonicalize_name(project),
        version="1.0",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        blake2b_256=hashlib.blake2b(data, digest_size=32).hexdigest(),
        upload_time=time.time(),
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
