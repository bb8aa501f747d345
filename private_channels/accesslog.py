"""Access logs with request ids, the token id, and never a token.

::

    app = AccessLogMiddleware(app, format="json")    # one JSON object per request

Each request gets an id: the incoming ``X-Request-ID`` when it looks like one (a proxy
or load balancer that made one up first: at most 128 letters, digits and ``._:+/=-``,
and nothing that looks like a token), else a fresh one.  It is returned in the
response's ``X-Request-ID`` header, kept in ``environ["private_channels.request_id"]``,
and logged with the method, path, status, size, duration, client address and the id of
the token that authenticated the request (``REMOTE_USER``, set by
:class:`~private_channels.auth.TokenAuthMiddleware`; a token id, never its secret).
A refusal (any status from 400 on) is logged with its reason phrase, which is the one
sentence the server answered (see :mod:`~private_channels.errors`): pip, uv and R do not
show it to their users, so this is where an administrator reads why they were refused.

Paths are logged with the ``/t/<TOKEN>/`` segment replaced by ``/t/<redacted>/`` and
without their query string, and no header that carries credentials is ever read here;
whatever else the client chose (path, method, ``User-Agent``) has anything that looks
like a token redacted and is cut to 4096 characters.
Records go to the ``private_channels.access`` logger (see :func:`configure_logging`);
``format="text"`` gives one line close to the common log format.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import itertools
import json
import logging
import os
import re
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any

from .auth import redact_tokens

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = [
    "FLUSH_INTERVAL",
    "REQUEST_ID_KEY",
    "AccessLogMiddleware",
    "LineHandler",
    "configure_logging",
    "redact_path",
]

REQUEST_ID_KEY = "private_channels.request_id"
LOGGER_NAME = "private_channels.access"
# Incoming ids end up in log lines and in the response: accept only what cannot forge
# or break a line, is no longer than this, and holds nothing that looks like a token.
MAX_REQUEST_ID = 128
_REQUEST_ID = re.compile(rf"[A-Za-z0-9._:+/=-]{{1,{MAX_REQUEST_ID}}}\Z")
# The fields of the record that come from the client (address, method, path, agent)
# are redacted (a token sent as a User-Agent or a method is still a token), then cut
# to this many characters (AccessLogMiddleware._log).
MAX_LOGGED_FIELD = 4096


def redact_path(path: str) -> str:
    """``/api/repo/t/<TOKEN>/ch/...`` to ``/api/repo/t/<redacted>/ch/...``.

    Every ``/t/<segment>`` is cut, wherever it is, because the mount prefix is unknown
    here; a project or file path that happens to contain ``/t/`` loses one segment in
    the log, which is a small price for never logging a token.
    """
    return redact_tokens(path)


#: How long ``private-channels serve`` keeps access lines before it writes them.
FLUSH_INTERVAL = 0.1
# Lines of a batch are written in pieces of at most this many bytes, each ending a
# line, so that the lines of processes sharing one pipe (gunicorn's workers) never mix.
# (A line is ASCII: every client field in it is quoted as JSON.)
_PIPE_BUF = 4096
# Past this many waiting lines (a stream that blocks: a full pipe nobody reads) a
# request writes them itself, and waits as it would without the thread.
_MAX_PENDING = 10_000


class _Process:
    """This process's id, kept: ``os.getpid`` is a system call (glibc caches it no
    more), and every access line asks for it twice."""

    pid = os.getpid()

    @classmethod
    def forked(cls) -> None:
        cls.pid = os.getpid()
        for handler in list(_handlers):
            handler._forked()


# Every LineHandler, for the fork hook above.
_handlers: weakref.WeakSet[LineHandler] = weakref.WeakSet()


if hasattr(os, "register_at_fork"):  # no fork, no other process id, elsewhere
    os.register_at_fork(after_in_child=_Process.forked)


def configure_logging(
    stream: IO[str] | None = None, *, flush_interval: float = 0.0
) -> logging.Logger:
    """Send access records to ``stream`` (stderr) one message a line, unless the
    host configured the ``private_channels.access`` logger itself.

    With a ``flush_interval`` (seconds) the lines are written in batches that far
    apart (see :class:`LineHandler`), and those still waiting when the process exits
    normally are written then; the standalone server uses :data:`FLUSH_INTERVAL`.
    """
    logger = logging.getLogger(LOGGER_NAME)
    if not logger.handlers:
        logger.addHandler(LineHandler(stream or sys.stderr, flush_interval=flush_interval))
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A record is its message on one line; :class:`AccessLogMiddleware` hands this
    handler its lines directly (:meth:`write_line`) when it is the logger's only one.

    With ``flush_interval`` > 0 a thread of the handler writes the lines that came
    in that interval with one system call per 4 KiB (each request writing its own
    line costs a system call that hands the GIL to another of the server's threads,
    a fifth of what a page cost on waitress: docs/performance.md), and makes the lines
    of the requests that :class:`AccessLogMiddleware` hands it (formatting a batch
    in one go costs less than a line in each request).  Lines still
    waiting are written by :meth:`flush`, which ``logging.shutdown`` calls at exit;
    a process killed outright loses at most that interval's lines.

    A request hands its line over with a ``deque.append`` and three reads, no lock and
    no event (each cost a request some microseconds with the CPU's caches cold, as
    they are under a busy server: docs/performance.md, thirteenth round): the thread
    looks for lines every interval, and after a second without any it sleeps until a
    request wakes it.
    """

    def __init__(self, stream: IO[str], *, flush_interval: float = 0.0) -> None:
        super().__init__(stream)
        self.setFormatter(logging.Formatter("%(message)s"))
        self.flush_interval = flush_interval
        # Lines, or the exchanges whose lines they are (formatted when written):
        # appended by requests and taken by the writer, each atomically.
        self._pending: collections.deque[str | _Exchange] = collections.deque()
        self._asleep = False  # the writer waits for _wake: the next line sets it
        self._wake = threading.Event()
        self._start_lock = threading.Lock()
        self._writer_pid = 0  # the process whose thread writes: none yet, or forked
        _handlers.add(self)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.write_line(line)

    def write_line(self, line: str | _Exchange) -> None:
        """Write ``line``, or the line of an exchange (formatted when written: see
        :meth:`AccessLogMiddleware._log`)."""
        if self.flush_interval <= 0:
            self._write([line])
            return
        pending = self._pending
        pending.append(line)
        if len(pending) >= _MAX_PENDING:
            self.flush()
        elif self._writer_pid != _Process.pid:
            self._start_writer()
        elif self._asleep:  # read after the append: the writer sets it before it looks
            self._asleep = False
            self._wake.set()

    def flush(self) -> None:
        pending = self._pending
        # Each popleft takes one line whole, whichever thread appends or flushes too
        # (another flush may take the last ones first).
        lines: list[str | _Exchange] = []
        with contextlib.suppress(IndexError):
            for _ in range(len(pending)):
                lines.append(pending.popleft())
        if lines:
            self._write(lines)
        super().flush()

    def _start_writer(self) -> None:
        with self._start_lock:
            # Started here, on the first line of each process: a thread started before
            # a server forks its workers would not run in them.
            if self._writer_pid == _Process.pid:
                return
            self._writer_pid = _Process.pid
        threading.Thread(target=self._writer, name="access-log", daemon=True).start()

    def _writer(self) -> None:
        idle = 0
        while True:
            time.sleep(self.flush_interval)
            if self._pending:
                idle = 0
                with contextlib.suppress(Exception):  # the thread outlives any one failure
                    self.flush()
                continue
            idle += 1
            if idle * self.flush_interval >= 1.0:
                # Asleep first, then a last look: a request that appends after that look
                # finds _asleep set and wakes us; one before it is in the look.
                self._asleep = True
                if not self._pending:
                    self._wake.wait()
                self._wake.clear()
                self._asleep = False
                idle = 0

    def _forked(self) -> None:
        """In a child process: the lines waiting are the parent's to write, and no
        thread of the parent's holds the handler's lock or event here."""
        self._pending.clear()
        self._asleep = False
        self._wake = threading.Event()
        self._start_lock = threading.Lock()

    def _write(self, items: list[str | _Exchange]) -> None:
        pieces: list[str] = []
        size = 0
        try:
            lines = [item if isinstance(item, str) else item.line() for item in items]
            with self.lock:  # type: ignore[union-attr]
                for line in lines:
                    if size + len(line) >= _PIPE_BUF and pieces:
                        self.stream.write("".join(pieces))
                        self.stream.flush()
                        pieces, size = [], 0
                    pieces.append(line + "\n")
                    size += len(line) + 1
                if pieces:
                    self.stream.write("".join(pieces))
                    self.stream.flush()
        except Exception:  # a closed or broken stream: the lines are lost, as logging would
            if logging.raiseExceptions:
                with contextlib.suppress(Exception):
                    sys.stderr.write("--- Logging error: access lines lost ---\n")


# Request ids made at once, and the counter's bits in an id.
_ID_BLOCK = 1000
_ID_MASK = 0xFFFFFFFFFFFFFFFF


class AccessLogMiddleware:
    """Log one record per request, after its body was sent (or the app failed)."""

    def __init__(
        self,
        app: WSGIApplication,
        *,
        format: str = "text",
        logger: logging.Logger | None = None,
        trust_request_id: bool = True,
    ) -> None:
        if format not in ("text", "json"):
            raise ValueError(f"access log format {format!r} is not 'text' or 'json'")
        self.app = app
        self.format = format
        self.logger = logger or logging.getLogger(LOGGER_NAME)
        self.trust_request_id = trust_request_id
        # Ids made here: a random prefix per middleware and a counter, as unique as
        # uuid4's (it is 64 random bits, then 64 of count) at a fraction of the cost.
        # They are made _ID_BLOCK at a time (the counter counts blocks), and a request
        # takes one: formatting a number as 16 hex digits cost a request some 10 µs
        # with the CPU's caches cold (docs/performance.md, twenty-second round).
        self._id_prefix = uuid.uuid4().hex[:16]
        self._id_blocks = itertools.count(int.from_bytes(os.urandom(4)) * _ID_BLOCK, _ID_BLOCK)
        self._fresh_ids: list[str] = []
        self._clock = (-1, "")  # the second, and its text: one value, for the threads

    def request_id(self, environ: WSGIEnvironment) -> str:
        incoming = str(environ.get("HTTP_X_REQUEST_ID") or "")
        if (
            incoming
            and self.trust_request_id
            and len(incoming) <= 2 * MAX_REQUEST_ID  # bounded before any pattern runs
            and _REQUEST_ID.match(incoming := incoming.strip())
            and redact_tokens(incoming) == incoming
        ):
            return incoming
        try:
            return self._fresh_ids.pop()
        except IndexError:
            return self._more_ids()

    def _more_ids(self) -> str:
        """A fresh id, of a new block.  Threads that find none left at once each make
        a block (each of its own numbers) and take an id, any: each is taken once."""
        first, prefix = next(self._id_blocks), self._id_prefix
        block = [f"{prefix}{(first + i) & _ID_MASK:016x}" for i in range(_ID_BLOCK - 1, -1, -1)]
        self._fresh_ids.extend(block)
        try:
            return self._fresh_ids.pop()
        except IndexError:  # all taken meanwhile by other threads: one of this block
            return block[0]

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        # What a request costs here is mostly the memory it touches with the CPU's caches
        # cold, as a busy server's are (docs/performance.md, thirteenth round): few
        # functions and objects, and the line made later, in the handler's thread.
        if "HTTP_X_REQUEST_ID" in environ:
            request_id = self.request_id(environ)
        else:
            try:
                request_id = self._fresh_ids.pop()
            except IndexError:
                request_id = self._more_ids()
        environ[REQUEST_ID_KEY] = request_id
        exchange = _Exchange(self, environ, start_response, request_id)
        try:
            body = self.app(environ, exchange.start_response)
        except BaseException:
            exchange.status = 500
            self._log(exchange)
            raise
        if type(body) is list:
            # The usual body, whole in memory: the server iterates the list itself.
            logged = _LoggedList(body)
            logged.exchange = exchange
            return logged
        wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(wrapper, type) and isinstance(body, wrapper):
            # The server sends such a body itself (gunicorn with sendfile); wrapping it
            # would hide that, so log now, with the size the response declared.
            for name, value in exchange.headers:
                if name.lower() == "content-length" and value.isdigit():
                    exchange.size = int(value)
            self._log(exchange)
            return body
        return _LoggedBody(body, exchange)

    def _log(self, exchange: _Exchange) -> None:
        if exchange.logged:
            return
        exchange.logged = True
        exchange.finished = time.time()
        exchange.ended = time.monotonic()
        environ = exchange.environ
        exchange.token_id = environ.get("REMOTE_USER") or None
        # The line may wait for the handler's thread; what the server handed the request
        # need not: its environ and input, and the server's own objects behind its
        # start_response (which may hold an upload's body).
        exchange.environ, exchange.start, exchange.headers = _LET_GO, _answered, ()
        if (
            len(exchange.path) + len(exchange.user_agent) + len(exchange.method)
            + len(exchange.remote_addr) > MAX_LOGGED_FIELD
        ):  # fmt: skip
            # Hostile or odd (a path of 200 KiB): cut now, so that a line waiting for
            # the handler's thread holds no more than a written one.
            exchange.redact()
        logger = self.logger
        if logger.isEnabledFor(logging.INFO):
            handlers = logger.handlers
            if (
                len(handlers) == 1
                and type(handler := handlers[0]) is LineHandler
                and not logger.propagate
                and not logger.filters
                and not handler.filters
                and handler.level <= logging.INFO
            ):
                # configure_logging's handler alone: the line is all it needs of a record,
                # and it makes it when it writes (with a flush interval, in its thread,
                # a batch at a time, not in the request's, with the CPU's caches cold).
                handler.write_line(exchange)
                return
            # Logger.info would also look up the caller's frame for every record, which
            # an access record does not need (its place in the code is always this one).
            logger.handle(
                logger.makeRecord(logger.name, logging.INFO, __file__, 0, exchange.line(), (), None)
            )

    def _line(self, exchange: _Exchange) -> str:
        """One log line: JSON, or text like the common log format plus id and duration."""
        exchange.redact()
        if self.format == "json":
            return json.dumps(exchange.record(), separators=(",", ":"))
        second, when = self._clock
        now = int(exchange.finished)
        if now != second:
            when = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(now))
            self._clock = (now, when)
        # Quoted and escaped as JSON, so a hostile path or agent cannot split the line.
        reason = f" reason={_quoted(exchange.reason)}" if exchange.reason else ""
        return (
            f"{exchange.remote_addr or '-'} - {exchange.token_id or '-'} [{when}] "
            f"{_quoted(exchange.method + ' ' + exchange.path)} {exchange.status} "
            f"{exchange.size} {exchange.duration_ms}ms "
            f"request_id={exchange.request_id} {_quoted(exchange.user_agent)}{reason}"
        )


class _Exchange:
    """One request as :class:`AccessLogMiddleware` sees it pass: what the client asked,
    read when it arrived, and what the app answered."""

    __slots__ = (
        "ended",
        "environ",
        "finished",
        "headers",
        "logged",
        "method",
        "middleware",
        "path",
        "reason",
        "remote_addr",
        "request_id",
        "size",
        "start",
        "started",
        "status",
        "token_id",
        "user_agent",
    )

    def __init__(
        self,
        middleware: AccessLogMiddleware,
        environ: WSGIEnvironment,
        start: StartResponse,
        request_id: str,
    ) -> None:
        self.started = time.monotonic()
        self.middleware = middleware
        self.environ = environ
        self.start = start
        self.request_id = request_id
        # Read the path now: the wrapped apps cut the token out of PATH_INFO, but
        # SCRIPT_NAME + PATH_INFO as they arrived is what the client asked for.  It is
        # redacted with the other client fields when logged, before anything reads it.
        get = environ.get
        self.remote_addr: str = get("REMOTE_ADDR") or ""
        self.method: str = get("REQUEST_METHOD") or ""
        self.path: str = (get("SCRIPT_NAME") or "") + (get("PATH_INFO") or "")
        self.user_agent: str = get("HTTP_USER_AGENT") or ""
        self.status: int | None = None
        self.reason: str | None = None
        self.size = 0
        self.headers: list[tuple[str, str]] | tuple[()] = ()  # the app's, until logged
        self.logged = False
        # These three when logged.
        self.token_id: str | None = None
        self.finished = self.ended = 0.0

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Any:
        code, _, reason = status.partition(" ")
        self.status = int(code)
        # A refusal's reason phrase is its one sentence (errors.http_error): why pip,
        # uv or R were refused, which none of them shows its user.
        self.reason = redact_tokens(reason) if self.status >= 400 else None
        self.headers = headers  # for the Content-Length of a body the server sends itself
        # Ours replaces any the app set (12 characters: most names need no lower()).
        for name, _ in headers:
            if len(name) == 12 and name.lower() == "x-request-id":
                answered = [h for h in headers if h[0].lower() != "x-request-id"]
                break
        else:
            answered = headers.copy()
        answered.append(("X-Request-ID", self.request_id))
        return self.start(status, answered, exc_info)

    @property
    def duration_ms(self) -> float:
        return round((self.ended - self.started) * 1000, 3)

    def line(self) -> str:
        return self.middleware._line(self)

    def redact(self) -> None:
        """The fields the client chose, redacted whole, then cut: a cut first could leave
        most of a token unredacted.  (Each is usually short or free of what a token looks
        like, which redact_tokens finds out with a few ``in`` tests; a field redacted
        and cut already comes out the same.)"""
        self.remote_addr = redact_tokens(str(self.remote_addr))[:MAX_LOGGED_FIELD]
        self.method = redact_tokens(str(self.method))[:MAX_LOGGED_FIELD]
        self.path = redact_tokens(str(self.path))[:MAX_LOGGED_FIELD]
        self.user_agent = redact_tokens(str(self.user_agent))[:MAX_LOGGED_FIELD]

    def record(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "remote_addr": self.remote_addr,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "reason": self.reason,
            "size": self.size,
            "user_agent": self.user_agent,
            # Which worker answered, under gunicorn and other pre-forking servers.
            "pid": _Process.pid,
            "token_id": self.token_id,
            "duration_ms": self.duration_ms,
        }


# What an exchange holds of its request's environ once logged: nothing.
_LET_GO: dict[str, Any] = {}


def _answered(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
    """The start_response of an exchange already logged: none may come after."""
    raise RuntimeError("start_response called after the request was logged")


def _quoted(text: str) -> str:
    """``json.dumps(text)``, without its machinery for the usual printable ASCII."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    if len(text) <= 512:
        return _json_quoted(text)  # pip's User-Agent, JSON in every request: remembered
    return json.dumps(text)


# Of redacted text only (see AccessLogMiddleware._log): nothing a log would not show.
_json_quoted = functools.lru_cache(maxsize=256)(json.dumps)


class _LoggedBody:
    """The app's body, counted as it is sent, logged once when the server closes it."""

    __slots__ = ("body", "exchange", "size")

    def __init__(self, body: Iterable[bytes], exchange: _Exchange) -> None:
        self.body = body
        self.exchange = exchange
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.body:
            self.size += len(chunk)
            yield chunk

    def close(self) -> None:
        exchange = self.exchange
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            if not exchange.logged:
                exchange.size = self.size
                exchange.middleware._log(exchange)


class _LoggedList(list):  # type: ignore[type-arg]
    """A body that is a list of byte strings, as the app made it (the server iterates
    it at a list's speed), logged once when the server closes it, with its length.
    (Made with list's own constructor, then given its exchange: no Python
    ``__init__`` to run.)"""

    __slots__ = ("exchange",)
    exchange: _Exchange

    def close(self) -> None:
        exchange = self.exchange
        if not exchange.logged:
            exchange.size = sum(map(len, self))
            exchange.middleware._log(exchange)
