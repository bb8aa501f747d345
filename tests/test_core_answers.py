"""Answers kept whole (core.answers): the same answer the whole walk gives, while it
would give it, and never to another request."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import webtest
from hypothesis import given
from hypothesis import strategies as st

from private_channels import ChannelRegistry, MemoryStorage, Scope, TokenStore, make_app
from private_channels.app import ReadPath
from private_channels.auth import IDENTITY_KEY, TOKEN_SOURCE_KEY
from private_channels.core import answers as answers_module
from private_channels.core.answers import Answers, offer
from private_channels.storage import FileSystemStorage, Stat, Storage, TellsWrites
from private_channels.tokens import mint_signed_token

from .conda_packages import build_conda
from .packages import make_wheel
from .support import mounted
from .test_cran_description import source_package

PREFIX = "/api/repo"
JSON = "application/vnd.pypi.simple.v1+json"


class CountedMemory(MemoryStorage):
    """The memory storage, counting the stats that reads make."""

    def __init__(self) -> None:
        super().__init__()
        self.stats = 0

    def stat(self, key: str) -> Stat:
        self.stats += 1
        return super().stat(key)


class CountedFiles(FileSystemStorage):
    """The file system storage, counting the stats that reads make."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.stats = 0

    def stat(self, key: str) -> Stat:
        self.stats += 1
        return super().stat(key)


class Seen:
    """An outermost layer that keeps what the environ held once the app answered."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.environ: dict[str, Any] = {}

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        body = self.app(environ, start_response)
        self.environ = dict(environ)
        return body


class Site:
    """A channel with a wheel, an R package and a conda package, tokens, and the app."""

    def __init__(self, storage: CountedMemory | CountedFiles, tmp: Path, **options: Any) -> None:
        self.storage = storage
        self.tmp = tmp
        registry = ChannelRegistry(storage)
        registry.create("team")
        registry.create("other")
        registry.create("open", public=True)
        self.tokens = TokenStore(storage)
        self.admin, _ = self.tokens.create(channels=["team", "open"], scope=Scope.ADMIN)
        self.admin_all, _ = self.tokens.create(channels=["*"], scope=Scope.ADMIN)
        self.reader, self.reader_token = self.tokens.create(channels=["team"], scope=Scope.READ)
        self.outsider, _ = self.tokens.create(channels=["other"], scope=Scope.READ)
        self.seen = Seen(make_app(storage, **options))
        self.app = webtest.TestApp(mounted(self.seen, PREFIX))
        self.upload("team", make_wheel(tmp, "demo", "1.0"))
        self.upload("open", make_wheel(tmp, "demo", "1.0"))
        self.send("team", {"filetype": "cran_source_package"}, "abc_1.0.tar.gz",
                  source_package("abc", "1.0"))  # fmt: skip
        conda = build_conda(tmp, "pkg", "1.0")
        self.send("team", {"filetype": "conda_package"}, conda.name, conda.read_bytes())

    def send(self, channel: str, fields: dict[str, str], filename: str, data: bytes) -> None:
        self.app.post(
            f"{PREFIX}/{channel}",
            fields,
            upload_files=[("content", filename, data)],
            headers={"X-Auth": self.admin},
            content_type="multipart/form-data",
        )

    def upload(self, channel: str, wheel: Path) -> None:
        fields = {":action": "file_upload", "protocol_version": "1"}
        self.send(channel, fields, wheel.name, wheel.read_bytes())

    def get(self, path: str, token: str | None = None, **kwargs: Any) -> webtest.TestResponse:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["X-Auth"] = token
        return self.app.get(f"{PREFIX}{path}", headers=headers, **kwargs)

    def file_url(self, channel: str = "team", name: str = "demo") -> str:
        page = self.get(f"/{channel}/simple/{name}/", self.reader, headers={"Accept": JSON})
        url: str = page.json["files"][-1]["url"]
        return f"/{channel}/{url.removeprefix('../../')}"

    def walks(self, request: Callable[[], webtest.TestResponse]) -> bool:
        """Whether ``request`` walked to the storage (a kept answer makes no stat)."""
        before = self.storage.stats
        request()
        return self.storage.stats != before


@pytest.fixture(params=["memory", "filesystem"])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Site:
    storage = CountedMemory() if request.param == "memory" else CountedFiles(tmp_path / "data")
    return Site(storage, tmp_path)


def _answer(response: webtest.TestResponse) -> tuple[int, list[tuple[str, str]], bytes]:
    return response.status_int, sorted(response.headerlist), response.body


def test_a_kept_answer_is_the_one_the_walk_gives(site: Site) -> None:
    download = site.file_url()
    cran = "/team/src/contrib/PACKAGES"
    conda = "/team/noarch/repodata.json"
    requests = [
        (download, {}),
        (download + ".metadata", {}),
        ("/team/simple/demo/", {"Accept": JSON}),
        ("/team/simple/demo/", {"Accept": "text/html"}),
        ("/team/simple/", {}),
        (cran, {}),
        (cran + ".gz", {}),
        ("/team/src/contrib/abc_1.0.tar.gz", {}),
        (conda, {}),
        ("/team/channeldata.json", {}),
    ]
    for path, headers in requests:
        walked = site.get(path, site.reader, headers=headers)
        assert walked.status_int == 200, path
        # (A first read may write: a METADATA kept beside its wheel on first use, which
        # the answer kept then predates.)
        site.get(path, site.reader, headers=headers)
        assert not site.walks(lambda p=path, h=headers: site.get(p, site.reader, headers=h)), path
        kept = site.get(path, site.reader, headers=headers)
        assert _answer(kept) == _answer(walked), path
        head = site.app.head(f"{PREFIX}{path}", headers={**headers, "X-Auth": site.reader})
        assert head.status_int == 200 and head.body == b""
        assert head.headers["Content-Length"] == walked.headers["Content-Length"]


def test_the_environ_is_left_as_the_walk_leaves_it(site: Site) -> None:
    download = site.file_url()
    basic = "Basic " + base64.b64encode(f"{site.reader}:x-auth-token".encode()).decode()
    forms: list[tuple[str, dict[str, str]]] = [
        (download, {"Authorization": basic}),
        (download, {"X-Auth": site.reader}),
        (f"/t/{site.reader}{download}", {}),
        (f"/t/{site.reader}{download}", {"Authorization": basic, "X-Auth": site.reader}),
    ]
    for path, headers in forms:
        site.get(path, headers=headers)
        walked = site.seen.environ
        assert not site.walks(lambda p=path, h=headers: site.get(p, headers=h))
        kept = site.seen.environ
        for key in ("REMOTE_USER", IDENTITY_KEY, TOKEN_SOURCE_KEY, "HTTP_AUTHORIZATION",
                    "HTTP_X_AUTH"):  # fmt: skip
            assert kept.get(key) == walked.get(key), (path, key)
        assert kept["REMOTE_USER"] == site.reader_token.id
        assert site.reader not in kept["PATH_INFO"] + kept.get("REQUEST_URI", "")
    # Anonymous reads of a public channel: no identity, kept too.
    public = site.file_url("open")
    site.get(public)
    assert not site.walks(lambda: site.get(public))
    assert site.seen.environ[IDENTITY_KEY] is None
    assert "REMOTE_USER" not in site.seen.environ


def test_other_credentials_never_get_a_kept_answer(site: Site) -> None:
    download = site.file_url()
    site.get(download, site.reader)
    site.get(download, site.reader)
    site.get(download, site.outsider, status=403)
    site.get(download, status=401)
    site.get(download, site.reader + "0", status=401)
    site.get(download, headers={"X-Auth": ""}, status=401)
    wrong = "Basic " + base64.b64encode(f"{site.reader}:mypassword".encode()).decode()
    site.get(download, headers={"Authorization": wrong}, status=401)
    # A kept anonymous answer of a public channel is not one to a token that is refused.
    public = site.file_url("open")
    site.get(public)
    site.get(public)
    site.get(public, "0" * 48, status=401)


def test_the_fields_an_answer_varies_on(site: Site) -> None:
    download = site.file_url()
    whole = site.get(download, site.reader)
    site.get(download, site.reader)
    ranged = site.get(download, site.reader, headers={"Range": "bytes=0-9"}, status=206)
    assert ranged.body == whole.body[:10]
    etag = whole.headers["ETag"]
    site.get(download, site.reader, headers={"If-None-Match": etag}, status=304)
    page = "/team/simple/demo/"
    html = site.get(page, site.reader, headers={"Accept": "text/html"})
    as_json = site.get(page, site.reader, headers={"Accept": JSON})
    assert html.content_type == "text/html" and as_json.content_type == JSON
    assert site.get(page, site.reader, headers={"Accept": "text/html"}).body == html.body
    # The page's 304 is decided for each request's If-None-Match, kept page or not.
    assert not site.walks(
        lambda: site.get(page, site.reader, headers={"Accept": JSON, "If-None-Match": '"x"'})
    )
    site.get(page, site.reader, headers={"Accept": JSON, "If-None-Match": '"x"'}, status=200)
    current = {"Accept": JSON, "If-None-Match": as_json.headers["ETag"]}
    site.get(page, site.reader, headers=current, status=304)
    site.get(f"{page}?format=text/html", site.reader, headers={"Accept": JSON}).mustcontain(
        "<html", no=['"files"']
    )


def test_a_304_kept_without_its_page_is_kept_for_its_preconditions(tmp_path: Path) -> None:
    storage = CountedMemory()
    site = Site(storage, tmp_path)
    page = "/team/simple/demo/"
    etag = site.get(page, site.reader, headers={"Accept": JSON}).headers["ETag"]
    fresh = Site.__new__(Site)  # a second process: nothing rendered yet
    fresh.__dict__.update(site.__dict__)
    fresh.seen = Seen(make_app(storage))
    fresh.app = webtest.TestApp(mounted(fresh.seen, PREFIX))
    current = {"Accept": JSON, "If-None-Match": etag}
    fresh.get(page, site.reader, headers=current, status=304)
    assert not fresh.walks(lambda: fresh.get(page, site.reader, headers=current, status=304))
    whole = fresh.get(page, site.reader, headers={"Accept": JSON})
    assert whole.body and whole.headers["ETag"] == etag


def test_every_write_is_seen_by_the_next_request(site: Site) -> None:
    download = site.file_url()
    page = "/team/simple/demo/"
    site.get(page, site.reader, headers={"Accept": JSON})
    site.get(download, site.reader)
    site.upload("team", make_wheel(site.tmp, "demo", "2.0"))
    files = site.get(page, site.reader, headers={"Accept": JSON}).json["files"]
    assert [f["filename"] for f in files] == [
        "demo-1.0-py3-none-any.whl",
        "demo-2.0-py3-none-any.whl",
    ]
    site.get(page, site.reader, headers={"Accept": JSON})
    site.app.post(
        f"{PREFIX}/team/-/yank",
        {"filename": "demo-1.0-py3-none-any.whl"},
        headers={"X-Auth": site.admin},
    )
    yanked = site.get(page, site.reader, headers={"Accept": JSON}).json["files"][0]["yanked"]
    assert yanked is True
    site.get(download, site.reader)
    site.app.post(
        f"{PREFIX}/team/-/delete",
        {"filename": "demo-1.0-py3-none-any.whl"},
        headers={"X-Auth": site.admin},
    )
    site.get(download, site.reader, status=404)
    site.get(download, site.reader, status=404)
    # R and conda indexes too.
    packages = "/team/src/contrib/PACKAGES"
    assert "Version: 1.0" in site.get(packages, site.reader).text
    site.send("team", {"filetype": "cran_source_package"}, "abc_2.0.tar.gz",
              source_package("abc", "2.0"))  # fmt: skip
    assert "Version: 2.0" in site.get(packages, site.reader).text


def test_a_revoked_token_is_refused_at_once(site: Site) -> None:
    download = site.file_url()
    site.get(download, site.reader)
    assert not site.walks(lambda: site.get(download, site.reader))
    site.app.delete(
        f"{PREFIX}/-/api/tokens/{site.reader_token.id}", headers={"X-Auth": site.admin_all}
    )
    site.get(download, site.reader, status=401)


def test_a_write_by_another_process_is_seen_at_once(tmp_path: Path) -> None:
    site = Site(CountedFiles(tmp_path / "data"), tmp_path)
    download = site.file_url()
    site.get(download, site.reader)
    assert not site.walks(lambda: site.get(download, site.reader))
    # Another process over the same directory: its own storage object, the same word.
    # (Its revocation is then refused once this process's token cache lets the token
    # go, as without kept answers: token_cache_ttl.)
    other = TokenStore(FileSystemStorage(tmp_path / "data"))
    assert other.revoke(site.reader_token.id)
    assert site.walks(lambda: site.get(download, site.reader))


def test_an_answer_to_a_token_ends_with_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = CountedMemory()
    site = Site(storage, tmp_path)
    secret, _ = site.tokens.create(channels=["team"], scope=Scope.READ, expires_in=3600)
    download = site.file_url()
    site.get(download, secret)  # (notes the token's first use: a write)
    site.get(download, secret)
    assert not site.walks(lambda: site.get(download, secret))
    # The clock passes the expiry (as a wall clock may jump): no monotonic bound helps.
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 3601)
    site.get(download, secret, status=401)


class Clock:
    """``time.monotonic`` moved on by hand (the token cache and kept answers read it)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.offset = 0.0
        real = time.monotonic
        monkeypatch.setattr(time, "monotonic", lambda: real() + self.offset)


def test_an_answer_outlives_the_token_cache_while_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(monkeypatch)
    site = Site(CountedMemory(), tmp_path, token_cache_ttl=1)
    download = site.file_url()  # (the reader's first use: a write after its record's read)
    site.get(download, site.reader)
    clock.offset += 1.5  # the cache reads the record again, since the last write
    site.get(download, site.reader)
    clock.offset += 30
    assert not site.walks(lambda: site.get(download, site.reader))
    clock.offset += answers_module.KEPT_FOR
    assert site.walks(lambda: site.get(download, site.reader))
    # An anonymous read of a public channel: decided by the storage alone.
    public = site.file_url("open")
    site.get(public)
    clock.offset += 30
    assert not site.walks(lambda: site.get(public))
    clock.offset += answers_module.KEPT_FOR
    assert site.walks(lambda: site.get(public))


def test_a_token_read_before_a_write_is_kept_no_longer_than_the_cache_trusts_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process revokes the token: this one trusts its earlier read of it for
    what is left of token_cache_ttl (the documented bound), and not a moment longer
    because of an answer decided in that time."""
    clock = Clock(monkeypatch)
    site = Site(CountedFiles(tmp_path / "data"), tmp_path, token_cache_ttl=5)
    download = site.file_url()
    clock.offset += 6
    site.get(download, site.reader)
    assert not site.walks(lambda: site.get(download, site.reader))
    clock.offset += 4  # about a second of the cache's trust left
    assert TokenStore(FileSystemStorage(tmp_path / "data")).revoke(site.reader_token.id)
    site.get(download, site.reader)  # still trusted here, by time
    site.get(download, site.reader)
    clock.offset += 1.5
    site.get(download, site.reader, status=401)


def test_a_signed_token_is_trusted_as_its_revocation_was_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(monkeypatch)
    site = Site(CountedMemory(), tmp_path, token_cache_ttl=1, secret_key="k" * 32)
    signed = mint_signed_token("k" * 32, channels=["team"], scope=Scope.READ, token_id="a" * 12)
    download = site.file_url()
    site.get(download, signed)
    clock.offset += 30
    assert not site.walks(lambda: site.get(download, signed))
    site.get("/team/simple/demo/", signed)  # a walk: its revocation read again
    # Revoked by another process: the same storage, another token store.
    TokenStore(site.storage, secret_key="k" * 32).revoke("a" * 12)
    site.get(download, signed)  # trusted by the cache's read, less than a second old
    site.get(download, signed)
    clock.offset += 1.5
    site.get(download, signed, status=401)


def test_no_answers_without_the_token_cache(tmp_path: Path) -> None:
    site = Site(CountedMemory(), tmp_path, token_cache_ttl=0)
    download = site.file_url()
    site.get(download, site.reader)
    assert site.walks(lambda: site.get(download, site.reader))


def test_only_a_storage_that_tells_its_writes_keeps_answers() -> None:
    class Plain:  # the protocol's five methods, and no writes()
        pass

    memory = MemoryStorage()
    assert Answers.of(memory, ttl=5, tokens=TokenStore(memory)) is not None
    assert Answers.of(memory, ttl=0, tokens=TokenStore(memory)) is None
    assert Answers.of(Plain(), ttl=5, tokens=TokenStore(memory)) is None  # type: ignore[arg-type]

    class Unsure(MemoryStorage):
        def writes(self) -> None:  # type: ignore[override]
            return None

    assert Answers.of(Unsure(), ttl=5, tokens=TokenStore(memory)) is None
    assert isinstance(MemoryStorage(), TellsWrites)


@pytest.mark.parametrize("which", ["memory", "filesystem"])
def test_writes_changes_after_every_write(which: str, tmp_path: Path) -> None:
    import io

    storage: Storage = MemoryStorage() if which == "memory" else FileSystemStorage(tmp_path)
    assert isinstance(storage, TellsWrites)
    written = storage.writes()
    assert written is not None
    seen = {written()}
    for write in (
        lambda: storage.put("a/b", io.BytesIO(b"1")),
        lambda: storage.create("a/c", io.BytesIO(b"2")),
        lambda: storage.put("a/b", io.BytesIO(b"3")),
        lambda: storage.delete("a/c"),
    ):
        write()
        assert written() not in seen
        seen.add(written())
    assert written() == written()  # reads change nothing
    storage.stat("a/b")
    storage.open("a/b")[0].close()
    assert written() in seen


Read = Callable[[dict[str, Any], Any], Iterable[bytes]]


def _app_offering(
    answer: Callable[[dict[str, Any]], bytes],
) -> tuple[Callable[[dict[str, Any]], bytes], Answers, list[int]]:
    """A call of kept answers over a read side that offers ``answer``'s bytes; the
    answers, and how many times the read side was walked."""
    walks = [0]
    storage = MemoryStorage()
    answers = Answers.of(storage, ttl=60, tokens=TokenStore(storage))
    assert answers is not None

    def read(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        walks[0] += 1
        body = answer(environ)

        def respond(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            start_response("200 OK", [("Content-Length", str(len(body)))])
            return [body]

        return offer(environ, respond, size=len(body))(environ, start_response)

    def call(environ: dict[str, Any]) -> bytes:
        return b"".join(answers(dict(environ), lambda status, headers: None, read))

    return call, answers, walks


_FIELDS = ("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING",
           "HTTP_AUTHORIZATION", "HTTP_X_AUTH", "HTTP_ACCEPT")  # fmt: skip
_text = st.text(st.sampled_from("ab:0-9\x00/é"), max_size=6)
_request = st.fixed_dictionaries({}, optional=dict.fromkeys(_FIELDS, _text))


def _as_read(environ: dict[str, str]) -> dict[str, str | None]:
    read = {k: environ.get(k) for k in _FIELDS}
    read.update({k: environ.get(k) or "" for k in _FIELDS[:4]})
    return read


@given(first=_request, second=_request)
def test_only_the_same_request_finds_an_answer(
    first: dict[str, str], second: dict[str, str]
) -> None:
    """No two requests that differ in a field of the key share an answer, whatever the
    fields hold (separators, digits, lengths; an absent field is not an empty one)."""
    call, _, walks = _app_offering(lambda environ: repr(_as_read(environ)).encode())
    body = call(first)
    assert call(first) == body and walks[0] == 1
    again = call(second)
    # The CGI fields are read as "" when absent, everywhere (and by the key); a
    # header's absence is not its emptiness (an empty X-Auth is a malformed token).
    same = _as_read(first) == _as_read(second)
    assert walks[0] == (1 if same else 2)
    assert (again == body) is same


def test_answers_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(answers_module, "MAX_ANSWERS", 4)
    call, answers, walks = _app_offering(lambda environ: b"x")
    for i in range(4):
        call({"PATH_INFO": f"/{i}"})
    assert len(answers) == 4
    call({"PATH_INFO": "/4"})
    # The older half went: the newer answers are still given without a walk.
    assert len(answers) == 3
    for i in (2, 3, 4):
        call({"PATH_INFO": f"/{i}"})
    assert walks[0] == 5
    call({"PATH_INFO": "/0"})
    assert walks[0] == 6
    monkeypatch.setattr(answers_module, "MAX_BYTES", 10)
    call, answers, walks = _app_offering(lambda environ: b"12345")
    call({"PATH_INFO": "/a"})
    call({"PATH_INFO": "/b"})
    assert len(answers) == 2
    call({"PATH_INFO": "/c"})  # 15 bytes: /a goes
    assert len(answers) == 2
    call({"PATH_INFO": "/c"})
    call({"PATH_INFO": "/b"})
    assert walks[0] == 3
    call({"PATH_INFO": "/a"})
    assert walks[0] == 4


def test_answers_changed_while_halved_all_go() -> None:
    """Another thread keeping an answer while the older half goes: none is served
    from a half-made dict, and the request that halves them does not fail."""
    call, answers, _ = _app_offering(lambda environ: b"x")
    call({"PATH_INFO": "/a"})

    class Changing(dict):  # type: ignore[type-arg]
        def items(self) -> Any:
            raise RuntimeError("dictionary changed size during iteration")

    answers._entries = Changing(answers._entries)
    answers._halve()
    assert len(answers) == 0 and answers._bytes == 0


def test_an_answer_offered_twice_is_not_kept() -> None:
    storage = MemoryStorage()
    answers = Answers.of(storage, ttl=60, tokens=TokenStore(storage))
    assert answers is not None
    walks = []

    def read(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        walks.append(1)

        def respond(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            start_response("200 OK", [])
            return [b""]

        offer(environ, respond)
        return offer(environ, respond)(environ, start_response)

    for _ in range(2):
        answers({"PATH_INFO": "/x"}, lambda s, h: None, read)
    assert len(walks) == 2 and len(answers) == 0


def test_a_layer_outside_may_change_the_headers_it_is_handed(tmp_path: Path) -> None:
    storage = CountedMemory()
    site = Site(storage, tmp_path)

    def appending(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            headers.append(("X-Outer", "1"))  # as some host middlewares do
            return start_response(status, headers, exc_info)

        return site.seen(environ, start)

    app = webtest.TestApp(mounted(appending, PREFIX))
    download = site.file_url()
    for path, headers in [(download, {}), ("/team/simple/demo/", {"Accept": JSON})]:
        for _ in range(3):
            response = app.get(f"{PREFIX}{path}", headers={**headers, "X-Auth": site.reader})
            assert response.headers.getall("X-Outer") == ["1"]


# -- renewed past KEPT_FOR -------------------------------------------------------------


class Walks:
    """How many requests walked the read side (the composition's ReadPath.read)."""

    def __init__(self, site: Site) -> None:
        self.count = 0
        app = site.seen.app
        while not isinstance(app, ReadPath):
            app = app.app
        read = app.read

        def counted(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            self.count += 1
            return read(environ, start_response)

        app.read = counted

    def during(self, request: Callable[[], webtest.TestResponse]) -> int:
        before = self.count
        request()
        return self.count - before


def _on_disk(site: Site, key: str) -> Path:
    return site.tmp / "data" / key


@pytest.fixture
def on_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Clock, Site]:
    """The site on the file system, which can be changed behind the storage's back, and
    a clock to move on."""
    return Clock(monkeypatch), Site(CountedFiles(tmp_path / "data"), tmp_path)


def _edit_by_hand(document: Path, **fields: Any) -> None:
    """Change fields of a stored JSON document behind the storage's back."""
    import json

    document.write_bytes(json.dumps({**json.loads(document.read_bytes()), **fields}).encode())


def test_a_page_past_its_time_is_renewed_while_its_documents_are_unchanged(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(monkeypatch)
    walks = Walks(site)
    page = "/open/simple/demo/"  # an anonymous read of a public channel
    first = site.get(page, headers={"Accept": JSON})
    clock.offset += answers_module.KEPT_FOR + 1
    before = site.storage.stats
    assert walks.during(lambda: site.get(page, headers={"Accept": JSON})) == 0
    # One stat for each document it was decided by: the channel's record, the project's.
    assert site.storage.stats - before == 2
    assert _answer(site.get(page, headers={"Accept": JSON})) == _answer(first)
    # Renewed for as long again: no stat until then.
    clock.offset += answers_module.KEPT_FOR - 1
    assert not site.walks(lambda: site.get(page, headers={"Accept": JSON}))
    # Its 304s too: the page kept answers them.
    etag = first.headers["ETag"]
    site.get(page, headers={"Accept": JSON, "If-None-Match": etag}, status=304)
    clock.offset += answers_module.KEPT_FOR + 1
    assert walks.during(lambda: site.get(
        page, headers={"Accept": JSON, "If-None-Match": etag}, status=304)) == 0  # fmt: skip
    # A write: the next request walks, as before.
    site.upload("open", make_wheel(site.tmp, "demo", "2.0"))
    assert walks.during(lambda: site.get(page, headers={"Accept": JSON})) == 1


def test_an_answer_to_a_token_is_renewed_while_the_token_cache_vouches_for_it(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(monkeypatch)
    walks = Walks(site)
    page = "/team/simple/demo/"
    site.get(page, site.reader, headers={"Accept": JSON})
    site.get(page, site.reader, headers={"Accept": JSON})
    clock.offset += answers_module.KEPT_FOR + 1
    # The token cache's read of the token is older than it trusts: the walk reads it.
    assert walks.during(lambda: site.get(page, site.reader, headers={"Accept": JSON})) == 1
    site.get("/team/simple/demo/", site.reader, headers={"Accept": "text/html"})
    clock.offset += answers_module.KEPT_FOR + 1
    site.get("/team/simple/", site.reader, headers={"Accept": JSON})  # a walk: read again
    assert walks.during(lambda: site.get(page, site.reader, headers={"Accept": JSON})) == 0
    assert walks.during(lambda: site.get(page, site.reader, headers={"Accept": "text/html"})) == 0


def test_downloads_and_cran_indexes_are_not_renewed(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only an answer whose read side names every document it was decided by."""
    clock = Clock(monkeypatch)
    walks = Walks(site)
    download, page, cran = site.file_url("open"), "/open/simple/demo/", "/team/src/contrib/PACKAGES"
    site.get(download)
    site.get(page, headers={"Accept": JSON})
    site.get(cran, site.admin)
    clock.offset += answers_module.KEPT_FOR + 1
    site.get("/team/simple/", site.admin, headers={"Accept": JSON})  # the token read again
    assert walks.during(lambda: site.get(page, headers={"Accept": JSON})) == 0
    assert walks.during(lambda: site.get(download)) == 1
    assert walks.during(lambda: site.get(cran, site.admin)) == 1


def test_a_document_changed_behind_the_storage_is_seen_when_renewed(
    on_files: tuple[Clock, Site],
) -> None:
    clock, site = on_files
    walks = Walks(site)
    page = "/open/simple/demo/"
    body = site.get(page, headers={"Accept": JSON}).body
    # The project's document, rewritten by hand: the same records, another ETag.
    document = _on_disk(site, "channels/open/pypi/projects/demo.json")
    assert document.is_file()
    document.write_bytes(document.read_bytes() + b"\n")
    assert not site.walks(lambda: site.get(page, headers={"Accept": JSON}))  # its minute
    clock.offset += answers_module.KEPT_FOR + 1
    assert walks.during(lambda: site.get(page, headers={"Accept": JSON})) == 1
    assert site.get(page, headers={"Accept": JSON}).body == body
    # Removed by hand: the walk, and its 404.
    document.unlink()
    clock.offset += answers_module.KEPT_FOR + 1
    site.get(page, headers={"Accept": JSON}, status=404)


def test_a_channel_made_private_by_hand_is_seen_when_renewed(on_files: tuple[Clock, Site]) -> None:
    clock, site = on_files
    page = "/open/simple/demo/"
    site.get(page, headers={"Accept": JSON})
    _edit_by_hand(_on_disk(site, "registry/channels/open.json"), public=False)
    clock.offset += answers_module.KEPT_FOR + 1
    site.get(page, headers={"Accept": JSON}, status=401)


def test_a_token_changed_by_hand_is_not_vouched_for(on_files: tuple[Clock, Site]) -> None:
    clock, site = on_files
    page = "/team/simple/demo/"
    site.get(page, site.reader, headers={"Accept": JSON})
    site.get(page, site.reader, headers={"Accept": JSON})  # kept, the token read since
    reference = site.tokens.reference(site.reader)
    assert reference is not None
    _edit_by_hand(_on_disk(site, f"registry/tokens/{reference['hash']}.json"), channels=["other"])
    clock.offset += answers_module.KEPT_FOR + 1
    # Another request with the token walks and reads its record again, as it is now.
    site.get("/other/simple/", site.reader, headers={"Accept": JSON})
    site.get(page, site.reader, headers={"Accept": JSON}, status=403)
