"""The end-to-end client runs on every shared backend: the filesystem and S3 (SeaweedFS).

A focused subset of ``test_e2e_upload``, ``test_e2e_install``, ``test_e2e_r`` and
``test_e2e_conda``, with the same helpers, against ``private-channels serve --storage
<backend>``: real twine uploads, then pip and ``uv pip`` resolve and install from the
channel; real ``curl`` uploads, then R's ``install.packages`` installs, and a newer version
moves the older to ``Archive/``; conda packages uploaded with curl next to Python and R
ones, then py-rattler installs one with its private dependency through the path token.  The
other end-to-end modules run on the filesystem only, which keeps the suite fast; this one
shows that nothing in the clients' path depends on which storage is underneath.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin

import pytest

from .packages import build_project
from .s3server import SeaweedFS
from .support import LiveServer, live_server, require_client
from .test_cran_description import source_package
from .test_e2e_conda import curl_upload_conda, installed_files, private_pair, rattler_install
from .test_e2e_install import JSON_TYPE, Channel, installed, pip_env, pip_install, twine_upload
from .test_e2e_install import uv_install as uv_pip_install
from .test_e2e_r import (
    FIRST_CODE,
    SECOND_CODE,
    curl_get,
    curl_upload,
    r_build,
    rscript,
    run,
    write_package,
)

pytestmark = pytest.mark.e2e

SHARED_BACKENDS = ["filesystem", "s3"]


@pytest.fixture(params=SHARED_BACKENDS)
def deployed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveServer]:
    """A live server on a fresh storage of each backend several hosts can share."""
    if request.param == "s3":
        seaweedfs = request.getfixturevalue("seaweedfs")
        url, env = seaweedfs.url(), seaweedfs.env
    else:
        url, env = str(tmp_path / "data"), {}
    with live_server(url, tmp_path, extra_env=env) as server:
        yield server


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """Real sdists and wheels (``python -m build``); ``beta-app`` requires ``alpha-lib``."""
    tmp = tmp_path_factory.mktemp("backend-dists")
    return {
        "alpha": build_project(tmp, "alpha-lib", "1.0", requires_python=">=3.8"),
        "beta": build_project(tmp, "beta-app", "1.0", requires=["alpha-lib>=1.0"]),
    }


def test_twine_pip_and_uv(
    deployed: LiveServer, dists: dict[str, list[Path]], tmp_path: Path
) -> None:
    deployed.cli("channel", "create", "team")
    token = deployed.token("team", "write")
    env = pip_env(tmp_path)
    for files in dists.values():
        twine_upload(deployed, token, files, env)
    channel = Channel(deployed, token, token, dt.datetime.now(dt.UTC), dists, tmp_path)

    project = json.loads(channel.get("/simple/alpha-lib/", JSON_TYPE))
    assert sorted(f["filename"] for f in project["files"]) == sorted(p.name for p in dists["alpha"])
    root = json.loads(channel.get("/simple/", JSON_TYPE))
    assert sorted(p["name"] for p in root["projects"]) == ["alpha-lib", "beta-app"]

    # Both resolvers pull the dependency in from the channel and install the wheels.
    for install in (pip_install, uv_pip_install):
        target = tmp_path / f"target-{install.__name__}"
        install(channel, target, "beta-app", "--only-binary", ":all:")
        assert installed(target) == {"alpha_lib": "1.0", "beta_app": "1.0"}
    assert token not in deployed.log_text()


def test_curl_upload_and_install_packages(deployed: LiveServer, tmp_path: Path) -> None:
    require_client("Rscript")
    deployed.cli("channel", "create", "rchan")
    token = deployed.token("rchan", "write")
    upload_url = f"{deployed.url}/rchan"
    repos = f"{deployed.url}/t/{token}/rchan"
    first = r_build(tmp_path, write_package(tmp_path, "first", "1.0", FIRST_CODE))
    second = r_build(tmp_path, write_package(tmp_path, "second", "0.1", SECOND_CODE, "first"))
    for tarball in (first, second):
        code, body = curl_upload(upload_url, token, tarball)
        assert code == 200, body

    lib = tmp_path / "lib"
    lib.mkdir()
    rscript(f'install.packages("second", repos = "{repos}", lib = "{lib}", quiet = TRUE)')
    out = rscript(f'.libPaths("{lib}"); library(second); cat(greet())')
    assert out == "hello from first via second"

    newer = r_build(tmp_path, write_package(tmp_path, "first", "1.1", FIRST_CODE))
    assert curl_upload(upload_url, token, newer)[0] == 200
    old_copy = tmp_path / "old.tar.gz"
    assert curl_get(f"{repos}/src/contrib/Archive/first/first_1.0.tar.gz", old_copy) == 200
    assert old_copy.read_bytes() == first.read_bytes()
    rscript(f'install.packages("first", repos = "{repos}", lib = "{lib}", quiet = TRUE)')
    out = rscript(f'cat(as.character(packageVersion("first", lib.loc = "{lib}")))')
    assert out == "1.1"


def test_rattler_installs_from_a_channel_that_serves_python_and_r_too(
    deployed: LiveServer, dists: dict[str, list[Path]], tmp_path: Path
) -> None:
    deployed.cli("channel", "create", "team")
    token = deployed.token("team", "write")
    twine_upload(deployed, token, dists["alpha"], pip_env(tmp_path))
    r_package = tmp_path / "abc_1.0.tar.gz"
    r_package.write_bytes(source_package("abc", "1.0"))
    assert curl_upload(f"{deployed.url}/team", token, r_package)[0] == 200
    for path in private_pair(tmp_path):
        code, body = curl_upload_conda(f"{deployed.url}/team", token, path)
        assert code == 200, body

    answer = rattler_install(f"{deployed.url}/t/{token}/team", tmp_path / "env", "beta")
    assert [(r["name"], r["version"]) for r in answer["installed"]] == [
        ("alpha", "1.0"), ("beta", "1.0")
    ]  # fmt: skip
    assert installed_files(tmp_path / "env") == ["alpha.txt", "beta.txt"]
    # The other ecosystems of the same channel are untouched by the conda side.
    channel = Channel(deployed, token, token, dt.datetime.now(dt.UTC), dists, tmp_path)
    assert json.loads(channel.get("/simple/", JSON_TYPE))["projects"][0]["name"] == "alpha-lib"
    assert b"Package: abc" in channel.get("/src/contrib/PACKAGES", "*/*")
    assert token not in deployed.log_text()


# -- downloads redirected to the store (redirect_downloads, S3 only) ---------------


@pytest.fixture
def redirecting(seaweedfs: SeaweedFS, tmp_path: Path) -> Iterator[LiveServer]:
    """A live server on S3 that answers downloads with a 302 to a presigned URL."""
    env = {
        **seaweedfs.env,
        "PRIVATE_CHANNELS_REDIRECT_DOWNLOADS": "300",
        "PRIVATE_CHANNELS_LOG_FORMAT": "json",
    }
    with live_server(seaweedfs.url(), tmp_path, extra_env=env) as server:
        yield server


def _redirected_files(server: LiveServer) -> int:
    """How many package downloads the server answered with a redirect."""
    lines = server.log_text().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    return sum(1 for r in records if r["status"] == 302 and "/files/" in r["path"])


def _no_redirects(url: str, headers: dict[str, str]) -> tuple[int, str, bytes]:
    class Keep(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(Keep)
    try:
        with opener.open(urllib.request.Request(url, headers=headers), timeout=30) as response:
            return response.status, "", response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers.get("Location", ""), error.read()


def test_downloads_redirect_to_the_store(
    redirecting: LiveServer, seaweedfs: SeaweedFS, dists: dict[str, list[Path]], tmp_path: Path
) -> None:
    server = redirecting
    server.cli("channel", "create", "team")
    token = server.token("team", "write")
    for files in dists.values():
        twine_upload(server, token, files, pip_env(tmp_path))
    channel = Channel(server, token, token, dt.datetime.now(dt.UTC), dists, tmp_path)

    # The file URL answers 302 to the store, which serves the bytes without credentials;
    # a wheel's METADATA (small) is still served by the server itself.
    page = json.loads(channel.get("/simple/alpha-lib/", JSON_TYPE))
    wheel = next(f for f in page["files"] if f["filename"].endswith(".whl"))
    file_url = urljoin(f"{server.url}/team/simple/alpha-lib/", wheel["url"])
    status, location, _ = _no_redirects(file_url, {"X-Auth": token})
    assert status == 302
    assert location.startswith(f"{seaweedfs.endpoint_url}/") and "Signature=" in location
    with urllib.request.urlopen(location, timeout=30) as response:
        body = response.read()
    assert body == next(p for p in dists["alpha"] if p.suffix == ".whl").read_bytes()
    assert _no_redirects(file_url + ".metadata", {"X-Auth": token})[0] == 200
    # Without a token, no redirect: the presigned URL is given only to readers.
    assert _no_redirects(file_url, {})[0] == 401

    # pip and uv follow the redirects to the store for both wheels.
    for install in (pip_install, uv_pip_install):
        before = _redirected_files(server)
        target = tmp_path / f"target-{install.__name__}"
        install(channel, target, "beta-app", "--only-binary", ":all:")
        assert installed(target) == {"alpha_lib": "1.0", "beta_app": "1.0"}
        assert _redirected_files(server) == before + 2


def test_r_downloads_redirect_to_the_store(
    redirecting: LiveServer, seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    require_client("Rscript")
    server = redirecting
    server.cli("channel", "create", "rchan")
    token = server.token("rchan", "write")
    repos = f"{server.url}/t/{token}/rchan"
    first = r_build(tmp_path, write_package(tmp_path, "first", "1.0", FIRST_CODE))
    assert curl_upload(f"{server.url}/rchan", token, first)[0] == 200

    status, location, _ = _no_redirects(f"{repos}/src/contrib/first_1.0.tar.gz", {})
    assert status == 302 and location.startswith(f"{seaweedfs.endpoint_url}/")
    copy = tmp_path / "copy.tar.gz"
    code = run(require_client("curl"), "-sSL", "-o", copy, "-w", "%{http_code}",
               f"{repos}/src/contrib/first_1.0.tar.gz")  # fmt: skip
    assert code == "200" and copy.read_bytes() == first.read_bytes()

    lib = tmp_path / "lib"
    lib.mkdir()
    rscript(f'install.packages("first", repos = "{repos}", lib = "{lib}", quiet = TRUE)')
    out = rscript(f'.libPaths("{lib}"); library(first); cat(hello())')
    assert out == "hello from first"
