"""py-rattler (pixi's engine) solves and installs from a live server, as pixi would.

Packages are built by conda-package-handling and uploaded with curl; ``beta`` (a
``.conda``) depends on ``alpha`` (a ``.tar.bz2``), both private.  py-rattler runs in a
process of its own (``tests/rattler_client.py``) with its own configuration: the token
in the channel URL, or in ``RATTLER_AUTH_FILE`` as a conda token (which rattler puts in
front of the whole path), HTTP Basic or a Bearer token; with sharded repodata (CEP-16,
rattler's default) and without.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conda_packages import build_conda
from .support import REPO, LiveServer, require_client

pytestmark = pytest.mark.e2e


def private_pair(tmp: Path) -> list[Path]:
    """``alpha`` 1.0 (a .tar.bz2) and ``beta`` 1.0 (a .conda) that depends on it."""
    return [
        build_conda(tmp, "alpha", "1.0", "0", extension=".tar.bz2"),
        build_conda(tmp, "beta", "1.0", "0", depends=["alpha >=1.0"]),
    ]


@pytest.fixture(scope="module")
def conda_packages(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return private_pair(tmp_path_factory.mktemp("e2e-conda"))


def curl_upload_conda(url: str, token: str, path: Path) -> tuple[int, str]:
    result = subprocess.run(
        [require_client("curl"), "-sS", "-o", "-", "-w", "\n%{http_code}", "-H",
         f"X-Auth: {token}", "-F", "filetype=conda_package", "-F", f"content=@{path}", url],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    body, _, code = result.stdout.rpartition("\n")
    return int(code), body


def rattler_install(
    channel: str,
    prefix: Path,
    *specs: str,
    auth: dict[str, Any] | None = None,
    sharded: bool = True,
    check: bool = True,
) -> dict[str, Any]:
    """Run py-rattler in a process of its own; its JSON answer (installed, or error)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RATTLER_", "CONDA"))}
    env["RATTLER_CACHE_DIR"] = str(prefix.parent / f"{prefix.name}-cache")
    env["HOME"] = str(prefix.parent / f"{prefix.name}-home")  # no user's rattler credentials
    if auth is not None:
        auth_file = prefix.parent / f"{prefix.name}-auth.json"
        auth_file.write_text(json.dumps({"127.0.0.1": auth}))
        env["RATTLER_AUTH_FILE"] = str(auth_file)
    command = [sys.executable, "-m", "tests.rattler_client", channel, str(prefix), *specs]
    if not sharded:
        command.append("--no-sharded")
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO,
                            timeout=300)  # fmt: skip
    lines = result.stdout.strip().splitlines()
    answer: dict[str, Any] = json.loads(lines[-1]) if lines else {"error": result.stderr}
    if check:
        assert result.returncode == 0 and "installed" in answer, (answer, result.stderr[-2000:])
    return answer


def installed_files(prefix: Path) -> list[str]:
    return sorted(p.name for p in (prefix / "share").rglob("*.txt"))


@pytest.fixture
def conda_channel(server: LiveServer, conda_packages: list[Path]) -> tuple[LiveServer, str]:
    server.cli("channel", "create", "team")
    token = server.token("team", "write")
    for path in conda_packages:
        code, body = curl_upload_conda(f"{server.url}/team", token, path)
        assert code == 200, body
    return server, token


@pytest.mark.parametrize("sharded", [True, False], ids=["sharded", "repodata.json"])
def test_rattler_installs_through_the_path_token(
    conda_channel: tuple[LiveServer, str], tmp_path: Path, sharded: bool
) -> None:
    server, token = conda_channel
    answer = rattler_install(f"{server.url}/t/{token}/team", tmp_path / "env", "beta",
                             sharded=sharded)  # fmt: skip
    assert [(r["name"], r["version"]) for r in answer["installed"]] == [
        ("alpha", "1.0"), ("beta", "1.0")
    ]  # fmt: skip
    assert installed_files(tmp_path / "env") == ["alpha.txt", "beta.txt"]
    log = server.log_text()
    assert token not in log
    shards = 'repodata_shards.msgpack.zst" 200'
    assert (shards in log) == sharded
    assert "/noarch/shards/" in log if sharded else "/noarch/repodata.json" in log


@pytest.mark.parametrize(
    "auth",
    [
        # rattler puts a conda token in front of the whole path: /t/<TOKEN>/api/repo/...
        lambda token: {"CondaToken": token},
        lambda token: {"BasicHTTP": {"username": token, "password": "x-auth-token"}},
        lambda token: {"BearerToken": token},
    ],
    ids=["CondaToken", "BasicHTTP", "BearerToken"],
)
def test_rattler_installs_with_its_own_credentials(
    conda_channel: tuple[LiveServer, str], tmp_path: Path, auth: Any
) -> None:
    server, _ = conda_channel
    token = server.token("team", "read")
    answer = rattler_install(f"{server.url}/team", tmp_path / "env", "beta", auth=auth(token))
    assert [r["name"] for r in answer["installed"]] == ["alpha", "beta"]
    # The records name the channel's own URLs; the credentials stay in the client.
    assert all(r["url"].startswith(f"{server.url}/team/noarch/") for r in answer["installed"])
    log = server.log_text()
    assert token not in log
    # Only the conda token travels in the path (the access log shows where it was cut).
    in_path = "GET /api/repo/t/<redacted>/team/noarch/beta-1.0-0.conda" in log
    assert in_path == ("CondaToken" in auth(token))


def test_a_wrong_token_gets_401(conda_channel: tuple[LiveServer, str], tmp_path: Path) -> None:
    server, token = conda_channel
    wrong = "0" * len(token)
    for channel, auth in [(f"{server.url}/t/{wrong}/team", None),
                          (f"{server.url}/team", {"BearerToken": wrong}),
                          (f"{server.url}/team", None)]:  # fmt: skip
        answer = rattler_install(channel, tmp_path / "env", "beta", auth=auth, check=False)
        assert "401" in answer["error"], answer
    assert not (tmp_path / "env" / "share").exists()
