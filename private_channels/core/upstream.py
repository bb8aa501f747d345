"""Requests to upstream indexes: bounded in size and time, never leaking credentials.

::

    client = UpstreamClient(Limits())
    page = client.get(channel.python_upstream, "https://pypi.org/simple/demo/",
                      accept="application/vnd.pypi.simple.v1+json", etag=cached_etag)
    if page.status == 304:
        ...                                   # the cached copy is still upstream's
    with tempfile.TemporaryFile() as spool:
        client.download(channel.python_upstream, file_url, spool)

An upstream is someone else's server, and everything it answers is hostile input: a
page is read into memory only up to ``Limits.max_upstream_page`` bytes and a file is
spooled to disk only up to ``Limits.max_upstream_file``; connecting and every read
wait at most ``Limits.upstream_timeout`` seconds, and a whole page or file must arrive
within its deadline.  Redirects are followed by hand (at most five, ``http`` and
``https`` only, never from ``https`` down to ``http``), so that the credentials of an
upstream go to its own origin and nowhere else: not to a CDN that serves its files,
not to wherever a redirect points.  A link that leaves the upstream's origin must be
``https`` and may not name a loopback, private or link-local address
(:func:`check_link`), so that a hostile page cannot make this server fetch from its
own network.

Only the standard library is used (``urllib.request`` without its redirect and error
handlers); the proxy variables of the environment (``HTTPS_PROXY``, ``NO_PROXY``) apply.
Errors are :class:`UpstreamError` with one sentence that names the upstream by its URL
without credentials; the sentence is also what the log says.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import http.client
import ipaddress
import logging
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from ..auth import redact_tokens
from .limits import Limits

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ..channels import Upstream

__all__ = [
    "USER_AGENT",
    "Fetched",
    "UpstreamClient",
    "UpstreamError",
    "UpstreamNotFoundError",
    "check_link",
    "display_url",
    "logger",
]

logger = logging.getLogger("private_channels.upstream")

USER_AGENT = "private-channels (upstream proxy)"
MAX_REDIRECTS = 5
READ_SIZE = 64 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}


class UpstreamError(Exception):
    """An upstream that could not be used: unreachable, too slow, too large, refusing.

    ``str()`` is one sentence, safe to log and to show: it names the upstream by its URL
    without credentials.
    """


class UpstreamNotFoundError(UpstreamError):
    """The upstream answered 404 or 410: it has no such page or file."""


@dataclass(frozen=True)
class Fetched:
    """An upstream's answer: ``status`` 200 with a ``body``, or 304 (the copy named by
    the validators sent is current)."""

    status: int
    body: bytes
    url: str  # after redirects: relative links resolve against it
    content_type: str  # the media type alone, lowercase
    charset: str | None
    etag: str | None
    last_modified: str | None


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme, 0)


def display_url(url: str) -> str:
    """A URL as a log line or an error may show it: no user information, no query, no
    token in the path."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return redact_tokens(f"{parts.scheme}://{netloc}{parts.path}")


def _internal_host(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return not address.is_global


def check_link(upstream: Upstream, url: str) -> str:
    """``url`` if this server may fetch it for ``upstream``, else :class:`ValueError`.

    A link on the upstream's own origin is fine over ``http`` or ``https``.  One that
    leaves it must use ``https`` and may not name ``localhost`` or an address that is
    not global (loopback, private, link-local: a cloud's metadata service), whatever
    the upstream says.  Names that resolve to such addresses are not looked up here.
    """
    try:
        scheme, host, _ = _origin(url)
    except ValueError:
        raise ValueError("the link is not a valid URL") from None
    if scheme not in ("http", "https") or not host:
        raise ValueError("the link is not an http or https URL")
    if _origin(url) == _origin(upstream.url):
        return url
    if scheme != "https":
        raise ValueError("a link to another host must use https")
    if _internal_host(host):
        raise ValueError("a link to another host may not name a local or private address")
    return url


def _opener() -> urllib.request.OpenerDirector:
    # No redirect handler (redirects are followed by hand, see get) and no error
    # processor (every status comes back as a response); no file:, ftp: or data: either.
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(context=ssl.create_default_context()),
    ):
        opener.add_handler(handler)
    return opener


class UpstreamClient:
    """GET requests to upstreams within ``limits`` (see the module)."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._opener = _opener()

    def get(
        self,
        upstream: Upstream,
        url: str,
        *,
        accept: str,
        etag: str | None = None,
        last_modified: str | None = None,
        max_bytes: int | None = None,
    ) -> Fetched:
        """An index page (or ``PACKAGES``) read whole, revalidated with ``etag`` and
        ``last_modified`` when given (then a 304 has an empty body).

        Raises :class:`UpstreamNotFoundError` for a 404 or 410, :class:`UpstreamError`
        for anything else that is not a 200 or a 304.
        """
        limit = self.limits.max_upstream_page if max_bytes is None else max_bytes
        deadline = time.monotonic() + self.limits.upstream_page_deadline
        headers = {"Accept": accept}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        response, final = self._open(upstream, url, headers, deadline)
        with contextlib.closing(response):
            status = response.status
            if status == 304 and (etag or last_modified):
                body = b""
            else:
                self._check_status(status, final)
                body = self._read_all(response, final, limit, deadline)
            content_type = response.headers.get_content_type()
            return Fetched(
                status=200 if status != 304 else 304,
                body=body,
                url=final,
                content_type=content_type.lower(),
                charset=response.headers.get_content_charset(),
                etag=response.headers.get("ETag"),
                last_modified=_http_date(response.headers.get("Last-Modified")),
            )

    def download(
        self, upstream: Upstream, url: str, sink: IO[bytes], *, max_bytes: int | None = None
    ) -> int:
        """Copy a file into ``sink`` (from its current position); return its size."""
        limit = self.limits.max_upstream_file if max_bytes is None else max_bytes
        deadline = time.monotonic() + self.limits.upstream_file_deadline
        response, final = self._open(upstream, url, {"Accept": "*/*"}, deadline)
        with contextlib.closing(response):
            self._check_status(response.status, final)
            size = 0
            for chunk in self._chunks(response, final, limit, deadline):
                sink.write(chunk)
                size += len(chunk)
            return size

    # -- the request, its redirects and its body ------------------------------------

    def _open(
        self, upstream: Upstream, url: str, headers: dict[str, str], deadline: float
    ) -> tuple[http.client.HTTPResponse, str]:
        try:
            current = check_link(upstream, url)
        except ValueError as exc:
            raise UpstreamError(f"{display_url(url)} is refused: {exc}.") from None
        for _ in range(MAX_REDIRECTS + 1):
            # check_link let only http and https through, and the opener has no other.
            request = urllib.request.Request(current, method="GET")  # noqa: S310
            request.add_header("User-Agent", USER_AGENT)
            request.add_header("Accept-Encoding", "identity")
            for name, value in headers.items():
                request.add_header(name, value)
            if upstream.username is not None and _origin(current) == _origin(upstream.url):
                pair = f"{upstream.username}:{upstream.password or ''}".encode()
                request.add_header("Authorization", "Basic " + base64.b64encode(pair).decode())
            if time.monotonic() > deadline:
                raise UpstreamError(f"{display_url(current)} did not answer in time.")
            try:
                response = self._opener.open(request, timeout=self.limits.upstream_timeout)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                raise UpstreamError(
                    f"{display_url(current)} could not be reached: {_reason(exc)}."
                ) from None
            if response is None:
                raise UpstreamError(f"{display_url(current)} could not be reached.")
            if response.status not in _REDIRECTS:
                return response, current
            location = response.headers.get("Location", "")
            response.close()
            target = urljoin(current, location.strip())
            if not location or len(target) > 8192:
                raise UpstreamError(f"{display_url(current)} redirects nowhere usable.")
            if _origin(current)[0] == "https" and _origin(target)[0] != "https":
                raise UpstreamError(f"{display_url(current)} redirects from https to plain http.")
            try:
                check_link(upstream, target)
            except ValueError as exc:
                raise UpstreamError(
                    f"{display_url(current)} redirects to a refused URL: {exc}."
                ) from None
            current = target
        raise UpstreamError(f"{display_url(url)} redirects more than {MAX_REDIRECTS} times.")

    @staticmethod
    def _check_status(status: int, url: str) -> None:
        if status in (404, 410):
            raise UpstreamNotFoundError(f"{display_url(url)} answered {status}.")
        if status in (401, 403):
            raise UpstreamError(
                f"{display_url(url)} answered {status}: check the upstream's credentials."
            )
        if status != 200:
            raise UpstreamError(f"{display_url(url)} answered {status}.")

    def _chunks(
        self, response: http.client.HTTPResponse, url: str, limit: int, deadline: float
    ) -> Iterator[bytes]:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise UpstreamError(f"{display_url(url)} is larger than {limit} bytes.")
        size = 0
        while True:
            if time.monotonic() > deadline:
                raise UpstreamError(f"{display_url(url)} did not arrive in time.")
            try:
                chunk = response.read(READ_SIZE)
            except (OSError, http.client.HTTPException) as exc:
                raise UpstreamError(f"{display_url(url)} broke off: {_reason(exc)}.") from None
            if not chunk:
                return
            size += len(chunk)
            if size > limit:
                raise UpstreamError(f"{display_url(url)} is larger than {limit} bytes.")
            yield chunk

    def _read_all(
        self, response: http.client.HTTPResponse, url: str, limit: int, deadline: float
    ) -> bytes:
        return b"".join(self._chunks(response, url, limit, deadline))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        exc = exc.reason
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return redact_tokens(" ".join(text.split()))[:200].rstrip(".")


def _http_date(value: str | None) -> str | None:
    """A Last-Modified value to send back, if it is a date at all (bounded, parsed)."""
    if not value or len(value) > 100:
        return None
    try:
        email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return value
