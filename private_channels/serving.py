"""The standalone server's WSGI servers: waitress by default, werkzeug's on request.

::

    sock = socket.create_server(("127.0.0.1", 0))
    server = waitress_server(app, sock, max_request_body=limits.max_upload_size + MiB)
    run_until_stopped(server.run, server.close)     # SIGTERM and Ctrl-C end it cleanly

    # werkzeug's server, with a handler whose connection_dropped calls close_dropped:
    make_server(host, port, closed_when_dropped(app), request_handler=handler)

``private-channels serve`` binds the socket itself (so that port 0 and a busy port are
handled the same way for every server) and hands it over.  waitress is a production
server in pure Python: a thread pool behind one event loop, request bodies spooled
before the app runs, ``wsgi.file_wrapper`` for downloads.  Two things it does by
default would break a guarantee here, and are turned off:

- it logs the raw request path of a request that failed or whose client went away,
  and for R that path holds the token (``/t/<TOKEN>/``): every record of its loggers
  goes through :class:`~private_channels.logs.RedactTokens`;
- it echoes a malformed header line in its 400 answer, which may be a credential
  header: that answer is redacted too (:class:`_RedactingChannel`).

It also strips ``X-Forwarded-*`` headers unless told which proxy to trust; here the
app decides that (``trusted_proxies``, werkzeug's ``ProxyFix``), so waitress passes
them on untouched.

werkzeug's server, after it sent an answer, reads what is left of the request; when
the client reset the connection meanwhile (a client that closes an answer it did not
read), that read raises and the server never closes the app's response, which PEP
3333 asks for however the request ended, and which is when the access log writes the
request's line. :func:`closed_when_dropped` and :func:`close_dropped` (for the request
handler's ``connection_dropped``) close it then.
"""

from __future__ import annotations

import gc
import logging
import signal
import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .auth import redact_tokens
from .logs import RedactTokens

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = [
    "COLLECT_AFTER",
    "GUNICORN_THREADS",
    "SERVERS",
    "WAITRESS_THREADS",
    "close_dropped",
    "closed_when_dropped",
    "collect_less",
    "gunicorn_arguments",
    "run_until_stopped",
    "waitress_server",
]

#: The servers ``serve --server`` runs; the first is the default.
SERVERS = ("waitress", "werkzeug", "gunicorn")
#: Enough for 8 clients at once on keep-alive connections without queueing, few enough
#: that an idle server holds little; the GIL runs one at a time anyway.
WAITRESS_THREADS = 8
#: The threads of each gunicorn worker that ``serve --workers N`` runs, as many as
#: waitress's for the same reason.
GUNICORN_THREADS = 8


#: The cyclic garbage collector's first threshold in a server process: a young
#: collection once this many more container objects were made than freed (700 in
#: Python 3.11 and 3.12).
COLLECT_AFTER = 10_000


def collect_less() -> None:
    """Let the cyclic garbage collector run less often in this server process.

    A server keeps what it read and rendered (pages, documents, answers: some 150,000
    objects in a process serving 10,000 projects), and every full collection walks all
    of them: 100 ms and more on a small machine, with the interpreter lock held, so
    every thread of the process waits.  Python starts one after a fixed number of
    young collections, each once 700 more container objects were made than freed (a
    request's own, until their reference counts free them, and whatever the caches
    keep): under load, one every few seconds while the caches fill
    (docs/performance.md, sixteenth round).  Raised to :data:`COLLECT_AFTER`, a full
    collection waits for fourteen times as many objects, and fewer of a request's
    objects live long enough to count; cyclic garbage still goes within that many.  A
    threshold the host raised further, or a collector it turned off (``gc.disable()``
    or a threshold of 0), is left as it is.
    """
    first, middle, oldest = gc.get_threshold()
    if gc.isenabled() and 0 < first < COLLECT_AFTER:
        gc.set_threshold(COLLECT_AFTER, middle, oldest)


def gunicorn_arguments(workers: int) -> list[str]:
    """gunicorn's options for ``serve --workers N``: N workers of its threaded class.

    Not gunicorn's default (sync) class: a sync worker tells gunicorn it is alive only
    between requests, so one request that lasts longer than gunicorn's worker timeout
    (30 s unless set; a large upload or download over a slow link) gets the worker
    killed halfway, and it closes the connection after every answer, so pip and uv
    open a new one for each request.  A threaded worker's main loop reports every
    second whatever its threads do, and keeps connections alive; on 2 cores it also
    answered about a quarter more requests a second (docs/performance.md).

    Where gunicorn has one (version 25.1 and later), its control socket stays closed: a
    Unix socket under ``$XDG_RUNTIME_DIR`` or ``~/.gunicorn`` that takes commands (stop
    the workers, reload, show the configuration) is not a way into the server that
    ``serve`` needs, and every gunicorn of one user on a host binds the same path, so
    that a second server takes the first one's over and removes it when it stops.
    """
    arguments = [
        "--workers", str(workers),
        "--worker-class", "gthread",
        "--threads", str(GUNICORN_THREADS),
    ]  # fmt: skip
    if "control_socket_disable" in _gunicorn_settings():
        arguments.append("--no-control-socket")
    return arguments


def _gunicorn_settings() -> frozenset[str]:
    """The names of the installed gunicorn's settings (none without gunicorn)."""
    try:
        from gunicorn.config import KNOWN_SETTINGS
    except ImportError:
        return frozenset()
    return frozenset(setting.name for setting in KNOWN_SETTINGS)


def _log_waitress() -> None:
    """waitress's own records (errors, clients gone, a full queue) on stderr, redacted,
    unless the host configured its logger."""
    logger = logging.getLogger("waitress")
    if logger.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(name)s] %(message)s"))
    # On the handler, so that it sees the records of waitress.queue and the rest too.
    handler.addFilter(RedactTokens())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def waitress_server(
    app: WSGIApplication,
    sock: socket.socket,
    *,
    max_request_body: int,
    threads: int = WAITRESS_THREADS,
) -> Any:
    """A waitress server for ``app`` on the bound ``sock``, not yet running."""
    from waitress.channel import HTTPChannel
    from waitress.parser import HTTPRequestParser
    from waitress.server import create_server
    from waitress.task import WSGITask

    class _RedactingParser(HTTPRequestParser):  # type: ignore[misc]
        def received(self, data: bytes) -> int:
            consumed: int = super().received(data)
            error = getattr(self, "error", None)
            if error is not None and isinstance(error.body, str):
                error.body = redact_tokens(error.body)
            return consumed

    class _KeepAliveTask(WSGITask):  # type: ignore[misc]
        """waitress 3.0 closes an HTTP/1.1 connection after a response without a
        Content-Length, also after a 304 or 204, which ends at its headers (RFC 9112,
        6.3): every revalidation by pip or uv would cost a new connection.  Such a
        response keeps the connection, unless something else closes it."""

        _keep_open = False

        def build_response_header(self) -> bytes:
            self._keep_open = (
                not self.has_body
                and self.version == "1.1"
                and not self.close_on_finish
                and self.request.headers.get("CONNECTION", "").lower() != "close"
                and not any(name.lower() == "connection" for name, _ in self.response_headers)
            )
            try:
                header: bytes = super().build_response_header()
            finally:
                self._keep_open = False
            return header

        def set_close_on_finish(self) -> None:
            if not self._keep_open:
                super().set_close_on_finish()

    class _RedactingChannel(HTTPChannel):  # type: ignore[misc]
        parser_class = _RedactingParser
        task_class = _KeepAliveTask

    _log_waitress()
    server = create_server(
        app,
        sockets=[sock],
        threads=threads,
        # The app refuses an upload past its limit with a 413 that says so; waitress
        # must let that much through first (it spools the body to disk meanwhile).
        max_request_body_size=max_request_body,
        clear_untrusted_proxy_headers=False,
        # poll(), not select(): no limit of 1024 open connections.
        asyncore_use_poll=True,
        ident="private-channels",
    )
    server.channel_class = _RedactingChannel
    return server


def run_until_stopped(run: Callable[[], object], close: Callable[[], object]) -> None:
    """``run()`` until SIGTERM or SIGINT, then ``close()``: requests in progress get a
    few seconds to finish, and the process exits with status 0."""

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        run()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        close()


# Where closed_when_dropped keeps the response of a request until it is closed.
_RESPONSE = "private_channels.response"


def closed_when_dropped(app: WSGIApplication) -> WSGIApplication:
    """``app``, each of its responses kept in its request's environ until closed, for
    :func:`close_dropped` to close if the server does not (see the module's text)."""

    def keeping_response(environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        response = environ[_RESPONSE] = _Response(app(environ, start_response), environ)
        return response

    return keeping_response


def close_dropped(environ: WSGIEnvironment | None) -> None:
    """Close the response of a request whose client went away, unless it was closed
    already: what a werkzeug request handler's ``connection_dropped`` should do for an
    app wrapped in :func:`closed_when_dropped`."""
    response = environ.pop(_RESPONSE, None) if environ is not None else None
    if response is not None:
        response.close()


class _Response:
    """An app's response, which forgets its request's environ once closed."""

    __slots__ = ("body", "environ")

    def __init__(self, body: Iterable[bytes], environ: WSGIEnvironment) -> None:
        self.body = body
        self.environ: WSGIEnvironment | None = environ

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.body)

    def close(self) -> None:
        environ, self.environ = self.environ, None
        if environ is None:
            return  # closed already, by the server or by close_dropped
        environ.pop(_RESPONSE, None)
        close = getattr(self.body, "close", None)
        if close is not None:
            close()
