"""The examples in examples/ run: host routes keep working, channels are mounted at /api/repo."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from types import ModuleType

import pytest
import webtest

from private_channels import ChannelRegistry, Scope, TokenStore, open_storage

from .support import REPO

pytestmark = [
    # Pyramid 2 imports pkg_resources, which setuptools deprecates (hence setuptools<81).
    pytest.mark.filterwarnings("ignore:pkg_resources is deprecated:UserWarning"),
    pytest.mark.filterwarnings("ignore:Deprecated call to `pkg_resources:DeprecationWarning"),
]

EXAMPLES = ["flask_app", "pyramid_app", "standalone"]
HOST_ROUTES = {
    "flask_app": {"/": "The team's own app", "/status": '"app":"flask"'},
    "pyramid_app": {"/": "The team's own app", "/status": '"app": "pyramid"'},
    "standalone": {},
}


def load_example(name: str, storage: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Import ``examples/<name>.py`` afresh, as a server would, over ``storage``."""
    monkeypatch.setenv("PRIVATE_CHANNELS_STORAGE", str(storage))
    module_name = f"example_{name}_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(module_name, REPO / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # Flask finds its root path through sys.modules
    monkeypatch.setitem(sys.modules, module_name, module)
    spec.loader.exec_module(module)
    return module


def prepare(storage: Path) -> dict[str, str]:
    """A private channel 'team' and tokens for it and for another channel."""
    store = open_storage(str(storage))
    ChannelRegistry(store).create("team")
    tokens = TokenStore(store)
    return {
        "read": tokens.create(channels=["team"], scope=Scope.READ)[0],
        "write": tokens.create(channels=["team"], scope=Scope.WRITE)[0],
        "other": tokens.create(channels=["elsewhere"], scope=Scope.WRITE)[0],
    }


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_defines_app_over_the_configured_storage(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = prepare(tmp_path / "data")
    module = load_example(name, tmp_path / "data", monkeypatch)
    assert callable(module.app)
    assert Path(module.storage.root) == (tmp_path / "data").resolve()
    app = webtest.TestApp(module.app)

    for path, text in HOST_ROUTES[name].items():
        assert text in app.get(path).text
    if not HOST_ROUTES[name]:
        app.get("/", status=404)

    assert app.get("/api/repo/-/health").json["status"] == "ok"
    anonymous = app.get("/api/repo/team/simple/", status=401)
    assert anonymous.headers["WWW-Authenticate"] == 'Basic realm="private-channels"'
    app.get("/api/repo/team/simple/", headers={"X-Auth": tokens["other"]}, status=403)
    allowed = app.get("/api/repo/team/simple/", headers={"X-Auth": tokens["read"]}, status="*")
    assert allowed.status_int not in (401, 403)
    # The path form, for R: the token segment is cut and the request authenticated.
    by_path = app.get(f"/api/repo/t/{tokens['read']}/team/simple/", status="*")
    assert by_path.status_int == allowed.status_int
    # An upload passes through the host untouched, to be refused for a read token.
    upload = app.post(
        "/api/repo/team",
        {":action": "file_upload"},
        upload_files=[("content", "x-1.0.tar.gz", b"not really")],
        headers={"X-Auth": tokens["read"]},
        status=403,
    )
    assert "may not upload" in upload.text
    # The host's own routes still work after requests into the channels.
    for path, text in HOST_ROUTES[name].items():
        assert text in app.get(path).text


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_standalone_script_serves_and_never_logs_a_token(tmp_path: Path) -> None:
    tokens = prepare(tmp_path / "data")
    port = _free_port()
    log = tmp_path / "standalone.log"
    env = {**os.environ, "PRIVATE_CHANNELS_STORAGE": str(tmp_path / "data"), "PORT": str(port)}
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, str(REPO / "examples" / "standalone.py")],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        base = f"http://127.0.0.1:{port}/api/repo"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{base}/-/health", timeout=5) as response:
                    assert response.status == 200
                    break
            except urllib.error.URLError:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(f"{base}/team/simple/", timeout=5)
        assert error.value.code == 401
        error.value.close()
        request = urllib.request.Request(
            f"{base}/t/{tokens['read']}/team/simple/", headers={"X-Request-ID": "probe-1"}
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                assert response.headers["X-Request-ID"] == "probe-1"
        except urllib.error.HTTPError as answer:
            assert answer.code not in (401, 403)
            assert answer.headers["X-Request-ID"] == "probe-1"
            answer.close()
    finally:
        process.terminate()
        process.wait(timeout=10)
    text = log.read_text()
    assert tokens["read"] not in text
    assert '"GET /api/repo/t/<redacted>/team/simple/"' in text
    assert "request_id=probe-1" in text
