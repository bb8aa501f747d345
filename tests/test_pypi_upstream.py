"""The Python upstream proxy: upstream pages parsed, links rewritten, the guard against
dependency confusion, the allowlist, yanks, PEP 658 and 708, the minimum age, caching
and outages.  The channel runs in-process under /api/repo (webtest); its upstream is
another private-channels app, or a scripted page server, on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import posixpath
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import webtest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from private_channels import ChannelRegistry, MemoryStorage, Scope, TokenStore, make_app
from private_channels.channels import Upstream
from private_channels.core.proxy import STATE_HEADER
from private_channels.core.upstream import Fetched
from private_channels.pypi.upstream import merge_pages, parse_project_page, upstream_page

from .packages import make_sdist, make_wheel
from .support import mounted
from .upstreams import Pages, Running, serve_wsgi

JSON = "application/vnd.pypi.simple.v1+json"
HTML = "text/html"
SHA = "a" * 64
UPSTREAM = Upstream("http://127.0.0.1:9/simple/")


def upload(app: webtest.TestApp, url: str, token: str, path: Path, name: str, version: str) -> None:
    filetype = "bdist_wheel" if path.name.endswith(".whl") else "sdist"
    app.post(
        url,
        {":action": "file_upload", "name": name, "version": version, "filetype": filetype,
         "pyversion": "py3" if filetype == "bdist_wheel" else "source", "metadata_version": "2.1"},
        upload_files=[("content", path.name, path.read_bytes())],
        headers={"X-Auth": token},
    )  # fmt: skip


@dataclass
class Setup:
    app: webtest.TestApp  # the channel "team" under /api/repo
    token: str
    registry: ChannelRegistry
    upstream: Running  # another private-channels, channel "pub", index at /repo/pub/simple/
    upstream_app: webtest.TestApp
    upstream_token: str  # admin on the upstream
    tmp: Path

    @property
    def index(self) -> str:
        return f"{self.upstream.url}/repo/pub/simple/"

    def get(self, path: str, accept: str = JSON, **kwargs: Any) -> webtest.TestResponse:
        return self.app.get(
            f"/api/repo/team{path}", headers={"X-Auth": self.token, "Accept": accept}, **kwargs
        )

    def publish(self, name: str, version: str, *, channel: str = "pub", sdist: bool = False,
                **metadata: Any) -> Path:  # fmt: skip
        folder = self.tmp / f"{channel}-{name}-{version}"
        folder.mkdir(exist_ok=True)
        maker = make_sdist if sdist else make_wheel
        path = maker(folder, name, version, **metadata)
        if channel == "pub":
            upload(self.upstream_app, "/repo/pub", self.upstream_token, path, name, version)
        else:
            upload(self.app, "/api/repo/team", self.token, path, name, version)
        return path

    def follow(self, page_path: str, url: str) -> str:
        return posixpath.normpath(posixpath.join(f"{page_path}", url))


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    upstream_storage = MemoryStorage()
    ChannelRegistry(upstream_storage).create("pub", public=True)
    upstream_secret, _ = TokenStore(upstream_storage).create(channels=["*"], scope=Scope.ADMIN)
    upstream_app = make_app(upstream_storage)
    storage = MemoryStorage()
    registry = ChannelRegistry(storage)
    secret, _ = TokenStore(storage).create(channels=["*"], scope=Scope.WRITE)
    app = webtest.TestApp(mounted(make_app(storage), "/api/repo"))
    with serve_wsgi(upstream_app, "/repo") as upstream:
        registry.create("team", python_upstream=f"{upstream.url}/repo/pub/simple/")
        yield Setup(
            app, secret, registry, upstream, webtest.TestApp(mounted(upstream_app, "/repo")),
            upstream_secret, tmp_path,
        )  # fmt: skip


# -- the proxy, end to end in-process ------------------------------------------------


def test_an_upstream_project_is_served_with_links_back_under_the_channel(setup: Setup) -> None:
    wheel = setup.publish("public-lib", "1.0", requires=["six"])
    page = setup.get("/simple/public-lib/")
    assert page.headers[STATE_HEADER] == "fetched"
    (entry,) = page.json["files"]
    assert entry["filename"] == wheel.name
    assert entry["url"].startswith("../../files/upstream/sha256/")
    assert entry["hashes"] == {"sha256": hashlib.sha256(wheel.read_bytes()).hexdigest()}
    assert page.json["versions"] == ["1.0"]
    # PEP 708: the project tracks the upstream's project of the same name.
    assert page.json["meta"] == {"api-version": "1.2", "tracks": [f"{setup.index}public-lib/"]}
    url = setup.follow("/api/repo/team/simple/public-lib/", entry["url"])
    download = setup.app.get(url, headers={"X-Auth": setup.token})
    assert download.body == wheel.read_bytes()
    assert download.headers[STATE_HEADER] == "fetched"
    # PEP 658: the metadata comes through too, checked against its hash.
    metadata = setup.app.get(url + ".metadata", headers={"X-Auth": setup.token})
    assert b"Requires-Dist: six" in metadata.body
    assert hashlib.sha256(metadata.body).hexdigest() == entry["core-metadata"]["sha256"]
    again = setup.app.get(url, headers={"X-Auth": setup.token})
    assert again.headers[STATE_HEADER] == "cached"
    assert sum(p.endswith(wheel.name) for p in setup.upstream.requests) == 1  # fetched once


def test_html_pages_carry_the_same_links_hashes_and_tracks(setup: Setup) -> None:
    setup.publish("public-lib", "1.0")
    page = setup.get("/simple/public-lib/", accept=HTML)
    assert 'href="../../files/upstream/sha256/' in page.text
    assert f'<meta name="pypi:tracks" content="{setup.index}public-lib/">' in page.text
    assert '<meta name="pypi:repository-version" content="1.2">' in page.text


def test_a_local_name_is_served_from_the_channel_alone(setup: Setup) -> None:
    setup.publish("private-app", "1.0", channel="team")
    # The dependency confusion attack: the same name upstream, a higher version.
    setup.publish("private-app", "99.0")
    page = setup.get("/simple/private-app/")
    assert page.json["versions"] == ["1.0"]
    assert STATE_HEADER not in page.headers
    assert not any("private-app" in p for p in setup.upstream.requests)  # not even asked
    # Nor is an upstream file of that name served by its URL.
    setup.registry.update("team", upstream_allow=["private-app"])
    upstream_entry = next(f for f in setup.get("/simple/private-app/").json["files"]
                          if "99.0" in f["filename"])  # fmt: skip
    url = setup.follow("/api/repo/team/simple/private-app/", upstream_entry["url"])
    assert setup.app.get(url, headers={"X-Auth": setup.token}).status_int == 200
    setup.registry.update("team", upstream_allow=[])
    refused = setup.app.get(url, headers={"X-Auth": setup.token}, expect_errors=True)
    assert refused.status_int == 404  # even stored before, a local name's file is refused


def test_the_allowlist_merges_upstream_versions_with_local_ones(setup: Setup) -> None:
    local = setup.publish("shared-lib", "1.0", channel="team")
    setup.publish("shared-lib", "1.0")  # same filename upstream, other bytes
    setup.publish("shared-lib", "2.0")
    setup.registry.update("team", upstream_allow=["Shared_Lib"])  # names compare normalized
    page = setup.get("/simple/shared-lib/")
    assert page.json["versions"] == ["1.0", "2.0"]
    files = {f["filename"]: f for f in page.json["files"]}
    # The channel's own file keeps its name: the upstream file of that name is left out.
    assert files[local.name]["url"].startswith("../../files/")
    assert not files[local.name]["url"].startswith("../../files/upstream/")
    assert files["shared_lib-2.0-py3-none-any.whl"]["url"].startswith("../../files/upstream/")
    assert page.json["meta"]["tracks"] == [f"{setup.index}shared-lib/"]


def test_yanks_and_requires_python_are_carried_over(setup: Setup) -> None:
    setup.publish("old-lib", "1.0", requires_python=">=3.8")
    setup.publish("old-lib", "1.1")
    setup.upstream_app.post(
        "/repo/pub/-/yank", {"project": "old-lib", "version": "1.1", "reason": "broken"},
        headers={"X-Auth": setup.upstream_token},
    )  # fmt: skip
    files = {f["filename"]: f for f in setup.get("/simple/old-lib/").json["files"]}
    assert files["old_lib-1.1-py3-none-any.whl"]["yanked"] == "broken"
    assert files["old_lib-1.0-py3-none-any.whl"]["yanked"] is False
    assert files["old_lib-1.0-py3-none-any.whl"]["requires-python"] == ">=3.8"
    html = setup.get("/simple/old-lib/", accept=HTML).text
    assert 'data-yanked="broken"' in html
    assert 'data-requires-python="&gt;=3.8"' in html


def test_a_name_neither_local_nor_upstream_is_404(setup: Setup) -> None:
    missing = setup.get("/simple/nothing-here/", expect_errors=True)
    assert missing.status_int == 404
    assert "neither in this channel nor upstream" in missing.text
    # The 404 is remembered for the TTL: upstream is not asked again.
    asked = len(setup.upstream.requests)
    setup.get("/simple/nothing-here/", expect_errors=True)
    assert len(setup.upstream.requests) == asked


def test_pages_are_revalidated_after_the_ttl_and_served_stale_when_upstream_is_down(
    setup: Setup,
) -> None:
    setup.registry.update("team", upstream_ttl=0)
    wheel = setup.publish("public-lib", "1.0")
    first = setup.get("/simple/public-lib/")
    url = setup.follow("/api/repo/team/simple/public-lib/", first.json["files"][0]["url"])
    setup.app.get(url, headers={"X-Auth": setup.token})
    second = setup.get("/simple/public-lib/")
    assert second.headers[STATE_HEADER] == "revalidated"  # the upstream answered 304
    setup.publish("public-lib", "2.0")
    assert setup.get("/simple/public-lib/").json["versions"] == ["1.0", "2.0"]
    setup.upstream.stop()
    stale = setup.get("/simple/public-lib/")
    assert stale.headers[STATE_HEADER] == "stale"
    assert stale.json["versions"] == ["1.0", "2.0"]
    cached = setup.app.get(url, headers={"X-Auth": setup.token})
    assert cached.body == wheel.read_bytes()
    assert cached.headers[STATE_HEADER] == "cached"
    down = setup.get("/simple/never-fetched/", expect_errors=True)
    assert down.status_int == 502
    assert "try again later" in down.text


def test_pages_of_local_names_never_wait_on_the_upstream(tmp_path: Path) -> None:
    pages = Pages()
    pages.delay = 3.0  # slower than any test should wait
    storage = MemoryStorage()
    secret, _ = TokenStore(storage).create(channels=["*"], scope=Scope.WRITE)
    app = webtest.TestApp(mounted(make_app(storage), "/api/repo"))
    with serve_wsgi(pages) as slow:
        ChannelRegistry(storage).create("team", python_upstream=f"{slow.url}/simple/")
        wheel = make_wheel(tmp_path, "mine", "1.0")
        upload(app, "/api/repo/team", secret, wheel, "mine", "1.0")
        started = time.monotonic()
        page = app.get("/api/repo/team/simple/mine/", headers={"X-Auth": secret})
        assert time.monotonic() - started < 1.0
        assert "mine-1.0" in page.text or "mine-1.0".replace("-", "_") in page.text
        assert not slow.requests


def test_a_hash_mismatch_is_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    pages = Pages()
    wheel = make_wheel(tmp_path, "evil", "1.0")
    pages.set("/simple/evil/", f'<a href="/f/{wheel.name}#sha256={SHA}">{wheel.name}</a>')
    pages.set(f"/f/{wheel.name}", wheel.read_bytes(), "application/octet-stream")
    storage = MemoryStorage()
    secret, _ = TokenStore(storage).create(channels=["*"], scope=Scope.READ)
    app = webtest.TestApp(mounted(make_app(storage), "/api/repo"))
    with serve_wsgi(pages) as upstream:
        ChannelRegistry(storage).create("team", python_upstream=f"{upstream.url}/simple/")
        page = app.get("/api/repo/team/simple/evil/", headers={"X-Auth": secret})
        url = posixpath.normpath(posixpath.join("/api/repo/team/simple/evil/", _href(page.text)))
        refused = app.get(url, headers={"X-Auth": secret}, expect_errors=True)
    assert refused.status_int == 502
    assert "does not match the sha256 hash its upstream lists" in refused.text
    assert not [k for k in storage.list("channels/team/pypi/upstream/") if "/blobs/" in k]


def _href(html: str) -> str:
    return html.split('href="', 1)[1].split("#", 1)[0]


def test_the_minimum_age_holds_back_young_files(tmp_path: Path) -> None:
    now = time.time()
    pages = Pages()

    def entry(version: str, age_days: float) -> dict[str, Any]:
        filename = f"aged-{version}.tar.gz"
        moment = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - age_days * 86400))
        return {"filename": filename, "url": f"/f/{filename}", "hashes": {"sha256": SHA},
                "upload-time": moment}  # fmt: skip

    doc = {"meta": {"api-version": "1.1"}, "name": "aged",
           "files": [entry("1.0", 30), entry("2.0", 1)]}  # fmt: skip
    pages.set("/simple/aged/", json.dumps(doc), JSON)
    storage = MemoryStorage()
    secret, _ = TokenStore(storage).create(channels=["*"], scope=Scope.READ)
    app = webtest.TestApp(mounted(make_app(storage), "/api/repo"))
    with serve_wsgi(pages) as upstream:
        ChannelRegistry(storage).create(
            "team", python_upstream=f"{upstream.url}/simple/", upstream_min_age=7
        )
        page = app.get("/api/repo/team/simple/aged/", headers={"X-Auth": secret, "Accept": JSON})
        assert page.json["versions"] == ["1.0"]
        young = app.get(
            f"/api/repo/team/files/upstream/sha256/{SHA}/aged-2.0.tar.gz",
            headers={"X-Auth": secret}, expect_errors=True,
        )  # fmt: skip
        assert young.status_int == 404
        assert "minimum age" in young.text
        ChannelRegistry(storage).update("team", upstream_min_age=0)
        page = app.get("/api/repo/team/simple/aged/", headers={"X-Auth": secret, "Accept": JSON})
        assert page.json["versions"] == ["1.0", "2.0"]


def test_credentials_go_to_the_upstream_and_never_into_a_page_or_an_error(tmp_path: Path) -> None:
    pages = Pages()
    pages.set("/simple/lib/", '<a href="/f/lib-1.0.tar.gz#sha256=' + SHA + '">lib-1.0.tar.gz</a>')
    storage = MemoryStorage()
    secret, _ = TokenStore(storage).create(channels=["*"], scope=Scope.READ)
    app = webtest.TestApp(mounted(make_app(storage), "/api/repo"))
    with serve_wsgi(pages) as upstream:
        host = upstream.url.removeprefix("http://")
        ChannelRegistry(storage).create(
            "team", python_upstream=f"http://robot:s3cr3t-pw@{host}/simple/"
        )
        page = app.get("/api/repo/team/simple/lib/", headers={"X-Auth": secret})
        assert pages.seen[-1]["HTTP_AUTHORIZATION"] == "Basic cm9ib3Q6czNjcjN0LXB3"
        url = posixpath.normpath(posixpath.join("/api/repo/team/simple/lib/", _href(page.text)))
        error = app.get(url, headers={"X-Auth": secret}, expect_errors=True)  # 404 upstream
        upstream.stop()
        down = app.get("/api/repo/team/simple/other/", headers={"X-Auth": secret},
                       expect_errors=True)  # fmt: skip
    for response in (page, error, down):
        assert "s3cr3t-pw" not in response.text and "robot" not in response.text
        assert "s3cr3t-pw" not in str(response.headers)
    assert down.status_int == 502


def test_a_channel_without_upstream_is_unchanged(setup: Setup) -> None:
    setup.registry.update("team", python_upstream=None)
    setup.publish("public-lib", "1.0")
    assert setup.get("/simple/public-lib/", expect_errors=True).status_int == 404
    assert setup.get(f"/files/upstream/sha256/{SHA}/public_lib-1.0.tar.gz",
                     expect_errors=True).status_int == 404  # fmt: skip
    assert not setup.upstream.requests


def test_upstream_files_need_read_access(setup: Setup) -> None:
    setup.publish("public-lib", "1.0")
    page = setup.get("/simple/public-lib/")
    url = setup.follow("/api/repo/team/simple/public-lib/", page.json["files"][0]["url"])
    assert setup.app.get(url, expect_errors=True).status_int == 401
    assert setup.app.get("/api/repo/team/simple/public-lib/", expect_errors=True).status_int == 401


# -- the parsers, on their own ------------------------------------------------------


def fetched(
    body: bytes | str, content_type: str = HTML, url: str = "http://127.0.0.1:9/simple/x/"
) -> Fetched:
    data = body.encode() if isinstance(body, str) else body
    return Fetched(200, data, url, content_type, None, None, None)


@pytest.mark.parametrize(
    ("href", "kept"),
    [
        ("x-1.0.tar.gz#sha256=" + SHA, True),  # relative
        ("/files/x-1.0.tar.gz#sha256=" + SHA, True),  # root-relative (pypiserver)
        ("http://127.0.0.1:9/f/x-1.0.tar.gz#sha256=" + SHA, True),  # absolute, same origin
        ("https://files.example.org/x-1.0.tar.gz#sha256=" + SHA, True),  # a CDN, https
        ("http://files.example.org/x-1.0.tar.gz#sha256=" + SHA, False),  # elsewhere, http
        ("https://169.254.169.254/x-1.0.tar.gz#sha256=" + SHA, False),  # metadata service
        ("https://10.0.0.1/x-1.0.tar.gz#sha256=" + SHA, False),
        ("https://localhost/x-1.0.tar.gz#sha256=" + SHA, False),
        ("file:///etc/passwd#sha256=" + SHA, False),
        ("x-1.0.tar.gz", False),  # no hash to check against
        ("x-1.0.tar.gz#md5=" + "a" * 32, False),  # md5 alone is not enough
        ("x-1.0.tar.gz#sha512=" + "b" * 128, True),
    ],
)
def test_which_links_are_kept(href: str, kept: bool) -> None:
    page = parse_project_page(
        fetched(f'<a href="{href}">x-1.0.tar.gz</a>'), "x", UPSTREAM, None, 5.0
    )
    assert bool(page["files"]) is kept


@pytest.mark.parametrize(
    "filename",
    ["y-1.0.tar.gz", "x-1.0.exe", "x-1.0.tar.bz2", "../x-1.0.tar.gz", "x_1!0.tar.gz", "x"],
)
def test_files_of_other_projects_or_unstorable_names_are_left_out(filename: str) -> None:
    html = f'<a href="/f/{filename}#sha256={SHA}">{filename}</a>'
    assert parse_project_page(fetched(html), "x", UPSTREAM, None, 5.0)["files"] == []


def test_an_html_page_as_pypiserver_writes_it() -> None:
    html = f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
    <title>Links for x</title></head><body><h1>Links for x</h1>
    <a href="/packages/x-1.0-py3-none-any.whl#sha256={SHA}">x-1.0-py3-none-any.whl</a><br>
    <a href="/packages/x-1.1.tar.gz#sha256={SHA}" data-requires-python="&gt;=3.9"
       data-yanked="" data-core-metadata="sha256={SHA}">x-1.1.tar.gz</a><br>
    </body></html>"""
    page = parse_project_page(fetched(html), "x", UPSTREAM, None, 5.0)
    first, second = page["files"]
    assert first["url"] == "http://127.0.0.1:9/packages/x-1.0-py3-none-any.whl"
    assert first["hash"] == ["sha256", SHA]
    assert second["requires-python"] == ">=3.9"
    assert second["yanked"] is True
    assert second["metadata"] == ["sha256", SHA]
    assert first["first-seen"] == 5.0


def test_a_base_element_moves_relative_links() -> None:
    html = f'<base href="/mirror/"><a href="x-1.0.tar.gz#sha256={SHA}">x-1.0.tar.gz</a>'
    (entry,) = parse_project_page(fetched(html), "x", UPSTREAM, None, 5.0)["files"]
    assert entry["url"] == "http://127.0.0.1:9/mirror/x-1.0.tar.gz"


def test_first_seen_times_carry_over_and_duplicates_go() -> None:
    html = "".join(f'<a href="x-{v}.tar.gz#sha256={SHA}">x-{v}.tar.gz</a>' for v in ("1", "2", "1"))
    old = {"files": [{"filename": "x-1.tar.gz", "first-seen": 1.0}]}
    page = parse_project_page(fetched(html), "x", UPSTREAM, old, 9.0)
    assert [(f["filename"], f["first-seen"]) for f in page["files"]] == [
        ("x-1.tar.gz", 1.0), ("x-2.tar.gz", 9.0)
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ('{"meta": {"api-version": "2.0"}, "files": []}', JSON),
        ('<meta name="pypi:repository-version" content="2.0">', HTML),
        ("{}", JSON),
        ("[" * 100_000, JSON),
        ("not json", JSON),
        ("<html></html>", "application/octet-stream"),
    ],
)
def test_pages_that_cannot_be_read_are_refused(body: str, content_type: str) -> None:
    with pytest.raises(ValueError):
        parse_project_page(fetched(body, content_type), "x", UPSTREAM, None, 5.0)


def test_pep_691_json_with_pep_700_and_708_fields() -> None:
    doc = {
        "meta": {"api-version": "1.3", "tracks": ["https://pypi.org/simple/x/"]},
        "name": "X",
        "alternate-locations": ["https://other.example/simple/x/"],
        "files": [
            {"filename": "x-1.0.tar.gz", "url": "/f/x-1.0.tar.gz",
             "hashes": {"md5": "a" * 32, "sha256": SHA}, "yanked": True, "size": 12,
             "upload-time": "2024-01-02T03:04:05.000006Z", "core-metadata": False},
            {"filename": "x-2.0.tar.gz", "url": "/f/x-2.0.tar.gz", "hashes": {"sha256": "zz"}},
            "not a file",
        ],
    }  # fmt: skip
    stored = parse_project_page(fetched(json.dumps(doc), JSON), "x", UPSTREAM, None, 5.0)
    (entry,) = stored["files"]
    assert entry["size"] == 12 and entry["yanked"] is True and entry["metadata"] is None
    assert entry["upload-time"] == 1704164645.000006
    page = upstream_page(stored, project="x", upstream=UPSTREAM, cutoff=None)
    # An upstream that tracks another project names that one, the namespace's owner.
    assert page["meta"]["tracks"] == ["https://pypi.org/simple/x/"]
    assert page["alternate-locations"] == ["https://other.example/simple/x/"]
    assert page["_display-name"] == "X"
    assert page["files"][0]["upload-time"] == "2024-01-02T03:04:05.000006Z"
    assert page["files"][0]["hashes"] == {"sha256": SHA}  # the checked hash only


def test_merging_keeps_local_filenames_and_deleted_ones() -> None:
    local = {"meta": {"api-version": "1.1"}, "name": "x", "versions": ["1.0"],
             "files": [{"filename": "x-1.0.tar.gz", "url": "../../files/l"}]}  # fmt: skip
    upstream = {"meta": {"api-version": "1.2", "tracks": ["t"]}, "versions": ["1.0", "1.1", "2.0"],
                "files": [{"filename": n, "url": "u"} for n in
                          ("x-1.0.tar.gz", "x-1.1.tar.gz", "x-2.0.tar.gz")]}  # fmt: skip
    merged = merge_pages(local, upstream, deleted=["x-1.1.tar.gz"])
    assert [(f["filename"], f["url"]) for f in merged["files"]] == [
        ("x-1.0.tar.gz", "../../files/l"), ("x-2.0.tar.gz", "u")
    ]  # fmt: skip
    assert merged["versions"] == ["1.0", "1.1", "2.0"]
    assert merged["meta"]["tracks"] == ["t"]


# -- properties ---------------------------------------------------------------------

_fragments = st.sampled_from(
    [
        '<a href="',
        "x-1.0.tar.gz",
        f"#sha256={SHA}",
        '">',
        "</a>",
        '<meta name="pypi:',
        'content="',
        "<base href=",
        "<!--",
        "-->",
        "<",
        ">",
        "'",
        '"',
        "=",
        " ",
        "&amp;",
        "&#",
        "data-yanked",
        "data-core-metadata=",
        "\n",
        "\x00",
        "é",
    ]
)


@given(st.lists(_fragments, max_size=60).map("".join), st.sampled_from([HTML, JSON]))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_any_page_parses_or_is_refused_with_a_value_error(body: str, content_type: str) -> None:
    try:
        page = parse_project_page(fetched(body, content_type), "x", UPSTREAM, None, 5.0)
    except ValueError:
        return
    for entry in page["files"]:
        assert entry["filename"].startswith("x-")


@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["files", "filename", "url", "hashes", "sha256", "meta",
                                        "api-version", "yanked", "size", "upload-time",
                                        "requires-python", "core-metadata", "tracks"]),
                      children, max_size=5),
    max_leaves=30,
))  # fmt: skip
@settings(max_examples=300)
def test_any_json_document_parses_or_is_refused_with_a_value_error(doc: Any) -> None:
    with contextlib.suppress(ValueError):
        parse_project_page(fetched(json.dumps(doc), JSON), "x", UPSTREAM, None, 5.0)


def test_parsing_a_hostile_page_takes_linear_time() -> None:
    def cost(size: int) -> float:
        best = []
        for _ in range(2):  # CPU time of this thread, the best of two: other processes do not count
            started = time.thread_time()
            for unit in ("<a ", '<a href="', "<!--", "<a x=", '<a href="x-1.0.tar.gz#sha256=a">'):
                parse_project_page(fetched(unit * (size // len(unit))), "x", UPSTREAM, None, 5.0)
            best.append(time.thread_time() - started)
        return min(best)

    assert cost(800_000) < 8 * cost(200_000) + 0.5  # 4x the input: far from 16x
