"""pip and uv install from a live private channel, with only a token in the index URL.

One server (and one set of real builds) serves the whole module: two projects where
``beta-app`` depends on ``alpha-lib``, uploaded with twine; ``alpha-lib 1.1`` is yanked,
and ``alpha-lib 1.2`` is uploaded after a recorded cutoff for ``--uploaded-prior-to``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .packages import build_project
from .support import LiveServer, live_server, require_client

pytestmark = pytest.mark.e2e

JSON_TYPE = "application/vnd.pypi.simple.v1+json"


def pip_env(tmp: Path) -> dict[str, str]:
    """pip and uv with nothing of this machine's configuration (see the preamble)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.update(
        PIP_CONFIG_FILE="/dev/null",
        PIP_FIND_LINKS="",
        PIP_NO_INPUT="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_CACHE_DIR=str(tmp / "pip-cache"),
        UV_NO_CONFIG="1",
        UV_CACHE_DIR=str(tmp / "uv-cache"),
        UV_PYTHON_DOWNLOADS="never",
        PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring",
        TWINE_NON_INTERACTIVE="1",
    )
    return env


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def installed(target: Path) -> dict[str, str]:
    """Distribution name -> version of what an install put in ``target``."""
    found = {}
    for info in target.glob("*.dist-info"):
        name, _, version = info.name.removesuffix(".dist-info").rpartition("-")
        found[name] = version
    return found


@dataclass
class Channel:
    server: LiveServer
    token: str
    admin: str
    cutoff: dt.datetime
    dists: dict[str, list[Path]]
    tmp: Path

    @property
    def index(self) -> str:
        host = self.server.url.removeprefix("http://")
        return f"http://{self.token}:x-auth-token@{host}/team/simple"

    def get(
        self,
        path: str,
        accept: str | None = None,
        *,
        server: LiveServer | None = None,
        name: str = "team",
    ) -> bytes:
        request = urllib.request.Request(f"{(server or self.server).url}/{name}{path}")
        basic = base64.b64encode(f"{self.token}:x-auth-token".encode()).decode()
        request.add_header("Authorization", f"Basic {basic}")
        if accept:
            request.add_header("Accept", accept)
        with urllib.request.urlopen(request, timeout=30) as response:
            body: bytes = response.read()
        return body


def twine_upload(
    server: LiveServer, token: str, files: list[Path], env: dict[str, str], name: str = "team"
) -> None:
    run(
        [
            require_client("twine"),
            "upload",
            "--disable-progress-bar",
            "--repository-url",
            f"{server.url}/{name}",
            "-u",
            token,
            "-p",
            "x-auth-token",
            *map(str, files),
        ],
        env,
    )


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Channel]:
    tmp = tmp_path_factory.mktemp("e2e-install")
    env = pip_env(tmp)
    dists = {
        "alpha-1.0": build_project(tmp, "alpha-lib", "1.0", requires_python=">=3.8"),
        "alpha-1.1": build_project(tmp, "alpha-lib", "1.1"),
        "alpha-1.2": build_project(tmp, "alpha-lib", "1.2"),
        "beta-1.0": build_project(tmp, "beta-app", "1.0", requires=["alpha-lib>=1.0"]),
    }
    with live_server(str(tmp / "data"), tmp) as server:
        server.cli("channel", "create", "team")
        token = server.token("*", "write")
        admin = server.token("*", "admin")
        for name in ("alpha-1.0", "alpha-1.1", "beta-1.0"):
            twine_upload(server, token, dists[name], env)
        time.sleep(0.05)
        cutoff = dt.datetime.now(dt.UTC)
        time.sleep(1.1)
        twine_upload(server, token, dists["alpha-1.2"], env)
        server.cli("yank", "team", "alpha-lib==1.1", "--reason", "Broken on purpose")
        yield Channel(server, token, admin, cutoff, dists, tmp)


def pip_install(channel: Channel, target: Path, *args: str, index: str | None = None) -> str:
    result = run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--index-url",
            index or channel.index,
            "--target",
            str(target),
            "--no-compile",
            "-v",
            *args,
        ],
        pip_env(target.parent),
    )
    return result.stdout + result.stderr


def uv_install(channel: Channel, target: Path, *args: str, index: str | None = None) -> str:
    result = run(
        [
            require_client("uv"),
            "pip",
            "install",
            "--python",
            sys.executable,
            "--index-url",
            index or channel.index,
            "--target",
            str(target),
            *args,
        ],
        pip_env(target.parent),
    )
    return result.stdout + result.stderr


def test_pip_resolves_dependencies_from_the_channel_and_skips_the_yanked(
    channel: Channel, tmp_path: Path
) -> None:
    target = tmp_path / "site"
    output = pip_install(channel, target, "beta-app", "alpha-lib<1.2")
    assert installed(target) == {"beta_app": "1.0", "alpha_lib": "1.0"}
    # The dependency came from its PEP 658 metadata file, not from the wheel.
    assert ".whl.metadata" in output
    check = subprocess.run(
        [sys.executable, "-c", "import beta_app, alpha_lib; print(alpha_lib.VERSION)"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(target)},
        check=True,
    )
    assert check.stdout.strip() == "1.0"


def test_pip_takes_the_newest_and_honours_uploaded_prior_to(
    channel: Channel, tmp_path: Path
) -> None:
    newest = tmp_path / "newest"
    pip_install(channel, newest, "beta-app")
    assert installed(newest)["alpha_lib"] == "1.2"
    before = tmp_path / "before"
    pip_install(channel, before, "--uploaded-prior-to", channel.cutoff.isoformat(), "beta-app")
    assert installed(before) == {"beta_app": "1.0", "alpha_lib": "1.0"}


def test_pip_pinned_to_the_yanked_version_gets_it(channel: Channel, tmp_path: Path) -> None:
    target = tmp_path / "pinned"
    output = pip_install(channel, target, "alpha-lib==1.1")
    assert installed(target) == {"alpha_lib": "1.1"}
    assert "Broken on purpose" in output  # pip warns with the reason


def test_pip_with_the_token_in_the_path(channel: Channel, tmp_path: Path) -> None:
    host = channel.server.url.removeprefix("http://").split("/")[0]
    index = f"http://{host}/api/repo/t/{channel.token}/team/simple"
    target = tmp_path / "path-token"
    pip_install(channel, target, "beta-app", "alpha-lib<1.2", index=index)
    assert installed(target) == {"beta_app": "1.0", "alpha_lib": "1.0"}
    assert channel.token not in channel.server.log_text()


def test_pip_cache_revalidates_pages_and_keeps_files(channel: Channel, tmp_path: Path) -> None:
    # pip caches over plain http only for a trusted host (https always).
    trusted = ("--trusted-host", "127.0.0.1")
    pip_install(channel, tmp_path / "first", *trusted, "alpha-lib<1.2")
    seen = len(channel.server.log_text())
    pip_install(channel, tmp_path / "second", *trusted, "alpha-lib<1.2")  # same pip cache
    later = channel.server.log_text()[seen:]
    assert '"GET /api/repo/team/simple/alpha-lib/" 304' in later
    assert "/files/" not in later  # immutable: straight from pip's cache


def test_uv_with_the_token_in_the_path(channel: Channel, tmp_path: Path) -> None:
    host = channel.server.url.removeprefix("http://").split("/")[0]
    index = f"http://{host}/api/repo/t/{channel.token}/team/simple"
    target = tmp_path / "uv-path-token"
    uv_install(channel, target, "beta-app", "alpha-lib<1.2", index=index)
    assert installed(target) == {"beta_app": "1.0", "alpha_lib": "1.0"}


def test_uv_resolves_skips_the_yanked_and_excludes_newer(channel: Channel, tmp_path: Path) -> None:
    target = tmp_path / "uv-site"
    uv_install(channel, target, "beta-app", "alpha-lib<1.2")
    assert installed(target) == {"beta_app": "1.0", "alpha_lib": "1.0"}
    newest = tmp_path / "uv-newest"
    uv_install(channel, newest, "beta-app")
    assert installed(newest)["alpha_lib"] == "1.2"
    before = tmp_path / "uv-before"
    cutoff = channel.cutoff.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    uv_install(channel, before, "--exclude-newer", cutoff, "beta-app")
    assert installed(before) == {"beta_app": "1.0", "alpha_lib": "1.0"}


def test_served_metadata_is_the_wheels_metadata(channel: Channel) -> None:
    page = json.loads(channel.get("/simple/alpha-lib/", accept=JSON_TYPE))
    wheels = [f for f in page["files"] if f["filename"].endswith(".whl")]
    assert len(wheels) == 3
    for entry in wheels:
        (path,) = [
            p for dists in channel.dists.values() for p in dists if p.name == entry["filename"]
        ]
        with zipfile.ZipFile(path) as archive:
            (member,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
            expected = archive.read(member)
        url = f"/simple/alpha-lib/{entry['url']}.metadata"
        served = channel.get(_normalize(url))
        assert served == expected
        assert channel.get(_normalize(f"/simple/alpha-lib/{entry['url']}")) == path.read_bytes()


def _normalize(path: str) -> str:
    parts: list[str] = []
    for part in path.split("/"):
        if part == "..":
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)


def test_a_write_through_one_process_shows_at_once_in_another(
    channel: Channel, tmp_path: Path
) -> None:
    env = pip_env(tmp_path)
    channel.server.cli("channel", "create", "side")
    token = channel.token  # granted on every channel
    twine_upload(channel.server, token, channel.dists["beta-1.0"], env, "side")
    with live_server(channel.server.storage, tmp_path) as other:

        def get(path: str, server: LiveServer) -> Any:
            return json.loads(channel.get(path, JSON_TYPE, server=server, name="side"))

        # Both processes render (and cache) the pages first.
        for server in (channel.server, other):
            assert get("/simple/beta-app/", server)["versions"] == ["1.0"]
            assert [p["name"] for p in get("/simple/", server)["projects"]] == ["beta-app"]
        newer = build_project(tmp_path, "beta-app", "2.0", requires=["alpha-lib"])
        twine_upload(other, token, newer, env, "side")
        assert get("/simple/beta-app/", channel.server)["versions"] == ["1.0", "2.0"]
        fresh = build_project(tmp_path, "gamma-tool", "0.1")
        twine_upload(channel.server, token, fresh, env, "side")
        names = {p["name"] for p in get("/simple/", other)["projects"]}
        assert names == {"beta-app", "gamma-tool"}
        # A yank through the admin API of one process, seen by the other at once.
        request = urllib.request.Request(
            f"{other.url}/side/-/yank",
            data=b"project=beta-app&version=2.0&reason=later",
            headers={"X-Auth": channel.admin},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert len(json.loads(response.read())["files"]) == 2
        page = get("/simple/beta-app/", channel.server)
        assert {f["yanked"] for f in page["files"] if "-2.0" in f["filename"]} == {"later"}


def test_yanked_via_http_is_refused_without_admin(channel: Channel) -> None:
    request = urllib.request.Request(
        f"{channel.server.url}/team/-/yank",
        data=b"project=alpha-lib&version=1.0",
        headers={"X-Auth": channel.token},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=30)
    assert error.value.code == 403
    error.value.close()
