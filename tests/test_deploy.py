"""Production serving: ``private_channels.wsgi:app`` under gunicorn (several workers) and
waitress as real processes on 127.0.0.1, and behind a reverse proxy with a path prefix."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import os
import re
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
from .support import REPO, cli
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
def production_server(kind: str, tmp_path: Path, env: dict[str, str]) -> Iterator[Server]:
    """Start gunicorn or waitress on a free port of 127.0.0.1 serving private_channels.wsgi:app."""
    command = {
        "gunicorn": [sys.executable, "-m", "gunicorn", "--workers", "3", "--bind", "127.0.0.1:0"],
        "waitress": [WAITRESS, "--listen=127.0.0.1:0", "--threads=4"],
    }[kind] + ["private_channels.wsgi:app"]
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


def test_serve_workers_runs_gunicorn_on_the_bound_port(
    tmp_path: Path, deployment: tuple[dict[str, str], dict[str, str]]
) -> None:
    env, tokens = deployment
    log = tmp_path / "serve.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PRIVATE_CHANNELS_")}
    full_env.update(env, PRIVATE_CHANNELS_PREFIX="/pkgs")
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "private_channels", "serve", "--port", "0", "--workers", "3"],
            stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=tmp_path,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (
            match := re.search(r"with 3 gunicorn workers on (http://\S+?)/pkgs/", log.read_text())
        ):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        server = Server(url=match[1], log=log)
        while server.get("/pkgs/-/health")[0] != 200:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)

        def fetch(i: int) -> int:
            return server.get(f"/pkgs/t/{tokens['read']}/team/simple/")[0]

        # Workers boot one after the other: keep sending batches until more than one
        # has answered (each record names its process).
        pids: set[object] = set()
        while len(pids) < 2 and time.monotonic() < deadline:
            with ThreadPoolExecutor(max_workers=8) as pool:
                assert set(pool.map(fetch, range(24))) == {200}
            time.sleep(0.2)
            pids = {r["pid"] for r in server.access_records()}
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert len(pids) >= 2, log.read_text()
    assert log.read_text().count("Booting worker") >= 3
    assert tokens["read"] not in log.read_text()


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
        deadline = time.monotonic() + 60
        while not (match := LISTENING["gunicorn"].search(log.read_text())):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        server = Server(url=match[1], log=log)
        path = f"/api/repo/t/{tokens['read']}/team/files/{sha256}/{wheel.name}"
        with contextlib.suppress(OSError, http.client.HTTPException):
            server.get(path)
        while "Error handling request" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
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
