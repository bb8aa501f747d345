"""Many processes, one truth: several servers on one storage lose nothing and agree.

For each storage several hosts can share (the filesystem, S3 on SeaweedFS), two
``private-channels serve`` processes and one ``serve --workers 3`` (gunicorn) run on the
same storage.  Every process first renders and caches the pages; then concurrent uploads
of distinct files, Python wheels as twine posts them, R source packages and conda
packages as curl posts them, go to all of them at once (several versions of one
project, and several new projects, so that the same documents are contended).
Afterwards every process, and several gunicorn workers, must list every file: in the
simple index (root and project pages, HTML and JSON), in ``src/contrib/PACKAGES`` and
``PACKAGES.gz``, and in ``noarch/repodata.json``, its ``.zst`` and the CEP-16 shards.  A process
that answered from a stale cache, or an upload that overwrote another's commit, fails it.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zstandard

from private_channels import ChannelRegistry, Scope, TokenStore
from private_channels.cran.dcf import parse_dcf
from private_channels.storage import FileSystemStorage, Storage

from .conda_packages import demo_index, raw_conda
from .packages import make_wheel
from .support import live_server
from .test_cran_description import source_package
from .test_deploy import _multipart

PREFIX = "/api/repo"
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
PROJECTS = ["fan-out", "fan-in", "spread"]
VERSIONS = 4  # per project: 12 wheels, several of each project at once
R_PACKAGES = 9
CONDA_VERSIONS = 6  # of two conda packages, all in noarch: one document, contended
TIMEOUT = 60.0


@dataclass
class Endpoint:
    """One server: a plain process, or gunicorn whose access log names each worker."""

    url: str  # http://127.0.0.1:PORT/api/repo
    log: Path
    gunicorn: bool = False

    def records(self) -> list[dict[str, Any]]:
        lines = self.log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def worker_pids(self, method: str, since: int = 0) -> set[object]:
        """The workers that answered ``method`` requests, from the ``since``-th record on."""
        return {r["pid"] for r in self.records()[since:] if r.get("method") == method}


def request(url: str, auth: str, data: bytes | None = None, **headers: str) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, headers={"Authorization": auth, **headers})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


@contextmanager
def serve_workers(storage: str, tmp: Path, env: dict[str, str]) -> Iterator[Endpoint]:
    """``private-channels serve --workers 3`` until the block ends, with JSON access logs."""
    log = tmp / "gunicorn.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PRIVATE_CHANNELS_")}
    full_env.update(env, PRIVATE_CHANNELS_LOG_FORMAT="json")
    command = [sys.executable, "-m", "private_channels", "serve", "--storage", storage,
               "--port", "0", "--prefix", PREFIX, "--workers", "3"]  # fmt: skip
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=full_env)
    try:
        deadline = time.monotonic() + TIMEOUT
        pattern = re.compile(r"with 3 gunicorn workers on (http://\S+?)/\n")
        while not (match := pattern.search(log.read_text())):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        # Every worker has booted once gunicorn has logged three of them.
        while log.read_text().count("Booting worker") < 3:
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield Endpoint(url=match[1], log=log, gunicorn=True)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(params=["filesystem", "s3"])
def shared(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, dict[str, str], Storage]]:
    """A storage URL, the environment to open it, and the storage itself."""
    if request.param == "s3":
        seaweedfs = request.getfixturevalue("seaweedfs")
        prefix = f"scale-{tmp_path.name[-20:].replace('_', '-')}-{time.monotonic_ns()}"
        storage = seaweedfs.storage(prefix)
        try:
            yield seaweedfs.url(prefix), seaweedfs.env, storage
        finally:
            storage.close()
    else:
        data = tmp_path / "data"
        yield str(data), {}, FileSystemStorage(data)


def wheel_upload(tmp: Path, project: str, version: str) -> tuple[str, bytes, str]:
    wheel = make_wheel(tmp, project, version)
    data = wheel.read_bytes()
    body, content_type = _multipart(
        {":action": "file_upload", "protocol_version": "1", "name": project,
         "version": version, "filetype": "bdist_wheel", "pyversion": "py3",
         "metadata_version": "2.1", "sha256_digest": hashlib.sha256(data).hexdigest()},
        wheel.name, data,
    )  # fmt: skip
    return wheel.name, body, content_type


def r_upload(name: str) -> tuple[str, bytes, str]:
    filename = f"{name}_1.0.tar.gz"
    body, content_type = _multipart(
        {"filetype": "cran_source_package"}, filename, source_package(name, "1.0")
    )
    return filename, body, content_type


def conda_upload(name: str, version: str) -> tuple[str, bytes, str]:
    stem = f"{name}-{version}-0"
    data = raw_conda({"info/index.json": demo_index(name=name, version=version)}, stem=stem)
    body, content_type = _multipart({"filetype": "conda_package"}, f"{stem}.conda", data)
    return f"{stem}.conda", body, content_type


def unzstd(data: bytes) -> bytes:
    return zstandard.ZstdDecompressor().stream_reader(data).read()


def test_concurrent_uploads_through_many_processes_lose_nothing(
    shared: tuple[str, dict[str, str], Storage], tmp_path: Path
) -> None:
    url, env, storage = shared
    ChannelRegistry(storage).create("team")
    token, _ = TokenStore(storage).create(channels=["team"], scope=Scope.WRITE)
    auth = "Basic " + base64.b64encode(f"__token__:{token}".encode()).decode()
    (tmp_path / "wheels").mkdir()
    # Seeded first (so that every page exists and is cached), then raced.
    seeds = [wheel_upload(tmp_path / "wheels", p, "0.1") for p in PROJECTS] + [
        r_upload("seed"), conda_upload("seed", "0.1")
    ]  # fmt: skip
    uploads = (
        [wheel_upload(tmp_path / "wheels", project, f"1.{v}")
         for v in range(VERSIONS) for project in PROJECTS]
        + [r_upload(f"pkg{chr(ord('a') + i)}") for i in range(R_PACKAGES)]
        + [conda_upload(name, f"1.{v}") for v in range(CONDA_VERSIONS)
           for name in ("left", "right")]
    )  # fmt: skip

    with ExitStack() as stack:
        gunicorn = stack.enter_context(serve_workers(url, tmp_path, env))
        endpoints = [
            stack.enter_context(live_server(url, tmp_path, prefix=PREFIX, extra_env=env))
            for _ in range(2)
        ]
        servers = [gunicorn.url, *(e.url for e in endpoints)]
        pages = [
            *((page, accept) for page in ("/simple/", *(f"/simple/{p}/" for p in PROJECTS))
              for accept in ("text/html", JSON_TYPE)),
            ("/src/contrib/PACKAGES", "*/*"),
            ("/src/contrib/PACKAGES.gz", "*/*"),
            ("/noarch/repodata.json", "*/*"),
            ("/noarch/repodata.json.zst", "*/*"),
            ("/noarch/repodata_shards.msgpack.zst", "*/*"),
        ]  # fmt: skip

        def read(server: str, page: str, accept: str = "text/html") -> bytes:
            status, body = request(f"{server}/team{page}", auth, Accept=accept)
            assert status == 200, body
            return body

        def upload(upload: tuple[str, bytes, str], server: str) -> None:
            _, body, content_type = upload
            status, answer = request(f"{server}/team", auth, body, **{"Content-Type": content_type})
            assert status == 200, answer

        for i, seed in enumerate(seeds):
            upload(seed, servers[i % len(servers)])

        # Every process caches every page (gunicorn: several workers) before the uploads.
        with ThreadPoolExecutor(max_workers=8) as pool:
            warm = [(s, page, accept) for s in servers for page, accept in pages] * 3
            list(pool.map(lambda args: read(*args), warm))

        # Round robin, so that each server takes uploads of every kind at once.
        targets = [servers[i % len(servers)] for i in range(len(uploads))]
        with ThreadPoolExecutor(max_workers=9) as pool:
            list(pool.map(upload, uploads, targets))

        wheels = {name for name, _, _ in seeds + uploads if name.endswith(".whl")}
        r_files = {name for name, _, _ in seeds + uploads if name.endswith(".tar.gz")}
        conda_files = {name for name, _, _ in seeds + uploads if name.endswith(".conda")}

        def check(server: str) -> None:
            root_html = read(server, "/simple/").decode()
            root = json.loads(read(server, "/simple/", JSON_TYPE))
            assert sorted(p["name"] for p in root["projects"]) == sorted(PROJECTS)
            assert all(f">{p}<" in root_html for p in PROJECTS)
            listed: set[str] = set()
            for project in PROJECTS:
                page = json.loads(read(server, f"/simple/{project}/", JSON_TYPE))
                files = {f["filename"] for f in page["files"]}
                html = read(server, f"/simple/{project}/").decode()
                assert all(f">{name}<" in html for name in files)
                listed |= files
            assert listed == wheels
            for index in ("PACKAGES", "PACKAGES.gz"):
                body = read(server, f"/src/contrib/{index}")
                text = gzip.decompress(body) if index.endswith(".gz") else body
                packages = parse_dcf(text.decode())
                assert {f"{p['Package']}_{p['Version']}.tar.gz" for p in packages} == r_files
            plain = read(server, "/noarch/repodata.json")
            assert set(json.loads(plain)["packages.conda"]) == conda_files
            assert unzstd(read(server, "/noarch/repodata.json.zst")) == plain
            index = msgpack.unpackb(unzstd(read(server, "/noarch/repodata_shards.msgpack.zst")))
            sharded: set[str] = set()
            for digest in index["shards"].values():
                shard = read(server, f"/noarch/shards/{digest.hex()}.msgpack.zst")
                sharded |= set(msgpack.unpackb(unzstd(shard))["packages.conda"])
            assert sharded == conda_files

        # Each plain process, and gunicorn until at least two of its workers answered
        # (every worker warmed its caches above, so any of them could be stale).
        for server in servers[1:]:
            check(server)
        assert len(gunicorn.worker_pids("GET")) >= 2, "one gunicorn worker warmed up"
        start = len(gunicorn.records())
        deadline = time.monotonic() + TIMEOUT
        while len(checked := gunicorn.worker_pids("GET", since=start)) < 2:
            with ThreadPoolExecutor(max_workers=4) as pool:
                list(pool.map(check, [gunicorn.url] * 4))
            assert time.monotonic() < deadline, f"gunicorn workers checked: {checked}"

    # Nothing lost in storage either: every committed file is there once.
    python_blobs = [k for k in storage.list("channels/team/pypi/blobs/") if k.endswith(".whl")]
    cran_blobs = [k for k in storage.list("channels/team/cran/blobs/")]
    conda_blobs = [k for k in storage.list("channels/team/conda/blobs/")]
    # Each ``blobs/<sha256>-<filename>``.
    assert sorted(k.rsplit("/", 1)[1][65:] for k in python_blobs) == sorted(wheels)
    assert sorted(k.rsplit("/", 1)[1][65:] for k in cran_blobs) == sorted(r_files)
    assert sorted(k.rsplit("/", 1)[1][65:] for k in conda_blobs) == sorted(conda_files)
