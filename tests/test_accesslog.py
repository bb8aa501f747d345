"""Access logs: one record per request, request ids, token ids, never a token."""

from __future__ import annotations

import base64
import gc
import io
import json
import logging
import os
import signal
import sys
import time
import weakref
from collections.abc import Callable, Iterator

import hypothesis
import hypothesis.strategies
import pytest
import webtest

from private_channels import ChannelRegistry, MemoryStorage, Scope, TokenStore
from private_channels.accesslog import (
    REQUEST_ID_KEY,
    AccessLogMiddleware,
    LineHandler,
    _quoted,
    configure_logging,
    redact_path,
)

from .support import mounted, test_app

PREFIXES = ["/api/repo", "/deep/er/mount"]


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def records() -> Iterator[Records]:
    logger = logging.getLogger("private_channels.access")
    handler = Records()
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture
def setup() -> tuple[MemoryStorage, str, str, str]:
    storage = MemoryStorage()
    ChannelRegistry(storage).create("team")
    secret, token = TokenStore(storage).create(channels=["team"], scope=Scope.READ)
    other, _ = TokenStore(storage).create(channels=["elsewhere"], scope=Scope.READ)
    return storage, secret, token.id, other


@pytest.mark.parametrize("prefix", PREFIXES)
def test_json_record_with_token_id_and_request_id(
    setup: tuple[MemoryStorage, str, str, str], records: Records, prefix: str
) -> None:
    storage, secret, token_id, _ = setup
    app = test_app(storage, prefix, access_log="json")
    response = app.get(
        f"{prefix}/team/simple/", headers={"X-Auth": secret, "User-Agent": "pip/26.0"}, status="*"
    )
    assert len(records.lines) == 1
    record = json.loads(records.lines[0])
    assert record["token_id"] == token_id
    assert record["method"] == "GET"
    assert record["path"] == f"{prefix}/team/simple/"
    assert record["status"] == response.status_int
    assert record["size"] == len(response.body)
    assert record["user_agent"] == "pip/26.0"
    assert record["duration_ms"] >= 0
    assert record["request_id"] == response.headers["X-Request-ID"]
    assert secret not in records.lines[0]


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_a_refusal_is_logged_with_its_sentence_and_never_a_token(
    setup: tuple[MemoryStorage, str, str, str], records: Records, log_format: str
) -> None:
    """pip, uv and R do not show why they were refused: the log does."""
    storage, secret, _, other = setup
    app = test_app(storage, "/api/repo", access_log=log_format)
    app.get("/api/repo/team/simple/", headers={"X-Auth": secret}, status=200)
    app.get("/api/repo/team/simple/", headers={"X-Auth": other}, status=403)
    app.get(f"/api/repo/t/{secret[:-1]}x/team/simple/", status=401)
    app.get(f"/api/repo/{secret}/simple/", headers={"X-Auth": secret}, status=403)
    basic = base64.b64encode(f"{secret}:mypassword".encode()).decode()
    app.get("/api/repo/team/simple/", headers={"Authorization": f"Basic {basic}"}, status=401)
    reasons = [
        json.loads(line)["reason"] if log_format == "json" else _text_reason(line)
        for line in records.lines
    ]
    assert reasons == [
        None,
        "This token is not for channel 'team'.",
        "The token is invalid or expired.",
        "This token is not for channel '<redacted>'.",
        "The password is not one this server takes: send the token as the user name with the "
        "password 'x-auth-token', or the user name '__token__' with the token as the password.",
    ]
    text = "\n".join(records.lines)
    assert secret not in text and secret[:-1] not in text and "mypassword" not in text


def _text_reason(line: str) -> str | None:
    _, found, reason = line.partition(" reason=")
    return json.loads(reason) if found else None


@pytest.mark.parametrize("prefix", PREFIXES)
def test_no_token_form_reaches_the_log(
    setup: tuple[MemoryStorage, str, str, str], records: Records, prefix: str
) -> None:
    storage, secret, token_id, other = setup
    app = test_app(storage, prefix, access_log="json")
    basic = base64.b64encode(f"{secret}:x-auth-token".encode()).decode()
    pypi = base64.b64encode(f"__token__:{secret}".encode()).decode()
    wrong = secret[:-1] + ("1" if secret.endswith("0") else "0")
    app.get(f"{prefix}/t/{secret}/team/simple/", status="*")
    app.get(f"{prefix}/T/{secret}/team/simple/", status="*")
    app.get(f"{prefix}/team/simple/", headers={"Authorization": f"Basic {basic}"}, status="*")
    app.get(f"{prefix}/team/simple/", headers={"Authorization": f"Basic {pypi}"}, status="*")
    app.get(f"{prefix}/team/simple/", headers={"Authorization": f"Bearer {secret}"}, status="*")
    app.get(f"{prefix}/{secret}/simple/", status="*")  # a token pasted as channel name
    app.get(f"{prefix}/team/simple/", headers={"X-Auth": other}, status=403)
    app.get(f"{prefix}/team/simple/", headers={"X-Auth": wrong}, status=401)
    text = "\n".join(records.lines)
    assert len(records.lines) == 8
    assert secret not in text and other not in text and secret[:-1] not in text
    paths = [json.loads(line)["path"] for line in records.lines]
    assert paths[0] == f"{prefix}/t/<redacted>/team/simple/"
    assert paths[1] == f"{prefix}/t/<redacted>/team/simple/"
    assert paths[5] == f"{prefix}/<redacted>/simple/"
    # The path form authenticated: its token id is logged like the header forms'
    # ("/T/" is no token form, only a channel that nobody may probe).
    token_ids = [json.loads(line)["token_id"] for line in records.lines[:5]]
    assert token_ids == [token_id, None, token_id, token_id, token_id]
    assert [json.loads(line)["status"] for line in records.lines[6:]] == [403, 401]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/repo/t/abc/team/simple/", "/api/repo/t/<redacted>/team/simple/"),
        ("/t/abc", "/t/<redacted>"),
        ("/api/repo/t//abc/team/", "/api/repo/t/<redacted>/team/"),
        ("/api/repo/team/simple/", "/api/repo/team/simple/"),
        # A sha256 where our URLs put one is no token; any other run of 48 hex digits or
        # more may hold one (a token followed by a digit, a token pasted twice).
        ("/x/sha256/" + "a" * 64 + "/f.whl", "/x/sha256/" + "a" * 64 + "/f.whl"),
        ("/x/files/" + "a" * 64 + "/f.whl", "/x/files/" + "a" * 64 + "/f.whl"),
        ("/x/shards/" + "a" * 64 + ".msgpack.zst", "/x/shards/" + "a" * 64 + ".msgpack.zst"),
        ("/x/" + "a" * 64 + "/f.whl", "/x/<redacted>/f.whl"),
        ("/x/" + "a" * 49 + "/", "/x/<redacted>/"),
        ("/x/" + "a" * 96 + "/", "/x/<redacted>/"),
        ("/x/" + "a" * 48 + "simple/", "/x/<redacted>simple/"),
        ("/x/sha256/" + "a" * 65 + "/", "/x/sha256/<redacted>/"),
        ("/x/" + "a" * 48 + "/", "/x/<redacted>/"),
    ],
)
def test_redact_path(path: str, expected: str) -> None:
    assert redact_path(path) == expected


def test_request_id_honoured_or_made(records: Records) -> None:
    app = test_app(MemoryStorage(), "/api/repo", access_log="text")
    given = app.get("/api/repo/-/health", headers={"X-Request-ID": "lb-1234.abc"})
    assert given.headers["X-Request-ID"] == "lb-1234.abc"
    assert "request_id=lb-1234.abc" in records.lines[-1]
    made = {app.get("/api/repo/-/health").headers["X-Request-ID"] for _ in range(3)}
    assert len(made) == 3
    # An id that could forge a log line or carry junk is replaced, not echoed.
    for bad in ["has space", "x" * 129, 'quote"s', "new\\nline"]:
        response = app.get("/api/repo/-/health", headers={"X-Request-ID": bad})
        assert response.headers["X-Request-ID"] != bad
        assert len(response.headers["X-Request-ID"]) == 32


def test_text_line_cannot_be_split(records: Records) -> None:
    app = test_app(MemoryStorage(), "/api/repo", access_log="text")
    app.get("/api/repo/-/health", headers={"User-Agent": 'evil"\n127.0.0.1 - admin'})
    assert len(records.lines) == 1
    line = records.lines[0]
    assert "\n" not in line
    assert line.startswith("127.0.0.1 - - [") or line.startswith("- - - [")
    assert '"GET /api/repo/-/health" 200 ' in line


def test_the_request_id_is_in_the_environ_and_the_app_errors_are_logged(records: Records) -> None:
    seen = {}

    def failing(environ, start_response):  # type: ignore[no-untyped-def]
        seen["id"] = environ[REQUEST_ID_KEY]
        raise RuntimeError("boom")

    app = webtest.TestApp(mounted(AccessLogMiddleware(failing, format="json"), "/api/repo"))
    with pytest.raises(RuntimeError):
        app.get("/api/repo/x")
    record = json.loads(records.lines[-1])
    assert record["status"] == 500
    assert record["request_id"] == seen["id"]


def test_body_is_closed_and_counted_once(records: Records) -> None:
    closed = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"abc"
            yield b"de"

        def close(self) -> None:
            closed.append(True)

    def inner(environ, start_response):  # type: ignore[no-untyped-def]
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Request-ID", "spoof")])
        return Body()

    app = webtest.TestApp(mounted(AccessLogMiddleware(inner, format="json"), "/api/repo"))
    response = app.get("/api/repo/x")
    assert response.headers.getall("X-Request-ID") == [json.loads(records.lines[0])["request_id"]]
    assert closed == [True]
    assert len(records.lines) == 1
    assert json.loads(records.lines[0])["size"] == 5


def test_a_list_body_is_sent_as_it_is_and_logged_once_when_closed(records: Records) -> None:
    """A body that is a list (the usual: a page, a small file) reaches the server as a
    list, iterated at a list's speed, and is logged with its length when closed."""
    chunks = [b"abc", b"de"]

    # The app's own request ids, in any case, give way to ours.
    answer = [("Content-Type", "text/plain"), ("X-Request-ID", "spoof"), ("x-request-id", "b")]

    def inner(environ, start_response):  # type: ignore[no-untyped-def]
        start_response("200 OK", answer)
        return chunks

    headers: list[list[tuple[str, str]]] = []
    body = AccessLogMiddleware(inner, format="json")(
        {"REQUEST_METHOD": "GET", "PATH_INFO": "/f"}, lambda s, h, e=None: headers.append(h)
    )
    assert isinstance(body, list) and list(body) == chunks
    assert records.lines == []  # not before the server is done with it
    body.close()  # type: ignore[attr-defined]
    body.close()  # type: ignore[attr-defined]
    assert len(records.lines) == 1
    record = json.loads(records.lines[0])
    assert (record["status"], record["size"]) == (200, 5)
    assert headers[0] == [("Content-Type", "text/plain"), ("X-Request-ID", record["request_id"])]
    assert len(answer) == 3  # the app's list as it was: it may be the app's constant


def test_redaction_remembers_only_the_texts_it_left_as_they_were(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same paths and User-Agents come back request after request: those with
    nothing to redact are remembered (bounded), and nothing with a token ever is."""
    from private_channels import redaction

    monkeypatch.setattr(redaction, "_UNCHANGED", {})
    path = "/api/repo/team/files/" + "a" * 64 + "/x-1.0-py3-none-any.whl"
    with_token = "/api/repo/t/" + "b" * 48 + "/team/simple/"
    assert redaction.redact_tokens(path) == path
    assert redaction.redact_tokens(with_token) == "/api/repo/t/<redacted>/team/simple/"
    assert redaction.redact_tokens("x" * 513) == "x" * 513  # too long to keep
    assert list(redaction._UNCHANGED) == [path]
    monkeypatch.setattr(redaction, "_redacted", lambda text: pytest.fail("scanned again"))
    assert redaction.redact_tokens(path) == path
    monkeypatch.undo()
    monkeypatch.setattr(redaction, "_UNCHANGED", {})
    monkeypatch.setattr(redaction, "_UNCHANGED_ENTRIES", 3)
    for i in range(10):
        redaction.redact_tokens(f"/p{i}")
    assert 1 <= len(redaction._UNCHANGED) <= 3


@hypothesis.given(
    hypothesis.strategies.lists(
        hypothesis.strategies.text()
        | hypothesis.strategies.sampled_from(
            ["/t/", "a" * 48, "files/", "%2F", "eyJ", "."]
        ).flatmap(lambda piece: hypothesis.strategies.text().map(lambda t: t + piece + t)),
        max_size=10,
    )
)
def test_a_remembered_answer_is_the_scan_s_answer(texts: list[str]) -> None:
    from private_channels import redaction

    for text in texts + texts:
        assert redaction.redact_tokens(text) == redaction._redacted(text)


def test_bad_format_is_refused() -> None:
    with pytest.raises(ValueError, match="'xml'"):
        AccessLogMiddleware(lambda e, s: [], format="xml")


def test_configure_logging_writes_one_line_per_request() -> None:
    logger = logging.getLogger("private_channels.access")
    saved = (logger.handlers[:], logger.propagate, logger.level)
    logger.handlers.clear()
    stream = io.StringIO()
    try:
        assert configure_logging(stream) is logger
        configure_logging(io.StringIO())  # a second call keeps the first handler
        app = test_app(MemoryStorage(), "/api/repo", access_log="json")
        app.get("/api/repo/-/health")
        app.get("/api/repo/-/health")
        lines = stream.getvalue().splitlines()
        assert [json.loads(line)["status"] for line in lines] == [200, 200]
    finally:
        logger.handlers[:], logger.propagate = saved[0], saved[1]
        logger.setLevel(saved[2])


def test_file_wrapper_bodies_pass_through_for_sendfile(records: Records) -> None:
    """A body made with the server's ``wsgi.file_wrapper`` is returned as it is, so
    that the server can still send the file itself; it is logged with its length."""
    from wsgiref.util import FileWrapper

    def inner(environ, start_response):  # type: ignore[no-untyped-def]
        start_response("200 OK", [("Content-Length", "5")])
        return environ["wsgi.file_wrapper"](io.BytesIO(b"hello"))

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/f", "wsgi.file_wrapper": FileWrapper}
    headers: list[list[tuple[str, str]]] = []
    body = AccessLogMiddleware(inner, format="json")(
        environ, lambda s, h, e=None: headers.append(h)
    )
    assert isinstance(body, FileWrapper)
    assert b"".join(body) == b"hello"
    body.close()
    record = json.loads(records.lines[-1])
    assert (record["status"], record["size"]) == (200, 5)
    assert ("X-Request-ID", record["request_id"]) in headers[0]


@hypothesis.given(hypothesis.strategies.text())
def test_quoting_is_json_quoting(text: str) -> None:
    assert _quoted(text) == json.dumps(text)


def test_made_request_ids_are_distinct_and_well_formed() -> None:
    """Ids are made a block at a time: across blocks, middlewares and threads that
    find a block used up at once, each is made once and taken once."""
    import threading

    from private_channels.accesslog import _ID_BLOCK

    middleware = AccessLogMiddleware(lambda environ, start_response: [])
    other = AccessLogMiddleware(lambda environ, start_response: [])
    ids = [middleware.request_id({}) for _ in range(2 * _ID_BLOCK + 7)] + [other.request_id({})]
    taken: list[list[str]] = [[] for _ in range(8)]
    start = threading.Barrier(8)

    def take(mine: list[str]) -> None:
        start.wait()
        mine.extend(middleware.request_id({}) for _ in range(_ID_BLOCK + 3))

    threads = [threading.Thread(target=take, args=(mine,)) for mine in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids += [i for mine in taken for i in mine]
    assert len(set(ids)) == len(ids) == 2 * _ID_BLOCK + 8 + 8 * (_ID_BLOCK + 3)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


class _Stream(io.StringIO):
    """A stream that counts its writes (each a system call on a real one)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


@pytest.fixture
def access_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("private_channels.access")
    saved = (logger.handlers[:], logger.propagate, logger.level)
    logger.handlers.clear()
    try:
        yield logger
    finally:
        logger.handlers[:], logger.propagate = saved[0], saved[1]
        logger.setLevel(saved[2])


def _batched(logger: logging.Logger, flush_interval: float) -> tuple[_Stream, LineHandler]:
    """configure_logging's handler, writing batches ``flush_interval`` apart to a stream
    that counts its writes."""
    stream = _Stream()
    configure_logging(stream, flush_interval=flush_interval)
    handler = logger.handlers[0]
    assert isinstance(handler, LineHandler)
    return stream, handler


def test_batched_lines_are_written_together_in_pieces_that_keep_lines_whole(
    access_logger: logging.Logger,
) -> None:
    stream, handler = _batched(access_logger, 1.0)
    app = test_app(MemoryStorage(), "/api/repo", access_log="json")
    started = time.monotonic()
    for _ in range(60):
        app.get("/api/repo/-/health", headers={"User-Agent": "x" * 100})
    if time.monotonic() - started < 0.5:
        assert stream.writes == []  # nothing yet: the interval has not passed
    deadline = time.monotonic() + 10
    while len(stream.getvalue().splitlines()) < 60:
        assert time.monotonic() < deadline, "the writer thread never wrote the lines"
        time.sleep(0.05)
    lines = stream.getvalue().splitlines()
    assert [json.loads(line)["status"] for line in lines] == [200] * 60
    # A few writes, none longer than PIPE_BUF, each ending a line.
    assert 1 < len(stream.writes) < 20
    assert all(len(piece) <= 4096 and piece.endswith("\n") for piece in stream.writes)
    # What is still waiting at exit is written by flush (logging.shutdown calls it).
    app.get("/api/repo/-/health")
    handler.flush()
    assert len(stream.getvalue().splitlines()) == 61


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_a_batched_line_is_made_when_written_with_the_request_s_own_facts(
    setup: tuple[MemoryStorage, str, str, str],
    access_logger: logging.Logger,
    monkeypatch: pytest.MonkeyPatch,
    log_format: str,
) -> None:
    """With a flush interval the handler's thread formats the lines it writes: each
    still has the time, token id and size of its request, and no token, however late
    it is written."""
    from private_channels import accesslog

    storage, secret, token_id, _ = setup
    stream, handler = _batched(access_logger, 60.0)
    app = test_app(storage, "/api/repo", access_log=log_format)
    answered = time.time()
    response = app.get(
        f"/api/repo/t/{secret}/team/simple/", headers={"User-Agent": f"pip {secret}"}
    )
    assert stream.writes == []  # waiting for the interval
    later = answered + 7200
    monkeypatch.setattr(accesslog.time, "time", lambda: later)
    handler.flush()
    (line,) = stream.getvalue().splitlines()
    assert secret not in line and "/api/repo/t/<redacted>/team/simple/" in line
    if log_format == "json":
        record = json.loads(line)
        assert record["token_id"] == token_id and record["size"] == len(response.body)
        assert record["user_agent"] == "pip <redacted>"
    else:
        assert f" - {token_id} [" in line and f" 200 {len(response.body)} " in line
        logged = line.split("[", 1)[1].split("]", 1)[0]
        seconds = time.mktime(time.strptime(logged, "%d/%b/%Y:%H:%M:%S %z"))
        assert abs(seconds - answered) < 5  # the request's time, not the write's


def test_a_waiting_line_holds_nothing_of_the_server_s(access_logger: logging.Logger) -> None:
    """The exchange waits for the handler's thread with its facts alone: the request's
    input and the server's start_response (which may hold a body) are let go."""
    stream, handler = _batched(access_logger, 60.0)

    def inner(environ: dict[str, object], start_response: Callable[..., object]) -> list[bytes]:
        environ["REMOTE_USER"] = "tok_id"
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    class Start:
        def __call__(self, status: str, headers: object, exc_info: object = None) -> None:
            self.status = status

    start, body_input = Start(), io.BytesIO(b"x" * 1000)
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/x", "wsgi.input": body_input}
    body = AccessLogMiddleware(inner, format="text")(environ, start)  # type: ignore[arg-type]
    assert list(body) == [b"ok"]
    body.close()  # type: ignore[attr-defined]
    gone = [weakref.ref(start), weakref.ref(body_input)]
    del start, body_input, environ, body
    gc.collect()
    assert [ref() for ref in gone] == [None, None] and stream.writes == []
    handler.flush()
    assert '"POST /x" 200 2 ' in stream.getvalue() and " - tok_id [" in stream.getvalue()


def test_waiting_lines_of_hostile_requests_hold_no_more_than_written_lines(
    access_logger: logging.Logger,
) -> None:
    """A line waits for the handler's thread with its client fields already cut when
    they are long: 200 requests with a path and a User-Agent of 100,000 characters each
    leave no more waiting than the lines that will be written (4 KiB a field)."""
    import tracemalloc

    from private_channels.accesslog import MAX_LOGGED_FIELD

    stream, handler = _batched(access_logger, 60.0)

    def inner(environ: dict[str, object], start_response: Callable[..., object]) -> list[bytes]:
        start_response("404 Not Found", [("Content-Length", "0")])
        return []

    app = AccessLogMiddleware(inner, format="json")
    secret = "c" * 64
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(200):
            environ = {
                "REQUEST_METHOD": "GET",
                "PATH_INFO": f"/{i}/t/{secret}/" + "p" * 100_000,
                "HTTP_USER_AGENT": "u" * 100_000,
            }
            body = app(environ, lambda status, headers, exc_info=None: None)  # type: ignore[arg-type]
            body.close()  # type: ignore[attr-defined]
            del environ, body
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 200 * 4 * (MAX_LOGGED_FIELD + 1024), held  # uncut: 200 x 200,000
    handler.flush()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 200 and secret not in stream.getvalue()
    record = json.loads(lines[0])
    assert record["path"] == ("/0/t/<redacted>/" + "p" * 100_000)[:MAX_LOGGED_FIELD]
    assert record["user_agent"] == "u" * MAX_LOGGED_FIELD


def test_the_line_goes_straight_to_the_handler_unless_the_host_added_more(
    access_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = _Stream()
    configure_logging(stream)
    app = test_app(MemoryStorage(), "/api/repo", access_log="text")

    def no_record(*args: object, **kwargs: object) -> logging.LogRecord:
        raise AssertionError("a LogRecord was made for configure_logging's handler alone")

    monkeypatch.setattr(access_logger, "makeRecord", no_record)
    app.get("/api/repo/-/health")
    assert len(stream.writes) == 1 and '"GET /api/repo/-/health" 200' in stream.writes[0]
    # A handler the host adds sees records, as it would of any logger.
    monkeypatch.undo()
    seen: list[logging.LogRecord] = []
    extra = logging.Handler()
    extra.emit = seen.append  # type: ignore[method-assign]
    access_logger.addHandler(extra)
    app.get("/api/repo/-/health")
    assert len(seen) == 1 and len(stream.writes) == 2
    assert seen[0].getMessage() == stream.writes[1].rstrip("\n")


def test_a_stream_that_blocks_holds_requests_back_instead_of_memory(
    access_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lines do not pile up without bound behind a stream that does not take them (a
    full pipe): past the bound, the request that logs writes them itself."""
    from private_channels import accesslog

    monkeypatch.setattr(accesslog, "_MAX_PENDING", 5)
    stream, handler = _batched(access_logger, 60.0)
    for i in range(4):
        handler.write_line(f"line {i}")
    assert stream.writes == []
    handler.write_line("line 4")  # the fifth: written at once, with the four before it
    assert stream.getvalue().splitlines() == [f"line {i}" for i in range(5)]


def _written(stream: _Stream, count: int, within: float = 10.0) -> list[str]:
    """The stream's lines once it has ``count`` of them (a failure after ``within``)."""
    deadline = time.monotonic() + within
    while len(lines := stream.getvalue().splitlines()) < count:
        assert time.monotonic() < deadline, f"{len(lines)} of {count} lines written"
        time.sleep(0.01)
    return lines


def test_lines_handed_over_by_many_threads_are_each_written_once(
    access_logger: logging.Logger,
) -> None:
    """Requests hand their lines over without a lock while the writer takes them: none
    is lost or written twice, whichever thread appends, flushes or writes."""
    import threading

    stream, handler = _batched(access_logger, 0.002)

    def hand_over(thread: int) -> None:
        for i in range(2000):
            handler.write_line(f"{thread} {i}")
            if i % 20 == 0:
                handler.flush()  # as a request past the bound, or logging.shutdown, does

    threads = [threading.Thread(target=hand_over, args=(t,)) for t in range(8)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads taking turns between any two bytecodes
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    lines = _written(stream, 16_000)
    assert sorted(lines) == sorted(f"{t} {i}" for t in range(8) for i in range(2000))


def test_a_flush_that_finds_fewer_lines_than_it_counted_writes_those_it_found(
    access_logger: logging.Logger,
) -> None:
    """Two flushes at once (the writer's, and a request's past the bound or the exit's):
    one may take the last lines between the other's count and its taking them."""
    import collections

    class Taken(collections.deque):  # type: ignore[type-arg]
        def __len__(self) -> int:  # one line more than it holds: taken meanwhile
            return super().__len__() + 1

    stream, handler = _batched(access_logger, 60.0)
    handler._pending = Taken()
    for i in range(3):
        handler.write_line(f"line {i}")
    handler.flush()
    assert stream.getvalue().splitlines() == ["line 0", "line 1", "line 2"]


def test_a_line_after_a_quiet_spell_wakes_the_writer(access_logger: logging.Logger) -> None:
    """After a second without lines the writer sleeps until one comes: the next line is
    written within the interval, not left waiting for another."""
    stream, handler = _batched(access_logger, 0.02)
    for quiet in range(3):
        handler.write_line(f"line {quiet}")
        started = time.monotonic()
        _written(stream, quiet + 1, within=5.0)
        assert time.monotonic() - started < 2.0
        time.sleep(1.3)  # the writer goes to sleep
        assert handler._asleep  # the state the next line must wake it from


def test_a_forked_process_leaves_its_parent_s_waiting_lines_to_the_parent(
    access_logger: logging.Logger,
) -> None:
    """A worker forked while lines wait (a server that answered before it forked) does
    not write them again: they are its parent's."""
    read, write = os.pipe()
    stream, handler = _batched(access_logger, 60.0)
    handler.write_line("the parent's")
    child = os.fork()
    if child == 0:  # pragma: no cover (the child reports through the pipe)
        signal.alarm(30)
        try:
            handler.write_line("the child's")
            handler.flush()
            os.write(write, stream.getvalue().encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as answer:
        written = answer.read()
    os.waitpid(child, 0)
    assert written.splitlines() == ["the child's"]
    handler.flush()
    assert stream.getvalue().splitlines() == ["the parent's"]


def test_the_pid_logged_is_the_process_that_answered(records: Records) -> None:
    """Gunicorn's workers are forked from a process that may have loaded the app: each
    logs its own id, not its parent's."""
    app = test_app(MemoryStorage(), "/api/repo", access_log="json")
    app.get("/api/repo/-/health")
    assert json.loads(records.lines[-1])["pid"] == os.getpid()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child reports through the pipe)
        signal.alarm(30)  # a child stuck on a lock taken before the fork: a failure, not a hang
        try:
            app.get("/api/repo/-/health")
            os.write(write, f"{json.loads(records.lines[-1])['pid']} {os.getpid()}".encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as answer:
        logged, own = answer.read().split()
    os.waitpid(child, 0)
    assert logged == own == str(child)
