"""Real ``twine upload`` and ``uv publish`` against a running server; failures mid-upload."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from private_channels.channels import ChannelRegistry
from private_channels.pypi.store import PythonStore
from private_channels.storage import FileSystemStorage

from .packages import build_project, make_sdist, make_wheel, metadata_text
from .support import LiveServer, live_server, require_client

pytestmark = pytest.mark.e2e

PROJECT = "E2E-Demo"


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The sdist and wheel of a real project, built with ``python -m build``."""
    built = build_project(tmp_path_factory.mktemp("build"), PROJECT, "1.0", requires_python=">=3.8")
    assert sorted(p.suffix for p in built) == [".gz", ".whl"]
    return built


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("live")
    with live_server(str(tmp / "data"), tmp) as running:
        yield running


def _channel(live: LiveServer, name: str) -> str:
    live.cli("channel", "create", name)
    return f"{live.url}/{name}/"


def _records(storage: str, channel: str, project: str = PROJECT) -> dict[str, bytes]:
    """Filename to stored bytes, for every committed file of the project."""
    fs = FileSystemStorage(storage)
    store = PythonStore(fs)
    found = ChannelRegistry(fs).get(channel)
    assert found is not None
    project_record = store.project(found, project)
    if project_record is None:
        return {}
    files = {}
    for record in project_record.files:
        stream, _ = store.open_blob(found, record.sha256, record.filename)
        with stream:
            files[record.filename] = stream.read()
    return files


def _listing(storage: str) -> list[str]:
    return sorted(FileSystemStorage(storage).list(""))


def twine(url: str, *files: Path, user: str, password: str) -> subprocess.CompletedProcess[str]:
    program = require_client("twine")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWINE_")}
    env.update(TWINE_NON_INTERACTIVE="1", PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring")
    return subprocess.run(
        [
            program,
            "upload",
            "--non-interactive",
            "--disable-progress-bar",
            "--repository-url",
            url,
            "-u",
            user,
            "-p",
            password,
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def uv_publish(url: str, *files: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    program = require_client("uv")
    env = {k: v for k, v in os.environ.items() if not k.startswith("UV_")}
    env.update(UV_NO_CONFIG="1")
    return subprocess.run(
        [program, "publish", "--publish-url", url, "--trusted-publishing", "never", *args]
        + [str(f) for f in files],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def _logged(live: LiveServer, line: str, count: int) -> int:
    """How often ``line`` is in the server's log, once it is there ``count`` times
    (the server writes a request's line after answering it), or after 10 s."""
    deadline = time.monotonic() + 10
    while (found := live.log_text().count(line)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def _output(result: subprocess.CompletedProcess[str]) -> str:
    """Both streams, with whitespace collapsed: twine and uv wrap to the terminal width."""
    return " ".join((result.stdout + result.stderr).split())


@pytest.mark.parametrize("form", ["x-auth-token", "__token__"])
def test_twine_uploads_reruns_and_conflicts(
    live: LiveServer, dists: list[Path], tmp_path: Path, form: str
) -> None:
    channel = f"twine-{form.strip('_')}"
    url = _channel(live, channel)
    token = live.token(channel, "write")
    user, password = (token, "x-auth-token") if form == "x-auth-token" else ("__token__", token)
    result = twine(url, *dists, user=user, password=password)
    assert result.returncode == 0, _output(result)
    assert _records(live.storage, channel) == {p.name: p.read_bytes() for p in dists}
    before = _listing(live.storage)
    rerun = twine(url, *dists, user=user, password=password)
    assert rerun.returncode == 0, _output(rerun)  # no --skip-existing needed
    assert _listing(live.storage) == before
    wheel = next(p for p in dists if p.suffix == ".whl")
    changed = make_wheel(tmp_path, PROJECT, "1.0", module_source="CHANGED = True\n")
    assert changed.name == wheel.name
    conflict = twine(url, changed, user=user, password=password)
    assert conflict.returncode != 0
    assert "409" in _output(conflict) and "File already exists" in _output(conflict)
    assert _listing(live.storage) == before


def test_twine_under_a_deeper_prefix(dists: list[Path], tmp_path: Path) -> None:
    with live_server(str(tmp_path / "data"), tmp_path, prefix="/deep/er/mount") as deep:
        assert deep.url.endswith("/deep/er/mount")
        url = _channel(deep, "team")
        result = twine(url.rstrip("/"), *dists, user="__token__", password=deep.token("team"))
        assert result.returncode == 0, _output(result)
        assert _records(deep.storage, "team") == {p.name: p.read_bytes() for p in dists}


def test_twine_refused_tokens(live: LiveServer, dists: list[Path]) -> None:
    url = _channel(live, "twine-refused")
    read_token = live.token("twine-refused", "read")
    before = _listing(live.storage)
    read = twine(url, *dists, user="__token__", password=read_token)
    assert read.returncode != 0
    assert "403" in _output(read) and "may not upload to channel" in _output(read)
    wrong = twine(url, *dists, user="__token__", password="0" * 48)
    assert wrong.returncode != 0
    assert "401" in _output(wrong)
    assert _listing(live.storage) == before


@pytest.mark.parametrize("form", ["x-auth-token", "--token"])
def test_uv_publish_uploads_and_reruns(live: LiveServer, dists: list[Path], form: str) -> None:
    channel = f"uv-{form.strip('-')}"
    url = _channel(live, channel)
    token = live.token(channel, "write")
    args = ["-u", token, "-p", "x-auth-token"] if form == "x-auth-token" else ["--token", token]
    result = uv_publish(url, *dists, args=args)
    assert result.returncode == 0, _output(result)
    assert _records(live.storage, channel) == {p.name: p.read_bytes() for p in dists}
    before = _listing(live.storage)
    rerun = uv_publish(url, *dists, args=args)
    assert rerun.returncode == 0, _output(rerun)
    assert _listing(live.storage) == before


def test_uv_publish_conflict_and_read_token(
    live: LiveServer, dists: list[Path], tmp_path: Path
) -> None:
    url = _channel(live, "uv-refused")
    token = live.token("uv-refused", "write")
    sdist = next(p for p in dists if p.name.endswith(".tar.gz"))
    assert uv_publish(url, sdist, args=["--token", token]).returncode == 0
    read_token = live.token("uv-refused", "read")
    before = _listing(live.storage)
    changed = make_sdist(tmp_path, PROJECT, "1.0", summary="Other bytes.")
    assert changed.name == sdist.name
    conflict = uv_publish(url, changed, args=["--token", token])
    assert conflict.returncode != 0
    assert "File already exists" in _output(conflict)
    read = uv_publish(url, sdist, args=["--token", read_token])
    assert read.returncode != 0 and "403" in _output(read)
    assert _listing(live.storage) == before


@pytest.mark.parametrize("form", ["userinfo", "path"])
def test_uv_publish_check_url_reads_the_index(
    live: LiveServer, dists: list[Path], tmp_path: Path, form: str
) -> None:
    """``--check-url`` skips files the index already has with the same sha256 and
    refuses to upload a file whose name the index has with another.  uv sends no
    credentials to the check URL, so a private channel's carries the token, in the
    URL's user name or in the path (docs/clients/uv-publish.md)."""
    channel = f"uv-check-{form}"
    url = _channel(live, channel)
    token = live.token(channel, "write")
    host = live.url.removeprefix("http://")
    if form == "userinfo":
        check_url = f"http://{token}:x-auth-token@{host}/{channel}/simple/"
    else:
        check_url = f"{live.url}/t/{token}/{channel}/simple/"
    check = ["--token", token, "--check-url", check_url]
    first = uv_publish(url, *dists, args=check)
    assert first.returncode == 0, _output(first)
    assert _records(live.storage, channel) == {p.name: p.read_bytes() for p in dists}
    posts = live.log_text().count(f'"POST /api/repo/{channel}/"')
    rerun = uv_publish(url, *dists, args=check)
    assert rerun.returncode == 0, _output(rerun)
    assert _output(rerun).count("already exists, skipping") == 2
    changed = make_wheel(tmp_path, PROJECT, "1.0", module_source="CHANGED = True\n")
    conflict = uv_publish(url, changed, args=check)
    assert conflict.returncode != 0 and "do not match" in _output(conflict)
    assert live.log_text().count(f'"POST /api/repo/{channel}/"') == posts  # nothing sent
    assert token not in _output(rerun) + _output(conflict)


def test_uv_publish_index_checks_with_the_index_credentials(
    live: LiveServer, dists: list[Path], tmp_path: Path
) -> None:
    """``uv publish --index`` checks the index's ``url`` with that index's credentials
    (``UV_INDEX_<NAME>_*``), never with the publish token: without them the check meets
    a 401 and is skipped (silently, but for a warning under ``-v``), and the upload is
    sent anyway."""
    url = _channel(live, "uv-index")
    token = live.token("uv-index", "write")
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "e2e-demo"\nversion = "1.0"\n\n'
        '[[tool.uv.index]]\nname = "data-team"\n'
        f'url = "{url}simple/"\npublish-url = "{url}"\nexplicit = true\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("UV_")}
    env.update(UV_PUBLISH_TOKEN=token, XDG_CONFIG_DIRS=str(tmp_path / "no-config"))
    command = [require_client("uv"), "publish", "--trusted-publishing", "never"]
    command += ["--index", "data-team", *map(str, dists)]

    def publish(**extra: str) -> str:
        result = subprocess.run(
            command, cwd=tmp_path, env={**env, **extra}, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, _output(result)
        return _output(result)

    page = '"GET /api/repo/uv-index/simple/e2e-demo/"'
    publish()
    assert _logged(live, f"{page} 401", 1) == 1  # the first check had no credentials
    assert _records(live.storage, "uv-index") == {p.name: p.read_bytes() for p in dists}
    before = _listing(live.storage)
    rerun = publish(UV_INDEX_DATA_TEAM_USERNAME=token, UV_INDEX_DATA_TEAM_PASSWORD="x-auth-token")
    # Both files found by the check, so neither was sent.
    assert rerun.count("already exists, skipping") == 2
    assert _logged(live, f"{page} 401", 1) == 1
    assert _listing(live.storage) == before


# -- failures mid-upload, with a raw socket ----------------------------------------

BOUNDARY = "pcboundary7MA4YWxkTrZu0gW"


def upload_body(path: Path, *, name: str = PROJECT, version: str = "1.0") -> bytes:
    data = path.read_bytes()
    fields = {
        ":action": "file_upload",
        "protocol_version": "1",
        "name": name,
        "version": version,
        "sha256_digest": hashlib.sha256(data).hexdigest(),
    }
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
        for key, value in fields.items()
    ]
    parts.append(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="content"; '
        f'filename="{path.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
        + data
        + b"\r\n"
    )
    parts.append(f"--{BOUNDARY}--\r\n".encode())
    return b"".join(parts)


def post(url: str, token: str, body: bytes) -> tuple[int, str]:
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
            "X-Auth": token,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode()


def send_partial(url: str, token: str, body: bytes, sent: int) -> socket.socket:
    """Open a connection and send the headers and the first ``sent`` bytes of the body."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    head = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nX-Auth: {token}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    sock.sendall(head + body[:sent])
    return sock


def big_wheel(directory: Path) -> Path:
    """A valid wheel of a few MB, so that a partial body is clearly mid-file."""
    source = "BLOB = " + repr(os.urandom(3 * 1024 * 1024).hex()) + "\n"
    return make_wheel(directory, PROJECT, "3.0", module_source=source)


def test_client_disconnecting_mid_body_leaves_nothing(live: LiveServer, tmp_path: Path) -> None:
    url = _channel(live, "cut")
    token = live.token("cut", "write")
    wheel = big_wheel(tmp_path)
    body = upload_body(wheel, version="3.0")
    before = _listing(live.storage)
    for sent in (100, len(body) // 2, len(body) - 10):
        sock = send_partial(url, token, body, sent)
        time.sleep(0.2)
        sock.close()
    time.sleep(0.5)
    assert _listing(live.storage) == before
    assert post(url, token, body)[0] == 200  # the server is fine, and the file lands
    assert _records(live.storage, "cut") == {wheel.name: wheel.read_bytes()}


def test_server_killed_mid_upload_leaves_nothing(tmp_path: Path) -> None:
    storage = str(tmp_path / "data")
    wheel = big_wheel(tmp_path)
    body = upload_body(wheel, version="3.0")
    with live_server(storage, tmp_path) as first:
        url = _channel(first, "killed")
        token = first.token("killed", "write")
        before = _listing(storage)
        sock = send_partial(url, token, body, len(body) - 100)
        time.sleep(0.5)  # the server is spooling the body, waiting for the rest
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)
        sock.close()
    assert _listing(storage) == before
    assert _records(storage, "killed") == {}
    with live_server(storage, tmp_path) as second:
        status, text = post(f"{second.url}/killed/", token, body)
        assert status == 200, text
    assert _records(storage, "killed") == {wheel.name: wheel.read_bytes()}


def test_two_servers_on_one_storage_lose_nothing(tmp_path: Path) -> None:
    storage = str(tmp_path / "data")
    wheels = [make_wheel(tmp_path, PROJECT, f"1.{n}") for n in range(12)]
    same = make_sdist(tmp_path, PROJECT, "2.0")
    with live_server(storage, tmp_path) as one, live_server(storage, tmp_path) as two:
        one.cli("channel", "create", "shared")
        token = one.token("shared", "write")
        results: list[tuple[int, str]] = []

        def upload(server: LiveServer, path: Path, version: str) -> None:
            results.append(post(f"{server.url}/shared/", token, upload_body(path, version=version)))

        threads = [
            threading.Thread(target=upload, args=(one if n % 2 else two, w, f"1.{n}"))
            for n, w in enumerate(wheels)
        ]
        threads += [
            threading.Thread(target=upload, args=(server, same, "2.0"))
            for server in (one, two, one, two)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert [status for status, _ in results] == [200] * len(threads), results
    assert sum("Uploaded" in text for _, text in results) == 13  # the raced sdist once
    assert _records(storage, "shared") == {p.name: p.read_bytes() for p in [*wheels, same]}


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM line")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_a_large_upload_streams(server: LiveServer, tmp_path: Path) -> None:
    """The server's peak memory barely moves for a 96 MB upload: spooled, hashed and
    stored in chunks, with only the archive's directory and METADATA read.  (A fresh
    server, so that no earlier request has raised the peak already.)"""
    live = server
    url = _channel(live, "large")
    token = live.token("large", "write")
    wheel = tmp_path / "large-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("large-1.0.dist-info/METADATA", metadata_text("large", "1.0"))
        with archive.open("large/data.bin", "w") as member:
            for _ in range(96):
                member.write(os.urandom(1024 * 1024))
    body = upload_body(wheel, name="large")
    before = _peak_rss_kib(live.process.pid)
    status, text = post(url, token, body)
    assert status == 200, text
    growth_mib = (_peak_rss_kib(live.process.pid) - before) / 1024
    assert growth_mib < 32, f"peak memory grew by {growth_mib:.0f} MiB"
    assert _records(live.storage, "large", "large") == {wheel.name: wheel.read_bytes()}
