"""``private-channels serve`` on each of its servers: waitress (the default), werkzeug's
and gunicorn's; what waitress would log or echo of a token; a clean stop on SIGTERM;
the garbage collector's threshold in a server's process."""

from __future__ import annotations

import gc
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from private_channels import ChannelRegistry, Scope, TokenStore, open_storage, serving
from private_channels import cli as command_line
from private_channels.serving import COLLECT_AFTER, collect_less, gunicorn_arguments

from .packages import make_wheel
from .support import cli, live_server
from .support import test_app as app_for

TOKEN = "46e98d3dbf2378bb26e2107867652ee734eb098ea5b96f35"


def _start(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], Path, str]:
    log = tmp_path / f"serve-{time.monotonic_ns()}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRIVATE_CHANNELS_")}
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "private_channels", "serve", "--storage",
             str(tmp_path / "data"), "--port", "0", *args],
            stdout=out, stderr=subprocess.STDOUT, text=True, env=env,
        )  # fmt: skip
    deadline = time.monotonic() + 30
    while " on http://" not in log.read_text():
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    line = next(line for line in log.read_text().splitlines() if " on http://" in line)
    return process, log, line


@pytest.mark.parametrize(
    ("args", "server"), [((), "waitress"), (("--server", "werkzeug"), "werkzeug")]
)
def test_serve_runs_its_server_and_stops_cleanly_on_sigterm(
    tmp_path: Path, args: tuple[str, ...], server: str
) -> None:
    process, log, line = _start(tmp_path, *args)
    try:
        assert f" with {server} on http://127.0.0.1:" in line
        url = line.rsplit(" on ", 1)[1].strip()
        assert url.endswith("/api/repo/")
        parts = urlsplit(url)
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
            sock.sendall(b"GET /api/repo/-/health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 200")
    finally:
        process.send_signal(signal.SIGTERM)
        status = process.wait(timeout=20)
    assert status == 0, log.read_text()
    assert "Traceback" not in log.read_text()


@pytest.mark.parametrize("args", [(), ("--server", "werkzeug"), ("--workers", "1")])
def test_serve_logs_a_request_whose_client_reset_the_connection(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    """A client that closes an answer it has not read resets the connection; the
    request is logged all the same. (werkzeug's server, reading what is left of the
    request when the reset comes, never closed the app's response, when the access line
    is written: 18 of 20 such requests had none.)"""
    process, log, line = _start(tmp_path, *args)
    parts = urlsplit(line.rsplit(" on ", 1)[1].strip())
    ids = [f"reset-{i}" for i in range(20)]
    try:
        for request_id in ids:
            with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
                sock.sendall(
                    b"GET /api/repo/-/health HTTP/1.1\r\nHost: x\r\n"
                    + f"X-Request-ID: {request_id}\r\n\r\n".encode()
                )
                assert sock.recv(1) == b"H"
                # Closed with the rest unread, and no lingering: a reset, at once.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        deadline = time.monotonic() + 10
        while not all(f"request_id={i} " in log.read_text() for i in ids):
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
    assert "Traceback" not in log.read_text()


def test_a_response_kept_for_a_dropped_connection_is_closed_once() -> None:
    from private_channels.serving import close_dropped, closed_when_dropped

    closes: list[int] = []

    class Body(list):  # type: ignore[type-arg]
        def close(self) -> None:
            closes.append(1)

    def app(environ: dict[str, Any], start_response: Any) -> Body:
        start_response("200 OK", [])
        return Body([b"a", b"b"])

    wrapped = closed_when_dropped(app)
    # The server closed it, then reported the connection dropped: closed once.
    environ: dict[str, Any] = {}
    response = wrapped(environ, lambda *a: None)
    assert b"".join(response) == b"ab"
    response.close()  # type: ignore[attr-defined]
    close_dropped(environ)
    assert closes == [1] and environ == {}  # the environ no longer holds the response
    # The server did not close it (a reset while it read the rest of the request).
    environ = {}
    response = wrapped(environ, lambda *a: None)
    close_dropped(environ)
    response.close()  # type: ignore[attr-defined]
    assert closes == [1, 1] and environ == {}
    close_dropped(None)  # a connection dropped before there was a request


def test_workers_is_gunicorn_and_no_other_server(tmp_path: Path) -> None:
    result = cli("serve", "--port", "0", "--server", "werkzeug", "--workers", "2",
                 storage=tmp_path / "data", check=False)  # fmt: skip
    assert result.returncode == 1
    assert result.stderr == (
        "private-channels: error: --workers runs gunicorn; leave it out to run werkzeug\n"
    )


def test_gunicorn_arguments_are_options_of_the_installed_gunicorn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gunicorn.config import Config

    parsed = Config().parser().parse_args([*gunicorn_arguments(3), "app:app"])
    assert (parsed.workers, parsed.worker_class, parsed.threads) == (3, "gthread", 8)
    if "control_socket_disable" in serving._gunicorn_settings():  # gunicorn 25.1 on
        assert parsed.control_socket_disable is True
    # A gunicorn from before its control socket knows no option to close it.
    monkeypatch.setattr(serving, "_gunicorn_settings", frozenset)
    assert "--no-control-socket" not in gunicorn_arguments(3)


def test_waitress_logs_no_token_of_a_request_that_failed(tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path / "data"))
    ChannelRegistry(storage).create("team")
    token, _ = TokenStore(storage).create(channels=["team"], scope=Scope.WRITE)
    wheel = make_wheel(tmp_path, "demo", "1.0")
    app_for(storage).post(
        "/api/repo/team",
        {":action": "file_upload"},
        upload_files=[("content", wheel.name, wheel.read_bytes())],
        headers={"X-Auth": token},
    )
    # A damaged project document: the app fails, and logs the request's path as the
    # client sent it (the token in it), with what went wrong.
    (tmp_path / "data/channels/team/pypi/projects/demo.json").write_text("{")
    with live_server(str(tmp_path / "data"), tmp_path) as server:
        parts = urlsplit(server.url)
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
            sock.sendall(
                f"GET {parts.path}/t/{token}/team/simple/demo/ HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            )
            assert sock.recv(100).startswith(b"HTTP/1.1 500")
        deadline = time.monotonic() + 10
        while "answered 500" not in server.log_text():
            assert time.monotonic() < deadline, server.log_text()
            time.sleep(0.05)
    text = server.log_text()
    assert '"GET /api/repo/t/<redacted>/team/simple/demo/" 500' in text  # the access log
    assert token not in text


def test_waitress_own_records_are_redacted(capfd: pytest.CaptureFixture[str]) -> None:
    """What waitress logs itself (an app that fails while its answer is sent: "Exception
    while serving <path>", with the path as the client sent it) goes through the filter."""
    import logging

    from private_channels import serving

    logger = logging.getLogger("waitress")
    saved = logger.handlers[:], logger.level, logger.propagate
    logger.handlers.clear()
    try:
        serving._log_waitress()
        logger.error("Exception while serving %s", f"/api/repo/t/{TOKEN}/team/simple/demo/")
        err = capfd.readouterr().err
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved
    assert "Exception while serving /api/repo/t/<redacted>/team/simple/demo/" in err
    assert TOKEN not in err


def test_waitress_echoes_no_token_of_a_malformed_header(tmp_path: Path) -> None:
    with live_server(str(tmp_path / "data"), tmp_path) as server:
        parts = urlsplit(server.url)
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
            # A continuation line with nothing to continue: waitress quotes it in its 400.
            sock.sendall(
                f"GET {parts.path}/team/simple/ HTTP/1.1\r\n X-Auth: {TOKEN}\r\n\r\n".encode()
            )
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
    assert answer.startswith((b"HTTP/1.0 400", b"HTTP/1.1 400"))
    assert b"Malformed header line" in answer
    assert TOKEN.encode() not in answer
    assert TOKEN not in server.log_text()


def test_waitress_keeps_the_connection_after_a_304() -> None:
    """waitress 3.0 would close the connection after a response without a body (a 304
    has no Content-Length): every revalidation would cost a connection."""
    import http.client
    import threading

    from private_channels.serving import waitress_server

    def app(environ: dict[str, object], start_response: Any) -> list[bytes]:
        if environ.get("HTTP_IF_NONE_MATCH") == '"v1"':
            start_response("304 Not Modified", [("ETag", '"v1"')])
            return []
        start_response("200 OK", [("ETag", '"v1"'), ("Content-Length", "2")])
        return [b"ok"]

    sock = socket.create_server(("127.0.0.1", 0))
    server = waitress_server(app, sock, max_request_body=1024)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", sock.getsockname()[1], timeout=10)
        connection.request("GET", "/")
        assert connection.getresponse().read() == b"ok"
        first = connection.sock
        for _ in range(3):
            connection.request("GET", "/", headers={"If-None-Match": '"v1"'})
            response = connection.getresponse()
            response.read()
            assert response.status == 304 and response.getheader("Connection") is None
            assert connection.sock is first  # the same connection, not a new one
        # A client that asks for the connection to close still gets that.
        connection.request("GET", "/", headers={"If-None-Match": '"v1"', "Connection": "close"})
        response = connection.getresponse()
        response.read()
        assert response.status == 304 and response.getheader("Connection") == "close"
        connection.close()
    finally:
        server.close()


# -- the garbage collector in a server's process -----------------------------------------


@pytest.fixture
def collector() -> Iterator[None]:
    """Python's defaults for the test, and the collector as it was after it."""
    thresholds, enabled = gc.get_threshold(), gc.isenabled()
    gc.set_threshold(700, 10, 10)
    gc.enable()
    yield
    gc.set_threshold(*thresholds)
    if not enabled:
        gc.disable()


def test_collect_less_raises_the_first_threshold_alone(collector: None) -> None:
    collect_less()
    assert gc.get_threshold() == (COLLECT_AFTER, 10, 10)
    assert gc.isenabled()


@pytest.mark.parametrize("first", [0, COLLECT_AFTER * 5])
def test_collect_less_leaves_a_threshold_the_host_chose(collector: None, first: int) -> None:
    gc.set_threshold(first, 7, 9)  # 0: the collector off
    collect_less()
    assert gc.get_threshold() == (first, 7, 9)


def test_collect_less_leaves_a_collector_turned_off_off(collector: None) -> None:
    gc.disable()
    collect_less()
    assert not gc.isenabled()
    assert gc.get_threshold() == (700, 10, 10)


def test_serve_runs_its_server_with_the_collector_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, collector: None
) -> None:
    seen: list[tuple[int, ...]] = []

    def run_until_stopped(run: Any, close: Any) -> None:  # the server, stopped at once
        seen.append(gc.get_threshold())
        close()

    monkeypatch.setattr(command_line, "run_until_stopped", run_until_stopped)
    monkeypatch.setenv("PRIVATE_CHANNELS_LOG_FORMAT", "off")  # no writer thread left behind
    for server in ("waitress", "werkzeug"):
        gc.set_threshold(700, 10, 10)
        argv = ["serve", "--storage", str(tmp_path / "data"), "--port", "0", "--server", server]
        assert command_line.main(argv) == 0
    assert seen == [(COLLECT_AFTER, 10, 10)] * 2


def test_the_deployment_module_raises_the_collector(tmp_path: Path) -> None:
    """gunicorn's workers (``serve --workers N`` too) and ``waitress-serve`` import it."""
    script = (
        "import gc; gc.set_threshold(700, 10, 10); import private_channels.wsgi; "
        "print(gc.get_threshold())"
    )
    env = {**os.environ, "PRIVATE_CHANNELS_STORAGE": str(tmp_path / "data")}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    assert result.stdout.strip() == repr((COLLECT_AFTER, 10, 10))
