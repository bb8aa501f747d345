"""R uploads at POST P/<CHANNEL>: what is accepted, where it goes, every rejection."""

from __future__ import annotations

import concurrent.futures
import gzip
import hashlib
import os
import tarfile

import pytest
import webtest

from private_channels import ChannelRegistry, Scope, TokenStore
from private_channels.cran.dcf import parse_dcf
from private_channels.storage import Storage

from .support import test_app
from .test_cran_description import (
    MAC_ARM_BUILT,
    _link,
    description,
    mac_tgz,
    source_package,
    windows_zip,
)

PREFIXES = ["/api/repo", "/deep/er/mount"]


class Channel:
    """A webtest app with one private channel "team" and tokens for it."""

    def __init__(self, storage: Storage, prefix: str, **options) -> None:  # type: ignore[no-untyped-def]
        self.storage = storage
        ChannelRegistry(storage).create("team")
        tokens = TokenStore(storage)
        self.write, _ = tokens.create(channels=["team"], scope=Scope.WRITE)
        self.read, _ = tokens.create(channels=["team"], scope=Scope.READ)
        self.app = test_app(storage, prefix, **options)
        self.url = f"{prefix}/team"

    def upload(  # type: ignore[no-untyped-def]
        self,
        data: bytes,
        filename: str,
        filetype: str = "cran_source_package",
        *,
        status: int | str = 200,
        token: str | None = "write",  # noqa: S107 (the attribute naming the token)
        slash: str = "",
    ) -> webtest.TestResponse:
        headers = {"X-Auth": getattr(self, token)} if token else {}
        return self.app.post(
            self.url + slash,
            {"filetype": filetype},
            upload_files=[("content", filename, data)],
            headers=headers,
            status=status,
        )

    def get(self, path: str, **kwargs) -> webtest.TestResponse:  # type: ignore[no-untyped-def]
        return self.app.get(f"{self.url}/{path}", headers={"X-Auth": self.read}, **kwargs)

    def index(self, directory: str = "src/contrib") -> list[dict[str, str]]:
        return parse_dcf(self.get(f"{directory}/PACKAGES").text)

    def cran_keys(self) -> list[str]:
        return list(self.storage.list("channels/team/cran/"))


@pytest.fixture(params=PREFIXES)
def channel(request: pytest.FixtureRequest, storage: Storage) -> Channel:
    return Channel(storage, request.param)


def test_source_upload_is_indexed_at_once(channel: Channel) -> None:
    data = source_package("abc", "1.0", Imports="utils")
    response = channel.upload(data, "abc_1.0.tar.gz")
    assert response.status == "200 OK"
    assert "abc_1.0.tar.gz" in response.text and "src/contrib/" in response.text
    (record,) = channel.index()
    assert record["Package"] == "abc" and record["Version"] == "1.0"
    assert record["Imports"] == "utils" and record["NeedsCompilation"] == "no"
    assert record["MD5sum"] == hashlib.md5(data, usedforsecurity=False).hexdigest()
    assert channel.get("src/contrib/abc_1.0.tar.gz").body == data


def test_trailing_slash_and_no_redirect(channel: Channel) -> None:
    response = channel.upload(source_package(), "abc_1.0.tar.gz", slash="/")
    assert response.status_int == 200 and "Location" not in response.headers


def test_stored_under_the_description_name(channel: Channel) -> None:
    # curl sends the client's own path only when asked; a missing filename is fine.
    channel.app.post(
        channel.url,
        {"filetype": "cran_source_package"},
        upload_files=[("content", "", source_package("abc", "2.0"))],
        headers={"X-Auth": channel.write},
    )
    assert channel.get("src/contrib/abc_2.0.tar.gz").status_int == 200


def test_same_bytes_again_changes_nothing(channel: Channel) -> None:
    data = source_package()
    channel.upload(data, "abc_1.0.tar.gz")
    before = {key: channel.storage.stat(key).etag for key in channel.cran_keys()}
    again = channel.upload(data, "abc_1.0.tar.gz")
    assert "nothing changed" in again.text
    assert {key: channel.storage.stat(key).etag for key in channel.cran_keys()} == before


def test_other_bytes_conflict(channel: Channel) -> None:
    channel.upload(source_package(), "abc_1.0.tar.gz")
    before = channel.cran_keys()
    response = channel.upload(source_package(Title="Changed"), "abc_1.0.tar.gz", status=409)
    assert response.status.startswith("409 File already exists")
    assert response.text.startswith("File already exists")
    assert channel.cran_keys() == before


REJECTIONS = [
    # (data, client filename, filetype, what the sentence says)
    (source_package("abc", "1.0"), "abc_1.1.tar.gz", "cran_source_package", "makes it"),
    (source_package("abc", "1.0"), "xyz_1.0.tar.gz", "cran_source_package", "makes it"),
    (source_package("abc", "1.0"), "abc_1.0.tgz", "cran_source_package", "makes it"),
    (source_package(), "abc_1.0.tar.gz", "cran_other_package", "filetype must be"),
    (b"", "abc_1.0.tar.gz", "cran_source_package", "empty"),
    (b"hello", "abc_1.0.tar.gz", "cran_source_package", "neither"),
    (source_package("stats"), "stats_1.0.tar.gz", "cran_source_package", "ships with R"),
    (source_package(version="1.0.x"), "abc_1.0.x.tar.gz", "cran_source_package", "Version"),
    (
        source_package(extra=[_link("abc/x", tarfile.SYMTYPE, "/etc/passwd")]),
        "abc_1.0.tar.gz",
        "cran_source_package",
        "link",
    ),
    (
        source_package(extra=[("abc/../../x", b"x")]),
        "abc_1.0.tar.gz",
        "cran_source_package",
        "unsafe path",
    ),
    (windows_zip(), "abc_1.0.zip", "cran_source_package", "Windows binary"),
    (source_package(), "abc_1.0.tar.gz", "cran_binary_package", "Built field"),
    (
        source_package(Built="R 4.2.2; x86_64-pc-linux-gnu; 2022-11-10; unix"),
        "abc_1.0.tgz",
        "cran_binary_package",
        "built for",
    ),
    (
        mac_tgz(built="R 3.3.0; x86_64-apple-darwin13.4.0; 2016-05-01; unix"),
        "abc_1.0.tgz",
        "cran_binary_package",
        "No R version",
    ),
]


@pytest.mark.parametrize(
    ("data", "filename", "filetype", "says"),
    REJECTIONS,
    ids=[f"{i}-{r[3].replace(' ', '-')}" for i, r in enumerate(REJECTIONS)],
)
def test_rejections_are_400_with_one_sentence(
    channel: Channel, data: bytes, filename: str, filetype: str, says: str
) -> None:
    response = channel.upload(data, filename, filetype, status=400)
    reason = response.status.split(" ", 1)[1]
    assert says in reason
    assert response.text.strip() == reason or response.text.startswith(reason[:150])
    assert "\n" not in response.text.strip()
    assert channel.cran_keys() == []


def test_content_field_is_required_once(channel: Channel) -> None:
    headers = {"X-Auth": channel.write}
    missing = channel.app.post(
        channel.url,
        {"filetype": "cran_source_package"},
        headers=headers,
        content_type="multipart/form-data",
        status=400,
    )
    assert "content" in missing.status
    data = source_package()
    twice = channel.app.post(
        channel.url,
        {"filetype": "cran_source_package"},
        upload_files=[("content", "abc_1.0.tar.gz", data), ("content", "abc_1.0.tar.gz", data)],
        headers=headers,
        status=400,
    )
    assert "exactly one" in twice.status
    assert channel.cran_keys() == []


def test_needs_write_access(channel: Channel) -> None:
    anonymous = channel.upload(source_package(), "abc_1.0.tar.gz", token=None, status=401)
    assert anonymous.headers["WWW-Authenticate"] == 'Basic realm="private-channels"'
    channel.upload(source_package(), "abc_1.0.tar.gz", token="read", status=403)
    bad = channel.app.post(
        channel.url,
        {"filetype": "cran_source_package"},
        upload_files=[("content", "abc_1.0.tar.gz", source_package())],
        headers={"X-Auth": "0" * 48},
        status=401,
    )
    assert "invalid" in bad.text
    assert channel.cran_keys() == []


def test_forms_without_cran_filetype_pass_on(channel: Channel) -> None:
    response = channel.app.post(
        channel.url,
        {"name": "abc"},
        upload_files=[("content", "abc_1.0.tar.gz", source_package())],
        headers={"X-Auth": channel.write},
        status=400,
    )
    assert "filetype=cran_source_package" in response.text
    assert channel.cran_keys() == []


@pytest.mark.parametrize("prefix", PREFIXES)
def test_too_large_is_413(storage: Storage, prefix: str) -> None:
    channel = Channel(storage, prefix, max_upload_size=2048)
    data = source_package(extra=[("abc/inst/noise", os.urandom(8192))])
    channel.upload(data, "abc_1.0.tar.gz", status=413)
    assert channel.cran_keys() == []


def test_injection_through_a_description_field(channel: Channel) -> None:
    text = description(License="GPL-2\n .\n Package: evil\n Version: 6.6.6\n MD5sum: 0")
    channel.upload(source_package(text=text), "abc_1.0.tar.gz")
    for name in ("PACKAGES", "PACKAGES.gz"):
        body = channel.get(f"src/contrib/{name}").body
        records = parse_dcf((gzip.decompress(body) if name.endswith(".gz") else body).decode())
        assert [r["Package"] for r in records] == ["abc"]
        assert records[0]["MD5sum"] != "0"


@pytest.mark.parametrize(
    ("data", "filename", "directories"),
    [
        (windows_zip("abc", "1.0"), "abc_1.0.zip", ["bin/windows/contrib/4.2"]),
        (mac_tgz("abc", "1.0"), "abc_1.0.tgz", ["bin/macosx/big-sur-arm64/contrib/4.3"]),
        (
            mac_tgz(built="R 4.2.1; x86_64-apple-darwin17.0; 2022-07-01; unix"),
            "abc_1.0.tgz",
            ["bin/macosx/contrib/4.2"],
        ),
        (
            mac_tgz(built="R 4.4.0; x86_64-apple-darwin20; 2024-05-01; unix"),
            "abc_1.0.tgz",
            ["bin/macosx/big-sur-x86_64/contrib/4.4"],
        ),
        (
            mac_tgz(built="R 4.3.2; ; 2023-11-01; unix"),
            "abc_1.0.tgz",
            ["bin/macosx/big-sur-arm64/contrib/4.3", "bin/macosx/big-sur-x86_64/contrib/4.3"],
        ),
    ],
    ids=["windows", "mac-arm64", "mac-intel-4.2", "mac-intel-4.4", "mac-no-compiled-code"],
)
def test_binaries_go_where_contrib_url_looks(
    channel: Channel, data: bytes, filename: str, directories: list[str]
) -> None:
    response = channel.upload(data, filename, "cran_binary_package")
    for directory in directories:
        assert f"{directory}/" in response.text
        (record,) = channel.index(directory)
        assert record["Package"] == "abc" and "Built" in record and "MD5sum" in record
        assert channel.get(f"{directory}/{filename}").body == data
    assert channel.index("src/contrib") == []
    assert channel.index("bin/windows/contrib/4.1") == []
    assert MAC_ARM_BUILT  # the default mac build


def test_concurrent_uploads_through_two_apps_lose_nothing(storage: Storage) -> None:
    first = Channel(storage, "/api/repo")
    second = test_app(storage, "/api/repo")  # another stack over the same storage
    names = [f"pkg{i}" for i in range(12)]

    def upload(name: str) -> int:
        app = first.app if int(name[3:]) % 2 else second
        for version in ("1.0", "1.1"):
            app.post(
                first.url,
                {"filetype": "cran_source_package"},
                upload_files=[
                    ("content", f"{name}_{version}.tar.gz", source_package(name, version))
                ],
                headers={"X-Auth": first.write},
            )
        return 0

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        list(pool.map(upload, names))
    records = first.index()
    assert sorted(r["Package"] for r in records) == sorted(names)
    assert {r["Version"] for r in records} == {"1.1"}


def test_bodies_that_are_not_multipart_pass_on(channel: Channel) -> None:
    response = channel.app.post(
        channel.url,
        {"filetype": "cran_source_package"},
        headers={"X-Auth": channel.write},
        status=400,
    )
    assert "neither" in response.text and "cran_source_package" in response.text
    assert channel.cran_keys() == []


def test_a_conflict_in_one_directory_undoes_the_others(channel: Channel) -> None:
    intel = mac_tgz(built="R 4.3.2; x86_64-apple-darwin20; 2023-11-01; unix")
    channel.upload(intel, "abc_1.0.tgz", "cran_binary_package")
    before = channel.cran_keys()
    # No compiled code: it would go to both big-sur directories, but x86_64 has abc_1.0.tgz.
    pure_r = mac_tgz(built="R 4.3.2; ; 2023-11-01; unix")
    response = channel.upload(pure_r, "abc_1.0.tgz", "cran_binary_package", status=409)
    assert response.text.startswith("File already exists")
    assert channel.index("bin/macosx/big-sur-arm64/contrib/4.3") == []
    assert channel.get("bin/macosx/big-sur-x86_64/contrib/4.3/abc_1.0.tgz").body == intel
    assert channel.cran_keys() == before
