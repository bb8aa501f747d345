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

from .packages import build_project
from .support import REPO, LiveServer, live_server, require_client
from .test_examples import r_source_package

DOCS = REPO / "docs"
BIN = str(Path(sys.executable).parent)

# (page, language or caption): why the block is not run.
NOT_RUN = {
    ("deployment.md", "nginx"): "a proxy configuration; tests/test_deploy.py runs its effect "
    "(X-Forwarded-Prefix through ProxyFix) with pip installing through a prefix",
    ("clients/pak.md", "pak-install.R"): "pak is installed from CRAN, which test machines "
    "cannot reach, and Debian does not package it; the page's available.packages() check runs",
    ("architecture.md", "text"): "a drawing of the layers, not a command",
    ("performance.md", "text"): "the side-by-side benchmark: about 40 minutes of load on "
    "the machine, run by hand, never in the test suite",
    ("architecture.md", "python"): "an outline of the interface an ecosystem implements; "
    "pypi/ecosystem.py and cran/ecosystem.py are its real, tested instances",
    ("upstreams.md", "shell"): "installs that reach PyPI and CRAN, which test machines cannot; "
    "tests/test_e2e_upstream.py runs the same installs with pip, uv and R against upstreams "
    "it starts on 127.0.0.1",
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
    - ``pip install -e ...`` is not run again: the test environment was made by it.
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
        lines.append(line)
        if line.rstrip().endswith(" &"):
            started = re.findall(r"(?:127\.0\.0\.1:|--port |PORT=)(\d+)", line)
            lines += [f"__wait_for_port {p}" for p in started]
    return "\n".join(lines) + "\n"


def page_script(page: str, server: str | None) -> str:
    ports: dict[str, str] = {}
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

    def run(self, page: str, server: str | None = None) -> subprocess.CompletedProcess[str]:
        script = page_script(page, server)
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
    run |= {"architecture.md", "api.md", "upstreams.md", "performance.md"}
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
        "curl http://127.0.0.1:8000/\n",
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
    ]


# --- the guides ----------------------------------------------------------------------


@pytest.mark.e2e
def test_quickstart(workdir: Workdir) -> None:
    require_client("twine")
    result = workdir.run("quickstart.md")
    assert (Path(workdir.env["PIP_TARGET"]) / "acme_utils" / "__init__.py").is_file()
    assert (workdir.path / "private-channels-data" / "registry").is_dir()
    assert "Successfully installed acme-utils-1.0" in result.stdout


CLIENT_PAGES = ["pip", "uv", "twine", "uv-publish", "poetry", "r", "pak", "curl"]


@pytest.mark.e2e
@pytest.mark.parametrize("page", CLIENT_PAGES)
def test_client_page(page: str, workdir: Workdir, channel: LiveServer) -> None:
    clients = {"uv": ["uv"], "uv-publish": ["uv"], "poetry": ["uvx"], "r": ["Rscript"],
               "pak": ["Rscript"], "curl": ["curl"], "twine": ["twine"], "pip": []}  # fmt: skip
    for client in clients[page]:
        require_client(client)
    token = workdir.env["TOKEN"]
    if page in ("pip", "uv", "poetry"):
        upload_python(channel, workdir)
    if page in ("r", "pak"):
        upload_r(channel, workdir)
    if page == "curl":
        upload_python(channel, workdir)
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
