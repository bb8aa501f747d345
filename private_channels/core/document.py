"""One response for every rendered page and index: its bytes, or a 304 for a current copy.

::

    return DocumentResponse(
        body, etag=page_etag, content_type="application/vnd.pypi.simple.v1+json",
        cache_control="private, max-age=0, must-revalidate", vary=("Accept",),
    )

A simple index page, a CRAN ``PACKAGES`` file: each is bytes rendered once per version of
the storage document it derives from (kept in :class:`~.cache.DocumentCache`), sent
with a strong ETag that clients revalidate on every use.  That is most of the requests
a package server answers, so this is a small value object that is its own WSGI app (as
whitenoise's responders are) rather than a werkzeug ``Response``, whose header machinery
cost more than the rest of the request.  The common conditional request, ``GET`` or
``HEAD`` with ``If-None-Match`` alone, is answered here; a request with any other
precondition or a ``Range`` goes through werkzeug's ``make_conditional``, so every
answer is the one werkzeug gives.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import TYPE_CHECKING

from werkzeug.http import parse_etags
from werkzeug.wrappers import Response

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["DocumentResponse"]

_LARGE = 256 * 1024

# Preconditions this module leaves to werkzeug (If-None-Match it answers itself).
_OTHER_PRECONDITIONS = frozenset(
    ("HTTP_IF_MATCH", "HTTP_IF_MODIFIED_SINCE", "HTTP_IF_UNMODIFIED_SINCE", "HTTP_RANGE")
)


def _spares_a_copy(wrapper: object) -> bool:
    """Whether a large body in memory costs the server less through its file wrapper
    than handed whole: waitress's, which sends the blocks it reads (one copy fewer).
    gunicorn's reads them and sends each with a call of its own; handed whole, it sends
    a body with one: ``PACKAGES`` of 10,000 projects (1.66 MB) 1.28 times as many a
    second, with 28% less server CPU each (docs/performance.md, twentieth round)."""
    return getattr(wrapper, "__module__", "").startswith("waitress.")


class DocumentResponse:
    """``200`` with ``body``, or ``304`` to a client whose copy has ``etag`` (strong);
    ``headers`` go with both."""

    __slots__ = ("body", "etag", "headers")

    def __init__(
        self,
        body: bytes,
        *,
        etag: str,
        content_type: str,
        cache_control: str,
        vary: Iterable[str] = (),
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.body = body
        self.etag = etag
        # The ETag first and the Content-Type last (a 304 sends all but the last).
        self.headers = [("ETag", f'"{etag}"'), ("Cache-Control", cache_control)]
        self.headers += [("Vary", name) for name in vary]
        self.headers += headers
        self.headers.append(("Content-Type", content_type))

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD")
        if method not in ("GET", "HEAD") or not environ.keys().isdisjoint(_OTHER_PRECONDITIONS):
            return self._werkzeug(environ, start_response)
        current = environ.get("HTTP_IF_NONE_MATCH")
        if current and (
            current == self.headers[0][1] or parse_etags(current).contains_weak(self.etag)
        ):
            # RFC 9110 15.4.5: a 304 carries the ETag, Cache-Control and Vary of the 200.
            start_response("304 Not Modified", self.headers[:-1])
            return []
        start_response("200 OK", [*self.headers, ("Content-Length", str(len(self.body)))])
        if method == "HEAD":
            return []
        if len(self.body) > _LARGE:
            wrapper = environ.get("wsgi.file_wrapper")
            if _spares_a_copy(wrapper):
                # A large index (PACKAGES, a root page of tens of thousands of projects)
                # through waitress's file wrapper: waitress then sends it from here,
                # where a body it is handed it copies into its output buffer, and past
                # 1 MB into a temporary file.
                return wrapper(io.BytesIO(self.body), _LARGE)  # type: ignore[misc,no-any-return]
        return [self.body]

    def _werkzeug(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        response = Response(self.body)
        for name, value in self.headers:
            response.headers.add(name, value)
        response.headers["Content-Type"] = self.headers[-1][1]
        return response.make_conditional(environ)(environ, start_response)
