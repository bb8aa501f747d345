"""The CRAN-like layout a channel serves: indexes, downloads, Archive/, Meta/archive.rds."""

from __future__ import annotations

import gzip
import io
import lzma
from functools import partial

import pytest

from private_channels import ChannelRegistry, Scope, TokenStore
from private_channels.cran.dcf import parse_dcf
from private_channels.storage import MemoryStorage, Storage

from .support import at_once, slowed, test_app
from .test_cran_description import source_package, windows_zip
from .test_cran_upload import PREFIXES, Channel


@pytest.fixture(params=PREFIXES)
def channel(request: pytest.FixtureRequest) -> Channel:
    return Channel(MemoryStorage(), request.param)


@pytest.fixture
def versions(channel: Channel) -> dict[str, bytes]:
    """abc 1.0, 1.2 and 1.10 uploaded in that order (1.10 is the latest), xyz 0.1."""
    files = {
        "abc_1.0.tar.gz": source_package("abc", "1.0"),
        "abc_1.2.tar.gz": source_package("abc", "1.2"),
        "abc_1.10.tar.gz": source_package("abc", "1.10"),
        "xyz_0.1.tar.gz": source_package("xyz", "0.1", Imports="abc (>= 1.2)"),
    }
    for filename, data in files.items():
        channel.upload(data, filename)
    return files


def test_index_lists_the_latest_of_each_package(channel: Channel, versions: dict) -> None:  # type: ignore[type-arg]
    records = channel.index()
    assert [(r["Package"], r["Version"]) for r in records] == [("abc", "1.10"), ("xyz", "0.1")]
    content_type = channel.get("src/contrib/PACKAGES").headers["Content-Type"]
    assert content_type == "text/plain; charset=utf-8"
    gz = parse_dcf(gzip.decompress(channel.get("src/contrib/PACKAGES.gz").body).decode())
    assert gz == records
    rds = lzma.decompress(channel.get("src/contrib/PACKAGES.rds").body)
    assert rds.startswith(b"X\n\x00\x00\x00\x03")
    # CHARSXPs are length-prefixed: the version strings themselves, not "abc (>= 1.2)".
    assert b"\x00\x00\x00\x041.10" in rds and b"\x00\x00\x00\x031.2" not in rds


def test_latest_in_src_contrib_older_in_archive(channel: Channel, versions: dict) -> None:  # type: ignore[type-arg]
    latest = channel.get("src/contrib/abc_1.10.tar.gz")
    assert latest.body == versions["abc_1.10.tar.gz"]
    assert latest.content_type == "application/gzip"
    for old in ("abc_1.0.tar.gz", "abc_1.2.tar.gz"):
        channel.get(f"src/contrib/{old}", status=404)
        assert channel.get(f"src/contrib/Archive/abc/{old}").body == versions[old]
    channel.get("src/contrib/Archive/abc/abc_1.10.tar.gz", status=404)
    channel.get("src/contrib/Archive/xyz/abc_1.0.tar.gz", status=404)
    channel.get("src/contrib/Archive/abc/abc_9.9.tar.gz", status=404)


def test_archive_rds_lists_older_versions(channel: Channel, versions: dict) -> None:  # type: ignore[type-arg]
    body = channel.get("src/contrib/Meta/archive.rds").body
    assert body[:2] == b"\x1f\x8b"  # gzip, as remotes reads it
    data = gzip.decompress(body)
    assert b"abc/abc_1.0.tar.gz" in data and b"abc/abc_1.2.tar.gz" in data
    assert b"abc_1.10" not in data and b"xyz" not in data


def test_downloads_are_conditional_and_ranged(channel: Channel, versions: dict) -> None:  # type: ignore[type-arg]
    data = versions["abc_1.10.tar.gz"]
    first = channel.get("src/contrib/abc_1.10.tar.gz")
    assert first.headers["Content-Length"] == str(len(data))
    etag = first.headers["ETag"]
    assert "Last-Modified" in first.headers
    url = f"{channel.url}/src/contrib/abc_1.10.tar.gz"
    auth = {"X-Auth": channel.read}
    not_modified = channel.app.get(url, headers={**auth, "If-None-Match": etag}, status=304)
    assert not_modified.body == b""
    part = channel.app.get(url, headers={**auth, "Range": "bytes=0-9"}, status=206)
    assert part.body == data[:10]
    head = channel.app.head(url, headers=auth)
    assert head.headers["Content-Length"] == str(len(data)) and head.body == b""


def test_indexes_are_conditional_and_follow_uploads(channel: Channel, versions: dict) -> None:  # type: ignore[type-arg]
    url = f"{channel.url}/src/contrib/PACKAGES.rds"
    auth = {"X-Auth": channel.read}
    etag = channel.app.get(url, headers=auth).headers["ETag"]
    channel.app.get(url, headers={**auth, "If-None-Match": etag}, status=304)
    channel.upload(source_package("abc", "2.0"), "abc_2.0.tar.gz")
    fresh = channel.app.get(url, headers={**auth, "If-None-Match": etag}, status=200)
    assert fresh.headers["ETag"] != etag
    assert [r["Version"] for r in channel.index()] == ["2.0", "0.1"]


@pytest.mark.parametrize(
    "directory",
    ["src/contrib", "bin/windows/contrib/4.2", "bin/macosx/big-sur-arm64/contrib/4.4"],
)
def test_empty_directories_serve_empty_indexes(channel: Channel, directory: str) -> None:
    assert channel.get(f"{directory}/PACKAGES").body == b""
    assert gzip.decompress(channel.get(f"{directory}/PACKAGES.gz").body) == b""
    assert lzma.decompress(channel.get(f"{directory}/PACKAGES.rds").body).startswith(b"X\n")


def test_binary_directories_have_their_own_index(channel: Channel) -> None:
    channel.upload(source_package("abc", "1.0"), "abc_1.0.tar.gz")
    channel.upload(windows_zip("abc", "1.0"), "abc_1.0.zip", "cran_binary_package")
    (record,) = channel.index("bin/windows/contrib/4.2")
    assert record["Built"].startswith("R 4.2.2; x86_64-w64-mingw32")
    assert channel.get("bin/windows/contrib/4.2/abc_1.0.zip").content_type == "application/zip"
    channel.get("bin/windows/contrib/4.3/abc_1.0.zip", status=404)
    channel.get("src/contrib/abc_1.0.zip", status=404)
    assert "Built" not in channel.index()[0]


@pytest.mark.parametrize(
    "path",
    [
        "src/contrib/",
        "src/contrib/PACKAGES.json",
        "src/contrib/../contrib/PACKAGES",
        "src/contrib/abc_1.0.tar.bz2",
        "bin/windows/contrib/x.y/PACKAGES",
        "bin/linux/contrib/4.2/PACKAGES",
        "src/contrib/Meta/other.rds",
    ],
)
def test_other_paths_are_not_ours(channel: Channel, path: str) -> None:
    response = channel.get(path, status=404)
    assert "PACKAGES" not in response.text or "Nothing is at this URL" in response.text


@pytest.mark.parametrize(
    "path", ["src/contrib/PACKAGES", "src/contrib/abc_1.0.tar.gz", "src/contrib/Meta/archive.rds"]
)
def test_index_urls_are_read_only(channel: Channel, path: str) -> None:
    response = channel.app.post(
        f"{channel.url}/{path}", {"x": "y"}, headers={"X-Auth": channel.write}, status=405
    )
    assert "read-only" in response.status
    assert response.headers["Allow"] == "GET, HEAD"


def test_reading_needs_a_token_unless_public(channel: Channel, versions: dict) -> None:  # type: ignore[type-arg]
    url = f"{channel.url}/src/contrib/PACKAGES"
    denied = channel.app.get(url, status=401)
    assert denied.headers["WWW-Authenticate"] == 'Basic realm="private-channels"'
    channel.app.get(url, headers={"X-Auth": "f" * 48}, status=401)
    prefix = channel.url.rsplit("/team", 1)[0]
    by_path = channel.app.get(f"{prefix}/t/{channel.read}/team/src/contrib/PACKAGES")
    assert "Package: abc" in by_path.text
    channel.app.get(f"{prefix}/t/{'0' * 48}/team/src/contrib/PACKAGES", status=401)
    channel.app.get(f"{prefix}/t/{channel.read}/team/src/contrib/abc_1.10.tar.gz", status=200)


def test_public_channel_reads_anonymously(storage: Storage) -> None:
    ChannelRegistry(storage).create("open", public=True)
    channel = Channel(storage, "/api/repo")
    channel.url = "/api/repo/open"
    channel.write, _ = TokenStore(storage).create(channels=["open"], scope=Scope.WRITE)
    channel.upload(source_package(), "abc_1.0.tar.gz", token="write")
    assert "Package: abc" in channel.app.get("/api/repo/open/src/contrib/PACKAGES").text
    channel.upload(source_package("abc", "1.1"), "abc_1.1.tar.gz", token=None, status=401)


LINUX_AGENT = "R (4.2.2 x86_64-pc-linux-gnu x86_64 linux-gnu)"


def _linux_binary(version: str = "1.0", platform: str = "x86_64-pc-linux-gnu") -> bytes:
    built = f"R 4.2.2; {platform}; 2022-11-10 12:00:00 UTC; unix"
    return source_package("abc", version, Built=built, NeedsCompilation="yes")


def _upload_linux(channel: Channel, data: bytes, *, status: int = 200, **form: str):  # type: ignore[no-untyped-def]
    return channel.app.post(
        channel.url,
        {"filetype": "cran_binary_package", "distribution": "bookworm", **form},
        upload_files=[("content", "abc_1.0_R_x86_64-pc-linux-gnu.tar.gz", data)],
        headers={"X-Auth": channel.write},
        status=status,
    )


def test_linux_binaries_go_to_the_r_that_can_use_them(channel: Channel) -> None:
    source = source_package("abc", "1.0")
    binary = _linux_binary()
    channel.upload(source, "abc_1.0.tar.gz")
    answer = _upload_linux(channel, binary)
    assert "__linux__/bookworm/src/contrib/ (for R 4.2)" in answer.text
    url = f"{channel.url}/__linux__/bookworm/src/contrib/abc_1.0.tar.gz"
    auth = {"X-Auth": channel.read}

    def get(agent: str | None) -> bytes:
        headers = {**auth, "User-Agent": agent} if agent else auth
        response = channel.app.get(url, headers=headers)
        assert "User-Agent" in response.headers["Vary"]
        return response.body

    assert get(LINUX_AGENT) == binary
    assert get(f"R/4.2.2 {LINUX_AGENT}") == binary  # what Package Manager's docs set
    assert get("libcurl/7.88.1") == source  # R 4.2's libcurl when the option is unset
    assert get("R (4.3.1 x86_64-pc-linux-gnu x86_64 linux-gnu)") == source  # other R
    assert get("R (4.2.2 aarch64-unknown-linux-gnu aarch64 linux-gnu)") == source  # other arch
    assert get("curl/8.0") == source
    assert get(None) == source
    # The plain src/contrib never substitutes, and other distributions have none.
    plain = channel.app.get(f"{channel.url}/src/contrib/abc_1.0.tar.gz", headers={
        **auth, "User-Agent": LINUX_AGENT})  # fmt: skip
    assert plain.body == source
    other = channel.app.get(
        f"{channel.url}/__linux__/jammy/src/contrib/abc_1.0.tar.gz",
        headers={**auth, "User-Agent": LINUX_AGENT},
    )
    assert other.body == source
    # The indexes are those of src/contrib.
    linux_index = channel.get("__linux__/bookworm/src/contrib/PACKAGES").text
    assert linux_index == channel.get("src/contrib/PACKAGES").text
    channel.get("__linux__/bookworm/src/contrib/Meta/archive.rds")
    channel.get("__linux__/bookworm/bin/windows/contrib/4.2/PACKAGES", status=404)
    channel.get("__linux__/Bad Name/src/contrib/PACKAGES", status=404)


def test_a_binary_without_compiled_code_suits_any_architecture(channel: Channel) -> None:
    channel.upload(source_package("abc", "1.0"), "abc_1.0.tar.gz")
    binary = _linux_binary(platform="")
    _upload_linux(channel, binary)
    response = channel.app.get(
        f"{channel.url}/__linux__/bookworm/src/contrib/abc_1.0.tar.gz",
        headers={"X-Auth": channel.read, "User-Agent": LINUX_AGENT.replace("x86_64", "aarch64")},
    )
    assert response.body == binary


@pytest.mark.parametrize(
    ("form", "says"),
    [
        ({"distribution": "Bookworm!"}, "short lowercase name"),
        ({"filetype": "cran_source_package"}, "Linux system of a binary only"),
    ],
)
def test_linux_upload_rejections(channel: Channel, form: dict[str, str], says: str) -> None:
    response = _upload_linux(channel, _linux_binary(), status=400, **form)
    assert says in response.status
    assert channel.cran_keys() == []


def test_a_listed_file_missing_from_storage_is_404(channel: Channel, versions: dict) -> None:  # type: ignore[type-arg]
    (blob,) = [k for k in channel.cran_keys() if k.endswith("-abc_1.10.tar.gz")]
    channel.storage.delete(blob)
    response = channel.get("src/contrib/abc_1.10.tar.gz", status=404)
    assert "missing" in response.text


def test_an_unsatisfiable_range_is_416_and_closes_the_file(
    channel: Channel,
    versions: dict,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[type-arg]
) -> None:
    opened: list[io.BytesIO] = []
    real_open = channel.storage.open

    def open_and_keep(key: str):  # type: ignore[no-untyped-def]
        stream, stat = real_open(key)
        if "/blobs/" in key:
            opened.append(stream)  # type: ignore[arg-type]
        return stream, stat

    monkeypatch.setattr(channel.storage, "open", open_and_keep)
    size = len(versions["abc_1.10.tar.gz"])
    response = channel.app.get(
        f"{channel.url}/src/contrib/abc_1.10.tar.gz",
        headers={"X-Auth": channel.read, "Range": f"bytes={size + 10}-"},
        status=416,
    )
    assert response.headers["Content-Range"] == f"bytes */{size}"
    (blob,) = opened
    assert blob.closed


def test_a_directory_asked_for_at_once_by_many_is_parsed_once(
    channel: Channel,
    versions: dict,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[type-arg]
) -> None:
    """R clients at once on a process that has not parsed the directory yet: one reads
    and parses it, the others wait for its snapshot (a parse each of a large directory
    is tens of MB each)."""
    from private_channels.cran.store import CranStore

    parsed = slowed(monkeypatch, CranStore, "directory")
    cold = test_app(channel.storage, channel.url.removesuffix("/team"))  # nothing kept yet
    ask = partial(cold.get, f"{channel.url}/src/contrib/PACKAGES", headers={"X-Auth": channel.read})
    bodies = {response.body for response in at_once(ask)}
    assert len(bodies) == 1 and b"Package: abc\nVersion: 1.10\n" in bodies.pop()
    assert len(parsed) == 1
