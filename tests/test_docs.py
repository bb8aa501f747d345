"""The docs build without a warning, and every example in them runs.

Each guide page becomes one bash script: its ``bash`` blocks in order, and the blocks
whose ``code-block`` caption names a file (``pyproject.toml``, ``~/.pypirc``,
``~/.Rprofile``) written to that file where they stand.  The script runs against a
real server with the real clients.  The only changes to the text are listed in
:func:`adapt`; blocks that are not run are listed in ``NOT_RUN`` with the reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conda_packages import build_conda
from .packages import build_project
from .s3server import SeaweedFS
from .support import REPO, LiveServer, live_server, require_client
from .test_examples import r_source_package

DOCS = REPO / "docs"
BIN = str(Path(sys.executable).parent)

# (page, language or caption): why the block is not run.
NOT_RUN = {
    ("deployment.md", "http block"): "a part of nginx's configuration: tests/test_deploy.py "
    "runs it in a real nginx with the server block",
    ("deployment.md", "server block"): "a part of nginx's configuration: tests/test_deploy.py "
    "runs it in a real nginx in front of gunicorn (uploads, reads, redirects under its "
    "prefix, the access log without tokens, slow clients)",
    ("clients/pak.md", "pak-install.R"): "pak is installed from CRAN, which test machines "
    "cannot reach, and Debian does not package it; the page's available.packages() check runs",
    ("architecture.md", "text"): "a drawing of the layers, not a command",
    ("performance.md", "text"): "the side-by-side benchmark: about 40 minutes of load on "
    "the machine, run by hand, never in the test suite",
    ("clients/conda.md", "text"): "the channel URL, not a command",
    ("clients/conda.md", "pixi.toml"): "pixi is not on the package index (nor Debian's); "
    "py-rattler, its engine, runs this page's install.py, and tests/test_e2e_conda.py "
    "drives it with each of pixi's credential forms",
    ("clients/conda.md", "pixi auth"): "pixi is not on the package index (nor Debian's); "
    "tests/test_e2e_conda.py gives py-rattler the same three credential forms",
    ("clients/conda.md", "conda install"): "conda and mamba are not on the package index "
    "(nor Debian's); py-rattler installs from the same channel URL with the token in it",
    ("clients/conda.md", "~/.condarc"): "conda is not on the package index (nor Debian's)",
    ("architecture.md", "python"): "an outline of the interface an ecosystem implements; "
    "pypi/ecosystem.py, cran/ecosystem.py and conda/ecosystem.py are its real, tested "
    "instances",
    ("upstreams.md", "shell"): "installs that reach PyPI and CRAN, which test machines cannot; "
    "tests/test_e2e_upstream.py runs the same installs with pip, uv and R against upstreams "
    "it starts on 127.0.0.1",
    ("testing.md", "bash"): "the long fuzzing profile, an hour of the test suite itself; its "
    "properties run in every test run under the ci profile",
}


@dataclass
class Block:
    language: str
    caption: str | None
    body: str


FENCE = re.compile(
    r"^(?P<fence>```+)(?P<info>[^\n]*)\n(?P<body>.*?)^(?P=fence)[ \t]*$", re.M | re.S
)


def blocks(page: str) -> list[Block]:
    """The code blocks of a page: fenced ones, and ``{code-block}`` directives."""
    found = []
    for match in FENCE.finditer((DOCS / page).read_text()):
        info, body = match["info"].strip(), match["body"]
        if info.startswith("{code-block}"):
            language = info.removeprefix("{code-block}").strip()
            options, _, body = body.partition("\n\n") if body.startswith(":") else ("", "", body)
            caption = re.search(r"^:caption:\s*(.+)$", options, re.M)
            found.append(Block(language, caption[1].strip() if caption else None, body))
        elif not info.startswith("{"):  # other directives (toctree, note, eval-rst) hold no code
            found.append(Block(info or "text", None, body))
    return found


def pages() -> list[str]:
    return sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md") if "_build" not in p.parts)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


PROLOGUE = """\
set -euo pipefail
__wait_for_port() {
  for _ in $(seq 1 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2
  return 1
}
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true' EXIT
"""


def adapt(text: str, server: str | None, ports: dict[str, str]) -> str:
    """The only changes made to a page's commands before they run.

    - ``https://[user:password@]packages.example.org`` becomes the test server;
    - a fixed port (``127.0.0.1:8000``, ``--port 8000``, ``PORT=8000``) becomes a free one;
    - after a command that starts a server in the background (``... &``), wait for its port;
    - ``pip install -e ...`` is not run again: the test environment was made by it;
    - ``python -m build`` builds with ``--no-isolation``, from the build backend the test
      environment has (an isolated build would fetch setuptools from the internet).
    """

    def port(match: re.Match[str]) -> str:
        number = match["port"]
        ports.setdefault(number, str(_free_port()))
        return match[0].replace(number, ports[number])

    text = re.sub(r"(127\.0\.0\.1:|--port |PORT=)(?P<port>\d{4})\b", port, text)
    # After the ports: the test server's own port is not one to map.
    if server is not None:
        text = re.sub(
            r"https://([^/\s\"']*@)?packages\.example\.org",
            lambda m: f"http://{m[1] or ''}{server.removeprefix('http://')}",
            text,
        )
    lines = []
    for line in text.splitlines():
        if re.match(r"\s*pip install -e ", line):
            line = f": not run again, the test environment was made by it: {line!r}"
        line = re.sub(r"^(\s*python -m build)\b", r"\1 --no-isolation", line)
        lines.append(line)
        if line.rstrip().endswith(" &"):
            started = re.findall(r"(?:127\.0\.0\.1:|--port |PORT=)(\d+)", line)
            lines += [f"__wait_for_port {p}" for p in started]
    return "\n".join(lines) + "\n"


def page_script(page: str, server: str | None, ports: dict[str, str] | None = None) -> str:
    """The page as one script; ``ports`` maps fixed ports of the page to ports of the
    test's own servers (SeaweedFS), which are then not replaced by free ports."""
    ports = dict(ports or {})
    parts = [PROLOGUE]
    for block in blocks(page):
        reason = NOT_RUN.get((page, block.caption or block.language))
        if reason:
            continue
        if block.caption:
            path = block.caption.replace("~/", "$HOME/")
            body = adapt(block.body, server, ports) if block.language != "bash" else block.body
            parts.append(f"cat > \"{path}\" <<'__DOC_BLOCK__'\n{body}__DOC_BLOCK__\n")
        elif block.language == "bash":
            parts.append(adapt(block.body, server, ports))
        else:
            raise AssertionError(
                f"{page}: a {block.language!r} block is neither run nor listed in NOT_RUN"
            )
    return "\n".join(parts)


@dataclass
class Workdir:
    path: Path
    env: dict[str, str]

    def run(
        self, page: str, server: str | None = None, ports: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        script = page_script(page, server, ports)
        (self.path / "doc-script.sh").write_text(script)
        process = subprocess.Popen(
            ["bash", str(self.path / "doc-script.sh")],
            cwd=self.path,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # to stop every server the page started, whatever happens
        )
        try:
            out, err = process.communicate(timeout=400)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            out, err = process.communicate()
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        result = subprocess.CompletedProcess(process.args, process.returncode, out, err)
        assert result.returncode == 0, (
            f"{page} failed (exit {result.returncode}):\n--- script\n{script}\n"
            f"--- stdout\n{out}\n--- stderr\n{err}"
        )
        return result


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``dist/`` with a real sdist and wheel of ``acme-utils`` 1.0, as the pages expect."""
    build = tmp_path_factory.mktemp("acme")
    build_project(build, "acme-utils", "1.0")
    return build / "dist"


@pytest.fixture
def workdir(tmp_path: Path, dist: Path) -> Workdir:
    """A fresh directory with dist/, an R package, the examples and the docs, and an
    environment where every client uses only the test server."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(dist, work / "dist")
    (work / "acmeutils_1.0.tar.gz").write_bytes(r_source_package("acmeutils", "1.0"))
    shutil.copytree(REPO / "examples", work / "examples")
    shutil.copytree(DOCS, work / "docs", ignore=shutil.ignore_patterns("_build"))
    home, rlib, shims = tmp_path / "home", tmp_path / "rlib", tmp_path / "shims"
    for directory in (home, rlib, shims):
        directory.mkdir()
    # Poetry is no dependency of this project: uvx runs it from PyPI in its own environment.
    (shims / "poetry").write_text(
        '#!/bin/sh\nexec env -u UV_NO_CONFIG uvx --quiet --from "poetry>=2,<3" poetry "$@"\n'
    )
    (shims / "poetry").chmod(0o755)
    # Not the virtual environment the suite runs in (scripts/test.sh activates .venv),
    # nor its interpreter as UV_PYTHON: Poetry and `uv pip install` would install into
    # that instead of the environment the page makes.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PRIVATE_CHANNELS_", "UV_")) and k != "VIRTUAL_ENV"
    }
    env.update(
        PATH=os.pathsep.join([BIN, str(shims), env.get("PATH", "")]),
        HOME=str(home),
        UV_CACHE_DIR=str(Path.home() / ".cache" / "uv"),
        UV_NO_CONFIG="1",
        UV_PYTHON_DOWNLOADS="never",
        PIP_CONFIG_FILE="/dev/null",
        PIP_FIND_LINKS="",
        PIP_NO_INPUT="1",
        PIP_TARGET=str(tmp_path / "site"),
        R_LIBS=str(rlib),
        R_LIBS_USER=str(rlib),
        PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring",
        POETRY_VIRTUALENVS_IN_PROJECT="true",
    )
    return Workdir(work, env)


@pytest.fixture
def channel(workdir: Workdir, tmp_path: Path) -> Iterator[LiveServer]:
    """A running server with the private channel ``data-team`` and ``TOKEN`` (write)."""
    with live_server(str(tmp_path / "data"), tmp_path) as server:
        server.cli("channel", "create", "data-team")
        workdir.env["TOKEN"] = server.token("data-team", "write")
        yield server


def upload_python(server: LiveServer, workdir: Workdir) -> None:
    subprocess.run(
        [shutil.which("twine", path=BIN) or "twine", "upload", "--non-interactive",
         "--repository-url", f"{server.url}/data-team", "-u", workdir.env["TOKEN"],
         "-p", "x-auth-token", *map(str, sorted((workdir.path / "dist").iterdir()))],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip


def upload_r(server: LiveServer, workdir: Workdir) -> None:
    subprocess.run(
        ["curl", "--fail", "-sS", "-H", f"X-Auth: {workdir.env['TOKEN']}",
         "-F", "filetype=cran_source_package",
         "-F", f"content=@{workdir.path / 'acmeutils_1.0.tar.gz'}", f"{server.url}/data-team"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip


def index_files(server: LiveServer, token: str) -> list[str]:
    request = urllib.request.Request(
        f"{server.url}/data-team/simple/acme-utils/",
        headers={"X-Auth": token, "Accept": "application/vnd.pypi.simple.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return sorted(f["filename"] for f in json.load(response)["files"])


# --- the build ----------------------------------------------------------------------


def test_docs_build_with_warnings_as_errors(workdir: Workdir) -> None:
    """about-these-docs.md's own commands: the Sphinx build with -W."""
    workdir.run("about-these-docs.md")
    index = workdir.path / "docs" / "_build" / "html" / "index.html"
    assert "private-channels" in index.read_text()
    reference = (workdir.path / "docs" / "_build" / "html" / "reference.html").read_text()
    # The reference is generated from the docstrings of the middlewares.
    for name in ["TokenAuthMiddleware", "SimpleIndexMiddleware", "HealthMiddleware",
                 "load_config", "PagesMiddleware", "ApiMiddleware", "Admin"]:  # fmt: skip
        assert name in reference
    # The pages' screenshots are part of the site.
    web = (workdir.path / "docs" / "_build" / "html" / "web.html").read_text()
    for name in ("sign-in", "channel", "package", "upload", "tokens"):
        assert f"_images/{name}.png" in web
        assert (workdir.path / "docs" / "_build" / "html" / "_images" / f"{name}.png").is_file()


def test_every_block_is_run_or_listed_with_a_reason() -> None:
    run = {"quickstart.md", "embedding.md", "deployment.md", "about-these-docs.md"}
    run |= {"architecture.md", "api.md", "upstreams.md", "testing.md", "performance.md"}
    run |= {"storage.md", "migrating.md", "backup.md", "troubleshooting.md"}
    run |= {f"clients/{p}.md" for p in CLIENT_PAGES}
    for page in pages():
        if page in run:
            page_script(page, "http://127.0.0.1:1")  # raises on a block neither run nor listed
        else:
            assert not blocks(page), f"{page} has examples that no test runs"
    for page, key in NOT_RUN:
        assert any(key in (b.caption, b.language) for b in blocks(page)), (page, key)


def test_adapt_changes_only_address_ports_and_waits() -> None:
    ports: dict[str, str] = {}
    text = adapt(
        "pip install -e .\ncurl https://$T:x@packages.example.org/a\nx --port 8000 &\n"
        "curl http://127.0.0.1:8000/\npython -m build\n",
        "http://127.0.0.1:5555",
        ports,
    )
    new = ports["8000"]
    assert text.splitlines() == [
        ": not run again, the test environment was made by it: 'pip install -e .'",
        "curl http://$T:x@127.0.0.1:5555/a",
        f"x --port {new} &",
        f"__wait_for_port {new}",
        f"curl http://127.0.0.1:{new}/",
        "python -m build --no-isolation",
    ]


# --- the guides ----------------------------------------------------------------------


@pytest.mark.e2e
def test_quickstart(workdir: Workdir) -> None:
    """In the directory of a project that has not been built: the page builds it."""
    require_client("twine")
    shutil.rmtree(workdir.path / "dist")
    (workdir.path / "acme_utils").mkdir()
    (workdir.path / "acme_utils" / "__init__.py").write_text("VERSION = '1.0'\n")
    (workdir.path / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n'
        '\n[project]\nname = "acme-utils"\nversion = "1.0"\n'
    )
    result = workdir.run("quickstart.md")
    assert (Path(workdir.env["PIP_TARGET"]) / "acme_utils" / "__init__.py").is_file()
    assert (workdir.path / "private-channels-data" / "registry").is_dir()
    assert "Successfully installed acme-utils-1.0" in result.stdout
    # pip printed its index URL with the token masked (and twine nothing of it either).
    assert "Looking in indexes: http://__token__:****@127.0.0.1:" in result.stdout
    # The page made its token itself: nothing shaped like one may be in its output.
    assert not re.search(r"(?<![0-9a-f])[0-9a-f]{48}(?![0-9a-f])", result.stdout + result.stderr)


CLIENT_PAGES = ["pip", "uv", "twine", "uv-publish", "poetry", "r", "pak", "curl", "conda"]


@pytest.mark.e2e
@pytest.mark.parametrize("page", CLIENT_PAGES)
def test_client_page(page: str, workdir: Workdir, channel: LiveServer) -> None:
    clients = {"uv": ["uv"], "uv-publish": ["uv"], "poetry": ["uvx"], "r": ["Rscript"],
               "pak": ["Rscript"], "curl": ["curl"], "twine": ["twine"], "pip": [],
               "conda": ["curl"]}  # fmt: skip
    for client in clients[page]:
        require_client(client)
    token = workdir.env["TOKEN"]
    if page in ("pip", "uv", "poetry"):
        upload_python(channel, workdir)
    if page in ("r", "pak"):
        upload_r(channel, workdir)
    if page == "curl":
        upload_python(channel, workdir)
    if page == "conda":
        built = build_conda(workdir.path / "build", "acme-tools", "1.0", "0")
        shutil.copy(built, workdir.path / built.name)
    if page == "uv-publish":
        # `uv publish --index` reads the index from pyproject.toml, which UV_NO_CONFIG
        # hides; with HOME and XDG_CONFIG_DIRS empty no other uv configuration is found.
        del workdir.env["UV_NO_CONFIG"]
        workdir.env["XDG_CONFIG_DIRS"] = str(workdir.path / "no-config")

    result = workdir.run(f"clients/{page}.md", channel.url.removesuffix("/api/repo"))

    site = Path(workdir.env["PIP_TARGET"])
    if page == "pip":
        assert (site / "acme_utils" / "__init__.py").is_file()
        assert [p.name for p in (workdir.path / "downloads").iterdir()]
    elif page == "uv":
        assert result.stdout.strip().endswith("1.0")
        assert "acme-utils" in (workdir.path / "uv.lock").read_text()
        assert token not in (workdir.path / "uv.lock").read_text()
    elif page in ("twine", "uv-publish"):
        assert index_files(channel, token) == ["acme_utils-1.0-py3-none-any.whl",
                                               "acme_utils-1.0.tar.gz"]  # fmt: skip
    elif page == "poetry":
        assert 'source = "data-team"' in (workdir.path / "pyproject.toml").read_text()
        assert list((workdir.path / ".venv").rglob("acme_utils/__init__.py"))
    elif page == "r":
        assert (Path(workdir.env["R_LIBS"]) / "acmeutils" / "DESCRIPTION").is_file()
    elif page == "curl":
        assert "Package: acmeutils" in result.stdout
        assert '"name":"acme-utils"' in result.stdout.replace(" ", "")
    elif page == "conda":
        assert "Uploaded acme-tools-1.0-0.conda to noarch/." in result.stdout
        assert '"acme-tools-1.0-0.conda"' in result.stdout  # repodata.json
        assert result.stdout.strip().endswith("acme-tools 1.0")
        assert (workdir.path / "env" / "share" / "acme-tools" / "acme-tools.txt").is_file()
    assert token not in channel.log_text()


@pytest.mark.e2e
def test_upstreams_page(workdir: Workdir, channel: LiveServer) -> None:
    """Its commands configure the channel's upstreams (no request reaches them) and
    install a package of the channel's own, which never asks the upstream."""
    upload_python(channel, workdir)
    workdir.env["PRIVATE_CHANNELS_STORAGE"] = channel.storage
    result = workdir.run("upstreams.md", channel.url.removesuffix("/api/repo"))
    assert (Path(workdir.env["PIP_TARGET"]) / "acme_utils" / "__init__.py").is_file()
    assert "python-upstream=https://pypi.org/simple/" in result.stdout
    assert "cran-upstream=https://cloud.r-project.org/" in result.stdout
    assert "X-Private-Channels-Upstream" not in channel.log_text()


@pytest.mark.e2e
def test_api_page(workdir: Workdir, channel: LiveServer) -> None:
    """docs/api.md's curl examples, against a real server."""
    for client in ("curl", "twine"):
        require_client(client)
    workdir.env["ADMIN_TOKEN"] = admin = channel.token("*", "admin")
    result = workdir.run("api.md", channel.url.removesuffix("/api/repo"))
    out = result.stdout
    assert '"name": "data-team"' in out and '"name": "ml-team"' in out
    assert '"note": "ml CI"' in out and '"scope": "write"' in out
    assert '"python": [{"name": "acme-utils", "versions": ["1.0"]}]' in out
    assert '"cran": [{"name": "acmeutils", "versions": ["1.0"]}]' in out
    assert '"action": "yank", "ecosystem": "cran", "package": "acmeutils"' in out
    assert '"action": "delete", "ecosystem": "python", "package": "acme-utils"' in out
    assert '{"error": "The token is invalid or expired."}\n 401' in out
    assert '"deleted": true' in out and "Channel 'ml-team' holds 1 python package" in out
    assert admin not in channel.log_text()


@pytest.mark.e2e
def test_embedding_page(workdir: Workdir) -> None:
    require_client("curl")
    for client in ("twine", "Rscript"):
        require_client(client)
    result = workdir.run("embedding.md")
    # Through the Flask app: pip installed the Python package, R the R package.
    assert (Path(workdir.env["PIP_TARGET"]) / "acme_utils" / "__init__.py").is_file()
    assert (Path(workdir.env["R_LIBS"]) / "acmeutils" / "DESCRIPTION").is_file()
    assert result.stdout.count('"status": "ok"') == 3
    assert '"app":"flask"' in result.stdout.replace(" ", "")
    assert '"app":"pyramid"' in result.stdout.replace(" ", "")


@pytest.mark.e2e
def test_deployment_page(workdir: Workdir) -> None:
    require_client("curl")
    result = workdir.run("deployment.md")
    assert result.stdout.count('"status": "ok"') == 4
    assert "refused to start" in result.stdout
    assert "The setting log_format (from PRIVATE_CHANNELS_LOG_FORMAT) is invalid" in result.stderr
    # Header names are case-insensitive; waitress sends "X-Request-Id".
    assert "x-request-id: ticket-4711" in result.stdout.lower()
    # The configuration file was read: its public channel exists.
    assert (
        workdir.path / "private-channels-data" / "registry" / "channels" / "docs.json"
    ).is_file()


# --- storage, moving, backups, refusals ----------------------------------------------


def stocked_storage(workdir: Workdir, tmp_path: Path) -> None:
    """``./private-channels-data`` of the page's directory with the channel ``data-team``,
    acme-utils uploaded to it, and ``TOKEN`` (write) for it, as a running deployment has."""
    data = workdir.path / "private-channels-data"
    with live_server(str(data), tmp_path) as server:
        server.cli("channel", "create", "data-team")
        workdir.env["TOKEN"] = server.token("data-team", "write")
        upload_python(server, workdir)


def seaweed_ports(seaweedfs: SeaweedFS) -> dict[str, str]:
    """The page's SeaweedFS gateway (127.0.0.1:8333) is the test's."""
    return {"8333": seaweedfs.endpoint_url.rpartition(":")[2]}


@pytest.mark.e2e
def test_storage_page_makes_a_bucket_and_a_channel_in_it(
    workdir: Workdir, seaweedfs: SeaweedFS
) -> None:
    workdir.env.update(seaweedfs.env)
    result = workdir.run("storage.md", ports=seaweed_ports(seaweedfs))
    assert result.stdout.splitlines()[-1] == "data-team\tprivate"
    client = seaweedfs.client()
    keys = client.list_objects_v2(Bucket="packages", Prefix="prod/registry/channels/")
    assert [k["Key"] for k in keys.get("Contents", [])] == ["prod/registry/channels/data-team.json"]


@pytest.mark.e2e
def test_migrating_page_moves_a_deployment_to_s3_and_back(
    workdir: Workdir, seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    stocked_storage(workdir, tmp_path)
    workdir.env.update(seaweedfs.env)
    result = workdir.run("migrating.md", ports=seaweed_ports(seaweedfs))
    # The token made on the filesystem downloaded the package from the bucket.
    assert sorted(p.name for p in (workdir.path / "moved").iterdir()) == [
        "acme_utils-1.0-py3-none-any.whl"
    ]
    assert re.search(r"copied \d+ keys \(\d+ bytes\) from .*private-channels-data to "
                     r"S3Storage\('s3://team-packages/prod'", result.stderr)  # fmt: skip
    assert result.stdout.count("data-team\tprivate") == 2  # on S3, and back on the disk
    original = workdir.path / "private-channels-data"
    back = workdir.path / "from-s3"
    files = sorted(p.relative_to(original) for p in original.rglob("*") if p.is_file()
                   and not p.name.startswith("."))  # fmt: skip
    returned = sorted(p.relative_to(back) for p in back.rglob("*") if p.is_file()
                      and not p.name.startswith("."))  # fmt: skip
    # pip's install through the bucket read the wheel's METADATA, which the upload to
    # the disk had left to its first read: it was written there, and came back.
    assert all(f.name.endswith(".whl.metadata") for f in returned if f not in files)
    assert all((original / f).read_bytes() == (back / f).read_bytes() for f in files)
    assert set(files) <= set(returned)


@pytest.mark.e2e
def test_backup_page_restores_a_working_deployment(workdir: Workdir, tmp_path: Path) -> None:
    stocked_storage(workdir, tmp_path)
    result = workdir.run("backup.md")
    assert sorted(p.name for p in (workdir.path / "restored").iterdir()) == [
        "acme_utils-1.0-py3-none-any.whl"
    ]
    assert "data-team\tprivate" in result.stdout
    assert (workdir.path / "backups").is_dir() and (workdir.path / "restored-data").is_dir()


@pytest.mark.e2e
def test_troubleshooting_page_shows_each_clients_refusal(workdir: Workdir) -> None:
    require_client("Rscript")
    require_client("curl")
    result = workdir.run("troubleshooting.md")
    sentence = "This token is not for channel 'data-team'."
    out = result.stdout
    assert "No matching distribution found for acme-utils" in result.stderr
    # curl for pip's request, curl for R's, pip -vv, and the server's log
    assert out.count(sentence) >= 4, out
    assert f"403 Client Error: {sentence}" in out
    assert f'reason="{sentence}"' in out
    assert not re.search(r"(?<![0-9a-f])[0-9a-f]{48}(?![0-9a-f])", out)


def test_the_readme_points_only_inside_the_repository() -> None:
    """Users get the repository alone: no path out of it, and each one it names exists."""
    text = (REPO / "README.md").read_text()
    assert "../" not in text and "SPEC.md" not in text
    for path in re.findall(r"`((?:docs|examples|private_channels|scripts)/[\w./-]+)`", text):
        assert (REPO / path).exists(), path
