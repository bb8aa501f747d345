"""The simple index, downloads and the yank/delete API, through webtest under prefixes."""

from __future__ import annotations

import datetime as dt
import email.parser
import hashlib
import io
import json
import random
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import urljoin, urlsplit

import pytest
import webtest
from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename
from werkzeug.test import EnvironBuilder

from private_channels.channels import Channel, ChannelRegistry
from private_channels.core.download import SMALL_FILE
from private_channels.pypi.simple import SimpleIndexMiddleware, negotiate
from private_channels.pypi.store import DeletedFilenameError, FileRecord, PythonStore
from private_channels.storage import (
    FileSystemStorage,
    MemoryStorage,
    PresignsURLs,
    Stat,
    Storage,
)
from private_channels.tokens import Scope, TokenStore

from .packages import make_sdist, make_wheel
from .support import at_once, cli, slowed, test_app
from .test_pypi_render import parse_html

PIP_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
    "text/html; q=0.01"
)
UV_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
    "text/html;q=0.01"
)
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
PREFIXES = ["/api/repo", "/deep/er/mount/point"]


def wheel_metadata(path: Path) -> bytes:
    with zipfile.ZipFile(path) as archive:
        (member,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return archive.read(member)


def publish(
    storage: Storage,
    channel: Channel,
    path: Path,
    *,
    uploaded: float | None = None,
    display_name: str | None = None,
) -> FileRecord:
    """Put a wheel or sdist in a channel the way an upload commits it (until uploads land)."""
    data = path.read_bytes()
    if path.name.endswith(".whl"):
        name, version, _, _ = parse_wheel_filename(path.name)
        metadata: bytes | None = wheel_metadata(path)
    else:
        name, version = parse_sdist_filename(path.name)
        metadata = None
    fields = email.parser.BytesParser().parsebytes(metadata) if metadata else None
    record = FileRecord(
        filename=path.name,
        project=canonicalize_name(name),
        version=str(version),
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        blake2b_256=hashlib.blake2b(data, digest_size=32).hexdigest(),
        upload_time=time.time() if uploaded is None else uploaded,
        requires_python=fields.get("Requires-Python") if fields else None,
        metadata_sha256=hashlib.sha256(metadata).hexdigest() if metadata else None,
    )
    display = display_name or (fields["Name"] if fields else name)
    PythonStore(storage).add_file(
        channel, record, io.BytesIO(data), display_name=display, metadata=metadata
    )
    return record


class Repo:
    """A channel with a few files, a webtest app under a prefix, and tokens."""

    def __init__(self, storage: Storage, prefix: str, tmp: Path, *, public: bool = False) -> None:
        self.storage = storage
        self.prefix = prefix
        self.channel = ChannelRegistry(storage).create("team", public=public)
        tokens = TokenStore(storage)
        self.read, _ = tokens.create(channels=["team"], scope=Scope.READ)
        self.write, _ = tokens.create(channels=["team"], scope=Scope.WRITE)
        self.admin, _ = tokens.create(channels=["team"], scope=Scope.ADMIN)
        self.app = test_app(storage, prefix)
        self.tmp = tmp
        self.wheel_path = make_wheel(tmp, "Holy_Grail", "1.0", requires_python=">=3.8,<4")
        self.sdist_path = make_sdist(tmp, "Holy_Grail", "0.9")
        self.wheel = publish(storage, self.channel, self.wheel_path, uploaded=1700000000.25)
        self.sdist = publish(storage, self.channel, self.sdist_path, uploaded=1600000000.0)

    def url(self, path: str) -> str:
        return f"{self.prefix}/team{path}"

    def get(self, path: str, *, who: str | None = "read", **kwargs: Any) -> webtest.TestResponse:
        headers = dict(kwargs.pop("headers", {}))
        if who is not None:
            headers["X-Auth"] = getattr(self, who)
        return self.app.get(self.url(path), headers=headers, **kwargs)

    def post(self, path: str, params: Any = None, *, who: str = "admin", **kwargs: Any) -> Any:
        headers = {"X-Auth": getattr(self, who), **kwargs.pop("headers", {})}
        return self.app.post(self.url(path), params, headers=headers, **kwargs)


@pytest.fixture(params=PREFIXES)
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> Repo:
    """Under each prefix, on the memory backend: for what does not depend on storage."""
    return Repo(MemoryStorage(), request.param, tmp_path)


@pytest.fixture
def backend_repo(storage: Storage, tmp_path: Path) -> Repo:
    """On every storage backend: for streaming, conditional requests and changes."""
    return Repo(storage, "/api/repo", tmp_path)


def follow(base: str, link: str) -> str:
    """Resolve a link as a client does, and return the path."""
    return urlsplit(urljoin(f"http://testserver{base}", link)).path


# -- the root page -----------------------------------------------------------------


def test_root_page_html_default(repo: Repo) -> None:
    response = repo.get("/simple/")
    assert response.status_int == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Vary"] == "Accept"
    assert response.headers["ETag"]
    assert "max-age=0" in response.headers["Cache-Control"]
    assert "private" in response.headers["Cache-Control"]
    parsed = parse_html(response.body)
    assert parsed.meta["pypi:repository-version"] == "1.1"
    assert [(attrs["href"], text) for attrs, text in parsed.anchors] == [
        ("holy-grail/", "Holy_Grail")
    ]
    link = follow(repo.url("/simple/"), "holy-grail/")
    assert link == repo.url("/simple/holy-grail/")
    assert repo.app.get(link, headers={"X-Auth": repo.read}).status_int == 200


def test_root_page_json(repo: Repo) -> None:
    response = repo.get("/simple/", headers={"Accept": PIP_ACCEPT})
    assert response.headers["Content-Type"] == JSON_TYPE
    assert response.json == {"meta": {"api-version": "1.1"}, "projects": [{"name": "Holy_Grail"}]}


def test_root_page_of_a_channel_without_python_packages(storage: Storage) -> None:
    ChannelRegistry(storage).create("empty", public=True)
    app = test_app(storage, "/api/repo")
    response = app.get("/api/repo/empty/simple/", headers={"Accept": JSON_TYPE})
    assert response.json == {"meta": {"api-version": "1.1"}, "projects": []}


def test_simple_without_slash_redirects_relatively(repo: Repo) -> None:
    response = repo.get("/simple", status=301)
    assert follow(repo.url("/simple"), response.headers["Location"]) == repo.url("/simple/")


# -- the project page ----------------------------------------------------------------


def test_project_page_json_every_field(backend_repo: Repo) -> None:
    repo = backend_repo
    response = repo.get("/simple/holy-grail/", headers={"Accept": UV_ACCEPT})
    assert response.headers["Content-Type"] == JSON_TYPE
    assert response.headers["Vary"] == "Accept"
    page = response.json
    assert page["meta"]["api-version"] == "1.1"
    assert page["name"] == "holy-grail"
    assert sorted(page["versions"]) == ["0.9", "1.0"]
    files = {f["filename"]: f for f in page["files"]}
    assert set(files) == {repo.wheel.filename, repo.sdist.filename}
    wheel = files[repo.wheel.filename]
    wheel_bytes = repo.wheel_path.read_bytes()
    assert wheel["hashes"] == {"sha256": hashlib.sha256(wheel_bytes).hexdigest()}
    assert wheel["requires-python"] == ">=3.8,<4"
    assert wheel["yanked"] is False
    metadata = wheel_metadata(repo.wheel_path)
    assert wheel["core-metadata"] == {"sha256": hashlib.sha256(metadata).hexdigest()}
    assert "dist-info-metadata" not in wheel
    assert wheel["size"] == len(wheel_bytes)
    assert wheel["upload-time"] == "2023-11-14T22:13:20.250000Z"
    sdist = files[repo.sdist.filename]
    assert sdist["core-metadata"] is False
    assert "requires-python" not in sdist
    assert sdist["upload-time"] == "2020-09-13T12:26:40.000000Z"
    assert sdist["size"] == repo.sdist_path.stat().st_size
    # The URL, resolved against the page, downloads exactly the file.
    page_url = repo.url("/simple/holy-grail/")
    download = repo.app.get(follow(page_url, wheel["url"]), headers={"X-Auth": repo.read})
    assert download.body == wheel_bytes
    assert (
        repo.app.get(
            follow(page_url, wheel["url"] + ".metadata"), headers={"X-Auth": repo.read}
        ).body
        == metadata
    )


def test_project_page_html_every_field(repo: Repo) -> None:
    response = repo.get("/simple/holy-grail/", headers={"Accept": "text/html"})
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert 'data-requires-python="&gt;=3.8,&lt;4"' in response.text
    parsed = parse_html(response.body)
    assert parsed.meta["pypi:repository-version"] == "1.1"
    anchors = {text: attrs for attrs, text in parsed.anchors}
    wheel_bytes = repo.wheel_path.read_bytes()
    metadata = wheel_metadata(repo.wheel_path)
    digest = hashlib.sha256(wheel_bytes).hexdigest()
    wheel = anchors[repo.wheel.filename]
    url, _, fragment = (wheel["href"] or "").partition("#")
    assert fragment == f"sha256={digest}"
    assert wheel["data-requires-python"] == ">=3.8,<4"
    assert wheel["data-core-metadata"] == f"sha256={hashlib.sha256(metadata).hexdigest()}"
    assert wheel["data-dist-info-metadata"] == wheel["data-core-metadata"]
    assert "data-yanked" not in wheel
    assert url.rsplit("/", 1)[1] == repo.wheel.filename  # text matches the last component
    page_url = repo.url("/simple/holy-grail/")
    assert follow(page_url, url).startswith(repo.url("/files/"))
    got = repo.app.get(follow(page_url, url), headers={"X-Auth": repo.read})
    assert got.body == wheel_bytes
    sdist = anchors[repo.sdist.filename]
    assert set(sdist) == {"href"}


def test_vendor_html_media_type(repo: Repo) -> None:
    response = repo.get(
        "/simple/holy-grail/", headers={"Accept": "application/vnd.pypi.simple.v1+html"}
    )
    assert response.headers["Content-Type"].startswith("application/vnd.pypi.simple.v1+html")
    assert response.text.startswith("<!DOCTYPE html>")


@pytest.mark.parametrize(
    "name", ["Holy_Grail", "HOLY-GRAIL", "holy.grail", "holy__grail", "Holy-Grail"]
)
def test_non_normalized_name_redirects_to_normalized_url(repo: Repo, name: str) -> None:
    page = repo.url(f"/simple/{name}/")
    response = repo.app.get(page, headers={"X-Auth": repo.read}, status=301)
    assert follow(page, response.headers["Location"]) == repo.url("/simple/holy-grail/")


def test_missing_slash_redirects(repo: Repo) -> None:
    page = repo.url("/simple/Holy_Grail")
    response = repo.app.get(page, headers={"X-Auth": repo.read}, status=301)
    assert follow(page, response.headers["Location"]) == repo.url("/simple/holy-grail/")


def test_redirect_keeps_a_path_token(repo: Repo) -> None:
    page = f"{repo.prefix}/t/{repo.read}/team/simple/Holy_Grail/"
    response = repo.app.get(page, status=301)
    assert follow(page, response.headers["Location"]) == (
        f"{repo.prefix}/t/{repo.read}/team/simple/holy-grail/"
    )
    # And the page's relative links keep it too.
    target = follow(page, response.headers["Location"])
    listing = repo.app.get(target, headers={"Accept": JSON_TYPE}).json
    file_path = follow(target, listing["files"][0]["url"])
    assert file_path.startswith(f"{repo.prefix}/t/{repo.read}/team/files/")
    assert repo.app.get(file_path).status_int == 200


@pytest.mark.parametrize("path", ["/simple/unknown/", "/simple/a b/", "/simple/holy-grail/x"])
def test_unknown_project_is_404(repo: Repo, path: str) -> None:
    response = repo.get(path, status=404)
    assert "not in this channel" in response.text


@pytest.mark.parametrize("path", ["/simple/", "/simple/holy-grail/", "/simple/Holy_Grail/"])
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_writing_to_an_index_page_is_405(repo: Repo, path: str, method: str) -> None:
    response = repo.app.request(
        repo.url(path), method=method, headers={"X-Auth": repo.write}, status=405
    )
    assert response.headers["Allow"] == "GET, HEAD"
    assert "read-only" in response.text
    assert "read-only" in response.status


def test_index_needs_a_token_on_a_private_channel(repo: Repo) -> None:
    response = repo.get("/simple/", who=None, status=401)
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    repo.get("/simple/holy-grail/", who=None, status=401)
    repo.get(f"/files/{repo.wheel.sha256}/{repo.wheel.filename}", who=None, status=401)


def test_public_channel_is_readable_anonymously(storage: Storage, tmp_path: Path) -> None:
    repo = Repo(storage, "/api/repo", tmp_path, public=True)
    response = repo.get("/simple/holy-grail/", who=None)
    assert "public" in response.headers["Cache-Control"]
    download = repo.get(f"/files/{repo.wheel.sha256}/{repo.wheel.filename}", who=None)
    assert download.headers["Cache-Control"] == "public, max-age=31536000, immutable"


def test_head_of_a_page(repo: Repo) -> None:
    get = repo.get("/simple/holy-grail/")
    head = repo.app.head(repo.url("/simple/holy-grail/"), headers={"X-Auth": repo.read})
    assert head.body == b""
    assert head.headers["Content-Length"] == str(len(get.body))
    assert head.headers["ETag"] == get.headers["ETag"]


# -- negotiation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "text/html"),
        ("", "text/html"),
        ("*/*", "text/html"),
        ("text/*", "text/html"),
        ("text/html", "text/html"),
        (PIP_ACCEPT, JSON_TYPE),
        (UV_ACCEPT, JSON_TYPE),
        ("application/vnd.pypi.simple.v1+json", JSON_TYPE),
        ("application/vnd.pypi.simple.latest+json", JSON_TYPE),
        ("application/vnd.pypi.simple.v1+html", "application/vnd.pypi.simple.v1+html"),
        ("application/vnd.pypi.simple.latest+html", "application/vnd.pypi.simple.v1+html"),
        ("application/*", JSON_TYPE),
        ("text/html, application/vnd.pypi.simple.v1+json", JSON_TYPE),
        ("text/html;q=0.9, application/vnd.pypi.simple.v1+json;q=0.5", "text/html"),
        ("application/vnd.pypi.simple.v1+json;q=0, */*", "text/html"),
        ("text/html;q=0, */*;q=0.5", "application/vnd.pypi.simple.v1+html"),
        ("*/*;q=0.1, application/vnd.pypi.simple.v1+html", "application/vnd.pypi.simple.v1+html"),
        ("application/json", None),
        ("application/vnd.pypi.simple.v2+json", None),
        ("image/png, text/plain", None),
        ("text/html;q=0", None),
    ],
)
def test_negotiate(accept: str | None, expected: str | None) -> None:
    assert negotiate(accept) == expected


@pytest.mark.parametrize("path", ["/simple/", "/simple/holy-grail/"])
def test_unacceptable_accept_is_406(repo: Repo, path: str) -> None:
    response = repo.get(path, headers={"Accept": "application/json"}, status=406)
    assert response.headers["Vary"] == "Accept"
    assert "application/vnd.pypi.simple.v1+json" in response.text


@pytest.mark.parametrize(
    ("value", "content_type"),
    [
        ("application/vnd.pypi.simple.v1+json", JSON_TYPE),
        ("text/html", "text/html; charset=utf-8"),
    ],
)
def test_format_parameter_overrides_accept(repo: Repo, value: str, content_type: str) -> None:
    response = repo.get(
        "/simple/holy-grail/", params={"format": value}, headers={"Accept": "image/png"}
    )
    assert response.headers["Content-Type"] == content_type
    repo.get("/simple/", params={"format": "application/json"}, status=406)


# -- conditional requests and caching ------------------------------------------------


def test_page_etag_answers_304_and_differs_by_format(repo: Repo) -> None:
    html = repo.get("/simple/holy-grail/")
    json_page = repo.get("/simple/holy-grail/", headers={"Accept": PIP_ACCEPT})
    assert html.headers["ETag"] != json_page.headers["ETag"]
    again = repo.get(
        "/simple/holy-grail/",
        headers={"Accept": PIP_ACCEPT, "If-None-Match": json_page.headers["ETag"]},
        status=304,
    )
    assert again.body == b""
    assert again.headers["ETag"] == json_page.headers["ETag"]
    root = repo.get("/simple/")
    repo.get("/simple/", headers={"If-None-Match": root.headers["ETag"]}, status=304)


def test_a_change_shows_at_once_and_changes_the_etag(backend_repo: Repo) -> None:
    repo = backend_repo
    before = repo.get("/simple/holy-grail/", headers={"Accept": JSON_TYPE})
    root_before = repo.get("/simple/")
    newer = publish(repo.storage, repo.channel, make_wheel(repo.tmp, "Holy_Grail", "2.0"))
    other = make_wheel(repo.tmp, "Other", "1.0")
    publish(repo.storage, repo.channel, other)
    after = repo.get(
        "/simple/holy-grail/",
        headers={"Accept": JSON_TYPE, "If-None-Match": before.headers["ETag"]},
    )
    assert after.status_int == 200
    assert newer.filename in {f["filename"] for f in after.json["files"]}
    assert "2.0" in after.json["versions"]
    root_after = repo.get("/simple/", headers={"If-None-Match": root_before.headers["ETag"]})
    assert root_after.status_int == 200
    assert "other/" in root_after.text


class CountingStorage:
    """A storage that counts what the index does with it."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.calls: list[tuple[str, str]] = []

    def open(self, key: str) -> tuple[IO[bytes], Stat]:
        self.calls.append(("open", key))
        return self.inner.open(key)

    def stat(self, key: str) -> Stat:
        self.calls.append(("stat", key))
        return self.inner.stat(key)

    def list(self, prefix: str) -> Iterator[str]:
        self.calls.append(("list", prefix))
        return self.inner.list(prefix)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


# A module that does not compress below SMALL_FILE: a wheel served from the storage.
LARGE = "DATA = " + repr(random.Random(0).randbytes(100_000)) + "\n"


def test_pages_cost_one_stat_when_cached_and_never_list(storage: Storage, tmp_path: Path) -> None:
    channel = ChannelRegistry(storage).create("team", public=True)
    for version in ("1.0", "1.1"):
        publish(storage, channel, make_wheel(tmp_path, "demo", version))
    counting = CountingStorage(storage)

    def nothing(environ, start_response):  # type: ignore[no-untyped-def]
        raise AssertionError("the index must serve this")

    middleware = SimpleIndexMiddleware(nothing, counting)  # type: ignore[arg-type]

    def app(environ, start_response):  # type: ignore[no-untyped-def]
        environ["private_channels.channel"] = channel
        environ["private_channels.identity"] = None
        environ["SCRIPT_NAME"] += "/team"
        return middleware(environ, start_response)

    client = webtest.TestApp(app)
    project_key = PythonStore(storage).project_key(channel, "demo")
    for path in ("/simple/demo/", "/simple/"):
        client.get(path)
        counting.calls.clear()
        for _ in range(3):
            client.get(path)
        assert all(call == "stat" for call, _ in counting.calls), counting.calls
        assert len(counting.calls) == 3
    # Downloads check the record in the cached document too: one stat; then a small
    # file kept in memory is checked with a stat, a larger one is opened.
    record = publish(storage, channel, make_wheel(tmp_path, "demo", "1.2"))
    blob = PythonStore(storage).blob_key(channel, record)
    client.get(f"/files/{record.sha256}/{record.filename}")
    counting.calls.clear()
    client.get(f"/files/{record.sha256}/{record.filename}")
    # (An object store that presigns URLs keeps no file in memory: its redirect does not
    # pass the bytes through the server.)
    small_read = ("open" if isinstance(storage, PresignsURLs) else "stat", blob)
    assert counting.calls == [("stat", project_key), small_read]
    large = publish(storage, channel, make_wheel(tmp_path, "demo", "1.3", module_source=LARGE))
    blob = PythonStore(storage).blob_key(channel, large)
    client.get(f"/files/{large.sha256}/{large.filename}")
    counting.calls.clear()
    client.get(f"/files/{large.sha256}/{large.filename}")
    large_read = [("stat", blob)] if not isinstance(storage, PresignsURLs) else []
    assert counting.calls == [("stat", project_key), *large_read, ("open", blob)]
    # A fresh process whose client has the page current answers 304 from a stat alone.
    etag = client.get("/simple/demo/").headers["ETag"]
    fresh = webtest.TestApp(app)
    middleware.cache = SimpleIndexMiddleware(nothing, counting).cache  # type: ignore[arg-type]
    counting.calls.clear()
    fresh.get("/simple/demo/", headers={"If-None-Match": etag}, status=304)
    assert counting.calls == [("stat", project_key)]
    # A change made behind its back (another process) is seen on the next request.
    publish(storage, channel, make_wheel(tmp_path, "demo", "2.0"))
    assert "demo-2.0-py3-none-any.whl" in client.get("/simple/demo/").text


def test_two_processes_on_one_storage_see_each_others_writes(tmp_path: Path) -> None:
    root = tmp_path / "shared"
    first, second = FileSystemStorage(root), FileSystemStorage(root)
    channel = ChannelRegistry(first).create("team", public=True)
    app_a, app_b = test_app(first), test_app(second)
    publish(first, channel, make_wheel(tmp_path, "demo", "1.0"))
    for app in (app_a, app_b):  # both render and cache the page
        assert "demo-1.0" in app.get("/api/repo/team/simple/demo/").text
    publish(second, channel, make_wheel(tmp_path, "demo", "1.1"))
    publish(second, channel, make_wheel(tmp_path, "fresh", "1.0"))
    assert "demo-1.1" in app_a.get("/api/repo/team/simple/demo/").text
    assert "fresh/" in app_a.get("/api/repo/team/simple/").text


# -- files -----------------------------------------------------------------------------


def file_path(record: FileRecord, suffix: str = "") -> str:
    return f"/files/{record.sha256}/{record.filename}{suffix}"


def test_download_headers(backend_repo: Repo) -> None:
    repo = backend_repo
    data = repo.wheel_path.read_bytes()
    response = repo.get(file_path(repo.wheel))
    assert response.body == data
    assert response.headers["Content-Length"] == str(len(data))
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert "Content-Encoding" not in response.headers
    assert response.headers["ETag"] == f'"{repo.wheel.sha256}"'
    assert response.headers["Last-Modified"]
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["Cache-Control"] == "private, max-age=31536000, immutable"


def test_sdist_is_not_sent_gzip_encoded(backend_repo: Repo) -> None:
    repo = backend_repo
    # A Content-Encoding: gzip would make clients unpack it and then fail the hash.
    response = repo.get(file_path(repo.sdist))
    assert "Content-Encoding" not in response.headers
    assert response.body == repo.sdist_path.read_bytes()


def test_download_conditional_and_ranges(backend_repo: Repo) -> None:
    repo = backend_repo
    data = repo.wheel_path.read_bytes()
    first = repo.get(file_path(repo.wheel))
    repo.get(file_path(repo.wheel), headers={"If-None-Match": first.headers["ETag"]}, status=304)
    repo.get(
        file_path(repo.wheel),
        headers={"If-Modified-Since": first.headers["Last-Modified"]},
        status=304,
    )
    part = repo.get(file_path(repo.wheel), headers={"Range": "bytes=10-19"}, status=206)
    assert part.body == data[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    tail = repo.get(file_path(repo.wheel), headers={"Range": "bytes=-5"}, status=206)
    assert tail.body == data[-5:]
    repo.get(file_path(repo.wheel), headers={"Range": f"bytes={len(data) + 5}-"}, status=416)


def test_head_of_a_file(backend_repo: Repo) -> None:
    repo = backend_repo
    response = repo.app.head(repo.url(file_path(repo.wheel)), headers={"X-Auth": repo.read})
    assert response.body == b""
    assert response.headers["Content-Length"] == str(repo.wheel.size)
    assert response.headers["ETag"] == f'"{repo.wheel.sha256}"'


def test_metadata_is_byte_identical_to_the_wheels(backend_repo: Repo) -> None:
    repo = backend_repo
    metadata = wheel_metadata(repo.wheel_path)
    response = repo.get(file_path(repo.wheel, ".metadata"))
    assert response.body == metadata
    assert hashlib.sha256(response.body).hexdigest() == repo.wheel.metadata_sha256
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.headers["Content-Length"] == str(len(metadata))
    repo.get(file_path(repo.sdist, ".metadata"), status=404)  # none for an sdist


@pytest.mark.parametrize(
    "path",
    [
        "/files/{sha}/nothing-1.0.tar.gz",
        "/files/{bad}/{name}",
        "/files/{sha}/",
        "/files/{sha}/..",
        "/files/{sha}/a/b",
        "/files/{sha}",
        "/files/{upper}/{name}",
        # Filenames that parse, but as no valid project, which no key can name.
        "/files/{sha}/_x-1.0.tar.gz",
        "/files/{sha}/-x-1.0-py3-none-any.whl.metadata",
    ],
)
def test_unknown_files_are_404(repo: Repo, path: str) -> None:
    path = path.format(
        sha=repo.wheel.sha256,
        bad="x" * 64,
        upper=repo.wheel.sha256.upper(),
        name=repo.wheel.filename,
    )
    repo.get(path, status=404)


def test_file_of_another_sha_is_404(repo: Repo) -> None:
    repo.get(f"/files/{repo.sdist.sha256}/{repo.wheel.filename}", status=404)


def test_writing_a_file_is_405(repo: Repo) -> None:
    response = repo.post(file_path(repo.wheel), b"x", status=405)
    assert response.headers["Allow"] == "GET, HEAD"


# -- yank, unyank, delete over HTTP ----------------------------------------------------


def files_of(repo: Repo) -> dict[str, dict[str, Any]]:
    page = repo.get("/simple/holy-grail/", headers={"Accept": JSON_TYPE}).json
    return {f["filename"]: f for f in page["files"]}


def test_yank_and_unyank_a_file(backend_repo: Repo) -> None:
    repo = backend_repo
    response = repo.post(
        "/-/yank", {"filename": repo.wheel.filename, "reason": "Breaks on <Windows>"}
    )
    assert response.json == {
        "action": "yank",
        "project": "holy-grail",
        "files": [repo.wheel.filename],
    }
    assert files_of(repo)[repo.wheel.filename]["yanked"] == "Breaks on <Windows>"
    html = parse_html(repo.get("/simple/holy-grail/").body)
    anchors = {text: attrs for attrs, text in html.anchors}
    assert anchors[repo.wheel.filename]["data-yanked"] == "Breaks on <Windows>"
    # Still downloadable: a yanked file is kept for those who pinned it.
    repo.get(file_path(repo.wheel))
    repo.post("/-/unyank", {"filename": repo.wheel.filename})
    assert files_of(repo)[repo.wheel.filename]["yanked"] is False


def test_yank_a_release_without_reason(repo: Repo) -> None:
    extra = publish(repo.storage, repo.channel, make_sdist(repo.tmp, "Holy_Grail", "1.0"))
    response = repo.post("/-/yank", {"project": "Holy_Grail", "version": "1.0.0"})
    assert sorted(response.json["files"]) == sorted([repo.wheel.filename, extra.filename])
    files = files_of(repo)
    assert files[repo.wheel.filename]["yanked"] is True
    assert files[extra.filename]["yanked"] is True
    assert files[repo.sdist.filename]["yanked"] is False
    anchors = {t: a for a, t in parse_html(repo.get("/simple/holy-grail/").body).anchors}
    assert anchors[repo.wheel.filename]["data-yanked"] == ""


def test_delete_a_file(backend_repo: Repo) -> None:
    repo = backend_repo
    repo.post("/-/delete", {"filename": repo.wheel.filename})
    assert set(files_of(repo)) == {repo.sdist.filename}
    assert files_of(repo)
    repo.get(file_path(repo.wheel), status=404)
    repo.get(file_path(repo.wheel, ".metadata"), status=404)
    with pytest.raises(DeletedFilenameError):
        publish(repo.storage, repo.channel, repo.wheel_path)


def test_admin_api_multipart_form(repo: Repo) -> None:
    response = repo.post(
        "/-/yank",
        {"filename": repo.sdist.filename, "reason": "old"},
        content_type="multipart/form-data",
    )
    assert response.json["files"] == [repo.sdist.filename]


@pytest.mark.parametrize("token", ["read", "write"])
def test_admin_api_needs_admin_scope(repo: Repo, token: str) -> None:
    repo.post("/-/yank", {"filename": repo.wheel.filename}, who=token, status=403)
    assert files_of(repo)[repo.wheel.filename]["yanked"] is False


def test_admin_api_without_token_is_401(repo: Repo) -> None:
    repo.app.post(repo.url("/-/delete"), {"filename": repo.wheel.filename}, status=401)


@pytest.mark.parametrize(
    ("form", "status", "words"),
    [
        ({}, 400, "filename"),
        ({"project": "holy-grail"}, 400, "version"),
        ({"filename": "not a dist"}, 400, "neither"),
        ({"filename": "../x-1.0.tar.gz"}, 400, "path"),
        ({"filename": "holy_grail-7.0.tar.gz"}, 404, "no file"),
        ({"project": "nothing", "version": "1"}, 404, "no file"),
        ({"project": "..", "version": "1"}, 400, "not a valid project name"),
        ({"project": "caf\u00e9", "version": "1"}, 400, "not a valid project name"),
        ({"filename": "_x-1.0.tar.gz"}, 400, "neither"),
        ({"filename": "holy_grail-1.0.tar.gz", "reason": "x" * 2000}, 400, "longer"),
    ],
)
def test_admin_api_errors(repo: Repo, form: dict[str, str], status: int, words: str) -> None:
    action = "yank"
    if "reason" in form and len(form["reason"]) > 1000:
        form = {**form, "filename": repo.wheel.filename}
    response = repo.post(f"/-/{action}", form, status=status)
    assert words in response.text
    assert words in response.status


def test_admin_api_refuses_forms_from_other_sites(repo: Repo) -> None:
    """An admin whose browser holds Basic credentials must not yank because a page of
    another site posted a form."""
    response = repo.post(
        "/-/yank",
        {"filename": repo.wheel.filename},
        headers={"Origin": "https://evil.example"},
        status=403,
    )
    assert "another site" in response.text
    assert files_of(repo)[repo.wheel.filename]["yanked"] is False


def test_admin_api_get_is_405(repo: Repo) -> None:
    response = repo.get("/-/yank", who="admin", status=405)
    assert response.headers["Allow"] == "POST"


# -- the command line ------------------------------------------------------------------


def test_cli_yank_unyank_delete(tmp_path: Path) -> None:
    root = tmp_path / "data"
    storage = FileSystemStorage(root)
    channel = ChannelRegistry(storage).create("team", public=True)
    wheel = publish(storage, channel, make_wheel(tmp_path, "demo", "1.0"))
    sdist = publish(storage, channel, make_sdist(tmp_path, "demo", "1.0"))
    app = test_app(storage, "/api/repo")

    def files() -> dict[str, Any]:
        page = app.get("/api/repo/team/simple/demo/", headers={"Accept": JSON_TYPE}).json
        return {f["filename"]: f for f in page["files"]}

    files()  # cached before the commands run in other processes
    result = cli("yank", "team", "demo==1.0", "--reason", "Broken", storage=root)
    assert sorted(result.stdout.split()) == sorted(
        ["yanked", wheel.filename, "yanked", sdist.filename]
    )
    assert {f["yanked"] for f in files().values()} == {"Broken"}
    cli("unyank", "team", wheel.filename, storage=root)
    assert files()[wheel.filename]["yanked"] is False
    assert files()[sdist.filename]["yanked"] == "Broken"
    cli("delete", "team", sdist.filename, storage=root)
    assert set(files()) == {wheel.filename}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["yank", "nochannel", "demo==1.0"], "Channel 'nochannel' does not exist"),
        (["yank", "team", "demo==2.0"], "has no file"),
        (["delete", "team", "garbage"], "neither"),
        (["unyank", "team", "==1.0"], "PROJECT==VERSION"),
        (["yank", "team", "..==1.0"], "not a valid project name"),
    ],
)
def test_cli_errors_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    storage = FileSystemStorage(tmp_path / "data")
    channel = ChannelRegistry(storage).create("team")
    publish(storage, channel, make_wheel(tmp_path, "demo", "1.0"))
    result = cli(*args, storage=tmp_path / "data", check=False)
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1
    assert message in result.stderr
    assert result.stderr.startswith("private-channels: error:")


def test_upload_time_is_utc(repo: Repo) -> None:
    wheel = files_of(repo)[repo.wheel.filename]
    moment = dt.datetime.fromisoformat(wheel["upload-time"])
    assert moment.timestamp() == pytest.approx(1700000000.25)
    assert json.dumps(wheel["size"]).isdigit()


class RecordingFileWrapper:
    """A server's ``wsgi.file_wrapper`` (gunicorn's does ``sendfile`` on the file)."""

    def __init__(self, file: IO[bytes], block_size: int = 8192) -> None:
        self.file = file
        self.block_size = block_size

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.file.read(self.block_size):
            yield chunk

    def close(self) -> None:
        self.file.close()


def test_downloads_go_through_the_servers_file_wrapper(tmp_path: Path) -> None:
    storage = FileSystemStorage(tmp_path / "data")
    channel = ChannelRegistry(storage).create("team", public=True)
    # Larger than the files kept in memory (those leave as one bytes object).
    wheel = make_wheel(tmp_path, "demo", "1.0", module_source=LARGE)
    assert wheel.stat().st_size > SMALL_FILE
    record = publish(storage, channel, wheel)
    middleware = SimpleIndexMiddleware(lambda e, s: [], storage)  # type: ignore[arg-type,return-value]
    environ = EnvironBuilder(
        path=f"/files/{record.sha256}/{record.filename}", base_url="http://host/api/repo/team"
    ).get_environ()
    environ.update(
        {
            "wsgi.file_wrapper": RecordingFileWrapper,
            "private_channels.channel": channel,
            "private_channels.identity": None,
        }
    )
    statuses: list[str] = []
    body = middleware(environ, lambda status, headers, exc_info=None: statuses.append(status))  # type: ignore[arg-type,return-value]
    try:
        assert isinstance(body, RecordingFileWrapper)
        assert isinstance(body.file, io.BufferedReader)  # a real file: sendfile can use it
        assert b"".join(body) == wheel.read_bytes()
    finally:
        body.close()  # type: ignore[attr-defined]
    assert statuses == ["200 OK"]


@pytest.mark.parametrize("path", ["/simple/", "/simple/holy-grail/"])
def test_a_page_asked_for_at_once_by_many_is_rendered_once(
    repo: Repo, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Clients at once on a process that has not rendered the page yet (the root page of
    10,000 projects after a restart): one renders it, the others wait for it."""
    from private_channels.pypi import simple

    rendered = slowed(monkeypatch, simple, "render")
    answers = at_once(lambda: repo.get(path, headers={"Accept": PIP_ACCEPT}))
    assert len({(a.body, a.headers["ETag"]) for a in answers}) == 1
    assert "holy_grail" in answers[0].text.lower()  # the root lists it, the page names it
    assert [media_type for _, media_type in rendered] == [JSON_TYPE]
