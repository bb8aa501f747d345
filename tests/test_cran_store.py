"""The per-directory index documents: commits, conflicts, and what a lost race undoes."""

from __future__ import annotations

import io

import pytest

from private_channels import ChannelRegistry
from private_channels.cran.store import CranRecord, CranStore, Directory, FileConflictError
from private_channels.storage import Storage

ARM = "bin/macosx/big-sur-arm64/contrib/4.3"
INTEL = "bin/macosx/big-sur-x86_64/contrib/4.3"


def record(sha: str, version: str = "1.0", when: float = 1.0) -> CranRecord:
    return CranRecord(
        filename=f"abc_{version}.tgz",
        package="abc",
        version=version,
        size=3,
        md5="0" * 32,
        sha256=sha * 64,
        upload_time=when,
        fields={"Package": "abc", "Version": version},
    )


class LateToTheRace(CranStore):
    """Its checks before writing see empty directories: another upload wins later."""

    def directory(self, channel, path):  # type: ignore[no-untyped-def]
        return Directory(path=path, records=(), stat=None)


def test_add_commits_once_and_knows_the_same_file(storage: Storage) -> None:
    channel = ChannelRegistry(storage).create("team")
    store = CranStore(storage)
    assert store.add(channel, ["src/contrib"], record("a"), io.BytesIO(b"abc")) is True
    assert store.add(channel, ["src/contrib"], record("a"), io.BytesIO(b"abc")) is False
    with pytest.raises(FileConflictError):
        store.add(channel, ["src/contrib"], record("b"), io.BytesIO(b"xyz"))
    (only,) = store.directory(channel, "src/contrib").records
    assert only.sha256 == "a" * 64


def test_a_race_lost_in_one_directory_undoes_the_others(storage: Storage) -> None:
    channel = ChannelRegistry(storage).create("team")
    CranStore(storage).add(channel, [INTEL], record("a"), io.BytesIO(b"abc"))
    before = sorted(storage.list("channels/team/cran/blobs/"))
    with pytest.raises(FileConflictError):
        LateToTheRace(storage).add(channel, [ARM, INTEL], record("b"), io.BytesIO(b"xyz"))
    store = CranStore(storage)
    assert store.directory(channel, ARM).records == ()
    assert [r.sha256 for r in store.directory(channel, INTEL).records] == ["a" * 64]
    assert sorted(storage.list("channels/team/cran/blobs/")) == before


def test_latest_and_archive_follow_r_version_order(storage: Storage) -> None:
    channel = ChannelRegistry(storage).create("team")
    store = CranStore(storage)
    for sha, version in (("a", "1.10"), ("b", "1.9"), ("c", "1.9-1")):
        store.add(channel, [ARM], record(sha, version), io.BytesIO(sha.encode()))
    directory = store.directory(channel, ARM)
    assert [r.version for r in directory.latest()] == ["1.10"]
    assert [r.version for r in directory.archived()] == ["1.9", "1.9-1"]
    assert directory.is_latest(directory.find("abc_1.10.tgz"))  # type: ignore[arg-type]


def test_index_keys_are_only_repository_directories(storage: Storage) -> None:
    channel = ChannelRegistry(storage).create("team")
    store = CranStore(storage)
    assert store.index_key(channel, "linux/bookworm/4.2").endswith("index/linux/bookworm/4.2.json")
    for bad in ("src", "src/contrib/../x", "bin/windows/contrib/4", "linux/Bad/4.2", "x/y"):
        with pytest.raises(ValueError):
            store.index_key(channel, bad)
