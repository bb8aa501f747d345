"""Production serving: ``private_channels.wsgi:app`` under gunicorn (several workers) and
waitress as real processes on 127.0.0.1, and behind a reverse proxy with a path prefix."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

import pytest

from private_channels import ChannelRegistry, Scope, TokenStore, open_storage

from .support import cli

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

        cli("token", "revoke", tokens["read_id"], storage=env["PRIVATE_CHANNELS_STORAGE"])
        with ThreadPoolExecutor(max_workers=8) as pool:
            assert set(pool.map(fetch, range(16))) == {401}

    records = server.access_records()
    assert tokens["read"] not in server.log.read_text()
    served = [r for r in records if str(r["path"]).startswith("/api/repo/t/<redacted>/team/")]
    assert len(served) == 56
    assert {r["token_id"] for r in served[:40]} == {tokens["read_id"]}
    pids = {r["pid"] for r in records}
    if kind == "gunicorn":
        # Concurrent requests on sync workers spread over the processes (measured: 3 of 3).
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
