"""The real R and curl against a live server: upload, install.packages, Archive/, binaries.

R only warns (and Rscript exits 0) when every index of a repository fails, so these
tests check what R actually installed and loads, never just its exit code.
"""

from __future__ import annotations

import concurrent.futures
import io
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from private_channels.cran.dcf import parse_dcf

from .support import LiveServer, live_server, require_client
from .test_cran_description import source_package

pytestmark = pytest.mark.e2e

CHANNEL = "rchan"


def run(*args: str | Path, cwd: Path | None = None, timeout: float = 300) -> str:
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )
    assert result.returncode == 0, f"{args[0]} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def rscript(code: str, *, cwd: Path | None = None) -> str:
    # --vanilla: no site or user profile may set other repositories or libraries.
    return run(require_client("Rscript"), "--vanilla", "-e", code, cwd=cwd)


def write_package(root: Path, name: str, version: str, code: str, imports: str = "") -> Path:
    source = root / "src" / f"{name}-{version}" / name
    (source / "R").mkdir(parents=True)
    lines = [
        f"Package: {name}",
        f"Version: {version}",
        f"Title: Test Package {name.title()}",
        "Description: A package for the private-channels end-to-end tests.",
        "Author: Test Author",
        "Maintainer: Test Author <test@example.org>",
        "License: GPL-2",
        "Encoding: UTF-8",
    ]
    if imports:
        lines.append(f"Imports: {imports}")
    (source / "DESCRIPTION").write_text("\n".join(lines) + "\n")
    exports = [line.split(" <-")[0] for line in code.splitlines() if " <- function" in line]
    (source / "NAMESPACE").write_text("".join(f"export({e})\n" for e in exports))
    (source / "R" / f"{name}.R").write_text(code)
    return source


def r_build(root: Path, source: Path) -> Path:
    """``R CMD build`` as a package author runs it; the tarball lands in ``root``."""
    run(require_client("R"), "CMD", "build", "--no-build-vignettes", "--no-manual", source,
        cwd=root)  # fmt: skip
    name, version = source.name, source.parent.name.rsplit("-", 1)[1]
    tarball = root / f"{name}_{version}.tar.gz"
    assert tarball.is_file()
    return tarball


def curl_upload(
    url: str, token: str, path: Path, filetype: str = "cran_source_package", name: str = ""
) -> tuple[int, str]:
    field = f"content=@{path}" + (f";filename={name}" if name else "")
    out = run(
        require_client("curl"), "-sS", "-o", "-", "-w", "\n%{http_code}",
        "-F", f"filetype={filetype}", "-F", field, "-H", f"X-Auth: {token}", url,
    )  # fmt: skip
    body, _, code = out.rpartition("\n")
    return int(code), body.strip()


def curl_get(url: str, out: Path) -> int:
    code = run(require_client("curl"), "-sS", "-o", out, "-w", "%{http_code}", url)
    return int(code)


@pytest.fixture
def r_channel(server: LiveServer) -> tuple[LiveServer, str]:
    require_client("Rscript")
    require_client("curl")
    server.cli("channel", "create", CHANNEL)
    return server, server.token(CHANNEL, "write")


FIRST_CODE = 'hello <- function() "hello from first"\n'
SECOND_CODE = 'greet <- function() paste(first::hello(), "via second")\n'


def test_install_packages_from_a_channel(r_channel: tuple[LiveServer, str], tmp_path: Path) -> None:
    server, token = r_channel
    upload_url = f"{server.url}/{CHANNEL}"
    repos = f"{server.url}/t/{token}/{CHANNEL}"
    first = r_build(tmp_path, write_package(tmp_path, "first", "1.0", FIRST_CODE))
    second = r_build(
        tmp_path, write_package(tmp_path, "second", "0.1", SECOND_CODE, imports="first")
    )
    for tarball in (first, second):
        code, body = curl_upload(upload_url, token, tarball)
        assert code == 200, body
    assert curl_upload(upload_url, token, first) == (
        200, "first_1.0.tar.gz is already in src/contrib/ with the same bytes; nothing changed."
    )  # fmt: skip

    # install.packages pulls "first" in through Imports, all through the token path.
    lib = tmp_path / "lib"
    lib.mkdir()
    rscript(f'install.packages("second", repos = "{repos}", lib = "{lib}", quiet = TRUE)')
    assert sorted(p.name for p in lib.iterdir()) == ["first", "second"]
    out = rscript(f'.libPaths("{lib}"); library(second); cat(greet())')
    assert out == "hello from first via second"

    # The newer version becomes the one R installs; the older one moves to Archive/.
    newer = r_build(tmp_path, write_package(tmp_path, "first", "1.1", FIRST_CODE))
    assert curl_upload(upload_url, token, newer)[0] == 200
    old_copy = tmp_path / "old.tar.gz"
    assert curl_get(f"{repos}/src/contrib/first_1.0.tar.gz", old_copy) == 404
    assert curl_get(f"{repos}/src/contrib/Archive/first/first_1.0.tar.gz", old_copy) == 200
    assert old_copy.read_bytes() == first.read_bytes()

    # What remotes::install_version and pak read, emulated with base R.
    lib2 = tmp_path / "lib2"
    lib2.mkdir()
    out = rscript(
        f"""
        repo <- "{repos}"
        tf <- tempfile(fileext = ".gz")
        download.file(paste0(repo, "/src/contrib/Meta/archive.rds"), tf, quiet = TRUE)
        con <- gzfile(tf, "rb"); archive <- readRDS(con); close(con)
        info <- archive[["first"]]
        stopifnot(is.data.frame(info), inherits(info$mtime, "POSIXct"))
        path <- file.path("src/contrib/Archive", rownames(info)[1])
        pkg <- file.path(tempdir(), basename(path))
        download.file(paste(repo, path, sep = "/"), pkg, quiet = TRUE)
        install.packages(pkg, repos = NULL, type = "source", lib = "{lib2}", quiet = TRUE)
        gz <- tempfile(fileext = ".gz")
        download.file(paste0(repo, "/src/contrib/PACKAGES.gz"), gz, quiet = TRUE)
        pak <- read.dcf(gz)
        ap <- available.packages(repos = repo)
        cat(rownames(info), as.character(packageVersion("first", lib.loc = "{lib2}")),
            pak[pak[, "Package"] == "first", "Version"], ap["first", "Version"], sep = "|")
        """
    )
    assert out == "first/first_1.0.tar.gz|1.0|1.1|1.1"
    rscript(f'install.packages("first", repos = "{repos}", lib = "{lib}", quiet = TRUE)')
    out = rscript(f'cat(as.character(packageVersion("first", lib.loc = "{lib}")))')
    assert out == "1.1"

    # Basic credentials in the URL work too; the token never reaches the server's log.
    basic = repos.replace("http://", f"http://{token}:x-auth-token@").replace(f"/t/{token}", "")
    out = rscript(f'cat(rownames(available.packages(repos = "{basic}")))')
    assert out.split() == ["first", "second"]
    assert token not in server.log_text()


def test_wrong_token_is_401_and_installs_nothing(
    r_channel: tuple[LiveServer, str], tmp_path: Path
) -> None:
    server, token = r_channel
    data = source_package("abc", "1.0")
    (tmp_path / "abc_1.0.tar.gz").write_bytes(data)
    assert curl_upload(f"{server.url}/{CHANNEL}", token, tmp_path / "abc_1.0.tar.gz")[0] == 200
    wrong = f"{server.url}/t/{'0' * 48}/{CHANNEL}"
    assert curl_get(f"{wrong}/src/contrib/PACKAGES", tmp_path / "out") == 401
    lib = tmp_path / "lib"
    lib.mkdir()
    out = rscript(
        f"""
        said <- character()
        note <- function(c) said <<- c(said, conditionMessage(c))
        tryCatch(
          withCallingHandlers(
            download.file("{wrong}/src/contrib/PACKAGES", tempfile(), quiet = TRUE),
            warning = function(w) {{ note(w); invokeRestart("muffleWarning") }}
          ),
          error = note
        )
        cat(said, "\\n")
        suppressWarnings(install.packages("abc", repos = "{wrong}", lib = "{lib}", quiet = TRUE))
        cat("installed:", length(dir("{lib}")))
        """
    )
    assert "401" in out
    assert out.rstrip().endswith("installed: 0")


def _as_binary(built_tarball: Path, out: Path, built: str, *, kind: str) -> Path:
    """Repackage a Linux binary from R CMD INSTALL --build for another platform,
    with its DESCRIPTION's Built field rewritten (R on Linux cannot build a .zip)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    members: list[tuple[tarfile.TarInfo, bytes | None]] = []
    with tarfile.open(built_tarball) as tar:
        for member in tar:
            data = tar.extractfile(member).read() if member.isreg() else None  # type: ignore[union-attr]
            if member.name.endswith("/DESCRIPTION") and member.name.count("/") == 1:
                fields = parse_dcf(data.decode())[0]  # type: ignore[union-attr]
                assert fields["Built"].startswith("R 4.")
                fields["Built"] = built
                data = "".join(f"{k}: {v}\n" for k, v in fields.items()).encode()
                member.size = len(data)
            members.append((member, data))
    if kind == "zip":
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            for member, data in members:
                if data is not None:
                    archive.writestr(member.name, data)
    else:
        with tarfile.open(out, "w:gz") as tar:
            for member, data in members:
                if member.isreg() or member.isdir():
                    tar.addfile(member, io.BytesIO(data) if data is not None else None)
    return out


def test_binaries_are_listed_where_contrib_url_looks(
    r_channel: tuple[LiveServer, str], tmp_path: Path
) -> None:
    server, token = r_channel
    upload_url = f"{server.url}/{CHANNEL}"
    repos = f"{server.url}/t/{token}/{CHANNEL}"
    source = r_build(tmp_path, write_package(tmp_path, "first", "1.0", FIRST_CODE))
    build_lib = tmp_path / "build-lib"
    build_lib.mkdir()
    run(require_client("R"), "CMD", "INSTALL", "--build", "-l", build_lib, source, cwd=tmp_path)
    (built,) = tmp_path.glob("first_1.0_R_*.tar.gz")
    version = rscript("cat(paste(R.version$major, R.version$minor, sep = '.'))")
    stamp = "2026-01-01 00:00:00 UTC"
    windows = _as_binary(
        built, tmp_path / "first_1.0.zip", f"R {version}; x86_64-w64-mingw32; {stamp}; windows",
        kind="zip",
    )  # fmt: skip
    mac = _as_binary(
        built, tmp_path / "first_1.0.tgz", f"R {version}; x86_64-apple-darwin17.0; {stamp}; unix",
        kind="tgz",
    )  # fmt: skip
    for binary in (windows, mac):
        code, body = curl_upload(upload_url, token, binary, "cran_binary_package")
        assert code == 200, body
    # A binary with Linux compiled code is not something R on macOS can use.
    linux = _as_binary(
        built, tmp_path / "linux" / "first_1.0.tgz",
        f"R {version}; x86_64-pc-linux-gnu; {stamp}; unix", kind="tgz",
    )  # fmt: skip
    code, body = curl_upload(upload_url, token, linux, "cran_binary_package")
    assert code == 400 and "built for" in body

    out = rscript(
        f"""
        repo <- "{repos}"
        for (type in c("win.binary", "mac.binary")) {{
          cu <- contrib.url(repo, type = type)
          ap <- available.packages(contriburl = cu, type = type, filters = list(), fields = "Built")
          stopifnot(identical(unname(ap[, "Package"]), "first"))
          index <- read.dcf(url(paste0(cu, "/PACKAGES")))
          stopifnot(identical(unname(index[, "Package"]), "first"), "Built" %in% colnames(index))
          f <- tempfile()
          ext <- if (type == "win.binary") ".zip" else ".tgz"
          download.file(paste0(cu, "/first_", ap[1, "Version"], ext), f, quiet = TRUE, mode = "wb")
          stopifnot(identical(unname(tools::md5sum(f)), unname(ap[1, "MD5sum"])))
          cat(sub(repo, "", cu, fixed = TRUE), ap[1, "Built"], "\\n", sep = "|")
        }}
        """
    )
    lines = out.splitlines()
    minor = ".".join(version.split(".")[:2])
    assert lines[0].startswith(f"/bin/windows/contrib/{minor}|R {version}; x86_64-w64-mingw32")
    assert lines[1].startswith(f"/bin/macosx/contrib/{minor}|R {version}; x86_64-apple-darwin")


def test_linux_binaries_as_posit_package_manager_serves_them(
    r_channel: tuple[LiveServer, str], tmp_path: Path
) -> None:
    server, token = r_channel
    upload_url = f"{server.url}/{CHANNEL}"
    source = r_build(tmp_path, write_package(tmp_path, "first", "1.0", FIRST_CODE))
    build_lib = tmp_path / "build-lib"
    build_lib.mkdir()
    run(require_client("R"), "CMD", "INSTALL", "--build", "-l", build_lib, source, cwd=tmp_path)
    (built,) = tmp_path.glob("first_1.0_R_*.tar.gz")
    assert curl_upload(upload_url, token, source)[0] == 200
    code, body = run_curl_form(
        upload_url, token, built, "filetype=cran_binary_package", "distribution=bookworm"
    )
    assert code == 200 and "__linux__/bookworm/src/contrib/" in body, body
    lib = tmp_path / "lib"
    lib.mkdir()
    # The User-Agent Posit Package Manager asks R users to set (R 4.2's libcurl sends
    # "libcurl/7.x" otherwise) names R's version and platform: the answer is the binary.
    result = subprocess.run(
        [require_client("Rscript"), "--vanilla", "-e",
         'options(HTTPUserAgent = sprintf("R/%s R (%s)", getRversion(), paste(getRversion(), '
         'R.version["platform"], R.version["arch"], R.version["os"]))); '
         f'install.packages("first", repos = "{server.url}/t/{token}/{CHANNEL}/__linux__/'
         f'bookworm", lib = "{lib}")'],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    said = result.stdout + result.stderr
    assert result.returncode == 0, said
    assert "installing *binary* package" in said, said
    assert rscript(f'.libPaths("{lib}"); cat(first::hello())') == "hello from first"


def run_curl_form(url: str, token: str, path: Path, *fields: str) -> tuple[int, str]:
    args: list[str] = []
    for field in fields:
        args += ["-F", field]
    out = run(
        require_client("curl"), "-sS", "-o", "-", "-w", "\n%{http_code}", *args,
        "-F", f"content=@{path}", "-H", f"X-Auth: {token}", url,
    )  # fmt: skip
    body, _, code = out.rpartition("\n")
    return int(code), body.strip()


def test_concurrent_uploads_through_two_server_processes(tmp_path: Path) -> None:
    curl = require_client("curl")
    storage = str(tmp_path / "shared-data")
    with live_server(storage, tmp_path) as one, live_server(storage, tmp_path) as two:
        one.cli("channel", "create", CHANNEL)
        token = one.token(CHANNEL, "write")
        names = [f"pkg{i}" for i in range(16)]
        for name in names:
            (tmp_path / f"{name}_1.0.tar.gz").write_bytes(source_package(name, "1.0"))

        def upload(name: str) -> int:
            server = one if int(name[3:]) % 2 else two
            path = tmp_path / f"{name}_1.0.tar.gz"
            return curl_upload(f"{server.url}/{CHANNEL}", token, path)[0]

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            assert set(pool.map(upload, names)) == {200}
        for server in (one, two):
            out = run(curl, "-sS", "-H", f"X-Auth: {token}",
                      f"{server.url}/{CHANNEL}/src/contrib/PACKAGES")  # fmt: skip
            assert sorted(r["Package"] for r in parse_dcf(out)) == sorted(names)
