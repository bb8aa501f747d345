"""Helpers shared by the test modules: apps under a prefix, live servers, real clients."""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import webtest
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from private_channels import make_app
from private_channels.accesslog import FLUSH_INTERVAL
from private_channels.storage import Storage

IN_CI = os.environ.get("CI", "").lower() == "true"
T = TypeVar("T")
REPO = Path(__file__).resolve().parent.parent


def require_client(name: str) -> str:
    """The path of a real client program, or a skip (a failure in CI: see conftest)."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def _empty(environ, start_response):  # type: ignore[no-untyped-def]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"host app: not found\n"]


def mounted(app, prefix: str):  # type: ignore[no-untyped-def]
    """Mount ``app`` under ``prefix`` the way a host does, with DispatcherMiddleware."""
    if prefix in ("", "/"):
        return app
    return DispatcherMiddleware(_empty, {prefix: app})


def test_app(storage: Storage, prefix: str = "/api/repo", **options) -> webtest.TestApp:  # type: ignore[no-untyped-def]
    return webtest.TestApp(mounted(make_app(storage, **options), prefix))


test_app.__test__ = False  # type: ignore[attr-defined]


def slowed(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[tuple[Any, ...]]:
    """Make ``owner.name`` (a function of a class or module) take 0.2 s longer, long
    enough for every other request of :func:`at_once` to arrive meanwhile: the
    arguments of each call, as they come."""
    calls: list[tuple[Any, ...]] = []
    function = getattr(owner, name)

    def slow(*args: Any) -> Any:
        calls.append(args)
        time.sleep(0.2)
        return function(*args)

    monkeypatch.setattr(owner, name, slow)
    return calls


def at_once(ask: Callable[[], T], count: int = 6) -> list[T]:
    """``ask()`` from ``count`` threads at once (clients on a cold process)."""
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: ask(), range(count)))


def cli(
    *args: str, storage: str | os.PathLike[str], check: bool = True, **kwargs
) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    """Run the real command line in a subprocess, as a user would."""
    env = {**os.environ, "PRIVATE_CHANNELS_STORAGE": str(storage)}
    env.update(kwargs.pop("env", {}))
    result = subprocess.run(
        [sys.executable, "-m", "private_channels", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        **kwargs,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"private-channels {' '.join(args)} failed:\n{result.stderr}")
    return result


def wait_for(
    condition: Callable[[], T | None],
    *,
    log: Path,
    process: subprocess.Popen[Any] | None = None,
    timeout: float = 30.0,
) -> T:
    """Poll ``condition`` until it returns something true, and return that; fail with
    ``log``'s text when ``process`` exits or ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert process is None or process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    return found


@dataclass
class LiveServer:
    url: str  # http://127.0.0.1:PORT/api/repo
    storage: str
    process: subprocess.Popen[str]
    log: Path
    host: str = field(default="127.0.0.1")
    env: dict[str, str] = field(default_factory=dict)  # extra_env, e.g. S3 credentials

    def log_text(self) -> str:
        # `serve` writes its access lines every FLUSH_INTERVAL seconds: wait for those
        # of the requests answered so far.
        time.sleep(3 * FLUSH_INTERVAL)
        return self.log.read_text()

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return cli(*args, storage=self.storage, check=check, env=self.env)

    def token(self, channel: str = "*", scope: str = "write") -> str:
        result = self.cli("token", "create", "--channel", channel, "--scope", scope)
        return result.stdout.strip().splitlines()[-1]


@contextmanager
def live_server(
    storage: str,
    tmp: Path,
    *,
    prefix: str = "/api/repo",
    extra_env: dict[str, str] | None = None,
    server: str | None = None,
) -> Iterator[LiveServer]:
    """Run ``private-channels serve`` on a free port of 127.0.0.1 until the block ends
    (on its default server, waitress, unless ``server`` names another)."""
    log = tmp / f"server-{time.monotonic_ns()}.log"
    env = {**os.environ, **(extra_env or {})}
    env.pop("PRIVATE_CHANNELS_STORAGE", None)
    with log.open("w") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "private_channels",
                "serve",
                "--storage",
                storage,
                "--port",
                "0",
                "--prefix",
                prefix,
                *(["--server", server] if server else []),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
    try:
        url = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and url is None:
            for line in log.read_text().splitlines():
                if "serving" in line and " on http://" in line:
                    url = line.rsplit(" on ", 1)[1].strip().rstrip("/")
            if process.poll() is not None:
                raise AssertionError(f"server exited early:\n{log.read_text()}")
            time.sleep(0.05)
        if url is None:
            raise AssertionError(f"server did not start:\n{log.read_text()}")
        yield LiveServer(url=url, storage=storage, process=process, log=log, env=extra_env or {})
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
