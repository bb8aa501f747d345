"""The end-to-end client runs on every shared backend: the filesystem and S3 (SeaweedFS).

A focused subset of ``test_e2e_upload``, ``test_e2e_install`` and ``test_e2e_r``, with the
same helpers, against ``private-channels serve --storage <backend>``: real twine uploads,
then pip and ``uv pip`` resolve and install from the channel; real ``curl`` uploads, then R's
``install.packages`` installs, and a newer version moves the older to ``Archive/``.  The
other end-to-end modules run on the filesystem only, which keeps the suite fast; this one
shows that nothing in the clients' path depends on which storage is underneath.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from .packages import build_project
from .support import LiveServer, live_server, require_client
from .test_e2e_install import JSON_TYPE, Channel, installed, pip_env, pip_install, twine_upload
from .test_e2e_install import uv_install as uv_pip_install
from .test_e2e_r import curl_get, curl_upload, r_build, rscript, write_package

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


FIRST_CODE = 'hello <- function() "hello from first"\n'
SECOND_CODE = 'greet <- function() paste(first::hello(), "via second")\n'


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
