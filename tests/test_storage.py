"""The storage contract: every backend runs every test here (see conftest's ``backend``)."""

from __future__ import annotations

import contextlib
import errno
import io
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from stat import S_IMODE as stat_mode
from typing import Any

import hypothesis
import hypothesis.strategies
import pytest

from private_channels.storage import (
    CorruptDocumentError,
    FileSystemStorage,
    InvalidKeyError,
    JSONRead,
    MemoryStorage,
    StaleWriteError,
    Stat,
    Storage,
    StorageURLError,
    copy_storage,
    open_storage,
    read_bytes,
    read_document,
    read_json,
    sweep,
    update_json,
    validate_key,
)
from private_channels.storage.base import _SEGMENT
from private_channels.storage.filesystem import _OPENAT2_MACHINES


class ChunkedReader(io.RawIOBase):
    """A stream that yields its bytes a little at a time and counts how far it was read."""

    def __init__(self, data: bytes, chunk: int = 7) -> None:
        self.data, self.chunk, self.pos = data, chunk, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        n = min(len(buffer), self.chunk, len(self.data) - self.pos)
        buffer[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n


def test_satisfies_protocol(storage: Storage) -> None:
    assert isinstance(storage, Storage)


def test_create_then_read_back(storage: Storage) -> None:
    stat = storage.create("a/b/c.bin", io.BytesIO(b"hello"))
    assert stat.size == 5
    stream, opened = storage.open("a/b/c.bin")
    with stream:
        assert stream.read() == b"hello"
    assert opened == storage.stat("a/b/c.bin") == stat


def test_create_refuses_existing_key(storage: Storage) -> None:
    storage.create("k", io.BytesIO(b"first"))
    with pytest.raises(FileExistsError):
        storage.create("k", io.BytesIO(b"second"))
    assert read_bytes(storage, "k")[0] == b"first"


def test_streaming_write_of_a_large_blob(storage: Storage) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    source = ChunkedReader(data, chunk=64 * 1024)
    storage.put("big/blob", io.BufferedReader(source))
    assert source.pos == len(data)
    stream, stat = storage.open("big/blob")
    with stream:
        assert stat.size == len(data)
        assert stream.read(10) == data[:10]
        assert stream.read() == data[10:]


def test_missing_keys_are_file_not_found(storage: Storage) -> None:
    with pytest.raises(FileNotFoundError):
        storage.open("nope")
    with pytest.raises(FileNotFoundError):
        storage.stat("nope")
    with pytest.raises(FileNotFoundError):
        storage.delete("nope")


def test_directories_are_not_keys(storage: Storage) -> None:
    storage.create("dir/file", io.BytesIO(b"x"))
    with pytest.raises(FileNotFoundError):
        storage.stat("dir")
    with pytest.raises(FileNotFoundError):
        storage.open("dir")
    assert list(storage.list("dir")) == ["dir/file"]


def test_put_replaces_and_changes_etag(storage: Storage) -> None:
    first = storage.put("doc", io.BytesIO(b"one"))
    second = storage.put("doc", io.BytesIO(b"two!"))
    assert first.etag != second.etag
    assert read_bytes(storage, "doc") == (b"two!", second)


def test_put_if_match(storage: Storage) -> None:
    stat = storage.put("doc", io.BytesIO(b"one"))
    newer = storage.put("doc", io.BytesIO(b"two"), if_match=stat.etag)
    with pytest.raises(StaleWriteError):
        storage.put("doc", io.BytesIO(b"three"), if_match=stat.etag)
    with pytest.raises(StaleWriteError):
        storage.put("absent", io.BytesIO(b"x"), if_match=stat.etag)
    assert read_bytes(storage, "doc") == (b"two", newer)


def test_delete(storage: Storage) -> None:
    stat = storage.create("x/y", io.BytesIO(b"1"))
    storage.put("x/z", io.BytesIO(b"2"))
    with pytest.raises(StaleWriteError):
        storage.delete("x/y", if_match="not-the-etag")
    storage.delete("x/y", if_match=stat.etag)
    storage.delete("x/z")
    assert list(storage.list("x/")) == []
    storage.create("x/y", io.BytesIO(b"again"))  # a deleted key can be created anew


def test_list_by_prefix_in_string_order(storage: Storage) -> None:
    keys = ["a/b", "a-c", "a/b0/c", "a0", "b/c/d", "ab"]
    for key in keys:
        storage.create(key, io.BytesIO(key.encode()))
    assert list(storage.list("")) == sorted(keys)
    assert list(storage.list("a")) == sorted(k for k in keys if k.startswith("a"))
    assert list(storage.list("a/")) == ["a/b", "a/b0/c"]
    assert list(storage.list("a/b")) == ["a/b", "a/b0/c"]
    assert list(storage.list("zzz/")) == []


@pytest.mark.parametrize("prefix", ["../", "..", "/abs", "a/../", "a/.hidden", ".tmp-"])
def test_list_refuses_prefixes_that_could_escape(storage: Storage, prefix: str) -> None:
    with pytest.raises(InvalidKeyError):
        list(storage.list(prefix))


def test_sweep_removes_only_old_keys_not_kept(storage: Storage) -> None:
    for key in ("blobs/a", "blobs/b", "blobs/c", "other/d"):
        storage.create(key, io.BytesIO(b"x"))
    assert sweep(storage, "blobs/", {"blobs/b"}, older_than=time.time() - 3600) == []
    removed = sweep(storage, "blobs/", {"blobs/b"}, older_than=time.time() + 60)
    assert removed == ["blobs/a", "blobs/c"]
    assert list(storage.list("")) == ["blobs/b", "other/d"]


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/abs",
        "a/../b",
        "..",
        "a/./b",
        "a//b",
        "a/",
        ".hidden",
        "a/.tmp-x",
        "a\\b",
        "a\x00b",
        "x" * 2000,
        # A segment longer than a file name may be, on every backend alike.
        "a/" + "x" * 256,
    ],
)
def test_keys_cannot_escape(storage: Storage, key: str) -> None:
    with pytest.raises(InvalidKeyError):
        storage.create(key, io.BytesIO(b"x"))
    with pytest.raises(InvalidKeyError):
        storage.open(key)


def test_update_json_loses_no_concurrent_update(storage: Storage) -> None:
    def add(n: int) -> None:
        update_json(storage, "counter.json", lambda doc: {**(doc or {}), str(n): n})

    threads = [threading.Thread(target=add, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    doc, _ = read_json(storage, "counter.json")
    assert doc == {str(n): n for n in range(16)}


def test_update_json_that_changes_nothing_writes_nothing(storage: Storage) -> None:
    update_json(storage, "d.json", lambda doc: {"a": 1})
    before = storage.stat("d.json")
    update_json(storage, "d.json", lambda doc: doc)
    assert storage.stat("d.json") == before


def test_concurrent_create_from_threads_has_one_winner(storage: Storage) -> None:
    barrier = threading.Barrier(12)
    outcomes: list[str] = []

    def race(n: int) -> None:
        barrier.wait()
        try:
            storage.create("race/key", io.BytesIO(f"writer {n}".encode() * 1000))
            outcomes.append(f"won {n}")
        except FileExistsError:
            outcomes.append("lost")

    threads = [threading.Thread(target=race, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [o for o in outcomes if o.startswith("won")]
    assert len(winners) == 1 and outcomes.count("lost") == 11
    n = winners[0].split()[1]
    assert read_bytes(storage, "race/key")[0] == f"writer {n}".encode() * 1000


def _race_in_process(url: str, env: dict[str, str], n: int, start, results) -> None:  # type: ignore[no-untyped-def]
    os.environ.update(env)
    storage = open_storage(url)
    start.wait()
    for i in range(20):
        try:
            storage.create(f"race/{i}", io.BytesIO(str(n).encode() * 10_000))
            results.put((i, n))
        except FileExistsError:
            pass
        update_json(storage, "shared.json", lambda doc, i=i: {**(doc or {}), f"{n}-{i}": i})


@pytest.mark.parametrize("shared", ["filesystem", "s3"])
def test_two_processes_race_and_lose_nothing(
    shared: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What several hosts do to one storage: each create has one winner, and every
    compare-and-swap update lands."""
    if shared == "s3":
        seaweedfs = request.getfixturevalue("seaweedfs")
        url, env = seaweedfs.url(), seaweedfs.env
    else:
        url, env = str(tmp_path / "shared"), {}
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    processes = [
        ctx.Process(target=_race_in_process, args=(url, env, n, start, results)) for n in (1, 2)
    ]
    for process in processes:
        process.start()
    start.set()
    for process in processes:
        process.join(120)
        assert process.exitcode == 0
    wins = [results.get(timeout=5) for _ in range(20)]
    assert results.empty()
    results.close()
    assert sorted(i for i, _ in wins) == list(range(20))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    storage = open_storage(url)
    for i, n in wins:
        assert read_bytes(storage, f"race/{i}")[0] == str(n).encode() * 10_000
    doc, _ = read_json(storage, "shared.json")
    assert doc == {f"{n}-{i}": i for n in (1, 2) for i in range(20)}


class FailingReader(io.RawIOBase):
    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        raise ConnectionResetError("client went away")


def test_failed_write_leaves_nothing(storage: Storage) -> None:
    with pytest.raises(ConnectionResetError):
        storage.create("partial", io.BufferedReader(FailingReader()))
    with pytest.raises(ConnectionResetError):
        storage.put("partial", io.BufferedReader(FailingReader()))
    assert list(storage.list("")) == []
    with pytest.raises(FileNotFoundError):
        storage.stat("partial")


def test_filesystem_leaves_no_temp_files(tmp_path: Path) -> None:
    storage = FileSystemStorage(tmp_path)
    storage.create("a/b", io.BytesIO(b"1"))
    with pytest.raises(FileExistsError):
        storage.create("a/b", io.BytesIO(b"2"))
    with pytest.raises(ConnectionResetError):
        storage.put("a/c", io.BufferedReader(FailingReader()))
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b"]


def _outside(tmp_path: Path) -> tuple[Path, Path]:
    """A directory out of the storage root, holding ``secret``, and the root beside it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    return outside, tmp_path / "root"


WRITERS = ["unnamed", "named"]


def _writing(storage: FileSystemStorage, writer: str) -> FileSystemStorage:
    """``storage`` writing into unnamed files (O_TMPFILE, Linux) or named temp files."""
    if writer == "named":
        storage._unnamed = False
    elif sys.platform == "linux":
        assert storage._unnamed  # the fast path is the one tested on Linux
    return storage


@pytest.mark.parametrize("writer", WRITERS)
def test_filesystem_writes_whichever_way(tmp_path: Path, writer: str) -> None:
    storage = _writing(FileSystemStorage(tmp_path), writer)
    first = storage.create("new/dir/key", io.BytesIO(b"one"))
    with pytest.raises(FileExistsError):
        storage.create("new/dir/key", io.BytesIO(b"two"))
    stream, stat = storage.open("new/dir/key")
    with stream:
        assert stream.read() == b"one"
    assert stat == first == storage.stat("new/dir/key")
    second = storage.put("new/dir/key", io.BytesIO(b"two"), if_match=first.etag)
    assert second.etag != first.etag
    with pytest.raises(StaleWriteError):
        storage.put("new/dir/key", io.BytesIO(b"three"), if_match=first.etag)
    with pytest.raises(StaleWriteError):
        storage.put("new/dir/missing", io.BytesIO(b"x"), if_match=first.etag)
    third = storage.put("new/dir/key", io.BytesIO(b"three"))
    assert storage.stat("new/dir/key") == third != second
    with storage.open("new/dir/key")[0] as stream:
        assert stream.read() == b"three"
    path = tmp_path / "new" / "dir" / "key"
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir() if not p.name.startswith(".lock-")] == ["key"]
    with pytest.raises(ConnectionResetError):
        storage.create("new/dir/failed", io.BufferedReader(FailingReader()))
    assert not (path.parent / "failed").exists()
    storage.create("new/other/key", io.BytesIO(b"o"))  # a directory beside the first
    assert (tmp_path / "new" / "other" / "key").read_bytes() == b"o"
    assert storage._unnamed == (writer == "unnamed" and sys.platform == "linux")


@pytest.mark.parametrize("writer", WRITERS)
def test_filesystem_write_replaces_a_link_at_the_key(tmp_path: Path, writer: str) -> None:
    outside, root = _outside(tmp_path)
    storage = _writing(FileSystemStorage(root), writer)
    storage.put("d/real", io.BytesIO(b"r"))
    (root / "d" / "key").symlink_to(outside / "secret")
    with pytest.raises(FileExistsError):
        storage.create("d/key", io.BytesIO(b"x"))
    storage.put("d/key", io.BytesIO(b"x"))
    assert not (root / "d" / "key").is_symlink()
    assert (outside / "secret").read_text() == "s"


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("target", ["outside", "absolute-inside"])
def test_filesystem_write_through_a_linked_directory(
    tmp_path: Path, writer: str, target: str
) -> None:
    # A link to a directory out of the root is refused; one that stays inside by an
    # absolute path (which the kernel will not follow beneath the root) is followed.
    outside, root = _outside(tmp_path)
    storage = _writing(FileSystemStorage(root), writer)
    storage.put("inside/k", io.BytesIO(b"k"))
    (root / "link").symlink_to(outside if target == "outside" else root / "inside")
    for write in (storage.put, storage.create):
        if target == "outside":
            with pytest.raises(InvalidKeyError):
                write("link/new", io.BytesIO(b"x"))
            with pytest.raises(InvalidKeyError):
                write("link/below/new", io.BytesIO(b"x"))
        else:
            write(f"link/{write.__name__}", io.BytesIO(b"x"))
            assert (root / "inside" / write.__name__).read_bytes() == b"x"
    assert [p.name for p in outside.iterdir()] == ["secret"]


def test_filesystem_without_unnamed_files_writes_named_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A file system without O_TMPFILE refuses it (here: opening the directory for
    # writing, which every kernel refuses): the storage then writes as without it.
    import private_channels.storage.filesystem as filesystem

    monkeypatch.setattr(filesystem, "_O_UNNAMED", os.O_DIRECTORY | os.O_WRONLY)
    storage = FileSystemStorage(tmp_path)
    storage.create("a/b", io.BytesIO(b"1"))
    assert not storage._unnamed
    storage.put("a/b", io.BytesIO(b"2"))
    with storage.open("a/b")[0] as stream:
        assert stream.read() == b"2"
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b"]


RESOLVERS = ["held", "openat2", "walk"]


def _resolving(storage: FileSystemStorage, resolver: str) -> FileSystemStorage:
    """``storage`` reading through openat2 beneath its root (Linux; its stat with the GIL
    held, or with an fstat), or the lstat walk."""
    if resolver == "walk":
        storage._openat2 = None
    elif sys.platform == "linux":
        assert storage._openat2 is not None  # the fast path is the one tested on Linux
        if resolver == "openat2":
            _letting_go(storage)
        else:
            assert storage._held_stat is not None
    return storage


def _letting_go(storage: FileSystemStorage) -> FileSystemStorage:
    """``storage`` making its system calls as ``os`` does (as on a network file system),
    not keeping the GIL through them."""
    from private_channels.storage import filesystem

    storage._held_stat = None
    storage._calls = filesystem._Calls()
    return storage


def test_filesystem_stats_alike_whichever_way(tmp_path: Path) -> None:
    """The stat with the GIL held (statx) gives what os.stat does: the same size, mtime
    and ETag as open() reports for the same version, and a new ETag after a write."""
    storage = _resolving(FileSystemStorage(tmp_path), "held")
    plain = _resolving(FileSystemStorage(tmp_path), "openat2")
    for i in range(20):
        storage.put(f"d/k{i}", io.BytesIO(b"x" * i))
        stream, opened = storage.open(f"d/k{i}")
        stream.close()
        st = os.stat(tmp_path / "d" / f"k{i}")
        assert storage.stat(f"d/k{i}") == plain.stat(f"d/k{i}") == opened
        assert opened.size == i and opened.mtime == st.st_mtime
    before = storage.stat("d/k3")
    storage.put("d/k3", io.BytesIO(b"xyz"))
    assert storage.stat("d/k3").etag != before.etag
    with pytest.raises(FileNotFoundError):
        storage.stat("d/missing")
    with pytest.raises(FileNotFoundError):
        storage.stat("d/k3/below")


@pytest.mark.parametrize("resolver", RESOLVERS)
def test_filesystem_symlink_cannot_escape(tmp_path: Path, resolver: str) -> None:
    outside, root = _outside(tmp_path)
    storage = _resolving(FileSystemStorage(root), resolver)
    (root / "link").symlink_to(outside)
    (root / "file-link").symlink_to(outside / "secret")
    for key in ("link/secret", "file-link"):
        with pytest.raises(InvalidKeyError):
            storage.open(key)
        with pytest.raises(InvalidKeyError):
            storage.stat(key)


@pytest.mark.parametrize("resolver", RESOLVERS)
def test_filesystem_symlink_inside_the_root_is_followed(tmp_path: Path, resolver: str) -> None:
    storage = _resolving(FileSystemStorage(tmp_path), resolver)
    storage.put("real/key", io.BytesIO(b"data"))
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    (tmp_path / "real" / "same").symlink_to(tmp_path / "real" / "key")
    (tmp_path / "relative").symlink_to("real")
    for key in ("alias/key", "real/same", "relative/key"):
        stream, stat = storage.open(key)
        with stream:
            assert stream.read() == b"data"
        assert storage.stat(key).size == stat.size == 4
    with pytest.raises(FileNotFoundError):
        storage.stat("alias/missing")
    with pytest.raises(FileNotFoundError):
        storage.open("real/key/below")


@pytest.mark.parametrize("resolver", RESOLVERS)
def test_filesystem_serves_only_regular_files(tmp_path: Path, resolver: str) -> None:
    # A FIFO or a directory where a file is expected is not found, and opening a FIFO
    # does not wait for a writer that never comes.
    storage = _resolving(FileSystemStorage(tmp_path), resolver)
    storage.put("dir/key", io.BytesIO(b"data"))
    os.mkfifo(tmp_path / "fifo")
    for key in ("fifo", "dir"):
        with pytest.raises(FileNotFoundError):
            storage.open(key)
        with pytest.raises(FileNotFoundError):
            storage.stat(key)
    stream, stat = storage.open("dir/key")
    with stream:
        assert stream.read() == b"data"
    assert stat == storage.stat("dir/key")


def test_open_storage_urls(tmp_path: Path) -> None:
    assert isinstance(open_storage(str(tmp_path / "a")), FileSystemStorage)
    assert isinstance(open_storage(f"file://{tmp_path / 'b'}"), FileSystemStorage)
    assert isinstance(open_storage("memory://"), MemoryStorage)
    with pytest.raises(StorageURLError, match="unknown scheme"):
        open_storage("ftp://x")


def test_unwritable_root_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError, match="cannot create storage directory"):
        FileSystemStorage(blocker / "sub")


@hypothesis.given(
    hypothesis.strategies.text(
        alphabet=hypothesis.strategies.sampled_from("aZ09_.+~=,@-/ \\:é\x00"), max_size=40
    )
)
def test_a_key_is_valid_exactly_when_each_segment_is(key: str) -> None:
    # validate_key matches the whole key with one pattern; a segment at a time is the rule.
    segments_valid = 0 < len(key) <= 1024 and all(
        _SEGMENT.match(segment) for segment in key.split("/")
    )
    try:
        validate_key(key)
    except InvalidKeyError:
        assert not segments_valid
    else:
        assert segments_valid


def test_update_json_from_a_stale_read_retries_on_the_current_document() -> None:
    storage = MemoryStorage()
    update_json(storage, "doc.json", lambda doc: {"n": 1})
    before = JSONRead.of(storage, "doc.json")
    update_json(storage, "doc.json", lambda doc: {"n": doc["n"] + 10})  # another writer
    seen: list[object] = []

    def add(doc: dict[str, int]) -> dict[str, int]:
        seen.append(dict(doc))
        return {"n": doc["n"] + 1}

    assert update_json(storage, "doc.json", add, current=before) == {"n": 12}
    assert seen == [{"n": 1}, {"n": 11}]  # the stale read first, then the stored one
    assert JSONRead.of(storage, "missing.json") == JSONRead(b"", None, None)


def test_a_segment_of_255_characters_is_a_key(storage: Storage) -> None:
    storage.create("a/" + "x" * 255, io.BytesIO(b"x"))
    assert list(storage.list("a/")) == ["a/" + "x" * 255]
    update_json(storage, "a/" + "y" * 250 + ".json", lambda doc: {"n": 1})
    update_json(storage, "a/" + "y" * 250 + ".json", lambda doc: {"n": doc["n"] + 1})
    assert read_json(storage, "a/" + "y" * 250 + ".json")[0] == {"n": 2}


@pytest.mark.parametrize("data", [b"", b"{not json", b"\xff\xfe", b"[1, 2"])
def test_a_document_that_is_not_json_is_corrupt_and_named(storage: Storage, data: bytes) -> None:
    storage.create("registry/x.json", io.BytesIO(data))
    reads = [lambda: read_json(storage, "registry/x.json")]
    if data:  # update_json takes an empty document for an absent one
        reads.append(lambda: update_json(storage, "registry/x.json", lambda doc: doc))
    for read in reads:
        with pytest.raises(CorruptDocumentError, match=r"'registry/x\.json' is damaged") as error:
            read()
        assert error.value.key == "registry/x.json"


def test_a_document_of_the_wrong_shape_is_corrupt_and_named(storage: Storage) -> None:
    storage.create("registry/x.json", io.BytesIO(b'["a list"]'))
    with pytest.raises(CorruptDocumentError, match=r"'registry/x\.json' is damaged: TypeError"):
        read_document(storage, "registry/x.json", lambda doc: doc["name"])
    storage.put("registry/x.json", io.BytesIO(b'{"name": "x"}'))
    assert read_document(storage, "registry/x.json", lambda doc: doc["name"])[0] == "x"


def test_copy_storage_copies_every_key_into_an_empty_storage(storage: Storage) -> None:
    source = MemoryStorage()
    keys = {"registry/token-key": b"k" * 32, "channels/a/b/c.whl": b"x" * 3_000_000, "z": b""}
    for key, data in keys.items():
        source.create(key, io.BytesIO(data))
    assert copy_storage(source, storage) == (3, sum(map(len, keys.values())))
    assert {k: read_bytes(storage, k)[0] for k in storage.list("")} == keys
    with pytest.raises(FileExistsError):
        copy_storage(source, storage)
    back = MemoryStorage()
    copy_storage(storage, back)
    assert {k: read_bytes(back, k)[0] for k in back.list("")} == keys


def test_a_missing_directory_is_not_made_without_create(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        open_storage(str(tmp_path / "missing"), create=False)
    assert not (tmp_path / "missing").exists()
    (tmp_path / "there").mkdir()
    assert isinstance(open_storage(str(tmp_path / "there"), create=False), FileSystemStorage)


def test_a_key_whose_segment_is_too_long_is_refused_whole() -> None:
    # The one pattern that accepts most keys at once bounds each segment as the loop does.
    from private_channels.storage.base import MAX_SEGMENT_LENGTH, InvalidKeyError, validate_key

    assert validate_key("p/" + "a" * MAX_SEGMENT_LENGTH) == "p/" + "a" * MAX_SEGMENT_LENGTH
    with pytest.raises(InvalidKeyError):
        validate_key("p/" + "a" * (MAX_SEGMENT_LENGTH + 1) + "/x")


# -- stats kept between requests (FileSystemStorage on a local file system) ----------

LINUX = sys.platform == "linux"


def _kept(storage: FileSystemStorage) -> FileSystemStorage:
    if LINUX:  # tmp_path is on a local file system here: the case that keeps stats
        assert storage._kept is not None
    return storage


def _local_directory(near: Path | None = None) -> str | None:
    """A directory on a file system where stats are kept: ``near`` (pytest's temporary
    directory) when it is on one, else /dev/shm (tmpfs); ``None`` off Linux."""
    from private_channels.storage import filesystem

    if not LINUX:
        return None
    for candidate in (near or Path(tempfile.gettempdir()), Path("/dev/shm")):
        if filesystem._file_system_type(str(candidate)) in filesystem._LOCAL_FILE_SYSTEMS:
            return str(candidate)
    pytest.fail("neither the temporary directory nor /dev/shm is on a local file system")


@pytest.fixture
def local_root(tmp_path: Path) -> Iterator[Path]:
    """An empty directory where a FileSystemStorage keeps its stats (see above)."""
    directory = _local_directory(tmp_path)
    if directory is None or directory == str(tmp_path):
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(dir=directory) as root:
        yield Path(root)


def _unkept(root: Path) -> FileSystemStorage:
    storage = FileSystemStorage(root)
    storage._kept = None
    return storage


def _replace_by_hand(path: Path, data: bytes) -> None:
    """What an operator's ``cp`` does: a write the storage's code never sees."""
    tmp = path.with_name(".by-hand")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _write_from_another_process(root: Path, code: str) -> None:
    program = (
        "import io, sys\n"
        "from private_channels.storage import FileSystemStorage\n"
        f"storage = FileSystemStorage(sys.argv[1])\n{code}\n"
    )
    subprocess.run([sys.executable, "-c", program, str(root)], check=True, timeout=60)


def test_a_kept_stat_goes_at_once_when_another_process_writes(local_root: Path) -> None:
    """A stat kept by one process is not used once another process's put, create or
    delete on the same root has returned: no request after an upload sees the old page."""
    storage = _kept(FileSystemStorage(local_root))
    storage.put("d/k", io.BytesIO(b"1"))
    first = storage.stat("d/k")
    assert storage.stat("d/k") is first  # kept: no system call
    _write_from_another_process(local_root, "storage.put('d/k', io.BytesIO(b'22'))")
    second = storage.stat("d/k")
    assert second.size == 2 and second.etag != first.etag
    _write_from_another_process(local_root, "storage.create('d/other', io.BytesIO(b'333'))")
    assert storage.stat("d/k") == second
    _write_from_another_process(local_root, "storage.delete('d/k')")
    with pytest.raises(FileNotFoundError):
        storage.stat("d/k")


def test_a_kept_stat_goes_when_a_forked_worker_writes(local_root: Path) -> None:
    # gunicorn's workers: forked from a process that had already opened the storage.
    storage = _kept(FileSystemStorage(local_root))
    storage.put("d/k", io.BytesIO(b"1"))
    first = storage.stat("d/k")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            storage.put("d/k", io.BytesIO(b"22"))
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert storage.stat("d/k").size == 2 != first.size


def _write_versions(root: str, done: Any, count: int) -> None:
    writer = FileSystemStorage(root)
    for size in range(2, count):
        writer.put("d/k", io.BytesIO(b"x" * size))
        done.value = size


def test_every_write_that_returned_is_seen_by_the_next_stat(local_root: Path) -> None:
    """One process writes versions one after another, the test stats all along on the
    other core: a stat begun after a put returned sees that version or a later one,
    never an earlier one (a stat kept under a word read after it, not before, fails)."""
    reader = _kept(FileSystemStorage(local_root))
    reader.put("d/k", io.BytesIO(b"x"))
    ctx = multiprocessing.get_context("fork")
    done = ctx.Value("q", 1, lock=False)
    writer = ctx.Process(target=_write_versions, args=(str(local_root), done, 1500))
    writer.start()
    seen: list[tuple[int, int]] = []
    while writer.is_alive() or not seen:
        returned = done.value
        seen.append((returned, reader.stat("d/k").size))
    writer.join(60)
    assert writer.exitcode == 0
    assert len(seen) > 100
    assert all(size >= returned for returned, size in seen), [
        pair for pair in seen if pair[1] < pair[0]
    ][:5]
    assert reader.stat("d/k").size == 1499


def test_a_write_between_a_stat_and_its_keeping_is_not_missed(local_root: Path) -> None:
    """The interleaving the word is read first for: another writer's put lands just
    after this process took its stat and before it kept it.  The next stat must not
    use the one kept."""
    storage = _kept(FileSystemStorage(local_root))
    other = FileSystemStorage(local_root)
    storage.put("d/k", io.BytesIO(b"1"))
    stat_now = storage._stat_now
    interleaved: list[Stat] = []

    def stat_then_another_write(key: str) -> Stat:
        found = stat_now(key)
        if not interleaved:
            interleaved.append(other.put(key, io.BytesIO(b"22")))
        return found

    storage._stat_now = stat_then_another_write  # type: ignore[method-assign]
    assert storage.stat("d/k").size == 1  # taken before the other write
    assert storage.stat("d/k") == interleaved[0]


def test_a_change_made_by_hand_is_seen_within_the_bound(
    local_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file replaced behind the storage's back (no write of ours marked it) is seen
    once the kept stat is older than the bound; until then the kept one stands."""
    from private_channels.storage import filesystem

    monkeypatch.setattr(filesystem, "_KEPT_FOR", 0.3)
    storage = _kept(FileSystemStorage(local_root))
    storage.put("d/k", io.BytesIO(b"1"))
    kept = storage.stat("d/k")
    _replace_by_hand(local_root / "d" / "k", b"22")
    if LINUX:
        assert storage.stat("d/k") == kept
    time.sleep(0.35)
    assert storage.stat("d/k").size == 2


def test_no_stats_are_kept_where_another_host_may_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On NFS (or SMB, Ceph, FUSE) another host's write would not reach this host's
    # mapping: every stat asks the file system, as before.
    from private_channels.storage import filesystem

    monkeypatch.setattr(filesystem, "_file_system_type", lambda path: 0x6969)  # NFS
    storage = FileSystemStorage(tmp_path)
    assert storage._kept is None
    storage.put("d/k", io.BytesIO(b"1"))
    storage.stat("d/k")
    _replace_by_hand(tmp_path / "d" / "k", b"22")
    assert storage.stat("d/k").size == 2
    assert not (tmp_path / ".generation").exists()


@pytest.mark.parametrize("planted", ["link", "fifo", "directory"])
def test_a_planted_generation_file_turns_kept_stats_off(tmp_path: Path, planted: str) -> None:
    outside, root = _outside(tmp_path)
    root.mkdir()
    if planted == "link":
        (root / ".generation").symlink_to(outside / "secret")
    elif planted == "fifo":
        os.mkfifo(root / ".generation")
    else:
        (root / ".generation").mkdir()
    storage = FileSystemStorage(root)
    assert storage._kept is None
    storage.put("d/k", io.BytesIO(b"1"))
    assert storage.stat("d/k").size == 1
    assert (outside / "secret").read_text() == "s"


def test_the_generation_file_is_no_key(local_root: Path) -> None:
    storage = _kept(FileSystemStorage(local_root / "source"))
    storage.put("a/b", io.BytesIO(b"1"))
    assert list(storage.list("")) == ["a/b"]
    with pytest.raises(InvalidKeyError):
        validate_key(".generation")
    copy = FileSystemStorage(local_root / "copy")
    copy_storage(storage, copy)
    assert list(copy.list("")) == ["a/b"]


_OPS = hypothesis.strategies.lists(
    hypothesis.strategies.tuples(
        hypothesis.strategies.sampled_from(["put", "create", "delete", "stat", "by hand"]),
        hypothesis.strategies.sampled_from([0, 1]),  # which of two storages writes
        hypothesis.strategies.sampled_from(["d/a", "d/b", "e/c"]),
        hypothesis.strategies.binary(max_size=3),
    ),
    max_size=30,
)


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(ops=_OPS)
def test_kept_stats_answer_as_a_stat_each_time(ops: list[tuple[str, int, str, bytes]]) -> None:
    """Whatever two storages on one root do (and a change by hand, after which the
    kept stats are given up as their bound would), the one keeping stats answers as one
    that stats each time."""
    with tempfile.TemporaryDirectory(dir=_local_directory()) as directory:
        root = Path(directory)
        storages = [_kept(FileSystemStorage(root)), FileSystemStorage(root)]
        plain = _unkept(root)
        for op, which, key, data in ops:
            storage = storages[which]
            with contextlib.suppress(FileNotFoundError, FileExistsError):
                if op == "put":
                    storage.put(key, io.BytesIO(data))
                elif op == "create":
                    storage.create(key, io.BytesIO(data))
                elif op == "delete":
                    storage.delete(key)
                elif op == "by hand":
                    (root / key).parent.mkdir(parents=True, exist_ok=True)
                    _replace_by_hand(root / key, data)
                    for kept in storages:
                        if kept._kept is not None:
                            kept._kept._stats.clear()  # what the bound does, later
            for name in ("d/a", "d/b", "e/c"):
                for kept in storages:
                    try:
                        expected: Stat | None = plain.stat(name)
                    except FileNotFoundError:
                        expected = None
                    try:
                        found: Stat | None = kept.stat(name)
                    except FileNotFoundError:
                        found = None
                    assert found == expected, (op, which, key, name)


# -- the system calls that keep the GIL (_HeldCalls) ---------------------------------


# Where the storage makes its short system calls keeping the GIL (_HeldCalls).
HELD = LINUX and platform.machine() in _OPENAT2_MACHINES


def _held_calls() -> Any:
    from private_channels.storage import filesystem

    return filesystem._HeldCalls()


STAT_FIELDS = ["st_mode", "st_ino", "st_dev", "st_nlink", "st_uid", "st_gid", "st_size",
               "st_atime", "st_mtime", "st_ctime", "st_atime_ns", "st_mtime_ns",
               "st_ctime_ns", "st_blksize", "st_blocks", "st_rdev"]  # fmt: skip


@pytest.mark.skipif(not HELD, reason="the held calls are 64-bit Linux's")
def test_held_calls_do_what_os_does(local_root: Path) -> None:
    from private_channels.storage import filesystem

    held = _held_calls()
    directory = os.open(local_root, os.O_PATH | os.O_DIRECTORY)
    try:
        fd = held.open("f", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o640, dir_fd=directory)
        small, large = b"s" * 100, os.urandom(filesystem._HELD_IO + 5)  # reads: kept, let go
        assert held.write(fd, small) == 100
        assert held.write(fd, memoryview(large)) == len(large)
        held.utime(fd, ns=(1_234_567_890_123_456_789, 1_000_000_000_987_654_321))
        pairs = [
            (held.fstat(fd), os.fstat(fd)),
            (held.stat("f", dir_fd=directory), os.stat(local_root / "f")),
        ]
        for found, expected in pairs:
            assert [getattr(found, f) for f in STAT_FIELDS] == [
                getattr(expected, f) for f in STAT_FIELDS
            ]
            assert tuple(found) == tuple(expected)
        assert held.fstat(fd).st_mtime_ns == 1_000_000_000_987_654_321
        assert stat_mode(held.fstat(fd).st_mode) == 0o640
        os.lseek(fd, 0, os.SEEK_SET)
        assert held.read(fd, 100) == small
        assert held.read(fd, len(large) + 10) == large
        assert held.read(fd, 10) == b""
        held.close(fd)
        with pytest.raises(OSError) as closed:
            held.close(fd)
        assert closed.value.errno == errno.EBADF
        with pytest.raises(OSError) as bad:
            held.fstat(fd)
        assert bad.value.errno == errno.EBADF
        # Errors as os raises them: the same class, errno and file name.
        for call, args, kwargs in [
            ("open", ("missing/f", os.O_RDONLY), {"dir_fd": directory}),
            ("open", ("f", os.O_RDONLY | os.O_CREAT | os.O_EXCL), {"dir_fd": directory}),
            ("stat", ("missing",), {"dir_fd": directory}),
            ("mkdir", ("f",), {"dir_fd": directory}),
            ("link", (str(local_root / "f"), "f"), {"dst_dir_fd": directory}),
            ("link", (str(local_root / "missing"), "g"), {"dst_dir_fd": directory}),
        ]:
            with pytest.raises(OSError) as ours:
                getattr(held, call)(*args, **kwargs)
            with pytest.raises(OSError) as theirs:
                getattr(os, call)(*args, **kwargs)
            assert type(ours.value) is type(theirs.value), call
            assert (ours.value.errno, ours.value.filename) == (
                theirs.value.errno, theirs.value.filename
            ), call  # fmt: skip
        held.mkdir("d", 0o750, dir_fd=directory)
        assert stat_mode(os.stat(local_root / "d").st_mode) == 0o750 & ~_umask()
        held.link(str(local_root / "f"), "d/g", dst_dir_fd=directory)
        assert os.path.samefile(local_root / "f", local_root / "d" / "g")
    finally:
        os.close(directory)


# Run in a child process: a call that kept the GIL while it waits would stop the test
# itself, and the child can be killed.
_WAITING_CALLS = """
import os, sys, threading, time
from private_channels.storage.filesystem import _HeldCalls

held, root = _HeldCalls(), sys.argv[1]
directory = os.open(root, os.O_PATH | os.O_DIRECTORY)

def waits(call, release):
    # The call blocks until this thread (Python code, the GIL's) lets it go on.
    done = threading.Event()
    worker = threading.Thread(target=lambda: (call(), done.set()))
    worker.start()
    time.sleep(0.2)
    release()
    assert done.wait(10)
    worker.join()

# An open that makes a file (O_CREAT) of a FIFO waits for a reader.
os.mkfifo(os.path.join(root, "fifo"))
opened = []
waits(
    lambda: opened.append(held.open("fifo", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=directory)),
    lambda: opened.append(os.open(os.path.join(root, "fifo"), os.O_RDONLY | os.O_NONBLOCK)),
)
# A small write to a full pipe waits for the pipe to be read.
read_end, write_end = os.pipe()
os.set_blocking(write_end, False)
try:
    while True:
        os.write(write_end, b"x" * 4096)
except BlockingIOError:
    pass
os.set_blocking(write_end, True)
waits(lambda: held.write(write_end, b"y" * 100), lambda: os.read(read_end, 1 << 20))
print("let go")
"""


@pytest.mark.skipif(not HELD, reason="the held calls are 64-bit Linux's")
def test_held_calls_that_change_the_file_system_let_go_of_the_gil(local_root: Path) -> None:
    """An open that makes a file and a write may wait (for ext4's journal, which another
    thread's fsync is committing): they let the server's other threads run meanwhile.
    A FIFO and a full pipe make them wait here."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", _WAITING_CALLS, str(local_root)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail("a call kept the GIL while it waited: the process stopped")
    assert done.stdout.strip() == "let go", done.stderr


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.skipif(not HELD, reason="the held calls are 64-bit Linux's")
def test_a_held_lock_waits_for_its_holder(local_root: Path) -> None:
    """The lock is taken without waiting when free, and waited for (letting go of the
    GIL, so the holder can go on) when another open file holds it."""
    held = _held_calls()
    path = local_root / "lock"
    path.touch()
    first, second = os.open(path, os.O_RDWR), os.open(path, os.O_RDWR)
    held.lock(first)
    taken = threading.Event()

    def take() -> None:
        held.lock(second)
        taken.set()

    waiter = threading.Thread(target=take)
    waiter.start()
    assert not taken.wait(0.3)  # the first holds it
    os.close(first)
    assert taken.wait(10)
    waiter.join()
    os.close(second)


def test_held_calls_only_on_a_local_file_system(
    local_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from private_channels.storage import filesystem

    storage = FileSystemStorage(local_root / "here")
    if HELD:
        assert isinstance(storage._calls, filesystem._HeldCalls)
        assert storage._held_stat is not None
    monkeypatch.setattr(filesystem, "_file_system_type", lambda path: 0x6969)  # NFS
    remote = FileSystemStorage(local_root / "there")
    assert type(remote._calls) is filesystem._Calls
    assert remote._held_stat is None and remote._kept is None
    remote.put("a/b", io.BytesIO(b"1"))
    remote.put("a/b", io.BytesIO(b"2"), if_match=remote.stat("a/b").etag)
    assert read_bytes(remote, "a/b")[0] == b"2"


_SIZES = hypothesis.strategies.integers(min_value=0, max_value=70_000)


class _GrownSinceStat:
    """A storage's calls whose ``fstat`` says ``grown`` bytes less than the file holds:
    a file written to between its stat and its read."""

    def __init__(self, calls: Any, grown: int) -> None:
        self._calls, self._grown = calls, grown

    def __getattr__(self, name: str) -> Any:
        return getattr(self._calls, name)

    def fstat(self, fd: int) -> os.stat_result:
        st = self._calls.fstat(fd)
        values = [*st[:6], max(0, st.st_size - self._grown), *st[7:10]]
        return os.stat_result(
            values,
            {"st_mtime": st.st_mtime, "st_mtime_ns": st.st_mtime_ns, "st_blksize": st.st_blksize},
        )


@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(size=_SIZES, limit=_SIZES, grown=_SIZES)
def test_read_whole_reads_as_open_and_read_do(size: int, limit: int, grown: int) -> None:
    """``read_bytes`` through ``read_whole`` gives what it gives through ``open``: the
    bytes, or the same error past the limit, also for a file that grew by ``grown``
    bytes since its stat; on either side of the size up to which reads keep the GIL."""
    from private_channels.storage.base import read_stream

    with tempfile.TemporaryDirectory(dir=_local_directory()) as directory:
        storage = FileSystemStorage(directory)
        data = os.urandom(size)
        storage.put("k/v", io.BytesIO(data))
        held = storage._calls
        for calls in (held, _GrownSinceStat(held, grown)):
            storage._calls = calls
            outcomes: list[object] = []
            for read in (lambda: storage.read_whole("k/v", limit),
                         lambda: read_stream(*storage.open("k/v"), "k/v", limit)):  # fmt: skip
                try:
                    found, stat = read()
                except ValueError as error:
                    outcomes.append(type(error))
                else:
                    outcomes.append((found, stat))
            assert outcomes[0] == outcomes[1]
            if size <= limit:
                assert outcomes[0][0] == data  # type: ignore[index]
        storage._calls = held
        with pytest.raises(FileNotFoundError):
            storage.read_whole("k/missing", limit)
        with pytest.raises(FileNotFoundError):
            storage.read_whole("k", limit)  # a directory
