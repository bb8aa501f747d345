"""Production serving: ``private_channels.wsgi:app`` under gunicorn (several workers) and
waitress as real processes on 127.0.0.1, and behind a reverse proxy with a path prefix."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
import webtest
from packaging.utils import canonicalize_name

from private_channels import ChannelRegistry, Scope, TokenStore, make_app, open_storage
from private_channels.config import Config

from .packages import make_wheel
from .support import REPO, cli, wait_for
from .test_examples import PIP_ENV, serving

# waitress-serve, not "python -m waitress", whose exit status is always 0.
WAITRESS = str(Path(sys.executable).with_name("waitress-serve"))
LISTENING = {
    "gunicorn": re.compile(r"Listening at: (http://127\.0\.0\.1:\d+)"),
    "waitress": re.compile(r"Serving on (http://127\.0\.0\.1:\d+)"),
}


@dataclass
class Server:
    url: str  # http://127.0.0.1:PORT (the app mounts itself at its configured prefix)
    log: Path

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Message, bytes]:
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.headers, error.read()

    def access_records(self) -> list[dict[str, object]]:
        return [
            json.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{")
        ]


@contextmanager
def production_server(
    kind: str,
    tmp_path: Path,
    env: dict[str, str],
    options: list[str] = (),  # type: ignore[assignment]
) -> Iterator[Server]:
    """Start gunicorn or waitress on a free port of 127.0.0.1 serving private_channels.wsgi:app."""
    command = {
        "gunicorn": [sys.executable, "-m", "gunicorn", "--workers", "3", "--bind", "127.0.0.1:0"],
        "waitress": [WAITRESS, "--listen=127.0.0.1:0", "--threads=4"],
    }[kind] + [*options, "private_channels.wsgi:app"]
    log = tmp_path / f"{kind}.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PRIVATE_CHANNELS_")}
    with log.open("w") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env={**full_env, **env}, cwd=tmp_path
        )
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None:
            match = LISTENING[kind].search(log.read_text())
            if match:
                url = match[1]
            elif process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{kind} did not start:\n{log.read_text()}")
            else:
                time.sleep(0.05)
        server = Server(url=url, log=log)
        while server.get("/api/repo/-/health")[0] != 200:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def deployment(tmp_path: Path) -> tuple[dict[str, str], dict[str, str]]:
    data = tmp_path / "data"
    storage = open_storage(str(data))
    ChannelRegistry(storage).create("team")
    ChannelRegistry(storage).create("docs", public=True)
    tokens = TokenStore(storage)
    read, token = tokens.create(channels=["team"], scope=Scope.READ)
    env = {
        "PRIVATE_CHANNELS_STORAGE": str(data),
        "PRIVATE_CHANNELS_LOG_FORMAT": "json",
        # Revocations must reach every worker at once for the test below.
        "PRIVATE_CHANNELS_TOKEN_CACHE_TTL": "0",
    }
    return env, {"read": read, "read_id": token.id}


@pytest.mark.parametrize("kind", ["gunicorn", "waitress"])
def test_production_server_serves_the_configured_app(
    kind: str, tmp_path: Path, deployment: tuple[dict[str, str], dict[str, str]]
) -> None:
    env, tokens = deployment
    with production_server(kind, tmp_path, env) as server:
        status, headers, body = server.get("/api/repo/-/health", {"X-Request-ID": "lb-7"})
        assert (status, json.loads(body)["status"], headers["X-Request-ID"]) == (200, "ok", "lb-7")
        assert server.get("/elsewhere")[0] == 404
        assert server.get("/api/repo/team/simple/")[0] == 401
        assert server.get("/api/repo/docs/simple/")[0] not in (401, 403)

        # Many requests at once, over as many connections: every worker authenticates
        # against the same storage.
        def fetch(i: int) -> int:
            return server.get(f"/api/repo/t/{tokens['read']}/team/simple/")[0]

        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(fetch, range(40)))
        assert all(code not in (401, 403) for code in statuses), statuses
        if kind == "gunicorn":
            # Workers boot one after the other: a few more batches until more than one
            # has answered (each record names its process).
            deadline = time.monotonic() + 20
            while len({r["pid"] for r in server.access_records()}) < 2:
                assert time.monotonic() < deadline, "one gunicorn worker answered everything"
                with ThreadPoolExecutor(max_workers=8) as pool:
                    statuses += list(pool.map(fetch, range(16)))
                time.sleep(0.2)
            assert all(code not in (401, 403) for code in statuses), statuses

        cli("token", "revoke", tokens["read_id"], storage=env["PRIVATE_CHANNELS_STORAGE"])
        with ThreadPoolExecutor(max_workers=8) as pool:
            assert set(pool.map(fetch, range(16))) == {401}

        def served() -> list[dict[str, object]]:
            return [
                r
                for r in server.access_records()
                if str(r["path"]).startswith("/api/repo/t/<redacted>/team/")
            ]

        # A record is written when the server closes the response, maybe just after
        # the client has read it: wait for the last ones before stopping the server.
        deadline = time.monotonic() + 10
        while len(served()) < len(statuses) + 16 and time.monotonic() < deadline:
            time.sleep(0.05)

    records = server.access_records()
    assert tokens["read"] not in server.log.read_text()
    assert len(served()) == len(statuses) + 16
    assert [r["token_id"] for r in served()].count(tokens["read_id"]) == len(statuses)
    pids = {r["pid"] for r in records}
    if kind == "gunicorn":
        assert len(pids) >= 2, f"{len(records)} requests, all answered by one worker"
        assert len(re.findall(r"Booting worker with pid", server.log.read_text())) >= 3


@pytest.mark.parametrize("kind", ["gunicorn", "waitress"])
def test_invalid_configuration_stops_start_up(kind: str, tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    command = {
        "gunicorn": [sys.executable, "-m", "gunicorn", "--workers", "2", "--bind", "127.0.0.1:0"],
        "waitress": [WAITRESS, "--listen=127.0.0.1:0"],
    }[kind] + ["private_channels.wsgi:app"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRIVATE_CHANNELS_")}
    env.update(PRIVATE_CHANNELS_STORAGE=str(tmp_path / "data"), PRIVATE_CHANNELS_SECRET_KEY="short")
    with log.open("w") as out:
        result = subprocess.run(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=60, cwd=tmp_path
        )
    assert result.returncode != 0
    text = log.read_text()
    assert (
        "private-channels: configuration error: The setting secret_key (from "
        "PRIVATE_CHANNELS_SECRET_KEY) is invalid: it has 5 characters, fewer than 32;"
    ) in text
    assert "short" not in text  # the key itself is never echoed


# --- Behind a reverse proxy that serves the app under a path prefix ---------------------

PUBLIC = "https://packages.example.org/outer"


def reverse_proxy(backend: Any, prefix: str = "/outer") -> Any:
    """What nginx does with ``location /outer/ { proxy_pass http://backend/; }`` and the
    usual ``X-Forwarded-*`` headers: strip the prefix and say so in the headers."""

    def proxy(environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if not path.startswith(prefix + "/"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"proxy: not found\n"]
        forwarded = dict(environ)
        forwarded.update(
            PATH_INFO=path[len(prefix) :],
            HTTP_X_FORWARDED_PREFIX=prefix,
            HTTP_X_FORWARDED_FOR=environ.get("REMOTE_ADDR", "127.0.0.1"),
            HTTP_X_FORWARDED_HOST=environ.get("HTTP_HOST", "localhost"),
            HTTP_X_FORWARDED_PROTO=environ.get("wsgi.url_scheme", "http"),
        )
        return backend(forwarded, start_response)

    return proxy


@pytest.fixture
def proxied(tmp_path: Path) -> tuple[webtest.TestApp, dict[str, str], Any]:
    storage = open_storage(str(tmp_path / "data"))
    ChannelRegistry(storage).create("team")
    write, _ = TokenStore(storage).create(channels=["team"], scope=Scope.WRITE)
    backend = Config(trusted_proxies=1, log_format="off").build_app(storage)
    app = reverse_proxy(backend)
    wheel = make_wheel(tmp_path, "Example_Pkg", "1.0")
    webtest.TestApp(app, extra_environ={"HTTP_HOST": "packages.example.org"}).post(
        "/outer/api/repo/team",
        {":action": "file_upload", "name": "Example_Pkg", "version": "1.0",
         "filetype": "bdist_wheel", "pyversion": "py3", "metadata_version": "2.1",
         "sha256_digest": hashlib.sha256(wheel.read_bytes()).hexdigest()},
        upload_files=[("content", wheel.name, wheel.read_bytes())],
        headers={"X-Auth": write},
    )  # fmt: skip
    client = webtest.TestApp(
        app,
        extra_environ={"HTTP_HOST": "packages.example.org", "wsgi.url_scheme": "https"},
    )
    client.authorization = ("Basic", (write, "x-auth-token"))
    return client, {"write": write, "sha256": hashlib.sha256(wheel.read_bytes()).hexdigest()}, app


def _follow(
    client: webtest.TestApp, url: str, status: int = 200, accept: str = "*/*"
) -> webtest.TestResponse:
    """GET a URL the server emitted, as the proxy would pass it on."""
    assert url.startswith(PUBLIC + "/"), url
    path = url.removeprefix("https://packages.example.org")
    return client.get(path, status=status, headers={"Accept": accept})


def test_redirects_behind_a_prefix_proxy_keep_the_prefix(
    proxied: tuple[webtest.TestApp, dict[str, str], Any],
) -> None:
    client, _, _ = proxied
    page = f"{PUBLIC}/api/repo/team/simple/Example_Pkg/"
    moved = _follow(client, page, status=301)
    assert urljoin(page, moved.headers["Location"]) == f"{PUBLIC}/api/repo/team/simple/example-pkg/"
    bare = f"{PUBLIC}/api/repo/team/simple"
    moved = _follow(client, bare, status=301)
    assert urljoin(bare, moved.headers["Location"]) == f"{PUBLIC}/api/repo/team/simple/"


@pytest.mark.parametrize("accept", ["text/html", "application/vnd.pypi.simple.v1+json"])
def test_index_links_behind_a_prefix_proxy_resolve_under_it(
    proxied: tuple[webtest.TestApp, dict[str, str], Any], accept: str
) -> None:
    client, expected, _ = proxied
    root = f"{PUBLIC}/api/repo/team/simple/"
    listing = _follow(client, root, accept=accept)
    if accept == "text/html":
        projects = re.findall(r'href="([^"]+)"', listing.text)
    else:
        # PEP 691: the client normalizes the name to build the project URL.
        projects = [canonicalize_name(p["name"]) + "/" for p in listing.json["projects"]]
    assert len(projects) == 1
    page_url = urljoin(root, projects[0])
    page = _follow(client, page_url, accept=accept)
    if accept == "text/html":
        links = re.findall(r'href="([^"]+)"', page.text)
    else:
        links = [f["url"] for f in page.json["files"]]
    assert len(links) == 1
    file_url = urljoin(page_url, links[0])
    assert file_url.startswith(f"{PUBLIC}/api/repo/team/")
    download = _follow(client, file_url.partition("#")[0])
    assert hashlib.sha256(download.body).hexdigest() == expected["sha256"]


@pytest.mark.e2e
def test_pip_installs_through_a_prefix_proxy(
    proxied: tuple[webtest.TestApp, dict[str, str], Any], tmp_path: Path
) -> None:
    _, tokens, app = proxied
    with serving(app) as base:
        host = base.removeprefix("http://")
        target = tmp_path / "target"
        result = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--target", str(target),
             "--index-url", f"http://{tokens['write']}:x-auth-token@{host}/outer/api/repo/team/simple/",
             "Example_Pkg==1.0"],
            capture_output=True, text=True, timeout=300, env=PIP_ENV,
        )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert (target / "example_pkg").is_dir()


def _multipart(fields: dict[str, str], filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="content"; filename="{filename}"'
        "\r\nContent-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def test_concurrent_uploads_through_gunicorn_workers_lose_nothing(
    tmp_path: Path, deployment: tuple[dict[str, str], dict[str, str]]
) -> None:
    env, _ = deployment
    storage = open_storage(env["PRIVATE_CHANNELS_STORAGE"])
    write, _ = TokenStore(storage).create(channels=["team"], scope=Scope.WRITE)
    auth = "Basic " + base64.b64encode(f"__token__:{write}".encode()).decode()
    (tmp_path / "wheels").mkdir()
    wheels: list[Path] = []

    def post_pids() -> set[object]:
        return {r["pid"] for r in server.access_records() if r["method"] == "POST"}

    with production_server("gunicorn", tmp_path, env) as server:

        def upload(wheel: Path) -> int:
            data = wheel.read_bytes()
            version = wheel.name.split("-")[1]
            body, content_type = _multipart(
                {":action": "file_upload", "protocol_version": "1", "name": "busy-pkg",
                 "version": version, "filetype": "bdist_wheel", "pyversion": "py3",
                 "metadata_version": "2.1", "sha256_digest": hashlib.sha256(data).hexdigest()},
                wheel.name, data,
            )  # fmt: skip
            request = urllib.request.Request(
                f"{server.url}/api/repo/team",
                data=body,
                headers={"Content-Type": content_type, "Authorization": auth},
            )
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status

        # Rounds of twelve concurrent uploads, until more than one worker has taken
        # some (workers boot one after the other, so the first round may meet only one).
        deadline = time.monotonic() + 60
        while len(wheels) < 12 or (len(post_pids()) < 2 and time.monotonic() < deadline):
            batch = [
                make_wheel(tmp_path / "wheels", "busy-pkg", f"1.{len(wheels) + i}")
                for i in range(12)
            ]
            wheels += batch
            with ThreadPoolExecutor(max_workers=6) as pool:
                assert list(pool.map(upload, batch)) == [200] * len(batch)
            time.sleep(0.2)
        status, _, body = server.get(
            "/api/repo/team/simple/busy-pkg/",
            {"Authorization": auth, "Accept": "application/vnd.pypi.simple.v1+json"},
        )
    assert status == 200
    listed = sorted(f["filename"] for f in json.loads(body)["files"])
    assert listed == sorted(w.name for w in wheels)
    assert len(post_pids()) >= 2


@contextmanager
def serving_workers(
    tmp_path: Path, env: dict[str, str], workers: int, prefix: str = "/api/repo"
) -> Iterator[Server]:
    """``private-channels serve --port 0 --workers N``, once its health check answers."""
    log = tmp_path / "serve.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PRIVATE_CHANNELS_")}
    full_env.update(env, PRIVATE_CHANNELS_PREFIX=prefix)
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "private_channels", "serve", "--port", "0",
             "--workers", str(workers)],
            stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=tmp_path,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        listening = re.compile(rf"with {workers} gunicorn workers on (http://\S+?){prefix}/")
        while not (match := listening.search(log.read_text())):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        server = Server(url=match[1], log=log)
        while server.get(f"{prefix}/-/health")[0] != 200:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_serve_workers_runs_gunicorn_on_the_bound_port(
    tmp_path: Path, deployment: tuple[dict[str, str], dict[str, str]]
) -> None:
    env, tokens = deployment
    with serving_workers(tmp_path, env, 3, prefix="/pkgs") as server:

        def fetch(i: int) -> int:
            return server.get(f"/pkgs/t/{tokens['read']}/team/simple/")[0]

        # Workers boot one after the other: keep sending batches until more than one
        # has answered (each record names its process).
        pids: set[object] = set()
        deadline = time.monotonic() + 60
        while len(pids) < 2 and time.monotonic() < deadline:
            with ThreadPoolExecutor(max_workers=8) as pool:
                assert set(pool.map(fetch, range(24))) == {200}
            time.sleep(0.2)
            pids = {r["pid"] for r in server.access_records()}
    log = server.log.read_text()
    assert len(pids) >= 2, log
    assert log.count("Booting worker") >= 3
    assert tokens["read"] not in log


def test_serve_workers_opens_no_control_socket(
    tmp_path: Path, deployment: tuple[dict[str, str], dict[str, str]]
) -> None:
    """gunicorn 25.1 and later listen on a control socket of their own, one path for
    every gunicorn of a user; ``serve --workers`` asks for none."""
    env, tokens = deployment
    runtime, home = tmp_path / "runtime", tmp_path / "home"
    runtime.mkdir()
    home.mkdir()
    places = {**env, "XDG_RUNTIME_DIR": str(runtime), "HOME": str(home)}
    with serving_workers(tmp_path, places, 1) as server:
        assert server.get(f"/api/repo/t/{tokens['read']}/team/simple/")[0] == 200
        # While it runs (gunicorn removes its socket when it stops), for a while: its
        # arbiter binds it from a thread of its own after starting the workers, within
        # a fraction of a second.
        deadline = time.monotonic() + 3
        while not [*runtime.iterdir(), *home.iterdir()] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [*runtime.iterdir(), *home.iterdir()] == []
        assert "Control socket" not in server.log.read_text()


def test_serve_workers_answers_an_upload_that_outlasts_gunicorns_worker_timeout(
    tmp_path: Path, deployment: tuple[dict[str, str], dict[str, str]]
) -> None:
    """A sync worker reports to gunicorn only between requests: gunicorn kills one
    busy with a request for longer than its timeout (30 s unless set: a large upload
    over a slow link).  ``serve --workers`` runs threaded workers, which report every
    second whatever they serve: an upload sent over 6 s with a timeout of 3 s lands."""
    env, _ = deployment
    storage = open_storage(env["PRIVATE_CHANNELS_STORAGE"])
    token, _ = TokenStore(storage).create(channels=["team"], scope=Scope.WRITE)
    wheel = make_wheel(tmp_path, "slowly", "1.0")
    filename = wheel.name
    body, content_type = _multipart({":action": "file_upload"}, filename, wheel.read_bytes())
    with serving_workers(tmp_path, {**env, "GUNICORN_CMD_ARGS": "--timeout 3"}, 1) as server:
        host, port = server.url.removeprefix("http://").split(":")
        auth = base64.b64encode(f"{token}:x-auth-token".encode()).decode()
        head = (
            f"POST /api/repo/team HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic {auth}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        began = time.monotonic()
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(head.encode())
            cuts = [len(body) * i // 61 for i in range(62)]
            for start, end in itertools.pairwise(cuts):
                sock.sendall(body[start:end])
                time.sleep(0.1)
            answer = sock.recv(65536).decode("latin-1")
        assert time.monotonic() - began > 6
        assert answer.startswith("HTTP/1.1 200"), answer
        status, _, page = server.get(
            "/api/repo/team/simple/slowly/", {"Authorization": f"Basic {auth}"}
        )
        assert status == 200 and filename.encode() in page
    log = server.log.read_text()
    assert "WORKER TIMEOUT" not in log and log.count("Booting worker") == 1, log


def test_serve_workers_keep_connections_alive(
    tmp_path: Path, deployment: tuple[dict[str, str], dict[str, str]]
) -> None:
    """pip and uv send many requests over one connection: a sync worker closes it after
    each answer, the threaded workers of ``serve --workers`` keep it."""
    env, tokens = deployment
    with serving_workers(tmp_path, env, 1) as server:
        host, port = server.url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            sockets = []
            for _ in range(3):
                connection.request("GET", f"/api/repo/t/{tokens['read']}/team/simple/")
                response = connection.getresponse()
                assert response.status == 200 and response.read()
                assert response.getheader("Connection", "").lower() != "close"
                sockets.append(connection.sock)
            assert sockets[0] is not None and sockets.count(sockets[0]) == 3
        finally:
            connection.close()


# --- gunicorn's own error log ------------------------------------------------------------


@pytest.mark.parametrize("redaction", ["logger-class", "module", "none"])
def test_gunicorns_error_line_never_shows_a_path_token(
    redaction: str, tmp_path: Path, deployment: tuple[dict[str, str], dict[str, str]]
) -> None:
    """A download whose disk fails after the response began: gunicorn logs "Error
    handling request GET <URI>" with its own copy of the URI, path token included,
    unless its logger redacts (``--logger-class``, or the filter installed by the app's
    module as ``private_channels.wsgi`` does); without either, the control case shows
    the token in clear, so the request did reach that line."""
    env, tokens = deployment
    storage = open_storage(env["PRIVATE_CHANNELS_STORAGE"])
    write, _ = TokenStore(storage).create(channels=["team"], scope=Scope.WRITE)
    wheel = make_wheel(tmp_path, "demo", "1.0")
    sha256 = hashlib.sha256(wheel.read_bytes()).hexdigest()
    webtest.TestApp(make_app(storage)).post(
        "/team",
        {":action": "file_upload"},
        upload_files=[("content", wheel.name, wheel.read_bytes())],
        headers={"X-Auth": write},
    )
    command = [sys.executable, "-m", "gunicorn", "--workers", "1", "--bind", "127.0.0.1:0"]
    if redaction == "logger-class":
        command += ["--logger-class", "private_channels.logs.GunicornLogger"]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PRIVATE_CHANNELS_")}
    full_env.update(env, REDACT="1" if redaction == "module" else "0", PYTHONPATH=str(REPO))
    log = tmp_path / "gunicorn.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [*command, "tests.failing_reads:app"],
            stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=tmp_path,
        )  # fmt: skip
    try:
        listening = wait_for(
            lambda: LISTENING["gunicorn"].search(log.read_text()), log=log, process=process
        )
        server = Server(url=listening[1], log=log)
        path = f"/api/repo/t/{tokens['read']}/team/files/{sha256}/{wheel.name}"
        with contextlib.suppress(OSError, http.client.HTTPException):
            server.get(path)
        wait_for(lambda: "Error handling request" in log.read_text(), log=log)
    finally:
        process.terminate()
        process.wait(timeout=20)
    text = log.read_text()
    assert f"/team/files/{sha256}/{wheel.name}" in text
    if redaction == "none":
        assert tokens["read"] in text
    else:
        assert tokens["read"] not in text, text
        assert f"Error handling request GET /api/repo/t/<redacted>/team/files/{sha256}" in text


# --- nginx, as docs/deployment.md configures it ----------------------------------------

NGINX_PREFIX = "/packages"


def find_nginx() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    return found


def nginx_config(blocks: list[str], directory: Path, port: int, backend: str) -> str:
    """docs/deployment.md's nginx blocks in a whole nginx.conf: the only changes are a
    local port for ``listen`` (no TLS), the test directory for logs, and the backend's
    address for ``127.0.0.1:8000``."""
    main_block, http_block, server_block = blocks
    server = server_block.replace("listen 443 ssl;", f"listen 127.0.0.1:{port};")
    server = "\n".join(line for line in server.splitlines() if "ssl_certificate" not in line)
    server = server.replace("/var/log/nginx/", f"{directory}/").replace("127.0.0.1:8000", backend)
    temp = "\n".join(
        f"    {kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;\n" if os.geteuid() == 0 else ""  # the test directory is root's
    return (
        f"{user}daemon off;\nworker_processes 1;\n{main_block}\npid {directory / 'nginx.pid'};\n"
        f"error_log {directory / 'main-error.log'} warn;\nevents {{}}\n"
        f"http {{\n{temp}\n{http_block}\n{server}\n}}\n"
    )


@dataclass
class Nginx:
    url: str  # http://127.0.0.1:PORT/packages
    access_log: Path
    error_log: Path


@contextmanager
def running_nginx(tmp_path: Path, backend: str, *, error_level: str = "crit") -> Iterator[Nginx]:
    """nginx with deployment.md's blocks, in front of ``backend`` (HOST:PORT), until the
    block ends; ``error_level`` replaces the documented level of the error log."""
    from .test_docs import blocks as doc_blocks

    nginx = find_nginx()
    directory = tmp_path / "nginx"
    directory.mkdir(parents=True)
    found = [b.body for b in doc_blocks("deployment.md") if b.language == "nginx"]
    assert len(found) == 3, "deployment.md should hold three nginx blocks: main, http, server"
    port = _free_port()
    config = directory / "nginx.conf"
    text = nginx_config(found, directory, port, backend)
    config.write_text(text.replace(".error.log crit;", f".error.log {error_level};"))
    tested = subprocess.run([nginx, "-t", "-c", str(config)], capture_output=True, text=True)
    assert tested.returncode == 0, tested.stderr + config.read_text()
    process = subprocess.Popen(
        [nginx, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        url = f"http://127.0.0.1:{port}{NGINX_PREFIX}"
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/repo/-/health", timeout=5).close()
                break
            except urllib.error.HTTPError as error:  # a 502 without a backend: nginx is up
                error.close()
                break
            except (urllib.error.URLError, ConnectionError):
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        yield Nginx(
            url, directory / "private-channels.access.log", directory / "private-channels.error.log"
        )
    finally:
        process.terminate()
        process.wait(timeout=20)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _hold(url: str, until: float) -> None:
    """A client that sends its request's headers one at a time, slowly, until ``until``."""
    import socket

    host, _, rest = url.removeprefix("http://").partition("/")
    address, _, port = host.partition(":")
    with socket.create_connection((address, int(port)), timeout=30) as sock:
        sock.sendall(f"GET /{rest}/api/repo/-/health HTTP/1.1\r\nHost: {host}\r\n".encode())
        while time.monotonic() < until:
            try:
                sock.sendall(b"X-Slow: 1\r\n")
            except OSError:
                return
            time.sleep(0.5)


def answered_while_held(url: str, *, holders: int = 6, hold: float = 8.0) -> bool:
    """Whether a health check through ``url`` is answered within 3 seconds while
    ``holders`` slow clients trickle their requests to the same address."""
    until = time.monotonic() + hold
    with ThreadPoolExecutor(max_workers=holders) as pool:
        for _ in range(holders):
            pool.submit(_hold, url, until)
        time.sleep(1.0)  # every slow client is connected and has been taken by a worker
        try:
            urllib.request.urlopen(f"{url}/api/repo/-/health", timeout=3).close()
            return True
        except (urllib.error.URLError, TimeoutError, ConnectionError):
            return False


@pytest.fixture
def gunicorn_app(
    tmp_path: Path, deployment: tuple[dict[str, str], dict[str, str]]
) -> Iterator[tuple[Server, dict[str, str], dict[str, str]]]:
    env, tokens = deployment
    env = {**env, "PRIVATE_CHANNELS_TRUSTED_PROXIES": "1"}
    with production_server("gunicorn", tmp_path, env) as server:
        yield server, env, tokens


def test_nginx_as_documented_serves_under_its_prefix_and_logs_no_token(
    tmp_path: Path, gunicorn_app: tuple[Server, dict[str, str], dict[str, str]]
) -> None:
    server, env, tokens = gunicorn_app
    storage = open_storage(env["PRIVATE_CHANNELS_STORAGE"])
    write, _ = TokenStore(storage).create(channels=["team"], scope=Scope.WRITE)
    wheel = make_wheel(tmp_path, "Demo_Pkg", "1.0")
    with running_nginx(tmp_path, server.url.removeprefix("http://")) as nginx:
        body, content_type = _multipart(
            {":action": "file_upload", "protocol_version": "1"}, wheel.name, wheel.read_bytes()
        )
        upload = urllib.request.Request(
            f"{nginx.url}/api/repo/team", data=body,
            headers={"Content-Type": content_type, "X-Auth": write},
        )  # fmt: skip
        with urllib.request.urlopen(upload, timeout=60) as response:
            assert response.status == 200
        read = tokens["read"]
        basic = "Basic " + base64.b64encode(f"{read}:x-auth-token".encode()).decode()
        requests = [
            (f"/api/repo/t/{read}/team/simple/Demo_Pkg/", {}),  # a 301 under the prefix
            (f"/api/repo/t/{read}/team/simple/demo-pkg/?format=x", {}),
            (f"/api/repo/%74/{read}/team/simple/", {}),
            (f"/api/repo/t%2F{read}/team/simple/", {}),
            (f"/api/repo/t%252F{read}/team/simple/", {}),
            (f"/api/repo/x%2F{read}/simple/", {}),
            (f"/api/repo/{read}/simple/", {}),
            ("/api/repo/team/simple/", {"Authorization": basic}),
        ]
        for path, headers in requests:
            request = urllib.request.Request(nginx.url + path, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    status = response.status
            except urllib.error.HTTPError as error:
                status = error.code
                if status == 301:
                    assert error.headers["Location"] == "../demo-pkg/"
                error.close()
            assert status in (200, 301, 401, 403, 404, 406), (path, status)
        moved = urllib.request.urlopen(
            urllib.request.Request(
                f"{nginx.url}/api/repo/team/simple/Demo_Pkg/",
                headers={"Authorization": basic, "Accept": "application/vnd.pypi.simple.v1+json"},
            ),
            timeout=30,
        )
        with moved:  # followed through nginx, under the prefix
            assert moved.url == f"{nginx.url}/api/repo/team/simple/demo-pkg/"
            link = json.load(moved)["files"][0]["url"]
        download = urllib.request.Request(
            urljoin(moved.url, link), headers={"Authorization": basic}
        )
        with urllib.request.urlopen(download, timeout=30) as response:
            assert response.read() == wheel.read_bytes()
        deadline = time.monotonic() + 10
        while nginx.access_log.read_text().count("\n") < len(requests) + 3:
            assert time.monotonic() < deadline, nginx.access_log.read_text()
            time.sleep(0.05)
    logged = nginx.access_log.read_text()
    assert read not in logged and write not in logged, logged
    assert (
        f'"GET {NGINX_PREFIX}/api/repo/t/<redacted>/team/simple/Demo_Pkg/ HTTP/1.1" 301' in logged
    )
    for spelling in (
        "t/<redacted>/team",
        "%74/<redacted>/team",
        "t%2F<redacted>/team",
        "t%252F<redacted>/team",
        "x%2F<redacted>/simple",
        "repo/<redacted>/simple",
    ):
        assert spelling in logged, (spelling, logged)
    assert "format=x" not in logged  # no query strings
    # The app's own access log (gunicorn's stderr here) names each request by the id
    # nginx logs with it.
    # (It writes its lines every tenth of a second.)
    request_ids = re.findall(r" ([0-9a-f]{32})$", logged, re.M)
    assert request_ids
    wait_for(lambda: all(i in server.log.read_text() for i in request_ids), log=server.log)


def test_nginx_map_redacts_what_redact_tokens_does(
    tmp_path: Path, gunicorn_app: tuple[Server, dict[str, str], dict[str, str]]
) -> None:
    """The documented map and the app's own redaction agree on what holds a token."""
    from private_channels.auth import redact_tokens

    server, _, tokens = gunicorn_app
    token = tokens["read"]
    paths = [
        f"/api/repo/t/{token}/team/simple/",
        f"/api/repo/T/{token}/team/",
        f"/api/repo/t//{token}/team/",
        f"/api/repo/%2574%252F{token}/team/",
        f"/api/repo/team/simple/x%2f{token}/",
        f"/api/repo/team/files/{'a' * 64}/demo-1.0.tar.gz",
        "/api/repo/team/simple/t/",
        "/api/repo/eyJpZCI6IjEifQ.abc-_def/simple/",
        "/api/repo/team/files/x.eJwzNDQyBAAB.abc/",
        "/api/repo/team/eyJhIjoxfQ/simple/",  # no dot after it: not a signed value
        # Two tokens in one path, in every pairing of the forms: none may reach the log.
        f"/api/repo/t/{token}/team/t/{token}/simple/",
        f"/api/repo/t/{token}/team/{token}/simple/",
        f"/api/repo/team/{token}/simple/{token}/",
        f"/api/repo/team/{token}/eyJpZCI6IjEifQ.abc-_def/",
        f"/api/repo/%74%2F{token}/team/%2574%252F{token}/",
        "/api/repo/eyJpZCI6IjEifQ.abc/eyJpZCI6IjIifQ.def/",
    ]
    agents = [f"tool/1.0 ({token})", f"tool/t/{token[:20]}", 'pip/24.0 {"ci":null}']
    with running_nginx(tmp_path, server.url.removeprefix("http://")) as nginx:
        for path in paths:
            with contextlib.suppress(urllib.error.HTTPError):
                urllib.request.urlopen(nginx.url + path, timeout=30).close()
        for agent in agents:
            request = urllib.request.Request(
                f"{nginx.url}/api/repo/team/simple/", headers={"User-Agent": agent}
            )
            with contextlib.suppress(urllib.error.HTTPError):
                urllib.request.urlopen(request, timeout=30).close()
        deadline = time.monotonic() + 10
        while nginx.access_log.read_text().count("\n") < len(paths) + len(agents) + 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    text = nginx.access_log.read_text()
    assert token not in text and "abc-_def" not in text and "JwzNDQyBAAB" not in text, text
    lines = [line for line in text.splitlines() if "/-/health" not in line]
    logged = [line.split('"')[1].split(" ")[1] for line in lines]
    assert len(logged) == len(paths) + len(agents)
    for path, line in zip(paths, logged, strict=False):
        # Where the app redacts, so does nginx (keeping the spelling of "/t/"); where
        # it does not, nginx logs the path as it came.
        expected = redact_tokens(path)
        if "<redacted>" not in expected:
            assert line == NGINX_PREFIX + path
        elif expected.count("<redacted>") == 1 and "%2f" not in path.lower():
            assert _t_spelled_once(line) == NGINX_PREFIX + expected, (path, line)
        else:  # cut at the second token, or "%2f" kept whole where the app keeps its digits
            assert "<redacted>" in line and line.startswith(NGINX_PREFIX + "/api/repo/"), line
    # The User-Agent, cut where a token starts; pip's, with its JSON, as it came.
    shown = [line.rsplit('"', 2)[1] for line in lines[len(paths) :]]
    assert shown == ["tool/1.0 (<redacted>", "tool<redacted>", "pip/24.0 {\\x22ci\\x22:null}"]


def test_nginx_maps_cost_a_hostile_request_what_a_plain_one_does(tmp_path: Path) -> None:
    """The documented maps run on every request nginx logs. Paths and User-Agents made
    for patterns that try again from every place (runs of "eyJ" without a dot, "/t"
    and slashes, hex runs one short of a token, nested percent escapes) cost nginx's
    worker little more CPU time than plain ones as long (its /proc entry's count)."""
    length = 6000
    plain = ("/" + "a" * length, "a")
    cases = {
        # (a dot before the run: without one anywhere PCRE knows at once that no signed
        # value can match)
        "eyJ": ("/a.b/" + "eyJ" * (length // 3), "a"),
        "eyJa-": ("/a.b/x" + "eyJa-" * (length // 5), "a"),
        ".eJ": ("/a.b/" + ".eJ" * (length // 3), "a"),
        "/t and slashes": ("/t" + "/" * length + "%3F", "a"),
        "/t/": ("/t/" * (length // 3), "a"),
        "hex runs of 47": (("/" + "a" * 47) * (length // 48), "a"),
        "%25": ("/" + "%25" * (length // 3) + "74", "a"),
        "%2f%74": ("/" + "%2f%74" * (length // 6), "a"),
        "agent eyJ": ("/" + "a" * length, "a.b " + "eyJ" * (length // 3)),
        "agent /t and slashes": ("/" + "a" * length, "x/t" + "/" * length + "?"),
    }
    requests = 200
    # No backend: nginx answers 502, and logs the request all the same.
    with running_nginx(tmp_path, "127.0.0.1:9") as nginx:
        master = (nginx.access_log.parent / "nginx.pid").read_text().strip()
        worker = Path(f"/proc/{master}/task/{master}/children").read_text().split()[0]
        stat = Path(f"/proc/{worker}/stat")
        connection = http.client.HTTPConnection(nginx.url.split("/")[2], timeout=60)

        def ticks() -> int:
            """The worker's user and system time so far, in clock ticks."""
            fields = stat.read_text().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])

        def cost(path: str, agent: str) -> float:
            """CPU seconds of nginx's worker a request, over ``requests`` of them."""
            before = ticks()
            for _ in range(requests):
                connection.request(
                    "GET", f"{NGINX_PREFIX}/api/repo{path}", headers={"User-Agent": agent}
                )
                connection.getresponse().read()
            return (ticks() - before) / os.sysconf("SC_CLK_TCK") / requests

        base = cost(*plain)
        costs = {name: cost(path, agent) for name, (path, agent) in cases.items()}
        connection.close()
    assert nginx.access_log.read_text().count(" 502 ") >= requests * (len(cases) + 1)
    # On this machine a plain request costs 30 to 70 us, the hostile ones 100 to 200
    # (pcre_jit on; without it 0.7 to 2.3 ms); the patterns these replaced took 3.5 ms
    # for the first case.
    slow = {name: round(c * 1e6) for name, c in costs.items() if c > base + 0.001}
    assert not slow, (slow, round(base * 1e6))


def _t_spelled_once(line: str) -> str:
    """``line`` with its path token's "/t/" spelled as redact_tokens writes it."""
    return re.sub(r"(?i)(?:/|%(?:25)*2f)(?:t|%(?:25)*74)(?:/|%(?:25)*2f)+<", "/t/<", line)


@pytest.mark.parametrize("server_kind", ["sync", "gthread", "waitress", "nginx"])
def test_slow_clients_and_the_servers_that_they_block(
    server_kind: str, tmp_path: Path, deployment: tuple[dict[str, str], dict[str, str]]
) -> None:
    """docs/deployment.md's claim: slow clients hold every worker of gunicorn's sync and
    gthread classes, not waitress's, nor gunicorn's behind nginx."""
    env, _ = deployment
    if server_kind == "waitress":
        context: Any = production_server("waitress", tmp_path, env)
    else:
        extra = ["--worker-class", "gthread", "--threads", "3", "--workers", "1"]
        context = production_server(
            "gunicorn", tmp_path, env, options=extra if server_kind == "gthread" else []
        )
    with context as server:
        if server_kind == "nginx":
            with running_nginx(tmp_path, server.url.removeprefix("http://")) as nginx:
                assert answered_while_held(nginx.url)
        else:
            answered = answered_while_held(server.url)
            assert answered == (server_kind == "waitress")


def test_nginx_error_log_as_documented_keeps_the_token_out_when_the_app_is_down(
    tmp_path: Path,
) -> None:
    """nginx quotes the request line in its error log when it cannot reach the app; at
    the documented level (crit) that line is not written, at "error" it would be."""
    token = "46e98d3dbf2378bb26e2107867652ee734eb098ea5b96f35"
    nowhere = f"127.0.0.1:{_free_port()}"  # nothing listens there
    path = f"/api/repo/t/{token}/team/simple/"
    for level in ("crit", "error"):
        with running_nginx(tmp_path / level, nowhere, error_level=level) as nginx:
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(nginx.url + path, timeout=30)
            refused.value.close()
            assert refused.value.code == 502
        access = nginx.access_log.read_text()
        assert "/t/<redacted>/team/simple/" in access and token not in access
        error_log = nginx.error_log.read_text() if nginx.error_log.exists() else ""
        assert (token in error_log) == (level == "error"), error_log
