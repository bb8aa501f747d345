"""The examples in examples/ run: host routes keep working, channels are mounted at /api/repo."""

from __future__ import annotations

import contextlib
import gzip
import importlib.util
import io
import os
import re
import socket
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import webtest
from werkzeug.serving import WSGIRequestHandler, make_server

from private_channels import ChannelRegistry, Scope, TokenStore, open_storage

from .packages import build_project
from .support import REPO, require_client, wait_for

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
        # The body is read, as a client does: closing with it unread resets the
        # connection, and werkzeug's server, reading what is left of the request, then
        # never closes the app's response, which is when the access line is written.
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                assert response.headers["X-Request-ID"] == "probe-1"
                response.read()
        except urllib.error.HTTPError as answer:
            assert answer.code not in (401, 403)
            assert answer.headers["X-Request-ID"] == "probe-1"
            answer.read()
            answer.close()
        # The record is written when the server closes the response, which may be just
        # after the client has read it; a deadline of its own, however long the server
        # took to start on a loaded machine.
        logged = time.monotonic() + 30
        while "request_id=probe-1" not in log.read_text() and time.monotonic() < logged:
            time.sleep(0.05)
    finally:
        process.terminate()
        process.wait(timeout=10)
    text = log.read_text()
    assert tokens["read"] not in text
    assert '"GET /api/repo/t/<redacted>/team/simple/"' in text, text
    assert "request_id=probe-1" in text, text


def test_flask_run_never_logs_a_token(tmp_path: Path) -> None:
    """``flask run`` logs every request line as the client sent it; the example installs
    the redacting filter on werkzeug's logger, so a token in the path is not in it."""
    tokens = prepare(tmp_path / "data")
    port = _free_port()
    log = tmp_path / "flask.log"
    env = {**os.environ, "PRIVATE_CHANNELS_STORAGE": str(tmp_path / "data")}
    flask = str(Path(sys.executable).with_name("flask"))
    command = [flask, "--app", str(REPO / "examples" / "flask_app.py"), "run", "--port", str(port)]
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    paths = [f"/api/repo/t/{tokens['read']}/team/simple/", f"/api/repo/x%2F{tokens['read']}/"]
    try:
        wait_for(lambda: f"127.0.0.1:{port}" in log.read_text(), log=log, process=process)
        for path in paths:
            with contextlib.suppress(urllib.error.HTTPError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10).close()
        wait_for(lambda: log.read_text().count(" HTTP/1.1") >= len(paths), log=log)
    finally:
        process.terminate()
        process.wait(timeout=10)
    text = log.read_text()
    assert tokens["read"] not in text, text
    assert "GET /api/repo/t/<redacted>/team/simple/ HTTP/1.1" in text, text


def test_no_install_instruction_names_the_unpublished_distribution() -> None:
    """private-channels is not on PyPI: examples, docs and messages install it from a
    checkout (``pip install -e .``), never as ``pip install private-channels``."""
    files = [
        *REPO.glob("examples/*.py"),
        REPO / "README.md",
        *REPO.glob("private_channels/**/*.py"),
    ]
    files += [p for p in REPO.glob("docs/**/*.md") if "_build" not in p.parts]
    found = []
    for path in files:
        for command in re.findall(r"pip install ([^\n`#&;|]*)", path.read_text()):
            words = [word.strip("'\"") for word in command.split()]
            if any(word.startswith("private-channels") for word in words):
                found.append(f"{path.relative_to(REPO)}: pip install {command}")
    assert found == []


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any) -> None:
        pass


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve ``app`` over HTTP on a free port of 127.0.0.1 in a thread, for real clients."""
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)
    assert result.returncode == 0, f"{command[0]} failed:\n{result.stdout}\n{result.stderr}"
    return result


# pip on this machine has extra indexes and find-links configured: none of it may help.
PIP_ENV = {**os.environ, "PIP_CONFIG_FILE": "/dev/null", "PIP_FIND_LINKS": "", "PIP_NO_INPUT": "1"}


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A real sdist and wheel of a project whose name is not normalized."""
    return build_project(tmp_path_factory.mktemp("build"), "Example_Pkg", "1.0")


@pytest.mark.e2e
@pytest.mark.parametrize("name", EXAMPLES)
def test_twine_upload_and_pip_install_through_the_example(
    name: str, dists: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    twine = require_client("twine")
    tokens = prepare(tmp_path / "data")
    module = load_example(name, tmp_path / "data", monkeypatch)
    with serving(module.app) as base:
        channel = f"{base}/api/repo/team"
        run(
            [twine, "upload", "--non-interactive", "--disable-progress-bar",
             "--repository-url", channel, "-u", "__token__", "-p", tokens["write"],
             *map(str, dists)],
        )  # fmt: skip
        # Re-running an upload just works (SPEC: same bytes again is 200).
        run([twine, "upload", "--non-interactive", "--repository-url", channel,
             "-u", tokens["write"], "-p", "x-auth-token", *map(str, dists)])  # fmt: skip
        index = f"http://{tokens['read']}:x-auth-token@{base.removeprefix('http://')}"
        target = tmp_path / "target"
        run(
            [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--target", str(target),
             "--index-url", f"{index}/api/repo/team/simple/", "example-pkg==1.0"],
            env=PIP_ENV,
        )  # fmt: skip
        assert (target / "example_pkg" / "__init__.py").read_text() == "VERSION = '1.0'\n"
        # The host's own routes are untouched by all that.
        if HOST_ROUTES[name]:
            with urllib.request.urlopen(f"{base}/status", timeout=10) as response:
                assert b"channels" in response.read()


def r_source_package(name: str, version: str) -> bytes:
    """A pure-R source package, as ``R CMD build`` would make it."""
    files = {
        f"{name}/DESCRIPTION": (
            f"Package: {name}\nVersion: {version}\nTitle: A Test\n"
            "Description: A package to test installs.\nAuthor: Test\n"
            "Maintainer: Test <test@example.org>\nLicense: MIT\n"
        ),
        f"{name}/NAMESPACE": "export(hello)\n",
        f"{name}/R/hello.R": f'hello <- function() "hello from {name} {version}"\n',
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buffer.getvalue())


@pytest.mark.e2e
def test_curl_upload_and_r_install_through_the_flask_example(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    curl, rscript = require_client("curl"), require_client("Rscript")
    tokens = prepare(tmp_path / "data")
    module = load_example("flask_app", tmp_path / "data", monkeypatch)
    package = tmp_path / "hellor_0.1.tar.gz"
    package.write_bytes(r_source_package("hellor", "0.1"))
    library = tmp_path / "library"
    library.mkdir()
    with serving(module.app) as base:
        run([curl, "--fail-with-body", "-sS", "-H", f"X-Auth: {tokens['write']}",
             "-F", "filetype=cran_source_package", "-F", f"content=@{package}",
             f"{base}/api/repo/team"])  # fmt: skip
        script = (
            f'install.packages("hellor", repos="{base}/api/repo/t/{tokens["read"]}/team", '
            f'lib="{library}", quiet=TRUE); library(hellor, lib.loc="{library}"); cat(hello())'
        )
        result = run([rscript, "--vanilla", "-e", script])
    assert result.stdout.strip().endswith("hello from hellor 0.1")
