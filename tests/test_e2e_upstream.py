"""One index URL for private and public packages: real pip, uv and R through a channel
whose upstream is pypiserver, another private-channels server, or a CRAN-like directory
served over HTTP, all on 127.0.0.1 (no test reaches the internet).

In every case the private package depends on a public one, and the upstream also
publishes a package of the private package's name with a higher version (the
dependency-confusion attack), which must never be installed.  Then the upstream stops,
and installs of what was fetched once keep working.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from .packages import build_project
from .support import LiveServer, live_server, require_client
from .test_e2e_install import installed, pip_env, run, twine_upload
from .test_e2e_r import r_build, rscript, write_package
from .upstreams import Pages, Running, serve_directory, serve_wsgi

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class PyPIServer:
    url: str  # its simple index root
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def start_pypiserver(packages: Path, log: Path) -> PyPIServer:
    port = _free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "pypiserver", "run", "-i", "127.0.0.1", "-p", str(port),
             # No fallback redirect to pypi.org, no authentication: a plain public mirror.
             "--disable-fallback", "-a", ".", "-P", ".", str(packages)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return PyPIServer(f"http://127.0.0.1:{port}/simple/", process)
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"pypiserver did not start:\n{log.read_text()}")


@dataclass
class Python:
    server: LiveServer  # this project, channel "team" with a private acme-app 1.0
    token: str
    tmp: Path
    dists: dict[str, list[Path]]

    def index(self, channel: str) -> str:
        host = self.server.url.removeprefix("http://")
        return f"http://{self.token}:x-auth-token@{host}/{channel}/simple/"


@pytest.fixture(scope="module")
def python(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Python]:
    tmp = tmp_path_factory.mktemp("e2e-upstream")
    dists = {
        "acme-app": build_project(tmp / "private", "acme-app", "1.0", requires=["public-dep>=1.0"]),
        "public-dep-1.0": build_project(tmp / "public", "public-dep", "1.0"),
        "public-dep-1.1": build_project(tmp / "public", "public-dep", "1.1"),
        # Someone publishes the private package's name upstream, with a higher version.
        "acme-app-99": build_project(tmp / "evil", "acme-app", "99.0"),
    }
    with live_server(str(tmp / "data"), tmp) as server:
        token = server.token("*", "write")
        yield Python(server, token, tmp, dists)


def pip(python: Python, index: str, target: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run(
        [sys.executable, "-m", "pip", "install", "--index-url", index, "--target", str(target),
         "--no-compile", *args],
        pip_env(target.parent),
    )  # fmt: skip


def pip_failing(index: str, target: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A pip install that must fail."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--index-url", index, "--target", str(target),
         *args],
        capture_output=True, text=True, env=pip_env(target.parent), timeout=300,
    )  # fmt: skip
    assert result.returncode != 0, result.stdout
    return result


def uv(python: Python, index: str, target: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run(
        [require_client("uv"), "pip", "install", "--python", sys.executable, "--index-url",
         index, "--target", str(target), *args],
        pip_env(target.parent),
    )  # fmt: skip


def imports(target: Path) -> str:
    check = subprocess.run(
        [sys.executable, "-c", "import acme_app, public_dep; print(acme_app.VERSION)"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(target)}, check=True,
    )  # fmt: skip
    return check.stdout.strip()


def test_pip_through_pypiserver_one_url_no_confusion_and_an_outage(
    python: Python, tmp_path: Path
) -> None:
    packages = tmp_path / "pypiserver-packages"
    packages.mkdir()
    for name in ("public-dep-1.0", "public-dep-1.1", "acme-app-99"):
        for dist in python.dists[name]:
            shutil.copy(dist, packages)
    upstream = start_pypiserver(packages, tmp_path / "pypiserver.log")
    try:
        python.server.cli("channel", "create", "pip-team", "--python-upstream", upstream.url)
        twine_upload(python.server, python.token, python.dists["acme-app"],
                     pip_env(tmp_path), "pip-team")  # fmt: skip
        first = tmp_path / "first"
        pip(python, python.index("pip-team"), first, "acme-app")
        assert installed(first) == {"acme_app": "1.0", "public_dep": "1.1"}
        assert imports(first) == "1.0"
        # Asked by name, the private package still comes from the channel: never 99.0.
        pinned = pip_failing(python.index("pip-team"), tmp_path / "never", "acme-app==99.0")
        assert "No matching distribution found for acme-app==99.0" in pinned.stderr
    finally:
        upstream.stop()
    # The upstream is gone: what was fetched through the channel still installs.
    again = tmp_path / "again"
    pip(python, python.index("pip-team"), again, "--no-cache-dir", "acme-app")
    assert installed(again) == {"acme_app": "1.0", "public_dep": "1.1"}
    log = python.server.log_text()
    assert python.token not in log


def test_uv_through_another_private_channels_server(python: Python, tmp_path: Path) -> None:
    with live_server(str(tmp_path / "public-data"), tmp_path) as public:
        public.cli("channel", "create", "pub", "--public")
        writer = public.token("pub", "write")
        for name in ("public-dep-1.0", "public-dep-1.1", "acme-app-99"):
            twine_upload(public, writer, python.dists[name], pip_env(tmp_path), "pub")
        # The upstream is private too: the channel reaches it with a token of its own.
        reader = public.token("pub", "read")
        host = public.url.removeprefix("http://")
        python.server.cli(
            "channel", "create", "uv-team",
            "--python-upstream", f"http://{reader}:x-auth-token@{host}/pub/simple/",
        )  # fmt: skip
        twine_upload(python.server, python.token, python.dists["acme-app"],
                     pip_env(tmp_path), "uv-team")  # fmt: skip
        listed = python.server.cli("channel", "list").stdout
        assert reader not in listed and "(with credentials)" in listed
        first = tmp_path / "uv-first"
        uv(python, python.index("uv-team"), first, "acme-app")
        assert installed(first) == {"acme_app": "1.0", "public_dep": "1.1"}
        # An older public version, resolved by uv from the proxied page.
        older = tmp_path / "uv-older"
        uv(python, python.index("uv-team"), older, "acme-app", "public-dep==1.0")
        assert installed(older) == {"acme_app": "1.0", "public_dep": "1.0"}
    again = tmp_path / "uv-again"
    uv(python, python.index("uv-team"), again, "--no-cache", "acme-app")
    assert installed(again) == {"acme_app": "1.0", "public_dep": "1.1"}
    assert reader not in python.server.log_text()


def test_pip_refuses_an_upstream_file_that_does_not_match_its_hash(
    python: Python, tmp_path: Path
) -> None:
    (wheel,) = [p for p in python.dists["public-dep-1.0"] if p.name.endswith(".whl")]
    pages = Pages()
    pages.set(
        "/simple/public-dep/", f'<a href="/f/{wheel.name}#sha256={"0" * 64}">{wheel.name}</a>'
    )
    pages.set(f"/f/{wheel.name}", wheel.read_bytes(), "application/octet-stream")
    with serve_wsgi(pages) as upstream:
        python.server.cli("channel", "create", "hash-team", "--python-upstream",
                          f"{upstream.url}/simple/")  # fmt: skip
        result = pip_failing(python.index("hash-team"), tmp_path / "site", "public-dep")
    assert "502" in result.stdout + result.stderr
    assert not (tmp_path / "site" / "public_dep").exists()


# -- R ----------------------------------------------------------------------------------

PRIVATE_CODE = 'greet <- function() paste("private 1.0 with", publicdep::hello())\n'
PUBLIC_CODE = 'hello <- function() "publicdep"\n'
EVIL_CODE = 'greet <- function() "the public impostor"\n'


def cran_repository(root: Path, *tarballs: Path) -> Path:
    """A CRAN-like repository of ``tarballs`` under ``root``, indexed by R itself;
    returns its ``src/contrib``."""
    contrib = root / "src" / "contrib"
    contrib.mkdir(parents=True)
    for tarball in tarballs:
        shutil.copy(tarball, contrib)
    rscript(f'tools::write_PACKAGES("{contrib}", type = "source")')
    return contrib


def built(tmp_path: Path, name: str, version: str, code: str, imports: str = "") -> Path:
    build = tmp_path / "build"
    build.mkdir(exist_ok=True)
    return r_build(build, write_package(build, name, version, code, imports=imports))


@contextmanager
def r_channel(tmp_path: Path) -> Iterator[tuple[LiveServer, Running, Path]]:
    """The channel "rteam" whose upstream is ``tmp_path/cran`` served over HTTP, and an
    empty R library."""
    lib = tmp_path / "lib"
    lib.mkdir()
    with (
        serve_directory(tmp_path / "cran") as upstream,
        live_server(str(tmp_path / "data"), tmp_path) as server,
    ):
        server.cli("channel", "create", "rteam", "--cran-upstream", upstream.url)
        yield server, upstream, lib


def test_install_packages_through_one_repository(tmp_path: Path) -> None:
    require_client("Rscript")
    public = built(tmp_path, "publicdep", "1.0", PUBLIC_CODE)
    evil = built(tmp_path, "privpkg", "99.0", EVIL_CODE)
    private = built(tmp_path, "privpkg", "1.0", PRIVATE_CODE, imports="publicdep")
    cran_repository(tmp_path / "cran", public, evil)
    with r_channel(tmp_path) as (server, upstream, lib):
        token = server.token("rteam", "write")
        upload = subprocess.run(
            ["curl", "-sS", "--fail", "-F", "filetype=cran_source_package",
             "-F", f"content=@{private}", "-H", f"X-Auth: {token}", f"{server.url}/rteam"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert upload.returncode == 0, upload.stderr
        repos = f"{server.url}/t/{token}/rteam"
        rscript(f'install.packages("privpkg", repos = "{repos}", lib = "{lib}", quiet = TRUE)')
        out = rscript(f'.libPaths("{lib}"); cat(privpkg::greet())')
        assert out == "private 1.0 with publicdep"
        out = rscript(f'ap <- available.packages(repos = "{repos}"); '
                      'cat(ap["privpkg", "Version"], ap["publicdep", "Version"])')  # fmt: skip
        assert out == "1.0 1.0"
        upstream.stop()
        # The upstream is gone: the same install, from a fresh library, still works.
        shutil.rmtree(lib)
        lib.mkdir()
        rscript(f'install.packages("privpkg", repos = "{repos}", lib = "{lib}", quiet = TRUE)')
        out = rscript(f'.libPaths("{lib}"); cat(privpkg::greet())')
        assert out == "private 1.0 with publicdep"
        assert token not in server.log_text()


def test_install_packages_refuses_a_tarball_that_does_not_match_its_md5sum(
    tmp_path: Path,
) -> None:
    require_client("Rscript")
    public = built(tmp_path, "publicdep", "1.0", PUBLIC_CODE)
    cran = cran_repository(tmp_path / "cran", public)
    # The tarball changes after its index was written: the MD5sum no longer matches.
    with (cran / public.name).open("ab") as tarball:
        tarball.write(b"\0")
    with r_channel(tmp_path) as (server, _, lib):
        repos = f"{server.url}/t/{server.token('rteam', 'read')}/rteam"
        rscript(
            f'suppressWarnings(install.packages("publicdep", repos = "{repos}", lib = "{lib}",'
            " quiet = TRUE))"
        )
        assert not (lib / "publicdep").exists()
        assert " 502 " in server.log_text()
