"""The upstream client and the proxy's storage: bounds, timeouts, redirects, credentials,
TTLs, revalidation, outages, and files fetched once.  Every upstream is a thread on
127.0.0.1 (tests/upstreams.py)."""

from __future__ import annotations

import hashlib
import io
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from private_channels.channels import Upstream
from private_channels.core import proxy as proxy_module
from private_channels.core.blobs import RecordDocument
from private_channels.core.cache import DocumentCache
from private_channels.core.limits import Limits
from private_channels.core.proxy import (
    RETRY,
    UpstreamHashMismatchError,
    UpstreamProxy,
    UpstreamUnavailableError,
)
from private_channels.core.upstream import (
    UpstreamClient,
    UpstreamError,
    UpstreamNotFoundError,
    check_link,
)
from private_channels.storage import MemoryStorage

from .upstreams import Pages, serve_wsgi

FAST = Limits(upstream_timeout=0.5, upstream_page_deadline=1.0, max_upstream_page=1000)


def upstream_of(url: str, **credentials: str) -> Upstream:
    return Upstream(f"{url}/", **credentials)


@pytest.fixture
def pages() -> Any:
    pages = Pages()
    with serve_wsgi(pages) as running:
        pages.running = running  # type: ignore[attr-defined]
        yield pages


def test_a_page_is_read_with_its_validators(pages: Any) -> None:
    pages.set("/p", "hello", ETag='"v1"', Last_Modified="Wed, 21 Oct 2015 07:28:00 GMT")
    upstream = upstream_of(pages.running.url)
    client = UpstreamClient(FAST)
    page = client.get(upstream, f"{pages.running.url}/p", accept="text/html")
    assert (page.status, page.body, page.etag) == (200, b"hello", '"v1"')
    assert page.last_modified == "Wed, 21 Oct 2015 07:28:00 GMT"
    again = client.get(upstream, f"{pages.running.url}/p", accept="text/html", etag='"v1"')
    assert (again.status, again.body) == (304, b"")
    assert pages.seen[-1]["HTTP_IF_NONE_MATCH"] == '"v1"'
    with pytest.raises(UpstreamNotFoundError):
        client.get(upstream, f"{pages.running.url}/missing", accept="text/html")


@pytest.mark.parametrize("status", [401, 403, 500, 503])
def test_other_statuses_are_errors(pages: Any, status: int) -> None:
    pages.set("/p", "no", status=status)
    with pytest.raises(UpstreamError) as error:
        UpstreamClient(FAST).get(upstream_of(pages.running.url), f"{pages.running.url}/p",
                                 accept="*/*")  # fmt: skip
    assert not isinstance(error.value, UpstreamNotFoundError)
    assert str(status) in str(error.value)


def test_a_page_over_the_bound_is_refused(pages: Any) -> None:
    pages.set("/big", "x" * 1001)
    with pytest.raises(UpstreamError, match="larger than 1000 bytes"):
        UpstreamClient(FAST).get(upstream_of(pages.running.url), f"{pages.running.url}/big",
                                 accept="*/*")  # fmt: skip


def test_a_file_over_the_bound_is_refused_while_streaming(pages: Any) -> None:
    pages.set("/f", b"x" * 5000, "application/octet-stream")
    sink = io.BytesIO()
    with pytest.raises(UpstreamError, match="larger than"):
        UpstreamClient(FAST).download(upstream_of(pages.running.url), f"{pages.running.url}/f",
                                      sink, max_bytes=4096)  # fmt: skip


def test_a_slow_upstream_times_out(pages: Any) -> None:
    pages.set("/slow", "late")
    pages.delay = 2.0
    started = time.monotonic()
    with pytest.raises(UpstreamError, match="timed out"):
        UpstreamClient(FAST).get(upstream_of(pages.running.url), f"{pages.running.url}/slow",
                                 accept="*/*")  # fmt: skip
    assert time.monotonic() - started < 1.9


def test_redirects_are_followed_with_credentials_to_the_same_origin_only(pages: Any) -> None:
    url = pages.running.url
    pages.set("/a", "", status=302, Location="/b")
    pages.set("/b", "arrived")
    pages.set("/loop", "", status=302, Location="/loop")
    pages.set("/away", "", status=302, Location="http://127.0.0.2:9/x")  # another origin, http
    upstream = upstream_of(url, username="u", password="p")
    client = UpstreamClient(FAST)
    page = client.get(upstream, f"{url}/a", accept="*/*")
    assert (page.body, page.url) == (b"arrived", f"{url}/b")
    assert [s.get("HTTP_AUTHORIZATION") for s in pages.seen] == ["Basic dTpw", "Basic dTpw"]
    with pytest.raises(UpstreamError, match="more than 5 times"):
        client.get(upstream, f"{url}/loop", accept="*/*")
    with pytest.raises(UpstreamError, match="refused URL"):
        client.get(upstream, f"{url}/away", accept="*/*")


def test_no_credentials_for_another_origin(pages: Any) -> None:
    other = Pages()
    other.set("/f", "file")
    with serve_wsgi(other) as cdn:
        # Another port is another origin; as a loopback address over http it is refused
        # as a link, so the client is asked for it directly, as the proxy never would.
        upstream = upstream_of(pages.running.url, username="u", password="p")
        with pytest.raises(UpstreamError, match="must use https"):
            UpstreamClient(FAST).get(upstream, f"{cdn.url}/f", accept="*/*")
        assert other.seen == []
        same = upstream_of(cdn.url)  # without credentials: none are sent
        UpstreamClient(FAST).get(same, f"{cdn.url}/f", accept="*/*")
        assert "HTTP_AUTHORIZATION" not in other.seen[-1]


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://up.example/simple/x", True),
        ("https://up.example:443/x", True),  # another origin, over https to a public name
        ("https://cdn.example/x", True),
        ("http://cdn.example/x", False),
        ("https://127.0.0.1/x", False),
        ("https://[::1]/x", False),
        ("https://192.168.1.2/x", False),
        ("https://169.254.169.254/latest/meta-data", False),
        ("https://localhost/x", False),
        ("https://a.localhost/x", False),
        ("ftp://up.example/x", False),
        ("javascript:alert(1)", False),
        ("https://[not-an-ip/x", False),
    ],
)
def test_check_link(url: str, allowed: bool) -> None:
    upstream = Upstream("http://up.example/simple/")
    if allowed:
        assert check_link(upstream, url) == url
    else:
        with pytest.raises(ValueError):
            check_link(upstream, url)


def test_an_upstream_on_a_private_address_may_link_to_itself() -> None:
    upstream = Upstream("http://10.1.2.3:8080/simple/")
    assert check_link(upstream, "http://10.1.2.3:8080/packages/x.whl")
    with pytest.raises(ValueError):
        check_link(upstream, "http://10.1.2.3:8081/packages/x.whl")


# -- the proxy's documents ------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(proxy_module, "time", fake)
    return fake


def make_proxy(limits: Limits = FAST) -> UpstreamProxy:
    return UpstreamProxy(MemoryStorage(), DocumentCache(1 << 20), UpstreamClient(limits))


def test_documents_live_for_the_ttl_then_revalidate(pages: Any, clock: Clock) -> None:
    pages.set("/p", "one", ETag='"1"')
    proxy = make_proxy()
    upstream = upstream_of(pages.running.url)

    def get() -> Any:
        return proxy.document(
            "k/doc", ttl=60,
            fetch=lambda etag, modified: proxy.client.get(
                upstream, f"{pages.running.url}/p", accept="*/*", etag=etag),
            parse=lambda fetched, old, now: {"body": fetched.body.decode(), "old": old},
        )  # fmt: skip

    first = get()
    assert (first.state, first.data["body"]) == ("fetched", "one")
    assert get().state == "cached" and len(pages.seen) == 1
    clock.now += 61
    assert get().state == "revalidated" and len(pages.seen) == 2
    pages.set("/p", "two", ETag='"2"')
    clock.now += 61
    changed = get()
    assert (changed.state, changed.data["body"]) == ("fetched", "two")
    assert changed.data["old"]["body"] == "one"  # parse sees what was stored before


def test_an_outage_serves_the_stored_copy_and_backs_off(pages: Any, clock: Clock) -> None:
    pages.set("/p", "one")
    proxy = make_proxy()
    upstream = upstream_of(pages.running.url)

    def get(key: str = "k/doc") -> Any:
        return proxy.document(
            key, ttl=0,
            fetch=lambda etag, modified: proxy.client.get(upstream, f"{pages.running.url}/p",
                                                          accept="*/*"),
            parse=lambda fetched, old, now: fetched.body.decode(),
        )  # fmt: skip

    assert get().data == "one"
    pages.running.stop()
    clock.now += 1
    stale = get()
    assert (stale.state, stale.data) == ("stale", "one")
    clock.now += RETRY / 2
    started = time.monotonic()
    assert get().state == "stale"  # within the back-off: upstream not even tried
    assert time.monotonic() - started < 0.2
    with pytest.raises(UpstreamUnavailableError):
        get("k/never")
    with pytest.raises(UpstreamUnavailableError):
        get("k/never")  # remembered too


def test_unparsable_answers_count_as_failures(pages: Any, clock: Clock) -> None:
    pages.set("/p", "one")
    proxy = make_proxy()
    upstream = upstream_of(pages.running.url)
    bodies = iter(["good", None])

    def parse(fetched: Any, old: Any, now: float) -> str:
        body = next(bodies)
        if body is None:
            raise ValueError("hostile")
        return body

    def get() -> Any:
        url = f"{pages.running.url}/p"
        return proxy.document(
            "k/doc", ttl=0, parse=parse,
            fetch=lambda etag, modified: proxy.client.get(upstream, url, accept="*/*"),
        )  # fmt: skip

    assert get().data == "good"
    clock.now += 1
    assert (get().state, get().data) == ("stale", "good")


def test_a_refresh_happens_once_for_concurrent_requests(pages: Any) -> None:
    pages.set("/p", "one")
    pages.delay = 0.3
    proxy = make_proxy(Limits())
    upstream = upstream_of(pages.running.url)
    results: list[str] = []

    def get() -> None:
        snapshot = proxy.document(
            "k/doc", ttl=60,
            fetch=lambda e, m: proxy.client.get(upstream, f"{pages.running.url}/p", accept="*/*"),
            parse=lambda fetched, old, now: fetched.body.decode(),
        )  # fmt: skip
        results.append(snapshot.data)

    threads = [threading.Thread(target=get) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["one"] * 8
    assert len(pages.seen) == 1


# -- the proxy's files ----------------------------------------------------------------


def test_a_file_is_fetched_once_checked_and_stored_under_the_upstream_prefix(
    pages: Any, tmp_path: Path
) -> None:
    body = b"wheel bytes"
    digest = hashlib.sha256(body).hexdigest()
    pages.set("/f/x.whl", body, "application/octet-stream")
    proxy = make_proxy()
    upstream = upstream_of(pages.running.url)
    document = RecordDocument(proxy.storage, "channels/c/pypi/upstream/files/x.json")

    def fetch(expected: tuple[str, str]) -> Any:
        return proxy.file(upstream, f"{pages.running.url}/f/x.whl", document=document,
                          blobs="channels/c/pypi/upstream/blobs/", filename="x.whl",
                          expected=expected)  # fmt: skip

    record, state = fetch(("sha256", digest))
    assert (record.sha256, record.size, state) == (digest, len(body), "fetched")
    assert record.source == f"sha256={digest}"
    assert list(proxy.storage.list("channels/c/pypi/upstream/blobs/")) == [
        f"channels/c/pypi/upstream/blobs/{digest}/x.whl"
    ]
    assert fetch(("sha256", digest))[1] == "cached"
    assert len(pages.seen) == 1
    with pytest.raises(UpstreamError, match="other bytes"):
        fetch(("sha256", "b" * 64))


@pytest.mark.parametrize("algorithm", ["sha256", "sha512", "md5"])
def test_a_file_that_does_not_match_leaves_nothing(pages: Any, algorithm: str) -> None:
    pages.set("/f/x.whl", b"tampered", "application/octet-stream")
    proxy = make_proxy()
    document = RecordDocument(proxy.storage, "channels/c/pypi/upstream/files/x.json")
    wrong = hashlib.new(algorithm, b"original").hexdigest()
    with pytest.raises(UpstreamHashMismatchError):
        proxy.file(upstream_of(pages.running.url), f"{pages.running.url}/f/x.whl",
                   document=document, blobs="channels/c/pypi/upstream/blobs/",
                   filename="x.whl", expected=(algorithm, wrong), allow_md5=True)  # fmt: skip
    assert list(proxy.storage.list("channels/")) == []


def test_a_404_is_remembered_through_an_outage(pages: Any, clock: Clock) -> None:
    proxy = make_proxy()
    upstream = upstream_of(pages.running.url)

    def get() -> Any:
        return proxy.document(
            "k/gone", ttl=60,
            fetch=lambda etag, modified: proxy.client.get(upstream, f"{pages.running.url}/gone",
                                                          accept="*/*"),
            parse=lambda fetched, old, now: fetched.body.decode(),
        )  # fmt: skip

    assert (get().data, get().state) == (None, "cached")  # the second one: within the TTL
    pages.running.stop()
    clock.now += 61
    assert (get().data, get().state) == (None, "stale")  # still "not there", and no wait
