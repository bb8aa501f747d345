"""The conda channel a channel serves: repodata (.json, .zst, .bz2), CEP-16 shards,
channeldata.json and the package files, under any mount prefix and the path token."""

from __future__ import annotations

import asyncio
import bz2
import hashlib
import json
import shutil
import time
from functools import partial
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zstandard

from private_channels import ChannelRegistry, Scope, TokenStore
from private_channels.app import ecosystems
from private_channels.core.manage import change_files
from private_channels.storage import MemoryStorage

from .conda_packages import build_conda
from .support import at_once, slowed, test_app
from .test_conda_upload import PREFIXES, Channel


def unzstd(data: bytes) -> Any:
    return zstandard.ZstdDecompressor().stream_reader(data).read()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    tmp = tmp_path_factory.mktemp("conda-channel")
    return [
        build_conda(tmp, "alpha", "1.0", "0", extension=".tar.bz2"),
        build_conda(tmp, "alpha", "1.1", "0"),
        build_conda(tmp, "beta", "1.0", "0", depends=["alpha >=1.0"], constrains=["gamma <2"],
                    about={"summary": "Beta.", "home": "https://example.org/beta"}),
        build_conda(tmp, "gamma", "1.0", "h1_0", subdir="linux-64", arch="x86_64"),
    ]  # fmt: skip


@pytest.fixture(params=PREFIXES)
def channel(request: pytest.FixtureRequest, built: list[Path]) -> Channel:
    channel = Channel(MemoryStorage(), request.param)
    for path in built:
        channel.upload(path.read_bytes(), path.name)
    return channel


def test_repodata_lists_every_file_with_its_digests(channel: Channel, built: list[Path]) -> None:
    noarch = channel.repodata()
    assert noarch["info"] == {"subdir": "noarch"} and noarch["repodata_version"] == 1
    assert list(noarch["packages"]) == ["alpha-1.0-0.tar.bz2"]
    assert list(noarch["packages.conda"]) == ["alpha-1.1-0.conda", "beta-1.0-0.conda"]
    beta = noarch["packages.conda"]["beta-1.0-0.conda"]
    data = next(p for p in built if p.name == "beta-1.0-0.conda").read_bytes()
    assert beta == {
        "build": "0", "build_number": 0, "constrains": ["gamma <2"], "depends": ["alpha >=1.0"],
        "license": "MIT", "md5": hashlib.md5(data, usedforsecurity=False).hexdigest(),
        "name": "beta",
        "noarch": "generic", "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
        "subdir": "noarch", "timestamp": 1_700_000_000_000, "version": "1.0",
        "indexed_timestamp": beta["indexed_timestamp"],
    }  # fmt: skip
    assert abs(beta["indexed_timestamp"] / 1000 - time.time()) < 60  # the upload's time
    gamma = channel.repodata("linux-64")["packages.conda"]["gamma-1.0-h1_0.conda"]
    assert (gamma["subdir"], gamma["arch"]) == ("linux-64", "x86_64")


def test_compressed_repodata_holds_the_same(channel: Channel) -> None:
    for subdir in ("noarch", "linux-64"):
        plain = channel.get(f"{subdir}/repodata.json").body
        assert unzstd(channel.get(f"{subdir}/repodata.json.zst").body) == plain
        assert bz2.decompress(channel.get(f"{subdir}/repodata.json.bz2").body) == plain


def test_an_empty_channel_serves_valid_empty_repodata() -> None:
    channel = Channel(MemoryStorage())
    for subdir in ("noarch", "linux-64", "win-arm64"):
        assert channel.repodata(subdir) == {
            "info": {"subdir": subdir}, "packages": {}, "packages.conda": {}, "removed": [],
            "repodata_version": 1,
        }  # fmt: skip
    index = msgpack.unpackb(unzstd(channel.get("noarch/repodata_shards.msgpack.zst").body))
    assert index["shards"] == {}
    assert json.loads(channel.get("channeldata.json").body)["packages"] == {}


def test_what_does_not_exist_is_404_to_readers_only(channel: Channel) -> None:
    for path in ("noarch/current_repodata.json", "noarch/zeta-1.0-0.conda", "noarch/x/y",
                 "linux-64/alpha-1.1-0.conda", "noarch/repodata.json.jlap",
                 "nosuch-64/repodata.json"):  # fmt: skip
        channel.get(path, status=404)
        channel.app.get(f"{channel.url}/{path}", status=401)
    # A token for another channel: 403 whether the file exists or not.
    ChannelRegistry(channel.storage).create("other")
    other, _ = TokenStore(channel.storage).create(channels=["other"], scope=Scope.READ)
    for path in ("noarch/repodata.json", "noarch/zeta-1.0-0.conda"):
        channel.app.get(f"{channel.url}/{path}", headers={"X-Auth": other}, status=403)


def test_documents_are_read_only() -> None:
    channel = Channel(MemoryStorage())
    answer = channel.app.post(f"{channel.url}/noarch/repodata.json", headers={
        "X-Auth": channel.write}, status=405)  # fmt: skip
    assert answer.headers["Allow"] == "GET, HEAD"


def test_revalidation_answers_304(channel: Channel) -> None:
    for path in ("noarch/repodata.json", "noarch/repodata.json.zst",
                 "noarch/repodata_shards.msgpack.zst", "channeldata.json",
                 "noarch/beta-1.0-0.conda"):  # fmt: skip
        first = channel.get(path)
        assert first.etag
        channel.get(path, headers={"If-None-Match": f'"{first.etag}"'}, status=304)
        head = channel.app.head(f"{channel.url}/{path}", headers={"X-Auth": channel.read})
        assert head.body == b"" and head.etag == first.etag
    assert "no-cache" in channel.get("noarch/repodata.json").headers["Cache-Control"]
    # An upload changes the document, and so its ETag.
    before = channel.get("noarch/repodata.json").etag
    channel.upload(channel.get("linux-64/gamma-1.0-h1_0.conda").body, "gamma-1.0-h1_0.conda")
    assert channel.get("noarch/repodata.json").etag == before  # another subdir's upload


def test_downloads_are_the_uploaded_bytes_with_ranges(channel: Channel, built: list[Path]) -> None:
    for path in built:
        subdir = "linux-64" if path.name.startswith("gamma") else "noarch"
        assert channel.get(f"{subdir}/{path.name}").body == path.read_bytes()
    partial = channel.get("noarch/beta-1.0-0.conda", headers={"Range": "bytes=0-1"}, status=206)
    assert partial.body == b"PK"


def test_sharded_repodata_holds_what_repodata_does(channel: Channel) -> None:
    raw = channel.get("noarch/repodata_shards.msgpack.zst")
    index = msgpack.unpackb(unzstd(raw.body))
    assert index["version"] == 1
    assert index["info"] == {"subdir": "noarch", "base_url": "./", "shards_base_url": "./shards/"}
    assert sorted(index["shards"]) == ["alpha", "beta"]
    repodata = channel.repodata()
    for name, digest in index["shards"].items():
        assert isinstance(digest, bytes) and len(digest) == 32
        answer = channel.get(f"noarch/shards/{digest.hex()}.msgpack.zst")
        assert "immutable" in answer.headers["Cache-Control"]
        assert hashlib.sha256(answer.body).digest() == digest  # named after its bytes
        shard = msgpack.unpackb(unzstd(answer.body))
        for key in ("packages", "packages.conda"):
            expected = {f: e for f, e in repodata[key].items() if e["name"] == name}
            assert {f: {**e, "md5": e["md5"].hex(), "sha256": e["sha256"].hex()}
                    for f, e in shard[key].items()} == expected  # fmt: skip
        assert shard["removed"] == []
    channel.get(f"noarch/shards/{'0' * 64}.msgpack.zst", status=404)


def test_a_yanked_file_is_removed_from_repodata_and_shards(channel: Channel) -> None:
    team = ChannelRegistry(channel.storage).get("team")
    assert team is not None
    change_files(ecosystems(channel.storage), team, "yank", "alpha-1.1-0.conda")
    assert channel.repodata()["removed"] == ["alpha-1.1-0.conda"]
    index = msgpack.unpackb(unzstd(channel.get("noarch/repodata_shards.msgpack.zst").body))
    shard = channel.get(f"noarch/shards/{index['shards']['alpha'].hex()}.msgpack.zst").body
    decoded = msgpack.unpackb(unzstd(shard))
    assert decoded["removed"] == ["alpha-1.1-0.conda"] and decoded["packages.conda"] == {}
    assert list(decoded["packages"]) == ["alpha-1.0-0.tar.bz2"]


def test_channeldata(channel: Channel) -> None:
    data = json.loads(channel.get("channeldata.json").body)
    assert data["channeldata_version"] == 1
    assert data["subdirs"] == ["linux-64", "noarch"]
    assert data["packages"]["beta"] == {
        "home": "https://example.org/beta", "subdirs": ["noarch"], "summary": "Beta.",
        "timestamp": 1_700_000_000_000, "version": "1.0",
    }  # fmt: skip
    assert data["packages"]["gamma"]["subdirs"] == ["linux-64"]


def test_the_path_token_form_and_no_token_in_any_document(channel: Channel) -> None:
    prefix = channel.url.removesuffix("/team")
    base = f"{prefix}/t/{channel.read}/team"
    for path in ("noarch/repodata.json", "noarch/repodata.json.zst", "noarch/repodata.json.bz2",
                 "noarch/repodata_shards.msgpack.zst", "channeldata.json",
                 "linux-64/repodata.json"):  # fmt: skip
        body = channel.app.get(f"{base}/{path}").body
        for form in (body, unzstd(body) if path.endswith(".zst") else body):
            assert channel.read.encode() not in form
            assert b"http" not in form.replace(b"https://example.org/beta", b"")
    assert channel.app.get(f"{base}/noarch/beta-1.0-0.conda").body.startswith(b"PK")


def test_without_the_extra_repodata_json_is_served_alone(
    monkeypatch: pytest.MonkeyPatch, channel: Channel
) -> None:
    for module in ("zstandard", "msgpack"):
        monkeypatch.setitem(__import__("sys").modules, module, None)
    fresh = test_app(channel.storage, channel.url.removesuffix("/team"))  # empty caches
    headers = {"X-Auth": channel.read}
    assert json.loads(fresh.get(f"{channel.url}/noarch/repodata.json", headers=headers).body)
    fresh.get(f"{channel.url}/noarch/repodata.json.bz2", headers=headers)
    # Clients fall back to repodata.json on these 404s.
    for path in ("noarch/repodata.json.zst", "noarch/repodata_shards.msgpack.zst"):
        answer = fresh.get(f"{channel.url}/{path}", headers=headers, status=404)
        assert "repodata.json" in answer.text


def test_every_process_sees_an_upload_at_once(built: list[Path]) -> None:
    storage = MemoryStorage()
    one = Channel(storage)
    other = test_app(storage)
    headers = {"X-Auth": one.read}

    def listed(app: Any) -> list[str]:
        doc = json.loads(app.get("/api/repo/team/noarch/repodata.json", headers=headers).body)
        index = app.get("/api/repo/team/noarch/repodata_shards.msgpack.zst", headers=headers)
        names = sorted(msgpack.unpackb(unzstd(index.body))["shards"])
        return sorted([*doc["packages"], *doc["packages.conda"], *names])

    assert listed(other) == []  # rendered and cached by the other process
    one.upload(built[0].read_bytes(), built[0].name)
    assert listed(other) == ["alpha", "alpha-1.0-0.tar.bz2"]


def test_repodata_agrees_with_rattlers_own_indexer(
    channel: Channel, built: list[Path], tmp_path: Path
) -> None:
    """rattler-index, run over the same files, lists the same fields with the same values."""
    from rattler.index import index_fs

    for path in built:
        subdir = "linux-64" if path.name.startswith("gamma") else "noarch"
        (tmp_path / subdir).mkdir(exist_ok=True)
        shutil.copy(path, tmp_path / subdir / path.name)
    asyncio.run(index_fs(tmp_path, write_zst=False, write_shards=False, force=True))
    for subdir in ("noarch", "linux-64"):
        theirs = json.loads((tmp_path / subdir / "repodata.json").read_text())
        ours = channel.repodata(subdir)
        for key in ("packages", "packages.conda"):
            assert sorted(ours[key]) == sorted(theirs[key])
            for filename, entry in ours[key].items():
                # Ours always carries constrains, empty or not.
                assert set(entry) - set(theirs[key][filename]) <= {"constrains"}
                for field, value in theirs[key][filename].items():
                    if field != "indexed_timestamp":  # when each indexed it
                        assert entry[field] == value, (filename, field)


def test_a_subdir_asked_for_at_once_by_many_is_parsed_once(
    channel: Channel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """conda clients at once on a process that has not read the subdir yet: one reads and
    parses its document, the others wait for its snapshot and its repodata."""
    from private_channels.conda.store import CondaStore

    parsed = slowed(monkeypatch, CondaStore, "subdir")
    cold = test_app(channel.storage, channel.url.removesuffix("/team"))  # nothing kept yet
    ask = partial(cold.get, f"{channel.url}/noarch/repodata.json", headers={"X-Auth": channel.read})
    bodies = {response.body for response in at_once(ask)}
    assert len(bodies) == 1 and "beta-1.0-0.conda" in json.loads(bodies.pop())["packages.conda"]
    assert len(parsed) == 1
