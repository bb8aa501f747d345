"""Yank, unyank and delete for R packages: what R, pak and the archive see afterwards."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pytest

from private_channels import Scope, TokenStore
from private_channels.app import ecosystems
from private_channels.channels import ChannelRegistry
from private_channels.core.ecosystem import Target
from private_channels.core.manage import change_files, find_target
from private_channels.cran.manage import parse_target
from private_channels.storage import MemoryStorage, Storage

from .packages import make_wheel
from .support import test_app
from .test_cran_description import mac_tgz, source_package, windows_zip
from .test_cran_upload import PREFIXES, Channel


@pytest.fixture(params=PREFIXES)
def channel(request: pytest.FixtureRequest) -> Channel:
    return Channel(MemoryStorage(), request.param)


def change(channel: Channel, action: str, target: str, reason: str = "") -> list[str]:
    registry = ChannelRegistry(channel.storage)
    team = registry.get("team")
    assert team is not None
    _, files = change_files(ecosystems(channel.storage), team, action, target, reason=reason)  # type: ignore[arg-type]
    return files


def latest(channel: Channel, directory: str = "src/contrib") -> list[tuple[str, str]]:
    return [(r["Package"], r["Version"]) for r in channel.index(directory)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("abc_1.0.tar.gz", Target("cran", "abc", filename="abc_1.0.tar.gz")),
        ("my.pkg_1.0-2.zip", Target("cran", "my.pkg", filename="my.pkg_1.0-2.zip")),
        ("abc_1.0.tgz", Target("cran", "abc", filename="abc_1.0.tgz")),
        ("abc==1.0", Target("cran", "abc", version="1.0")),
        (" abc == 1.0-3 ", Target("cran", "abc", version="1.0-3")),
        ("abc-1.0.tar.gz", None),  # a Python sdist
        ("abc==1.0a1", None),  # a PEP 440 version, not R's
        ("_abc==1.0", None),
        ("abc_1.0.whl", None),
        ("abc_x.tar.gz", None),
        ("", None),
    ],
)
def test_parse_target(text: str, expected: Target | None) -> None:
    assert parse_target(text) == expected


def test_yanking_the_latest_gives_r_the_newest_left(channel: Channel) -> None:
    for version in ("1.0", "1.1", "1.2"):
        channel.upload(source_package("abc", version), f"abc_{version}.tar.gz")
    assert change(channel, "yank", "abc_1.2.tar.gz", "Breaks on R 4.4") == ["abc_1.2.tar.gz"]
    assert latest(channel) == [("abc", "1.1")]
    gz = gzip.decompress(channel.get("src/contrib/PACKAGES.gz").body).decode()
    assert "Version: 1.1" in gz and "1.2" not in gz
    # Still downloadable at its URL and from the archive; the new latest at its URL.
    assert channel.get("src/contrib/abc_1.2.tar.gz").status_int == 200
    assert channel.get("src/contrib/Archive/abc/abc_1.2.tar.gz").status_int == 200
    assert channel.get("src/contrib/abc_1.1.tar.gz").status_int == 200
    channel.get("src/contrib/Archive/abc/abc_1.1.tar.gz", status=404)
    archive = gzip.decompress(channel.get("src/contrib/Meta/archive.rds").body)
    assert b"abc/abc_1.2.tar.gz" in archive and b"abc/abc_1.0.tar.gz" in archive
    assert change(channel, "unyank", "abc==1.2") == ["abc_1.2.tar.gz"]
    assert latest(channel) == [("abc", "1.2")]
    channel.get("src/contrib/Archive/abc/abc_1.2.tar.gz", status=404)


def test_yanking_every_version_takes_the_package_out_of_packages(channel: Channel) -> None:
    channel.upload(source_package("abc", "1.0"), "abc_1.0.tar.gz")
    channel.upload(source_package("xyz", "0.1"), "xyz_0.1.tar.gz")
    change(channel, "yank", "abc==1.0")
    assert latest(channel) == [("xyz", "0.1")]
    assert channel.get("src/contrib/abc_1.0.tar.gz").status_int == 200


def test_a_version_names_its_source_and_binaries(channel: Channel) -> None:
    channel.upload(source_package("abc", "1.0"), "abc_1.0.tar.gz")
    channel.upload(windows_zip("abc", "1.0"), "abc_1.0.zip", "cran_binary_package")
    channel.upload(mac_tgz("abc", "1.0"), "abc_1.0.tgz", "cran_binary_package")
    channel.upload(source_package("abc", "0.9"), "abc_0.9.tar.gz")
    files = change(channel, "yank", "abc==1.0")
    assert files == ["abc_1.0.tar.gz", "abc_1.0.tgz", "abc_1.0.zip"]
    assert latest(channel) == [("abc", "0.9")]
    assert latest(channel, "bin/windows/contrib/4.2") == []
    assert channel.get("bin/windows/contrib/4.2/abc_1.0.zip").status_int == 200
    # Deleting one binary leaves the others.
    assert change(channel, "delete", "abc_1.0.zip") == ["abc_1.0.zip"]
    channel.get("bin/windows/contrib/4.2/abc_1.0.zip", status=404)
    assert change(channel, "unyank", "abc==1.0") == ["abc_1.0.tar.gz", "abc_1.0.tgz"]
    assert latest(channel) == [("abc", "1.0")]


def test_delete_removes_the_file_and_keeps_its_name_taken(channel: Channel) -> None:
    data = source_package("abc", "1.0")
    channel.upload(data, "abc_1.0.tar.gz")
    channel.upload(source_package("abc", "1.1"), "abc_1.1.tar.gz")
    assert change(channel, "delete", "abc_1.0.tar.gz") == ["abc_1.0.tar.gz"]
    channel.get("src/contrib/Archive/abc/abc_1.0.tar.gz", status=404)
    blobs = [k for k in channel.cran_keys() if "/blobs/" in k]
    assert [k.rpartition("/")[2][65:] for k in blobs] == ["abc_1.1.tar.gz"]  # <sha256>-
    again = channel.upload(data, "abc_1.0.tar.gz", status=409)
    assert "was deleted from this channel and its name cannot be used again" in again.text
    with pytest.raises(LookupError, match=r"Channel 'team' has no file 'abc_1\.0\.tar\.gz'"):
        change(channel, "delete", "abc_1.0.tar.gz")


def test_a_channel_may_allow_a_deleted_name_again() -> None:
    storage: Storage = MemoryStorage()
    loose = ChannelRegistry(storage).create("loose", allow_reupload=True)
    token, _ = TokenStore(storage).create(channels=["loose"], scope=Scope.WRITE)
    app = test_app(storage)
    data = source_package("abc", "1.0")

    def upload() -> int:
        response = app.post(
            "/api/repo/loose",
            {"filetype": "cran_source_package"},
            upload_files=[("content", "abc_1.0.tar.gz", data)],
            headers={"X-Auth": token},
            expect_errors=True,
        )
        return int(response.status_int)

    assert upload() == 200
    change_files(ecosystems(storage), loose, "delete", "abc_1.0.tar.gz")
    assert upload() == 200
    download = app.get("/api/repo/loose/src/contrib/abc_1.0.tar.gz", headers={"X-Auth": token})
    assert download.body == data


def test_the_admin_endpoint_reaches_r_files(channel: Channel) -> None:
    admin, _ = TokenStore(channel.storage).create(channels=["team"], scope=Scope.ADMIN)
    channel.upload(source_package("abc", "1.0"), "abc_1.0.tar.gz")
    response = channel.app.post(
        f"{channel.url}/-/yank",
        {"filename": "abc_1.0.tar.gz", "reason": "Broken"},
        headers={"X-Auth": admin},
    )
    assert response.json == {"action": "yank", "project": "abc", "files": ["abc_1.0.tar.gz"]}
    assert latest(channel) == []


def test_one_name_in_two_ecosystems(channel: Channel, tmp_path: Path) -> None:
    """``abc==1.0`` is a Python release and an R one alike: the one the channel holds."""
    team = ChannelRegistry(channel.storage).get("team")
    assert team is not None
    served = ecosystems(channel.storage)
    channel.upload(source_package("abc", "1.0"), "abc_1.0.tar.gz")
    assert find_target(served, team, "abc==1.0").ecosystem == "cran"
    # An R filename whose version has a dash also parses as a Python sdist name.
    assert find_target(served, team, "abc_1.0-2.tar.gz").ecosystem == "cran"
    wheel = make_wheel(tmp_path, "abc", "1.0")
    channel.app.post(
        channel.url,
        {
            ":action": "file_upload",
            "protocol_version": "1",
            "sha256_digest": hashlib.sha256(wheel.read_bytes()).hexdigest(),
        },
        upload_files=[("content", wheel.name, wheel.read_bytes())],
        headers={"X-Auth": channel.write},
    )
    with pytest.raises(ValueError, match="names packages of python and cran alike; name the file"):
        find_target(served, team, "abc==1.0")
    assert find_target(served, team, "abc_1.0.tar.gz").ecosystem == "cran"
    assert find_target(served, team, wheel.name).ecosystem == "python"
    # Neither holds it: the first ecosystem's, whose change then says there is no such file.
    assert find_target(served, team, "nope==1.0").ecosystem == "python"
