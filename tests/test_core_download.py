"""The one download response: HEAD as GET, RFC 9110 ranges, large blocks, presigned URLs."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import IO, Any
from urllib.parse import urljoin

import pytest
from werkzeug.exceptions import HTTPException
from werkzeug.test import EnvironBuilder, run_wsgi_app

from private_channels.core.download import BLOCK_SIZE, SMALL_FILE, file_response
from private_channels.storage import MemoryStorage, PresignsURLs, Stat, Storage

from .test_cran_upload import Channel as CranChannel
from .test_pypi_upload import Channel as PythonChannel

KEY = "channels/c/x/blobs/abc/file.zip"
DATA = bytes(range(256)) * 64


@pytest.fixture
def blob() -> MemoryStorage:
    storage = MemoryStorage()
    storage.create(KEY, io.BytesIO(DATA))
    return storage


def answer(
    storage: Storage, method: str = "GET", **headers: str
) -> tuple[int, dict[str, str], bytes]:
    environ = EnvironBuilder(method=method, headers=headers).get_environ()
    try:
        response = file_response(
            environ, storage, KEY, etag="abc", mimetype="application/zip", cache_control="private"
        )
    except HTTPException as error:
        return error.code or 500, {}, b""
    return run(response, environ)


def run(response: Any, environ: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    """Call a response as a server would: status, headers (but Date), body."""
    body, status, headers = run_wsgi_app(response, environ)
    try:
        data = b"".join(body)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    headers.remove("Date")
    return int(status.split()[0]), dict(headers), data


@pytest.mark.parametrize(
    ("range_header", "status", "body"),
    [
        ("bytes=0-9", 206, DATA[:10]),
        ("bytes=-5", 206, DATA[-5:]),
        (f"bytes={len(DATA)}-", 416, b""),
        # RFC 9110 14.2: a server may ignore Range; an unknown unit must be ignored.
        ("items=0-9", 200, DATA),
        # Several ranges: the whole file rather than a wrong 416.
        ("bytes=0-1,5-6", 200, DATA),
        ("bytes=garbage", 416, b""),
    ],
)
def test_ranges_follow_rfc_9110(
    blob: MemoryStorage, range_header: str, status: int, body: bytes
) -> None:
    got_status, _, got_body = answer(blob, Range=range_header)
    assert (got_status, got_body) == (status, body)


def test_head_answers_what_get_would(blob: MemoryStorage) -> None:
    get_status, get_headers, _ = answer(blob, "GET")
    head_status, head_headers, _ = answer(blob, "HEAD")
    assert (head_status, head_headers) == (get_status, get_headers)
    blob.delete(KEY)
    assert answer(blob, "GET")[0] == answer(blob, "HEAD")[0] == 404


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_plain_download_answers_as_a_conditional_one(blob: MemoryStorage, method: str) -> None:
    # No precondition: the fast path; a precondition that does not hold: werkzeug's.
    plain = answer(blob, method)
    conditional = answer(blob, method, **{"If-None-Match": '"other"'})
    assert plain == conditional
    assert plain[0] == 200 and plain[2] == (DATA if method == "GET" else b"")
    assert plain[1]["Content-Length"] == str(len(DATA))
    metadata = EnvironBuilder(method=method).get_environ()
    text = file_response(metadata, blob, KEY, etag="m", mimetype="text/plain", cache_control="x")
    assert run(text, metadata)[1]["Content-Type"] == "text/plain; charset=utf-8"


def test_conditional_requests(blob: MemoryStorage) -> None:
    assert answer(blob, **{"If-None-Match": '"abc"'})[0] == 304
    assert answer(blob, **{"If-Range": '"other"', "Range": "bytes=0-1"})[:3:2] == (200, DATA)


class _Wrapper:
    """A server's ``wsgi.file_wrapper``; records the block size it was asked for."""

    sizes: list[int] = []  # noqa: RUF012

    def __init__(self, file: IO[bytes], block_size: int = 8192) -> None:
        self.file = file
        self.sizes.append(block_size)

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.file.read(8192):
            yield chunk

    def close(self) -> None:
        self.file.close()


def test_bodies_go_through_the_file_wrapper_in_large_blocks() -> None:
    storage = MemoryStorage()
    large = bytes(range(256)) * (SMALL_FILE // 256 + 1)
    storage.create(KEY, io.BytesIO(large))
    environ = EnvironBuilder().get_environ()
    environ["wsgi.file_wrapper"] = _Wrapper
    response = file_response(
        environ, storage, KEY, etag="abc", mimetype="application/zip", cache_control="private"
    )
    body = response(environ, lambda status, headers, exc_info=None: lambda data: None)
    assert isinstance(body, _Wrapper)
    assert b"".join(body) == large
    body.close()
    assert _Wrapper.sizes[-1] == BLOCK_SIZE >= 256 * 1024


class _CountingStorage(MemoryStorage):
    def __init__(self) -> None:
        super().__init__()
        self.opened = 0

    def open(self, key: str) -> tuple[IO[bytes], Stat]:
        self.opened += 1
        return super().open(key)


def test_small_files_are_read_once_per_version() -> None:
    """A file of at most SMALL_FILE bytes is read once and then served from memory for
    as long as its storage ETag stays; a new version is read anew, a deleted one is a 404,
    and ranges, conditionals and HEAD still answer from the storage."""
    storage = _CountingStorage()
    storage.create(KEY, io.BytesIO(DATA))
    assert len(DATA) <= SMALL_FILE
    for _ in range(3):
        assert answer(storage)[::2] == (200, DATA)
    assert storage.opened == 1
    _, headers, _ = answer(storage)
    assert headers["Content-Length"] == str(len(DATA)) and headers["ETag"] == '"abc"'
    storage.put(KEY, io.BytesIO(b"new version"))
    assert answer(storage)[::2] == (200, b"new version")
    assert answer(storage)[::2] == (200, b"new version")
    assert storage.opened == 2
    assert answer(storage, Range="bytes=0-2")[::2] == (206, b"new")
    assert answer(storage, "HEAD")[::2] == (200, b"")
    storage.delete(KEY)
    assert answer(storage)[0] == 404
    # Past the bound, every download reads the storage.
    storage.put(KEY, io.BytesIO(b"x" * (SMALL_FILE + 1)))
    before = storage.opened
    for _ in range(2):
        assert answer(storage)[::2] == (200, b"x" * (SMALL_FILE + 1))
    assert storage.opened == before + 2


def test_what_downloads_keep_of_a_storage_goes_with_it() -> None:
    """The small files kept in memory (up to 32 MiB a storage) and whether the storage
    presigns are let go with the storage: a process that makes storages (a test suite,
    an app per tenant) does not keep them all."""
    import gc
    import weakref

    from private_channels.core import download

    storages = [MemoryStorage(), _Presigning()]
    for storage in storages:
        storage.create(KEY, io.BytesIO(DATA))
        assert answer(storage)[0] == 200
    # The keys: weakref.ref gives the one reference of each storage the mapping holds.
    keys = [weakref.ref(storage) for storage in storages]
    caches = [weakref.ref(download._kept[key].small_files) for key in keys]
    assert [download.presigns(storage) for storage in storages] == [False, True]
    del storages, storage
    gc.collect()
    assert [key in download._kept for key in keys] == [False, False]
    assert [cache() for cache in caches] == [None, None]


class _Unhashable(MemoryStorage):
    """A storage that cannot be a key (a dataclass with ``eq`` and no ``frozen``)."""

    __hash__ = None  # type: ignore[assignment]


def test_a_storage_that_cannot_be_a_key_is_served_all_the_same() -> None:
    storage = _Unhashable()
    storage.create(KEY, io.BytesIO(DATA))
    for _ in range(2):
        assert answer(storage)[::2] == (200, DATA)


class _StaleStat(MemoryStorage):
    """A storage whose stat still shows a file's earlier, smaller version: a new one
    written between a download's stat and its read."""

    def stat(self, key: str) -> Stat:
        return Stat(size=3, mtime=0.0, etag="old")


@pytest.mark.parametrize("size", [10, SMALL_FILE + 1])
def test_a_file_grown_since_its_stat_is_sent_whole(size: int) -> None:
    storage = _StaleStat()
    content = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    storage.create(KEY, io.BytesIO(content))
    for _ in range(2):
        status, headers, body = answer(storage)
        assert (status, body) == (200, content)
        assert headers["Content-Length"] == str(size)  # as opened, not as first stat'ed


class _Presigning(MemoryStorage):
    def presigned_url(self, key: str, expires: int) -> str:
        return f"https://store.example/{key}?expires={expires}"


def test_presigned_redirects_through_the_protocol(blob: MemoryStorage) -> None:
    storage = _Presigning()
    assert isinstance(storage, PresignsURLs) and not isinstance(blob, PresignsURLs)
    environ = EnvironBuilder().get_environ()
    response = file_response(
        environ, storage, KEY, etag="e", mimetype="x/y", cache_control="private", redirect=60,
        vary=["User-Agent"],
    )  # fmt: skip
    status, headers, _ = run(response, environ)
    assert status == 302
    assert headers["Location"] == f"https://store.example/{KEY}?expires=60"
    assert headers["Cache-Control"] == "private, no-store"
    assert headers["Vary"] == "User-Agent"
    # A storage that cannot presign serves the bytes, whatever was asked.
    served = file_response(
        environ, blob, KEY, etag="e", mimetype="x/y", cache_control="private", redirect=60
    )
    assert run(served, environ)[0] == 200


def _vanish_blob(storage: Storage, suffix: str) -> None:
    (key,) = [k for k in storage.list("channels/") if "/blobs/" in k and k.endswith(suffix)]
    storage.delete(key)


def test_head_of_a_vanished_python_file_is_404_like_get(storage: Storage, tmp_path: Any) -> None:
    from .packages import make_wheel

    team = PythonChannel(storage, "/api/repo")
    wheel = make_wheel(tmp_path, "demo", "1.0")
    team.post(wheel)
    page = team.app.get(
        "/api/repo/team/simple/demo/",
        headers={"X-Auth": team.token, "Accept": "application/vnd.pypi.simple.v1+json"},
    ).json
    url = urljoin("/api/repo/team/simple/demo/", page["files"][0]["url"])
    team.app.head(url, headers={"X-Auth": team.token}, status=200)
    _vanish_blob(storage, ".whl")
    team.app.get(url, headers={"X-Auth": team.token}, status=404)
    team.app.head(url, headers={"X-Auth": team.token}, status=404)


def test_head_of_a_vanished_r_package_is_404_like_get(storage: Storage) -> None:
    from .test_cran_description import source_package

    channel = CranChannel(storage, "/api/repo")
    channel.upload(source_package(), "abc_1.0.tar.gz")
    url = f"{channel.url}/src/contrib/abc_1.0.tar.gz"
    channel.app.head(url, headers={"X-Auth": channel.read}, status=200)
    _vanish_blob(storage, ".tar.gz")
    channel.app.get(url, headers={"X-Auth": channel.read}, status=404)
    channel.app.head(url, headers={"X-Auth": channel.read}, status=404)
