"""core/document.py: the response for rendered pages and indexes, and its 304s."""

from __future__ import annotations

from typing import Any

import pytest
import webtest
from werkzeug.wrappers import Response

from private_channels.core.document import DocumentResponse


def app(environ, start_response):  # type: ignore[no-untyped-def]
    response = DocumentResponse(
        b"<html>page</html>",
        etag="abc123",
        content_type="text/html; charset=utf-8",
        cache_control="private, max-age=0, must-revalidate",
        vary=("Accept",),
    )
    return response(environ, start_response)


client = webtest.TestApp(app)


def test_the_page_with_its_validators() -> None:
    response = client.get("/")
    assert response.body == b"<html>page</html>"
    assert response.headers["ETag"] == '"abc123"'
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Content-Length"] == "17"
    assert response.headers["Cache-Control"] == "private, max-age=0, must-revalidate"
    assert response.headers["Vary"] == "Accept"


def test_head_is_get_without_the_body() -> None:
    response = client.head("/")
    assert response.body == b""
    assert response.headers["Content-Length"] == "17"
    assert response.headers["ETag"] == '"abc123"'


@pytest.mark.parametrize(
    "if_none_match", ['"abc123"', 'W/"abc123"', '"other", "abc123"', "*", ' "abc123" ']
)
def test_a_current_copy_gets_a_304_with_its_validators(if_none_match: str) -> None:
    response = client.get("/", headers={"If-None-Match": if_none_match}, status=304)
    assert response.body == b""
    assert response.headers["ETag"] == '"abc123"'
    assert response.headers["Vary"] == "Accept"
    assert "Content-Length" not in response.headers or response.headers["Content-Length"] == "0"


@pytest.mark.parametrize("if_none_match", ['"abc12"', '"abc1234"', "abc123x", '""'])
def test_another_copy_gets_the_page(if_none_match: str) -> None:
    assert client.get("/", headers={"If-None-Match": if_none_match}).body.startswith(b"<html>")


def werkzeug_app(environ, start_response):  # type: ignore[no-untyped-def]
    response = Response(b"<html>page</html>", content_type="text/html; charset=utf-8")
    response.set_etag("abc123")
    response.headers["Cache-Control"] = "private, max-age=0, must-revalidate"
    response.headers["Vary"] = "Accept"
    return response.make_conditional(environ)(environ, start_response)


@pytest.mark.parametrize(
    "headers",
    [
        {"If-None-Match": '"abc123"', "If-Match": '"abc123"'},
        {"If-Match": '"other"'},
        {"Range": "bytes=0-3"},
        {"If-Modified-Since": "Wed, 21 Oct 2015 07:28:00 GMT"},
        {"If-Unmodified-Since": "Wed, 21 Oct 2015 07:28:00 GMT", "If-None-Match": '"abc123"'},
        {"If-None-Match": 'W/"abc123"'},
        {},
    ],
)
def test_answers_as_werkzeug_does(headers: dict[str, str]) -> None:
    ours = client.get("/", headers=headers, expect_errors=True)
    theirs = webtest.TestApp(werkzeug_app).get("/", headers=headers, expect_errors=True)
    assert (ours.status_int, ours.body, ours.headers["ETag"]) == (
        theirs.status_int,
        theirs.body,
        theirs.headers["ETag"],
    )


def test_a_large_document_goes_through_waitresss_file_wrapper_and_whole_elsewhere() -> None:
    """Through waitress's file wrapper a large body is sent from memory without a copy
    into its output buffer; gunicorn's would read and send it in blocks, each a call of
    its own, so there (and on a server without one) it is handed whole."""
    from gunicorn.http.wsgi import FileWrapper
    from waitress.buffers import ReadOnlyFileBasedBuffer

    body = b"x" * (1024 * 1024)
    response = DocumentResponse(body, etag="e", content_type="text/plain", cache_control="x")

    def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return None

    sent = response({"REQUEST_METHOD": "GET", "wsgi.file_wrapper": ReadOnlyFileBasedBuffer}, start)
    assert isinstance(sent, ReadOnlyFileBasedBuffer)
    sent.prepare()
    assert b"".join(iter(lambda: sent.get(65536, skip=True), b"")) == body
    for environ in ({"REQUEST_METHOD": "GET", "wsgi.file_wrapper": FileWrapper},
                    {"REQUEST_METHOD": "GET"}):  # fmt: skip
        assert response(environ, start) == [body]
    small = DocumentResponse(b"page", etag="e", content_type="text/plain", cache_control="x")
    waitress = {"REQUEST_METHOD": "GET", "wsgi.file_wrapper": ReadOnlyFileBasedBuffer}
    assert small(waitress, start) == [b"page"]
