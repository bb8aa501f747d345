"""What only the S3 backend has: URLs, multipart uploads, request counts, clear errors.

The storage contract itself runs on S3 in tests/test_storage.py (backend ``s3``); these
tests run on the session's SeaweedFS (tests/s3server.py).
"""

from __future__ import annotations

import hashlib
import io
import socket
import tracemalloc
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("boto3", reason="the S3 backend needs boto3: pip install -e '.[test]'")

from private_channels.storage import (
    InvalidKeyError,
    StaleWriteError,
    StorageURLError,
    open_storage,
    read_bytes,
    update_json,
)
from private_channels.storage.s3 import ListingOrderError, S3Storage

from .s3server import Requests, SeaweedFS
from .support import cli, live_server

MiB = 1024 * 1024
PART = 5 * MiB  # S3's smallest part, so that multipart tests stay small


class Generated(io.RawIOBase):
    """``size`` deterministic bytes made on the fly: a large upload that is never in memory."""

    def __init__(self, size: int, *, fail_after: int | None = None) -> None:
        self.size, self.pos, self.fail_after = size, 0, fail_after
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        if self.fail_after is not None and self.pos >= self.fail_after:
            raise ConnectionResetError("client went away")
        n = min(len(buffer), 64 * 1024, self.size - self.pos)
        block = (self.pos // 4096).to_bytes(8, "big") * 8  # 64 bytes that vary with offset
        chunk = (block * (n // len(block) + 1))[:n]
        buffer[:n] = chunk
        self.digest.update(chunk)
        self.pos += n
        return n


@pytest.fixture
def s3(seaweedfs: SeaweedFS) -> Iterator[S3Storage]:
    storage: S3Storage = seaweedfs.storage(part_size="5m")
    yield storage
    storage.close()


def uploads_in_progress(storage: S3Storage) -> list[str]:
    answer = storage.client.list_multipart_uploads(Bucket=storage.bucket, Prefix=storage._root)
    return [upload["Key"] for upload in answer.get("Uploads", [])]


# URLs


@pytest.mark.parametrize(
    ("url", "bucket", "prefix", "part_size", "listing", "addressing"),
    [
        ("s3://my-bucket", "my-bucket", "", 8 * MiB, "walk", "auto"),
        ("s3://my-bucket/", "my-bucket", "", 8 * MiB, "walk", "auto"),
        ("s3://my.bucket/a/b/", "my.bucket", "a/b", 8 * MiB, "walk", "auto"),
        ("s3://abc/p?part_size=16m&listing=flat", "abc", "p", 16 * MiB, "flat", "auto"),
        ("s3://abc/p?part_size=6291456&addressing_style=path", "abc", "p", 6 * MiB, "walk", "path"),
        ("s3://abc?part_size=1g&max_attempts=1", "abc", "", 1024 * MiB, "walk", "auto"),
    ],
)
def test_url_options(
    seaweedfs: SeaweedFS,
    url: str,
    bucket: str,
    prefix: str,
    part_size: int,
    listing: str,
    addressing: str,
) -> None:
    url += ("&" if "?" in url else "?") + f"endpoint_url={seaweedfs.endpoint_url}&region=eu-west-3"
    storage = S3Storage.from_url(url, session=seaweedfs.session(), check=False)
    try:
        assert (storage.bucket, storage.prefix) == (bucket, prefix)
        assert (storage.part_size, storage.listing) == (part_size, listing)
        assert storage.client.meta.endpoint_url == seaweedfs.endpoint_url
        assert storage.client.meta.region_name == "eu-west-3"
        assert storage.client.meta.config.s3 == {"addressing_style": addressing}
        assert "secret" not in repr(storage).lower()
    finally:
        storage.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3://", "bucket name"),
        ("s3://ab/p", "bucket name"),
        ("s3://Upper/p", "bucket name"),
        ("s3://bucket/../up", "invalid prefix"),
        ("s3://bucket/a/.hidden", "invalid prefix"),
        ("s3://bucket/p?endpoint=http://x", "unknown options endpoint"),
        ("s3://bucket/p?aws_secret_access_key=x", "unknown options"),
        ("s3://bucket/p?part_size=1m", "at least 5m"),
        ("s3://bucket/p?part_size=lots", "not a size"),
        ("s3://bucket/p?listing=random", "walk or flat"),
        ("s3://bucket/p?addressing_style=dns", "auto, path or virtual"),
        ("s3://bucket/p?max_attempts=0", "max_attempts"),
    ],
)
def test_bad_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(StorageURLError, match=message):
        S3Storage.from_url(url, check=False)


def test_open_storage_takes_credentials_from_the_environment(
    seaweedfs: SeaweedFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in seaweedfs.env.items():
        monkeypatch.setenv(name, value)
    storage = open_storage(seaweedfs.url())
    assert isinstance(storage, S3Storage)
    try:
        storage.create("k", io.BytesIO(b"via the environment"))
        assert read_bytes(storage, "k")[0] == b"via the environment"
    finally:
        storage.close()


def test_keys_live_under_the_url_prefix(seaweedfs: SeaweedFS, s3: S3Storage) -> None:
    outer = seaweedfs.storage(f"{s3.prefix}-outer")
    deeper = seaweedfs.storage(f"{s3.prefix}/a")
    deeper.create("b/c", io.BytesIO(b"1"))
    outer.create("x", io.BytesIO(b"2"))  # a sibling prefix that merely starts the same
    raw = s3.client.list_objects_v2(Bucket=s3.bucket, Prefix=s3.prefix)
    assert sorted(item["Key"] for item in raw["Contents"]) == [
        f"{s3.prefix}-outer/x",
        f"{s3.prefix}/a/b/c",
    ]
    assert list(s3.list("")) == ["a/b/c"]
    assert read_bytes(s3, "a/b/c")[0] == b"1"
    with pytest.raises(InvalidKeyError):
        s3.open("../x")


def test_foreign_objects_with_invalid_keys_are_not_listed(s3: S3Storage) -> None:
    s3.create("dir/ok", io.BytesIO(b"1"))
    for foreign in ("dir/", "dir/.hidden", "dir/sub/"):  # console "folders", dot files
        s3.client.put_object(Bucket=s3.bucket, Key=f"{s3._root}{foreign}", Body=b"")
    assert list(s3.list("")) == ["dir/ok"]
    assert list(s3.list("dir/")) == ["dir/ok"]


# Clear errors


def test_missing_bucket_is_a_one_line_error(seaweedfs: SeaweedFS) -> None:
    url = f"s3://no-such-bucket/p?endpoint_url={seaweedfs.endpoint_url}"
    with pytest.raises(FileNotFoundError) as caught:
        S3Storage.from_url(url, session=seaweedfs.session())
    assert str(caught.value) == (
        f"S3 bucket 'no-such-bucket' at {seaweedfs.endpoint_url} does not exist"
    )


def test_unreachable_endpoint_is_a_one_line_error(seaweedfs: SeaweedFS) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"s3://bucket/p?endpoint_url=http://127.0.0.1:{port}&max_attempts=1"
    with pytest.raises(ConnectionError, match=r"^cannot reach S3 bucket 'bucket' at ") as caught:
        S3Storage.from_url(url, session=seaweedfs.session())
    assert "\n" not in str(caught.value)


def test_wrong_credentials_are_a_one_line_error(seaweedfs: SeaweedFS) -> None:
    import boto3

    session = boto3.Session(
        aws_access_key_id="nobody", aws_secret_access_key="wrong", region_name="us-east-1"
    )
    with pytest.raises(PermissionError, match="refused our credentials"):
        S3Storage.from_url(seaweedfs.url(), session=session)


def test_cli_reports_a_missing_bucket_in_one_line(seaweedfs: SeaweedFS) -> None:
    url = f"s3://no-such-bucket/p?endpoint_url={seaweedfs.endpoint_url}"
    result = cli("channel", "list", storage=url, check=False, env=seaweedfs.env)
    assert result.returncode != 0
    [line] = result.stderr.strip().splitlines()
    assert line.endswith(
        f"cannot open storage: S3 bucket 'no-such-bucket' at {seaweedfs.endpoint_url} "
        "does not exist"
    )


def test_cli_and_server_run_on_s3(seaweedfs: SeaweedFS, tmp_path: Path) -> None:
    """A channel made by the command line is seen by a server on the same bucket prefix."""
    url = seaweedfs.url()
    cli("channel", "create", "team", storage=url, env=seaweedfs.env)
    listed = cli("channel", "list", storage=url, env=seaweedfs.env).stdout
    assert listed.split() == ["team", "private"]
    created = cli(
        "token", "create", "--channel", "team", "--scope", "read", storage=url, env=seaweedfs.env
    )
    token = created.stdout.strip().splitlines()[-1]
    with live_server(url, tmp_path, extra_env=seaweedfs.env) as server:
        with urllib.request.urlopen(f"{server.url}/-/health", timeout=10) as response:
            assert response.status == 200
        page = urllib.request.Request(f"{server.url}/team/simple/", headers={"X-Auth": token})
        with urllib.request.urlopen(page, timeout=10) as response:
            assert response.status == 200
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"{server.url}/team/simple/", timeout=10)
        caught.value.close()
        assert caught.value.code == 401


# Multipart uploads


def test_large_upload_is_multipart_with_bounded_memory(s3: S3Storage) -> None:
    size = 9 * PART + 12345  # ten parts
    source = Generated(size)
    requests = Requests(s3.client)
    tracemalloc.start()
    try:
        stat = s3.create("big/blob", io.BufferedReader(source, 256 * 1024))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # One part in memory at a time (plus what a growing buffer over-allocates).
    assert peak < 2 * PART, f"peak {peak / MiB:.1f} MiB for a {size / MiB:.0f} MiB blob"
    assert requests.take() == {
        "HeadObject": 2,  # create's pre-check, then the stat of what was written
        "CreateMultipartUpload": 1,
        "UploadPart": 10,
        "CompleteMultipartUpload": 1,
    }
    assert source.pos == size
    assert stat.size == size and stat.etag.endswith('-10"')
    stream, opened = s3.open("big/blob")
    with stream:
        digest = hashlib.sha256()
        while chunk := stream.read(MiB):
            digest.update(chunk)
    assert opened == stat
    assert digest.hexdigest() == source.digest.hexdigest()
    assert uploads_in_progress(s3) == []


def test_a_blob_smaller_than_a_part_is_one_put(s3: S3Storage) -> None:
    requests = Requests(s3.client)
    s3.put("small", io.BytesIO(b"x" * (PART - 1)))
    assert requests.take() == {"PutObject": 1, "HeadObject": 1}
    s3.put("one", io.BytesIO(b"x" * PART))
    assert requests.take() == {
        "CreateMultipartUpload": 1,
        "UploadPart": 1,
        "CompleteMultipartUpload": 1,
        "HeadObject": 1,
    }
    assert (s3.stat("small").size, s3.stat("one").size) == (PART - 1, PART)


def test_interrupted_multipart_upload_is_aborted(s3: S3Storage) -> None:
    s3.put("kept", io.BytesIO(b"old"))
    requests = Requests(s3.client)
    for write in (s3.create, s3.put):
        with pytest.raises(ConnectionResetError):
            write("partial", io.BufferedReader(Generated(10 * PART, fail_after=3 * PART)))
    counts = requests.take()
    assert counts["CreateMultipartUpload"] == counts["AbortMultipartUpload"] == 2
    with pytest.raises(ConnectionResetError):
        s3.put("kept", io.BufferedReader(Generated(10 * PART, fail_after=3 * PART)))
    assert uploads_in_progress(s3) == []
    assert list(s3.list("")) == ["kept"]
    assert read_bytes(s3, "kept")[0] == b"old"


def test_multipart_create_of_an_existing_key_uploads_nothing(s3: S3Storage) -> None:
    s3.create("k", io.BytesIO(b"first"))
    requests = Requests(s3.client)
    with pytest.raises(FileExistsError):
        s3.create("k", io.BytesIO(b"y" * (2 * PART)))
    assert "UploadPart" not in requests.take()
    assert read_bytes(s3, "k")[0] == b"first"


def test_multipart_completion_is_conditional(seaweedfs: SeaweedFS, s3: S3Storage) -> None:
    """A writer that wins while our parts upload makes our completion fail, not overwrite."""
    other = seaweedfs.client()
    winners = iter([b"the winner", b"the next winner"])

    def sneak_in(**kwargs: Any) -> None:
        other.put_object(Bucket=s3.bucket, Key=f"{s3._root}race", Body=next(winners))

    s3.client.meta.events.register("before-call.s3.CompleteMultipartUpload", sneak_in)
    with pytest.raises(FileExistsError):
        s3.create("race", io.BytesIO(b"z" * (2 * PART)))
    data, stat = read_bytes(s3, "race")
    assert data == b"the winner"
    with pytest.raises(StaleWriteError):
        s3.put("race", io.BytesIO(b"z" * (2 * PART)), if_match=stat.etag)
    assert read_bytes(s3, "race")[0] == b"the next winner"
    assert uploads_in_progress(s3) == []


def test_multipart_put_if_match(s3: S3Storage) -> None:
    first = s3.put("doc", io.BytesIO(b"small"))
    big = b"b" * (2 * PART + 1)
    second = s3.put("doc", io.BytesIO(big), if_match=first.etag)
    requests = Requests(s3.client)
    with pytest.raises(StaleWriteError):
        s3.put("doc", io.BytesIO(big), if_match=first.etag)
    with pytest.raises(StaleWriteError):
        s3.put("absent", io.BytesIO(big), if_match=first.etag)
    assert requests.take() == {"HeadObject": 2}  # refused before uploading anything
    assert s3.stat("doc") == second and second.size == len(big)
    assert uploads_in_progress(s3) == []


# Listing


def test_walked_listing_pages_and_sorts(seaweedfs: SeaweedFS) -> None:
    storage: S3Storage = seaweedfs.storage()
    storage.page_size = 2
    keys = ["a/b", "a-c", "a/b0/c", "a/b0/d", "a/b1", "a0", "b/c/d", "ab", "a.x"]
    for key in keys:
        storage.create(key, io.BytesIO(b"."))
    requests = Requests(storage.client)
    assert list(storage.list("")) == sorted(keys)
    # A request per page of 2 for each level: "" (a-c a.x a/ a0 ab b/), a/ (b b0/ b1),
    # a/b0/ (c d), b/ (c/), b/c/ (d)
    assert requests.take() == {"ListObjectsV2": 3 + 2 + 1 + 1 + 1}
    assert list(storage.list("a/b")) == ["a/b", "a/b0/c", "a/b0/d", "a/b1"]
    assert list(storage.list("a/b0/")) == ["a/b0/c", "a/b0/d"]


def test_flat_listing_refuses_an_out_of_order_store(seaweedfs: SeaweedFS) -> None:
    """SeaweedFS lists a directory's keys where its name sorts, so a/b before a-c."""
    storage: S3Storage = seaweedfs.storage(listing="flat")
    for key in ["a/b", "a-c", "b"]:
        storage.create(key, io.BytesIO(b"."))
    assert list(storage.list("a/")) == ["a/b"]  # in order: fine
    with pytest.raises(ListingOrderError, match="listing=walk"):
        list(storage.list(""))


def test_flat_listing_costs_one_request_per_page(seaweedfs: SeaweedFS) -> None:
    storage: S3Storage = seaweedfs.storage(listing="flat")
    storage.page_size = 3
    for n in range(7):
        storage.create(f"k{n}", io.BytesIO(b"."))
    requests = Requests(storage.client)
    assert list(storage.list("k")) == [f"k{n}" for n in range(7)]
    assert requests.take() == {"ListObjectsV2": 3}


# Request counts (docs/storage.md reports these)


def test_request_counts_per_operation(s3: S3Storage) -> None:
    requests = Requests(s3.client)
    stat = s3.create("k", io.BytesIO(b"1"))
    assert requests.take() == {"PutObject": 1, "HeadObject": 1}
    stat = s3.put("k", io.BytesIO(b"2"), if_match=stat.etag)
    assert requests.take() == {"PutObject": 1, "HeadObject": 1}
    s3.stat("k")
    assert requests.take() == {"HeadObject": 1}
    stream, _ = s3.open("k")
    stream.close()
    assert requests.take() == {"GetObject": 1}
    list(s3.list(""))
    assert requests.take() == {"ListObjectsV2": 1}
    with pytest.raises(StaleWriteError):
        s3.delete("k", if_match='"stale"')
    assert requests.take() == {"HeadObject": 1}
    s3.delete("k", if_match=stat.etag)
    assert requests.take() == {"HeadObject": 1, "DeleteObject": 1}
    update_json(s3, "d.json", lambda doc: {"n": 1})  # absent: a create
    assert requests.take() == {"GetObject": 1, "PutObject": 1, "HeadObject": 1}
    update_json(s3, "d.json", lambda doc: {"n": doc["n"] + 1})
    assert requests.take() == {"GetObject": 1, "PutObject": 1, "HeadObject": 1}
    update_json(s3, "d.json", lambda doc: doc)  # no change: no write
    assert requests.take() == {"GetObject": 1}


def test_delete_if_match_is_enforced_by_the_store(seaweedfs: SeaweedFS, s3: S3Storage) -> None:
    """The look before a delete can go stale; the store's If-Match must still catch it."""
    stat = s3.put("k", io.BytesIO(b"1"))
    other = seaweedfs.client()

    def replace_first(**kwargs: Any) -> None:
        other.put_object(Bucket=s3.bucket, Key=f"{s3._root}k", Body=b"newer")

    s3.client.meta.events.register("before-call.s3.DeleteObject", replace_first)
    with pytest.raises(StaleWriteError):
        s3.delete("k", if_match=stat.etag)
    assert read_bytes(s3, "k")[0] == b"newer"


# The store itself: SeaweedFS's conditional requests behave as S3's


def test_seaweedfs_conditional_requests_are_s3s(seaweedfs: SeaweedFS) -> None:
    import botocore.exceptions

    client, bucket, key = seaweedfs.client(), seaweedfs.bucket, "conformance/k"

    def status(call: Any, **params: Any) -> int:
        try:
            return int(call(Bucket=bucket, Key=key, **params)["ResponseMetadata"]["HTTPStatusCode"])
        except botocore.exceptions.ClientError as exc:
            return int(exc.response["ResponseMetadata"]["HTTPStatusCode"])

    assert status(client.put_object, Body=b"1", IfNoneMatch="*") == 200
    etag = client.head_object(Bucket=bucket, Key=key)["ETag"]
    assert status(client.put_object, Body=b"2", IfNoneMatch="*") == 412
    assert status(client.put_object, Body=b"2", IfMatch='"0123"') == 412
    assert status(client.put_object, Body=b"2", IfMatch=etag) == 200
    assert status(client.put_object, Body=b"3", IfMatch=etag) == 412
    assert status(client.delete_object, IfMatch=etag) == 412
    assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == b"2"
    assert status(client.delete_object) == 204
    assert status(client.delete_object) == 204  # S3 deletes idempotently: hence our HEAD


# Presigned downloads


def test_presigned_url_downloads_without_credentials(s3: S3Storage) -> None:
    s3.create("pkg/file.tar.gz", io.BytesIO(b"package bytes"))
    url = s3.presigned_url("pkg/file.tar.gz", expires=60)
    assert url.startswith(s3.client.meta.endpoint_url)
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"package bytes"
    with pytest.raises(InvalidKeyError):
        s3.presigned_url("../escape")
