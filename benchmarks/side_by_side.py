"""private-channels against the limit of its WSGI server, pypiserver and devpi-server, in one run.

::

    python benchmarks/side_by_side.py                           # everything (about 50 minutes)
    python benchmarks/side_by_side.py --sizes 1000 --servers waitress --rounds 1 --seconds 1
    python benchmarks/side_by_side.py --extras                  # 1 GB up/down RSS, CRAN rebuild

For each number of projects (``--sizes``) it fills one channel (N Python projects x 3
versions, N R packages x 3 versions, one 50 MB wheel), pre-renders every page and index
of it to a static tree, and installs pypiserver and devpi-server into throwaway virtual
environments under the work directory; devpi-server gets the same Python files once,
through its upload API, into a server directory kept beside the channel.  Then, for each
WSGI server (``--servers``: waitress, gunicorn with 2 threaded workers, werkzeug's threaded
server), it starts side by side:

1. ``limit``: ``limit_app.py`` on that server, serving the static tree: the limit;
2. ``ours``: ``private-channels serve --server <it>`` (access log on, as by default);
3. ``pypiserver``: its WSGI app on that server, over the same files (no CRAN);
4. ``devpi``: devpi-server on its own server (its waitress, with our number of threads)
   whatever the row's server, over a fresh copy of its filled directory (no CRAN).

and measures each workload on each of them in turn, ``--rounds`` times, for
``--seconds`` each, with ``--clients`` keep-alive HTTP/1.1 connections spread over
client processes (:class:`LeanConnection`, which reads an answer's status, length and
body and parses none of its header fields; ``--client http.client`` parses them all,
as the harness did until the twenty-sixth round of docs/performance.md), the targets
in the order above in the first measured round and in the reverse order in the next,
and so on (:func:`round_order`); a read workload is first run ``--warmup`` times (1) on
each of them unmeasured (their rates are in the JSON, under ``warmup``).  After the
uploads the store is put back as filled (documents and files).  It prints the median
requests per second and the ratio to the limit, writes everything to ``--json``, and
checks the targets of docs/performance.md.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import hashlib
import http.client
import io
import json
import multiprocessing
import os
import posixpath
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from packaging.utils import canonicalize_name  # noqa: E402
from run_server import WAITRESS_THREADS  # noqa: E402

from private_channels.channels import ChannelRegistry  # noqa: E402
from private_channels.cran.index import render as render_cran  # noqa: E402
from private_channels.cran.store import CranRecord, CranStore  # noqa: E402
from private_channels.pypi.render import HTML, JSON, index_page, project_page, render  # noqa: E402
from private_channels.pypi.store import FileRecord, PythonStore  # noqa: E402
from private_channels.storage import FileSystemStorage, dump_json  # noqa: E402
from private_channels.tokens import Scope, TokenStore  # noqa: E402

CHANNEL = "bench"
PREFIX = f"/api/repo/{CHANNEL}"
JSON_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"  # noqa: E501 (pip's)
HTML_ACCEPT = "text/html"
VERSIONS = 3
BIG_SIZE = 50 * 1000 * 1000
SERVERS = ("waitress", "gunicorn", "werkzeug")
TARGETS: dict[str, float] = {
    "project page (JSON)": 0.8,
    "project page (HTML)": 0.8,
    "root page": 0.8,
    "304 revalidation": 0.8,
    "small download": 0.95,
    "50 MB download": 0.95,
    "upload": 0.6,
    "CRAN PACKAGES": 0.8,
    "CRAN PACKAGES.gz": 0.8,
    "CRAN PACKAGES.rds": 0.8,
}


# -- the data ------------------------------------------------------------------------


def project_name(i: int) -> str:
    return f"project-{i:05d}"


def wheel_name(name: str, version: str) -> str:
    return f"{canonicalize_name(name).replace('-', '_')}-{version}-py3-none-any.whl"


def wheel_bytes(name: str, version: str, payload: bytes = b"") -> tuple[str, bytes]:
    """A small valid wheel: what every upload sends (distinct name and version each)."""
    dist = canonicalize_name(name).replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nRequires-Python: >=3.8\n"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{dist}/__init__.py", f"VERSION = {version!r}\n" + "#" * 2000)
        if payload:
            archive.writestr(f"{dist}/data.bin", payload, compress_type=zipfile.ZIP_STORED)
        archive.writestr(f"{info}/METADATA", metadata)
        archive.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        archive.writestr(f"{info}/RECORD", "")
    return wheel_name(name, version), out.getvalue()


@dataclass
class Dataset:
    """One filled channel and its static mirror."""

    size: int
    root: Path  # storage/, static/, pypiserver/ (the files, flat, for pypiserver), devpi/
    token: str = ""
    files: list[str] = field(default_factory=list)  # paths under PREFIX of small files
    big: str = ""  # path under PREFIX of the 50 MB wheel
    big_pypiserver: str = ""
    devpi_auth: str = ""  # X-Devpi-Auth for the devpi-server running now (a login per start)

    @property
    def storage(self) -> Path:
        return self.root / "storage"

    @property
    def static(self) -> Path:
        return self.root / "static"

    @property
    def flat(self) -> Path:
        return self.root / "pypiserver"

    @property
    def devpi(self) -> Path:
        """devpi-server's directory as filled (see :func:`fill_devpi`); never served."""
        return self.root / "devpi"

    @property
    def pages_snapshot(self) -> Path:
        """The project documents as filled (see :meth:`restore_pages`)."""
        return self.root / "pages-snapshot"

    def restore_uploaded(self, *, compact: bool = False) -> None:
        """Put the store back as filled after an upload workload, or when a run starts
        (``compact``: no server running), whatever an earlier run stopped halfway left:
        the project documents first, so that none names a file taken out after them
        (:meth:`restore_pages`, :meth:`restore_files`, :meth:`restore_flat`)."""
        self.restore_pages()
        self.restore_files(compact=compact)
        self.restore_flat()

    def restore_pages(self) -> None:
        """Put the project documents back as filled.  Uploads add versions to ours
        and not to the limit's pre-rendered pages: without this, the next server's
        pages would be larger for us than for the limit (at 100 projects, 5 times)."""
        if not self.pages_snapshot.is_dir():
            return  # a dataset filled before snapshots: its uploads stay (see --fresh)
        storage = FileSystemStorage(self.storage)
        real_fsync = os.fsync
        os.fsync = lambda fd: None
        try:
            for path in self.pages_snapshot.glob("[!.]*"):
                key = f"channels/{CHANNEL}/pypi/projects/{path.name}"
                storage.put(key, io.BytesIO(path.read_bytes()))
        finally:
            os.fsync = real_fsync

    def restore_files(self, *, compact: bool = False) -> None:
        """Delete the files that uploads stored, ours' and the limit's, so that each
        run's uploads start from the store as filled (:meth:`restore_pages` takes them
        out of the documents, and left them on disk until the twenty-sixth round: the
        channel of 1,000 projects then held 418,557 blob directories, of which 3,000
        were filled, and the limit's folder of uploads 167,008 files, each run's
        uploads slower than the last's by what a directory of so many entries costs)."""
        filled: set[str] = set()
        for path in self.pages_snapshot.glob("[!.]*"):
            filled.update(r["sha256"] for r in json.loads(path.read_bytes())["files"].values())
        if not filled:
            return  # a dataset filled before snapshots (see --fresh)
        blobs = self.storage / "channels" / CHANNEL / "pypi" / "blobs"
        _mend_compaction(blobs)
        with os.scandir(blobs) as entries:
            # A folder ``<sha256>`` of a filled file, or a flat ``<sha256>-<filename>``.
            stored = [entry for entry in entries if entry.name[:64] not in filled]
        for entry in stored:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
        shutil.rmtree(self.static / "uploads", ignore_errors=True)
        if compact and blobs.stat().st_size > 1 << 20:
            # ext4 never shrinks a directory: one that held 400,000 entries stays some
            # 40 MB of blocks, each new entry's one found among them.  With ``compact``
            # (no server running) the folder is made anew, as a fill makes it.
            fresh, old = blobs.with_name("blobs.fresh"), blobs.with_name("blobs.old")
            fresh.mkdir()
            for name in os.listdir(blobs):
                os.rename(blobs / name, fresh / name)
            blobs.rename(old)
            fresh.rename(blobs)
            old.rmdir()

    def restore_flat(self) -> None:
        """Take pypiserver's uploads out of its folder, which it lists on every page: the
        next server's pages would otherwise list the uploads of every earlier run.

        What was filled is every version of every project, not only the files the
        downloads pick from (the first 2,000): those taken out by the harness before
        4 December 2026 are linked back from the store's blobs."""
        filled = {filename for _, _, filename in self.filled_wheels()}
        present = set()
        for path in self.flat.iterdir():
            if path.name not in filled:
                path.unlink()
            else:
                present.add(path.name)
        if len(present) < len(filled):
            blobs = self.storage / "channels" / CHANNEL / "pypi" / "blobs"
            for blob in [*blobs.glob("*/*.whl"), *blobs.glob("*.whl")]:
                name = blob.name if blob.parent != blobs else blob.name[65:]  # <sha256>-
                if name in filled and name not in present:
                    _link(blob, self.flat / name)
                    present.add(name)

    def filled_wheels(self) -> Iterator[tuple[str, str, str]]:
        """Project name, version and wheel filename of every Python file filled."""
        for i in range(self.size):
            for v in range(VERSIONS):
                name, version = project_name(i), f"1.{v}"
                yield name, version, wheel_name(name, version)

    def save(self) -> None:
        meta = {"token": self.token, "files": self.files, "big": self.big}
        (self.root / "dataset.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, size: int, root: Path) -> Dataset | None:
        try:
            meta = json.loads((root / "dataset.json").read_text())
        except FileNotFoundError:
            return None
        return cls(size, root, meta["token"], meta["files"], meta["big"])


def _mend_compaction(blobs: Path) -> None:
    """Put back the folder of blobs as one, where a run stopped while
    :meth:`Dataset.restore_files` made it anew: the entries it had moved to
    ``blobs.fresh`` go back, and an emptied ``blobs.old`` goes."""
    fresh = blobs.with_name("blobs.fresh")
    if fresh.is_dir():
        if not blobs.exists():
            fresh.rename(blobs)
        else:
            for name in os.listdir(fresh):
                os.rename(fresh / name, blobs / name)
            fresh.rmdir()
    shutil.rmtree(blobs.with_name("blobs.old"), ignore_errors=True)


def _static(dataset: Dataset, path: str, body: bytes) -> None:
    target = dataset.static / (PREFIX.lstrip("/") + path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(body)


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        os.link(source, target)


def fill(size: int, root: Path) -> Dataset:
    """N projects x 3 versions and N R packages x 3 versions, written the way the stores
    write them, and their pages pre-rendered for the limit app."""
    existing = Dataset.load(size, root)
    if existing is not None:
        return existing
    shutil.rmtree(root, ignore_errors=True)
    dataset = Dataset(size, root)
    real_fsync = os.fsync
    os.fsync = lambda fd: None  # only while filling: the servers run with it
    try:
        storage = FileSystemStorage(dataset.storage)
        channel = ChannelRegistry(storage).create(CHANNEL)
        dataset.token, _ = TokenStore(storage).create(channels=[CHANNEL], scope=Scope.WRITE)
        python = PythonStore(storage)
        names = {}
        for i in range(size):
            name = canonicalize_name(project_name(i))
            names[name] = project_name(i)
            doc: dict[str, Any] = {"name": project_name(i), "files": {}, "deleted": []}
            for v in range(VERSIONS):
                payload = b"" if not (i == 0 and v == 0) else os.urandom(BIG_SIZE)
                filename, data = wheel_bytes(project_name(i), f"1.{v}", payload)
                record = FileRecord(
                    filename=filename, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                    upload_time=time.time(), project=name, version=f"1.{v}",
                    blake2b_256=hashlib.blake2b(data, digest_size=32).hexdigest(),
                    requires_python=">=3.8", flat=True,
                    metadata_sha256=hashlib.sha256(b"Metadata-Version: 2.1\n").hexdigest(),
                )  # fmt: skip
                blob = python.blob_key(channel, record)
                storage.create(blob, io.BytesIO(data))
                storage.create(blob + ".metadata", io.BytesIO(b"Metadata-Version: 2.1\n"))
                doc["files"][filename] = record.to_json()
                path = f"/files/{record.sha256}/{filename}"
                _link(dataset.storage / blob, dataset.static / (PREFIX.lstrip("/") + path))
                _link(dataset.storage / blob, dataset.flat / filename)
                if payload:
                    dataset.big, dataset.big_pypiserver = path, f"/packages/{filename}"
                elif len(dataset.files) < 2000:
                    dataset.files.append(path)
            storage.put(python.project_key(channel, name), io.BytesIO(dump_json(doc)))
            project = python.project(channel, name)
            assert project is not None
            page = project_page(project)
            _static(dataset, f"/simple/{name}/index.json", render(page, JSON))
            _static(dataset, f"/simple/{name}/index.html", render(page, HTML))
        storage.put(python.projects_key(channel), io.BytesIO(dump_json({"projects": names})))
        projects = dataset.storage / f"channels/{CHANNEL}/pypi/projects"
        shutil.copytree(projects, dataset.pages_snapshot)
        _static(dataset, "/simple/index.json", render(index_page(names), JSON))
        _static(dataset, "/simple/index.html", render(index_page(names), HTML))

        cran = CranStore(storage)
        files: dict[str, Any] = {}
        for i in range(size):
            package = f"pkg{i:05d}"
            for v in range(VERSIONS):
                version = f"1.{v}.0"
                data = f"{package} {version}".encode()  # never installed: only its size counts
                md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
                record = CranRecord(
                    filename=f"{package}_{version}.tar.gz", size=len(data),
                    sha256=hashlib.sha256(data).hexdigest(), upload_time=time.time() + v, flat=True,
                    package=package, version=version, md5=md5,
                    fields={"Package": package, "Version": version, "Depends": "R (>= 3.5)",
                            "Imports": "stats, utils", "License": "MIT + file LICENSE",
                            "MD5sum": md5, "NeedsCompilation": "no"},
                )  # fmt: skip
                storage.create(cran.blob_key(channel, record), io.BytesIO(data))
                files[record.filename] = record.to_json()
        storage.put(
            cran.index_key(channel, "src/contrib"),
            io.BytesIO(dump_json({"files": files, "deleted": []})),
        )
        directory = cran.directory(channel, "src/contrib")
        for name in ("PACKAGES", "PACKAGES.gz", "PACKAGES.rds"):
            _static(dataset, f"/src/contrib/{name}", render_cran(directory, name))
    finally:
        os.fsync = real_fsync
    dataset.save()
    return dataset


# -- the servers -----------------------------------------------------------------------


@dataclass
class Running:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def pids(self) -> list[int]:
        """The server's process and its children (gunicorn's workers)."""
        pids = [self.process.pid]
        try:
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
            pids += [int(p) for p in children.read_text().split()]
        except OSError:
            pass
        return pids

    def cpu_seconds(self) -> float:
        """The CPU time (user and system) its processes have used so far."""
        ticks = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])  # utime, stime: all threads
        return ticks / os.sysconf("SC_CLK_TCK")

    def context_switches(self) -> int:
        """The context switches (voluntary or not) of all its threads so far."""
        switches = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                for task in Path(f"/proc/{pid}/task").iterdir():
                    for line in (task / "status").read_text().splitlines():
                        if "ctxt_switches:" in line:
                            switches += int(line.split()[1])
        return switches

    def peak_rss(self) -> int:
        """The largest peak resident set (VmHWM, bytes) of its processes."""
        peak = 0
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]) * 1024)
            except OSError:
                pass
        return peak

    def reset_peak_rss(self) -> None:
        """Start :meth:`peak_rss` over from now (Linux's clear_refs)."""
        for pid in self.pids():
            with contextlib.suppress(OSError):
                Path(f"/proc/{pid}/clear_refs").write_text("5")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(
    name: str, command: list[str], env: dict[str, str], log: Path, port: int,
    cwd: Path | None = None,
) -> Running:  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    deadline = time.monotonic() + 60
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/")
            connection.getresponse().read()
            connection.close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start:\n{log.read_text()}") from None
            time.sleep(0.1)
    return Running(name, port, process, log)


def stop(running: Running) -> None:
    running.process.terminate()
    try:
        running.process.wait(20)
    except subprocess.TimeoutExpired:
        running.process.kill()
        running.process.wait()


def peer_environment(work: Path, name: str, packages: list[str]) -> Path | None:
    """A throwaway virtual environment under ``work`` with ``packages``; its python."""
    venv = work / f"venv-{name}"
    python = venv / "bin" / "python"
    if python.exists():
        return python
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *packages],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
    except subprocess.CalledProcessError as error:
        print(f"  {name} could not be installed ({error}); its rows are left out")
        shutil.rmtree(venv, ignore_errors=True)
        return None
    return python


def burst_options(
    parser: argparse.ArgumentParser, *, workloads: str, rounds: int, seconds: float
) -> None:
    """The options of the tools that run bursts on one server (ab.py, server_cost.py)."""
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--workloads", default=workloads)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--seconds", type=float, default=seconds)
    parser.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()) / "pc-side-by-side"
    )
    client_option(parser)


def client_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--client", choices=sorted(CLIENTS), default="lean",
        help="how the clients read answers: lean (the default since the twenty-sixth "
        "round of docs/performance.md) or http.client (before it)",
    )  # fmt: skip


def burst_setup(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> tuple[Dataset, list[Workload]]:
    """The dataset (filled if missing) and the workloads :func:`burst_options` name."""
    names = args.workloads.split(",")
    workloads = [w for w in WORKLOADS if w.name in names]
    if len(workloads) != len(names):
        parser.error(f"workloads are among: {', '.join(w.name for w in WORKLOADS)}")
    args.work.mkdir(parents=True, exist_ok=True)
    dataset = fill(args.size, args.work / f"data-{args.size}")
    dataset.restore_uploaded(compact=True)  # what the uploads of an earlier run left
    return dataset, workloads


def start_targets(
    dataset: Dataset, server: str, work: Path, targets: list[str]
) -> dict[str, Running]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRIVATE_CHANNELS_")}
    runner = [str(HERE / "run_server.py"), "--server", server]
    running: dict[str, Running] = {}
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    tag = f"{dataset.size}-{server}"
    # devpi is filled (the first time, minutes at 10,000 projects) before any server starts:
    # a fill that fails leaves none running.
    devpi = peer_environment(work, "devpi", DEVPI_PACKAGES) if "devpi" in targets else None
    if devpi is not None:
        fill_devpi(dataset, devpi, env, logs)
    if "limit" in targets:
        running["limit"] = start_limit("limit", dataset, server, env, logs / f"limit-{tag}.log")
    if "ours" in targets:
        running["ours"] = start_ours("ours", dataset, server, env, logs / f"ours-{tag}.log")
    if "pypiserver" in targets:
        python = peer_environment(work, "pypiserver", ["pypiserver", "waitress", "gunicorn",
                                                       "werkzeug", "passlib"])  # fmt: skip
        if python is not None:
            port = free_port()
            # Read and write for anyone: the cheapest set-up it has.
            peer_env = {**env, "PYTHONPATH": str(HERE)}
            app = "pypiserver_app:app()"
            (work / "pypiserver_app.py").write_text(
                "import os, pypiserver\n"
                "def app():\n"
                f"    return pypiserver.app(roots=[{str(dataset.flat)!r}], authenticate=[],"
                " password_file='.')\n"
            )
            peer_env["PYTHONPATH"] = f"{HERE}:{work}"
            running["pypiserver"] = start(
                "pypiserver", [str(python), *runner, "--port", str(port), app],
                peer_env, logs / f"pypiserver-{tag}.log", port,
            )  # fmt: skip
    if devpi is not None:
        running["devpi"] = start_devpi(devpi, devpi_copy(dataset), env, logs / f"devpi-{tag}.log")
        dataset.devpi_auth = devpi_login(running["devpi"].port)
        running["devpi"].reset_peak_rss()  # the login's argon2 hash (512 MiB) is not serving
    return running


def start_limit(
    name: str, dataset: Dataset, server: str, env: dict[str, str], log: Path,
    benchmarks: Path = HERE,
) -> Running:  # fmt: skip
    """``limit_app.py`` of ``benchmarks`` (this checkout's, or another tree's for
    ``ab.py --limit``) over the dataset's pre-rendered tree, on ``server`` as ``serve``
    configures it."""
    port = free_port()
    env = {**env, "LIMIT_ROOT": str(dataset.static), "PYTHONPATH": str(benchmarks)}
    command = [sys.executable, str(HERE / "run_server.py"), "--server", server,
               "--port", str(port), "limit_app:app"]  # fmt: skip
    return start(name, command, env, log, port)


def start_ours(
    name: str, dataset: Dataset, server: str, env: dict[str, str], log: Path,
    tree: Path | None = None,
) -> Running:  # fmt: skip
    """``private-channels serve`` over the dataset on ``server`` (gunicorn: 2 workers), as
    the README starts it; with ``tree``, that tree's code (``ab.py``): started in it,
    since ``python -m`` puts the working directory ahead of ``PYTHONPATH`` and gunicorn
    puts its own (``--chdir``, the working directory) ahead of both; it stops first if
    the tree's code is not what that would import."""
    port = free_port()
    options = ["--workers", "2"] if server == "gunicorn" else ["--server", server]
    command = [sys.executable, "-m", "private_channels", "serve", "--storage",
               str(dataset.storage), "--port", str(port), *options]  # fmt: skip
    if tree is not None:
        env = {**env, "PYTHONPATH": str(tree)}
        imported = subprocess.run(
            [sys.executable, "-c", "import private_channels; print(private_channels.__file__)"],
            env=env, cwd=tree, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        if not Path(imported).resolve().is_relative_to(tree.resolve()):
            raise SystemExit(f"{name} would serve {imported}, not the code of {tree}")
    return start(name, command, env, log, port, cwd=tree)


# -- devpi-server ----------------------------------------------------------------------

DEVPI_USER = "bench"  # its password too
DEVPI_INDEX = f"/{DEVPI_USER}/dev"
DEVPI_PACKAGES = ["devpi-server>=6.6,<7"]  # 6.6: PEP 691 JSON pages


def devpi_file(path: str) -> str:
    """Where devpi keeps a file of the dataset (``/files/<sha256>/<name>``): what its pages
    link to, as :func:`fill_devpi` checks."""
    sha256, name = path.split("/")[-2:]
    return f"{DEVPI_INDEX}/+f/{sha256[:3]}/{sha256[3:16]}/{name}"


def devpi_api(
    port: int, method: str, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Any:
    """One call of devpi's JSON API: its result."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request(
        method, path, body=json.dumps(body),
        headers={"Accept": "application/json", "Content-Type": "application/json",
                 **(headers or {})},
    )  # fmt: skip
    response = connection.getresponse()
    answer = json.loads(response.read())
    connection.close()
    if response.status >= 300:
        raise RuntimeError(f"devpi: {method} {path}: {response.status} {answer}")
    return answer["result"]


def devpi_login(port: int) -> str:
    """The X-Devpi-Auth that devpi-client sends after ``devpi login``: a signed token, cheap
    to check.  The password itself, in basic auth, would cost an argon2 hash of 512 MiB
    (0.1 s) on every upload."""
    login = {"user": DEVPI_USER, "password": DEVPI_USER}
    token = devpi_api(port, "POST", "/+login", login)["password"]
    return base64.b64encode(f"{DEVPI_USER}:{token}".encode()).decode()


def start_devpi(python: Path, serverdir: Path, env: dict[str, str], log: Path) -> Running:
    """devpi-server on its own server (waitress, with the threads run_server.py gives
    waitress), offline: it never asks PyPI for a project it does not have."""
    port = free_port()
    command = [
        str(python.parent / "devpi-server"), "--serverdir", str(serverdir),
        "--host", "127.0.0.1", "--port", str(port), "--offline-mode",
        "--threads", str(WAITRESS_THREADS),
    ]  # fmt: skip
    return start("devpi", command, env, log, port)


def fill_devpi(dataset: Dataset, python: Path, env: dict[str, str], logs: Path) -> Path:
    """The dataset's Python files in one private index of devpi's, uploaded once as twine
    uploads them, and its directory kept beside the dataset (``--fresh`` fills it anew).
    The index has no bases, so it never looks at PyPI, and is volatile, so it takes the new
    versions of the upload workload.  One connection: devpi takes one write at a time, and
    2, 4 or 8 uploading at once only slowed it (159 files/s with one, 127 with 8)."""
    if dataset.devpi.is_dir():
        return dataset.devpi
    filling = dataset.root / "devpi-filling"  # renamed when complete: a broken fill is not kept
    shutil.rmtree(filling, ignore_errors=True)
    subprocess.run(
        [str(python.parent / "devpi-init"), "--serverdir", str(filling), "--no-root-pypi"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    print(f"  filling devpi-server with {dataset.size * VERSIONS} files ...", flush=True)
    started = time.perf_counter()
    running = start_devpi(python, filling, env, logs / f"devpi-fill-{dataset.size}.log")
    try:
        devpi_api(running.port, "PUT", f"/{DEVPI_USER}", {"password": DEVPI_USER})
        auth = {"X-Devpi-Auth": devpi_login(running.port)}
        devpi_api(running.port, "PUT", DEVPI_INDEX, {"bases": [], "volatile": True}, auth)
        connection = http.client.HTTPConnection("127.0.0.1", running.port, timeout=120)
        for name, version, filename in dataset.filled_wheels():
            body, content_type = upload_form(
                name, version, filename, (dataset.flat / filename).read_bytes(),
                {"requires_python": ">=3.8"},  # on our pages too
            )  # fmt: skip
            headers = {**auth, "Content-Type": content_type}
            connection.request("POST", f"{DEVPI_INDEX}/", body=body, headers=headers)
            response = connection.getresponse()
            if response.status != 200:
                raise RuntimeError(f"devpi: {filename}: {response.status} {response.read()!r}")
            response.read()
        # Project 0 holds the 50 MB wheel: its link, resolved as pip resolves it.
        page = f"{DEVPI_INDEX}/+simple/{project_name(0)}/"
        connection.request("GET", page, headers={"Accept": JSON_ACCEPT})
        files = json.loads(connection.getresponse().read())["files"]
        connection.close()
        links = [posixpath.normpath(page + file["url"]) for file in files]
        if devpi_file(dataset.big) not in links:
            raise RuntimeError(f"devpi links {links}, not {devpi_file(dataset.big)}")
    finally:
        stop(running)
    seconds = time.perf_counter() - started
    print(f"  devpi-server filled in {seconds:.0f} s", flush=True)
    filling.rename(dataset.devpi)
    return dataset.devpi


def devpi_copy(dataset: Dataset) -> Path:
    """A fresh copy of devpi's filled directory for one start, so that the uploads of one
    row do not reach the next one's pages (what :meth:`Dataset.restore_pages` does for
    ours).  Its database is copied; its files, written once and never changed, linked."""
    run = dataset.root / "devpi-run"
    shutil.rmtree(run, ignore_errors=True)

    def copy(source: str, target: str) -> None:
        if "/+files/" in source:
            os.link(source, target)
        else:
            shutil.copy2(source, target)

    shutil.copytree(dataset.devpi, run, copy_function=copy)
    return run


# -- the load ------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    name: str
    expect: int
    # (target, dataset, rng, state) -> (method, path, headers, body)
    make: Callable[
        [str, Dataset, random.Random, dict[str, Any]], tuple[str, str, dict[str, str], bytes | None]
    ]


@dataclass(frozen=True)
class Layout:
    """Where a target answers the workloads: each peer has URLs of its own."""

    simple: str  # the root page; a project's page is <simple>/<project>/
    upload: str
    file: Callable[[str], str]  # a file of the dataset, "/files/<sha256>/<name>" -> its path
    cran: bool = False  # the peers serve Python only
    own_server: str = ""  # what serves it in every row, whatever --servers says


OURS = Layout(f"{PREFIX}/simple", PREFIX, lambda path: PREFIX + path, cran=True)
LAYOUTS = {
    "limit": OURS,
    "ours": OURS,
    "pypiserver": Layout("/simple", "/", lambda path: "/packages/" + path.rpartition("/")[2]),
    "devpi": Layout(
        f"{DEVPI_INDEX}/+simple", f"{DEVPI_INDEX}/", devpi_file,
        own_server=f"devpi-server's own waitress ({WAITRESS_THREADS} threads)",
    ),
}  # fmt: skip


def _auth(target: str, dataset: Dataset, write: bool = False) -> dict[str, str]:
    """What a client sends: ours wants its token on every request (its channels are
    private); pypiserver takes anything from anyone; devpi reads to anyone and takes
    uploads from its user."""
    if target == "ours":
        token = base64.b64encode(f"{dataset.token}:x-auth-token".encode()).decode()
        return {"Authorization": f"Basic {token}"}
    if target == "devpi" and write:
        return {"X-Devpi-Auth": dataset.devpi_auth}
    return {}


def _page(accept: str) -> Callable[..., tuple[str, str, dict[str, str], bytes | None]]:
    def make(target: str, dataset: Dataset, rng: random.Random, state: dict[str, Any]):  # type: ignore[no-untyped-def]
        name = project_name(rng.randrange(dataset.size))
        headers = {**_auth(target, dataset), "Accept": accept}
        return "GET", f"{LAYOUTS[target].simple}/{name}/", headers, None

    return make


def _root(target: str, dataset: Dataset, rng: random.Random, state: dict[str, Any]):  # type: ignore[no-untyped-def]
    headers = {**_auth(target, dataset), "Accept": JSON_ACCEPT}
    return "GET", f"{LAYOUTS[target].simple}/", headers, None


def _revalidate(target: str, dataset: Dataset, rng: random.Random, state: dict[str, Any]):  # type: ignore[no-untyped-def]
    etags: dict[str, str] = state["etags"]
    path = rng.choice(sorted(etags))
    headers = {**_auth(target, dataset), "Accept": JSON_ACCEPT, "If-None-Match": etags[path]}
    return "GET", path, headers, None


def _small(target: str, dataset: Dataset, rng: random.Random, state: dict[str, Any]):  # type: ignore[no-untyped-def]
    return "GET", LAYOUTS[target].file(rng.choice(dataset.files)), _auth(target, dataset), None


def _big(target: str, dataset: Dataset, rng: random.Random, state: dict[str, Any]):  # type: ignore[no-untyped-def]
    return "GET", LAYOUTS[target].file(dataset.big), _auth(target, dataset), None


def multipart(fields: dict[str, str], filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="content"; filename="{filename}"'
        "\r\nContent-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def upload_form(
    name: str, version: str, filename: str, data: bytes, extra: dict[str, str] | None = None
) -> tuple[bytes, str]:
    """The form twine posts for one wheel, and its content type."""
    return multipart(
        {":action": "file_upload", "protocol_version": "1", "name": name, "version": version,
         "filetype": "bdist_wheel", "pyversion": "py3", "metadata_version": "2.1",
         "sha256_digest": hashlib.sha256(data).hexdigest(), **(extra or {})},
        filename, data,
    )  # fmt: skip


def _upload(target: str, dataset: Dataset, rng: random.Random, state: dict[str, Any]):  # type: ignore[no-untyped-def]
    # A new version of an existing project, as twine sends it: distinct every time.
    name = project_name(rng.randrange(dataset.size))
    version = (
        f"2.{state['run']}.{os.getpid()}.{threading.get_ident() % 100000}.{rng.randrange(10**9)}"
    )
    filename, data = wheel_bytes(name, version)
    body, content_type = upload_form(name, version, filename, data)
    headers = {**_auth(target, dataset, write=True), "Content-Type": content_type}
    return "POST", LAYOUTS[target].upload, headers, body


def _cran(name: str) -> Callable[..., tuple[str, str, dict[str, str], bytes | None]]:
    def make(target: str, dataset: Dataset, rng: random.Random, state: dict[str, Any]):  # type: ignore[no-untyped-def]
        return "GET", f"{PREFIX}/src/contrib/{name}", _auth(target, dataset), None

    return make


WORKLOADS = [
    Workload("project page (JSON)", 200, _page(JSON_ACCEPT)),
    Workload("project page (HTML)", 200, _page(HTML_ACCEPT)),
    Workload("root page", 200, _root),
    Workload("304 revalidation", 304, _revalidate),
    Workload("small download", 200, _small),
    Workload("50 MB download", 200, _big),
    Workload("upload", 200, _upload),
    Workload("CRAN PACKAGES", 200, _cran("PACKAGES")),
    Workload("CRAN PACKAGES.gz", 200, _cran("PACKAGES.gz")),
    Workload("CRAN PACKAGES.rds", 200, _cran("PACKAGES.rds")),
]
PYTHON_ONLY = {"CRAN PACKAGES", "CRAN PACKAGES.gz", "CRAN PACKAGES.rds"}


class LeanConnection:
    """One keep-alive HTTP/1.1 connection that does no more than a load generator
    (wrk, h2load) does with an answer: it sends what ``http.client`` sends (the request
    line, ``Host``, ``Accept-Encoding: identity``, the workload's headers, a body's
    ``Content-Length``, all in one ``send``), reads the status and the body's length,
    and reads the body into one reused buffer, without parsing the header fields.

    ``http.client`` parses every header field of every answer with the ``email``
    package: some 10 µs of the client's CPU for four fields more (ours sends
    ``Last-Modified``, ``Cache-Control``, ``Accept-Ranges`` and ``X-Request-ID`` on a
    download, the limit none of them), taken from the two cores the servers run on, so
    that a server was measured slower for each field it sends (docs/performance.md,
    twenty-sixth round)."""

    def __init__(self, port: int, timeout: float = 120) -> None:
        self.port = port
        self.timeout = timeout
        self.host = f"Host: 127.0.0.1:{port}\r\nAccept-Encoding: identity\r\n"
        self.sock: socket.socket | None = None
        self.rest = b""  # what was read past the last answer (nothing, as it is used)
        self.scratch = memoryview(bytearray(1 << 20))

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock, self.rest = None, b""

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes | None) -> int:
        """Send one request and read its whole answer: its status (``OSError`` or
        ``ValueError`` when the connection or the answer is broken)."""
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
        sock = self.sock
        fields = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        length = "" if body is None else f"Content-Length: {len(body)}\r\n"
        head = f"{method} {path} HTTP/1.1\r\n{self.host}{fields}{length}\r\n".encode("latin-1")
        sock.sendall(head if body is None else head + body)
        buffer = self.rest
        while (end := buffer.find(b"\r\n\r\n")) < 0:
            if len(buffer) > 65536:
                raise ValueError("an answer's header is over 64 KiB")
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed before the answer's header ended")
            buffer += chunk
        if not buffer.startswith(b"HTTP/1."):
            raise ValueError(f"not an HTTP/1.x answer: {buffer[:40]!r}")
        status = int(buffer[9:12])
        header = buffer[:end].lower()
        body_read = buffer[end + 4 :]
        if method == "HEAD" or status in (204, 304) or status < 200:
            self.rest = body_read
        elif (at := header.find(b"\r\ncontent-length:")) >= 0:
            stop = header.find(b"\r\n", at + 2)
            self.rest = self._read(int(header[at + 17 : stop if stop >= 0 else None]), body_read)
        elif b"\r\ntransfer-encoding: chunked" in header:
            self.rest = self._chunked(body_read)
        else:  # to the end of the connection
            while self._recv():
                pass
            self.close()
            return status
        if b"\r\nconnection: close" in header:
            self.close()
        return status

    def _recv(self, most: int = 1 << 20) -> int:
        assert self.sock is not None
        return self.sock.recv_into(self.scratch, min(most, len(self.scratch)))

    def _read(self, length: int, have: bytes) -> bytes:
        """Read to the end of a body of ``length`` of which ``have`` came with the
        header; what came after it."""
        if len(have) >= length:
            return have[length:]
        remaining = length - len(have)
        while remaining > 0:
            got = self._recv(remaining)
            if not got:
                raise ConnectionError("closed in the middle of a body")
            remaining -= got
        return b""

    def _chunked(self, buffer: bytes) -> bytes:
        assert self.sock is not None
        while True:
            while (end := buffer.find(b"\r\n")) < 0:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed in the middle of a chunked body")
                buffer += chunk
            size = int(buffer[:end].split(b";")[0], 16)
            while len(buffer) < end + 2 + size + 2:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed in the middle of a chunked body")
                buffer += chunk
            buffer = buffer[end + 2 + size + 2 :]
            if size == 0:  # no trailer fields: the server's own answers have none
                return buffer


class _HttpClientConnection:
    """``http.client``, as the harness used until the twenty-sixth round (``--client
    http.client``): it parses every header field of every answer."""

    def __init__(self, port: int, timeout: float = 120) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def close(self) -> None:
        self.connection.close()

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes | None) -> int:
        self.connection.request(method, path, body=body, headers=headers)
        response = self.connection.getresponse()
        while response.read(1 << 20):
            pass
        return response.status


CLIENTS: dict[str, type[LeanConnection] | type[_HttpClientConnection]] = {
    "lean": LeanConnection,
    "http.client": _HttpClientConnection,
}


def _client(
    port: int, workload: Workload, target: str, dataset: Dataset, state: dict[str, Any],
    until: float, seed: int, counts: list[int], client: str = "lean",
) -> None:  # fmt: skip
    rng = random.Random(seed)
    connection = CLIENTS[client](port)
    ok = errors = 0
    try:
        while time.perf_counter() < until:
            method, path, headers, body = workload.make(target, dataset, rng, state)
            try:
                status = connection.request(method, path, headers, body)
            except (OSError, ValueError, http.client.HTTPException):
                connection.close()
                errors += 1
                continue
            if status == workload.expect:
                ok += 1
            else:
                errors += 1
    finally:
        connection.close()
    counts.extend([ok, errors])


def _process(args: tuple[Any, ...]) -> tuple[int, int, float]:
    port, workload_name, target, dataset, state, seconds, threads, seed, client = args
    workload = next(w for w in WORKLOADS if w.name == workload_name)
    start_at = time.perf_counter()
    until = start_at + seconds
    results: list[list[int]] = [[] for _ in range(threads)]
    common = (port, workload, target, dataset, state, until)
    workers = [
        threading.Thread(target=_client, args=(*common, seed * 100 + i, results[i], client))
        for i in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - start_at  # requests under way at the end are finished
    return sum(r[0] for r in results), sum(r[1] for r in results), elapsed


def round_order(running: dict[str, Running], index: int) -> list[tuple[str, Running]]:
    """The targets in the order they are measured in round ``index`` (0 the first
    measured round, the warm-up rounds before it negative): as started in even rounds,
    the reverse in odd ones.  On gunicorn the target measured first in a round got some
    6% more than it did second (docs/performance.md, eighteenth round), which a fixed
    order gave the limit in every round.  With an odd number of rounds the limit still
    goes first in one more of them than not."""
    order = list(running.items())
    return order if index % 2 == 0 else order[::-1]


def measure(
    pool: Any, processes: int, port: int, workload: Workload, target: str, dataset: Dataset,
    state: dict[str, Any], seconds: float, clients: int, client: str = "lean",
) -> tuple[float, int]:  # fmt: skip
    threads = max(1, clients // processes)
    jobs = [
        (port, workload.name, target, dataset, state, seconds, threads,
         random.randrange(10**9), client)
        for _ in range(processes)
    ]  # fmt: skip
    results = pool.map(_process, jobs)
    ok = sum(r[0] for r in results)
    errors = sum(r[1] for r in results)
    elapsed = max(r[2] for r in results)
    return ok / elapsed, errors


def etags(port: int, target: str, dataset: Dataset, count: int = 200) -> dict[str, str]:
    """The ETags of ``count`` project pages (JSON), for the revalidation workload."""
    found: dict[str, str] = {}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for i in range(min(count, dataset.size)):
        path = f"{LAYOUTS[target].simple}/{project_name(i)}/"
        connection.request("GET", path, headers={**_auth(target, dataset), "Accept": JSON_ACCEPT})
        response = connection.getresponse()
        response.read()
        etag = response.getheader("ETag")
        if not etag:
            break  # pypiserver and devpi send none: there is nothing to revalidate
        found[path] = etag
    connection.close()
    return found


#: On gunicorn, the keep-alive connections the warm-up asks everything on, each all of it.
WARM_CONNECTIONS = 8


def warm(port: int, target: str, dataset: Dataset, server: str) -> None:
    """Every project page once in each format, and each CRAN index where served: what a
    server that has run for a while holds in its caches, in each of its processes.
    pypiserver keeps no pages, so it is left alone; devpi keeps a cache of its own, so
    it is warmed too.

    gunicorn's two workers each keep what they answered, and each takes connections as
    they come, keeping a keep-alive connection to the end: on gunicorn everything is
    asked on each of :data:`WARM_CONNECTIONS` keep-alive connections at once, so that a
    worker that took any of them has seen every page (both took some but once in 128).
    Until the twenty-first round everything was asked six times on a connection of its
    own each, which left a page unseen by one of the workers once in 64 (500 to 700 of
    each worker's 20,002 at 10,000 projects, rendered during the measurement: a cost
    the limit never has) and took longer."""
    if target == "pypiserver":
        return
    simple = LAYOUTS[target].simple
    paths = [f"{simple}/"] + [f"{simple}/{project_name(i)}/" for i in range(dataset.size)]
    auth = _auth(target, dataset)

    def ask_everything() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for path in paths:
            for accept in (JSON_ACCEPT, HTML_ACCEPT):
                connection.request("GET", path, headers={**auth, "Accept": accept})
                connection.getresponse().read()
        if LAYOUTS[target].cran:
            for name in ("PACKAGES", "PACKAGES.gz", "PACKAGES.rds"):
                connection.request("GET", f"{PREFIX}/src/contrib/{name}", headers=auth)
                connection.getresponse().read()
        connection.close()

    if server != "gunicorn" or LAYOUTS[target].own_server:
        ask_everything()
        return
    failures: list[BaseException] = []

    def asking() -> None:
        try:
            ask_everything()
        except BaseException as error:  # reported below, in the harness's thread
            failures.append(error)

    threads = [threading.Thread(target=asking) for _ in range(WARM_CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


# -- the report ----------------------------------------------------------------------


def load_average() -> float:
    return os.getloadavg()[0]


def table(rows: list[dict[str, Any]], peers: list[str]) -> str:
    head = f"{'projects':>8} {'server':9} {'workload':20} {'limit/s':>9} {'ours/s':>9} {'ours':>6}"
    head += "".join(f" {peer:>10}" for peer in peers) + f" {'target':>7}  ok"
    lines = [head, "-" * len(head)]
    for row in rows:
        ratio = row["ratio"].get("ours")
        line = (
            f"{row['size']:>8} {row['server']:9} {row['workload']:20} "
            f"{row['median'].get('limit', 0):9.0f} {row['median'].get('ours', 0):9.1f} "
            f"{ratio if ratio is not None else float('nan'):6.2f}"
        )
        for peer in peers:
            value = row["ratio"].get(peer)
            line += f" {value:10.3f}" if value is not None else f" {'n/a':>10}"
        target = TARGETS[row["workload"]]
        line += f" {target:7.2f}  {'yes' if ratio is not None and ratio >= target else 'NO'}"
        lines.append(line)
    return "\n".join(lines)


def own_servers(targets: Iterable[str]) -> dict[str, str]:
    """The targets that run on a server of their own, not on the row's, and what it is."""
    return {t: LAYOUTS[t].own_server for t in targets if LAYOUTS[t].own_server}


def flatness(rows: list[dict[str, Any]]) -> list[str]:
    """Workloads whose ratio moves more than 1.2x between the sizes measured."""
    out = []
    by: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        if row["ratio"].get("ours"):
            by.setdefault((row["server"], row["workload"]), []).append(row["ratio"]["ours"])
    for (server, workload), ratios in sorted(by.items()):
        if len(ratios) > 1 and max(ratios) / min(ratios) > 1.2:
            out.append(f"{server} {workload}: {min(ratios):.2f}..{max(ratios):.2f}")
    return out


# -- extras: 1 GB through the server, CRAN rebuild -----------------------------------------


def big_wheel_file(directory: Path, size: int) -> Path:
    """A valid wheel of ``size`` bytes of stored (incompressible) data, written in blocks."""
    name, version = "huge", "1.0"
    path = directory / f"{name}-{version}-py3-none-any.whl"
    if path.exists():
        return path
    block = os.urandom(1 << 20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        with archive.open(f"{name}/data.bin", "w", force_zip64=True) as out:
            for _ in range(size >> 20):
                out.write(block)
        archive.writestr(f"{name}-{version}.dist-info/METADATA",
                         f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")  # fmt: skip
        archive.writestr(f"{name}-{version}.dist-info/WHEEL", "Wheel-Version: 1.0\n")
        archive.writestr(f"{name}-{version}.dist-info/RECORD", "")
    return path


def upload_file(port: int, token: str, url: str, path: Path) -> tuple[int, float]:
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name=":action"\r\n\r\nfile_upload\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="content"; '
        f'filename="{path.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def body() -> Iterator[bytes]:
        yield head
        with path.open("rb") as stream:
            while block := stream.read(1 << 20):
                yield block
        yield tail

    length = len(head) + path.stat().st_size + len(tail)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    started = time.perf_counter()
    basic = base64.b64encode(f"{token}:x-auth-token".encode()).decode()
    connection.request(
        "POST", url, body=body(),
        headers={"Authorization": f"Basic {basic}", "Content-Length": str(length),
                 "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )  # fmt: skip
    response = connection.getresponse()
    response.read()
    return response.status, time.perf_counter() - started


def cran_tarball(package: str, version: str) -> bytes:
    import tarfile

    description = (
        f"Package: {package}\nVersion: {version}\nTitle: Bench\nDescription: Bench.\n"
        "License: MIT\nAuthor: A\nMaintainer: A <a@example.org>\nNeedsCompilation: no\n"
        "Imports: stats\n"
    ).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        info = tarfile.TarInfo(f"{package}/DESCRIPTION")
        info.size = len(description)
        archive.addfile(info, io.BytesIO(description))
    return out.getvalue()


def extras(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Peak server RSS over a 1 GB upload and download, and CRAN's rebuild after an upload."""
    results: dict[str, Any] = {}
    size = max(args.sizes)
    dataset = fill(size, work / f"data-{size}")
    wheel = big_wheel_file(work, args.big_bytes)
    storage = FileSystemStorage(dataset.storage)
    admin, _ = TokenStore(storage).create(channels=["*"], scope=Scope.ADMIN)
    for server in args.servers:
        # A channel of its own for the 1 GB file on each server (a deleted filename
        # cannot be uploaded again), removed afterwards.
        big = f"big-{server}-{uuid.uuid4().hex[:8]}"
        ChannelRegistry(storage).create(big)
        big_prefix = f"/api/repo/{big}"
        running = start_targets(dataset, server, work, ["ours"])["ours"]
        try:
            base = running.peak_rss()
            status, seconds = upload_file(running.port, admin, big_prefix, wheel)
            after_upload = running.peak_rss()
            connection = http.client.HTTPConnection("127.0.0.1", running.port, timeout=600)
            auth = {"X-Auth": admin}
            connection.request(
                "GET", f"{big_prefix}/simple/huge/", headers={**auth, "Accept": JSON_ACCEPT}
            )
            url = json.loads(connection.getresponse().read())["files"][0]["url"]
            started = time.perf_counter()
            # The page links ../../files/<sha256>/<name>; resolved as a client would.
            path = posixpath.normpath(f"{big_prefix}/simple/huge/{url}")
            connection.request("GET", path, headers=auth)
            response = connection.getresponse()
            received = 0
            while block := response.read(1 << 20):
                received += len(block)
            download_seconds = time.perf_counter() - started
            after_download = running.peak_rss()
            # CRAN: an upload, then each index as R asks for it, timed.
            package = f"pkg{random.randrange(size):05d}"
            version = f"9.{random.randrange(10**6)}"
            data = cran_tarball(package, version)
            body, content_type = multipart(
                {"filetype": "cran_source_package"}, f"{package}_{version}.tar.gz", data
            )
            started = time.perf_counter()
            headers = {**_auth("ours", dataset), "Content-Type": content_type}
            connection.request("POST", PREFIX, body=body, headers=headers)
            upload_status = connection.getresponse()
            upload_status.read()
            cran_upload = time.perf_counter() - started
            rebuild = {}
            for index in ("PACKAGES.rds", "PACKAGES.gz", "PACKAGES"):
                started = time.perf_counter()
                connection.request(
                    "GET", f"{PREFIX}/src/contrib/{index}", headers=_auth("ours", dataset)
                )
                connection.getresponse().read()
                rebuild[index] = time.perf_counter() - started
            connection.close()
            results[server] = {
                "rss_idle_mb": base / 1e6,
                "upload_status": status, "upload_seconds": seconds,
                "rss_after_1gb_upload_mb": after_upload / 1e6,
                "download_bytes": received, "download_seconds": download_seconds,
                "rss_after_1gb_download_mb": after_download / 1e6,
                "cran_upload_status": upload_status.status, "cran_upload_seconds": cran_upload,
                "cran_rebuild_seconds": rebuild,
            }  # fmt: skip
            print(f"  {server}: {json.dumps(results[server])}", flush=True)
        finally:
            stop(running)
            ChannelRegistry(storage).delete(big)
    return results


# -- main ------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes", default="100,1000,10000", type=lambda t: [int(x) for x in t.split(",")]
    )
    parser.add_argument("--servers", default=",".join(SERVERS), type=lambda t: t.split(","))
    parser.add_argument(
        "--targets", default=",".join(LAYOUTS), type=lambda t: t.split(","),
        help=f"a comma-separated subset of {', '.join(LAYOUTS)}",
    )  # fmt: skip
    parser.add_argument("--workloads", default=None, type=lambda t: t.split(","),
                        help="a comma-separated subset of the workload names")  # fmt: skip
    # Five: a cell's rounds move by 10 to 40 points with no change of code, and the
    # median of five is steadier than that of three (docs/performance.md, 24th round).
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--warmup", type=int, default=1,
        help="unmeasured rounds of each read workload on each target before its rounds",
    )  # fmt: skip
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    client_option(parser)
    parser.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()) / "pc-side-by-side"
    )
    parser.add_argument("--json", type=Path, default=Path("side-by-side.json"))
    parser.add_argument("--extras", action="store_true", help="1 GB up/down RSS, CRAN rebuild")
    parser.add_argument(
        "--fresh", action="store_true", help="fill the channels anew (uploads of earlier runs gone)"
    )
    parser.add_argument("--big-bytes", type=int, default=1000 * 1000 * 1000)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.fresh:
        for size in args.sizes:
            shutil.rmtree(args.work / f"data-{size}", ignore_errors=True)
    meta = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(), "load_before": os.getloadavg(),
        "args": {k: str(v) for k, v in vars(args).items()},
    }  # fmt: skip
    if args.extras:
        print(f"load average {load_average():.2f}", flush=True)
        result = {"meta": meta, "extras": extras(args, args.work)}
        meta["load_after"] = os.getloadavg()
        args.json.write_text(json.dumps(result, indent=1))
        return
    workloads = [w for w in WORKLOADS if args.workloads is None or w.name in args.workloads]
    rows: list[dict[str, Any]] = []
    peers = [t for t in args.targets if t not in ("limit", "ours")]
    context = multiprocessing.get_context("fork")
    with context.Pool(args.processes) as pool:
        for size in args.sizes:
            print(f"filling {size} projects ...", flush=True)
            dataset = fill(size, args.work / f"data-{size}")
            dataset.restore_uploaded(compact=True)  # uploads of a run stopped halfway
            for server in args.servers:
                print(
                    f"{size} projects on {server}: starting {', '.join(args.targets)}", flush=True
                )
                running = start_targets(dataset, server, args.work, args.targets)
                try:
                    for target, run in running.items():
                        warm(run.port, target, dataset, server)
                    states = {
                        t: {"etags": etags(r.port, t, dataset), "run": random.randrange(10**6)}
                        for t, r in running.items()
                    }
                    for workload in workloads:
                        rates: dict[str, list[float]] = {t: [] for t in running}
                        warmup: dict[str, list[float]] = {t: [] for t in running}
                        errors: dict[str, int] = dict.fromkeys(running, 0)
                        # A read workload is run first unmeasured (--warmup rounds): the
                        # rounds then measure servers that have served it for a moment,
                        # as a server in use has (uploads are distinct every time).
                        unmeasured = 0 if workload.name == "upload" else args.warmup
                        passes = [False] * unmeasured + [True] * args.rounds
                        for index, measured in enumerate(passes, start=-unmeasured):
                            for target, run in round_order(running, index):
                                if workload.name in PYTHON_ONLY and not LAYOUTS[target].cran:
                                    continue
                                if (
                                    workload.name == "304 revalidation"
                                    and not states[target]["etags"]
                                ):
                                    continue
                                rate, failed = measure(
                                    pool, args.processes, run.port, workload, target, dataset,
                                    states[target], args.seconds, args.clients, args.client,
                                )  # fmt: skip
                                (rates if measured else warmup)[target].append(rate)
                                errors[target] += failed
                        median = {t: statistics.median(r) for t, r in rates.items() if r}
                        ratio = {
                            t: m / median["limit"] for t, m in median.items()
                            if t != "limit" and median.get("limit")
                        }  # fmt: skip
                        row = {"size": size, "server": server, "workload": workload.name,
                               "rates": rates, "warmup": warmup, "median": median,
                               "ratio": ratio,
                               "errors": errors, "load": load_average(),
                               "own_server": own_servers(running)}  # fmt: skip
                        rows.append(row)
                        print(table([row], peers).splitlines()[-1], flush=True)
                        if any(errors.values()):
                            print(f"    errors: {errors}", flush=True)
                        if workload.name == "upload":
                            dataset.restore_uploaded()
                    for target, run in running.items():
                        meta[f"peak_rss_mb {size} {server} {target}"] = run.peak_rss() / 1e6
                finally:
                    for run in running.values():
                        stop(run)
    meta["load_after"] = os.getloadavg()
    print()
    print(table(rows, peers))
    for target, server in own_servers(peers).items():
        print(f"{target} runs on {server} in every row, whatever its server column says")
    unflat = flatness(rows)
    print(
        "\nflat from the smallest to the largest size (<= 1.2x apart):",
        "yes" if not unflat else "NO",
    )
    for line in unflat:
        print("  ", line)
    print(f"load average before {meta['load_before'][0]:.2f}, after {meta['load_after'][0]:.2f}")
    args.json.write_text(json.dumps({"meta": meta, "rows": rows, "not_flat": unflat}, indent=1))


if __name__ == "__main__":
    main()
