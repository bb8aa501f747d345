"""Storage in an S3-compatible object store (AWS S3, SeaweedFS, MinIO, ...), through boto3.

::

    from private_channels.storage import open_storage

    storage = open_storage("s3://my-bucket/private-channels?endpoint_url=http://127.0.0.1:8333")

Credentials and region come the usual AWS way (``AWS_ACCESS_KEY_ID`` and
``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, ``~/.aws/config``, an instance role); never put
secrets in the URL.  The query parameters (all optional):

``endpoint_url``
    the S3 API of a store that is not AWS, e.g. ``http://127.0.0.1:8333``;
``region``, ``profile``
    override the region and the named profile of the AWS configuration;
``addressing_style``
    ``path`` (``endpoint/bucket/key``), ``virtual`` (``bucket.endpoint/key``) or ``auto``;
``part_size``
    bytes per multipart part, like ``16m`` (default ``8m``, at least ``5m``): smaller
    blobs are one PutObject, others a multipart upload, and a write holds one part in
    memory at a time, whatever the blob's size;
``max_attempts``
    attempts per request, retries included (default 3);
``listing``
    ``walk`` (default) lists one "directory" level at a time with ``Delimiter=/`` and
    merges it into plain string order, which is right on every store; ``flat`` trusts
    the store to list whole prefixes in string order, 1,000 keys per request, which AWS
    and MinIO do and SeaweedFS does not (it lists ``a/b`` before ``a-c``), so the flat
    listing checks the order and raises :class:`ListingOrderError` when it is broken.

Creates and compare-and-swap updates are conditional writes (``If-None-Match: *`` and
``If-Match: <etag>`` on PutObject and CompleteMultipartUpload), so hosts sharing a bucket
need no lock server.  See ``docs/storage.md`` for what each operation costs in requests.
"""

from __future__ import annotations

import contextlib
import io
import re
import time
from collections.abc import Iterator
from typing import IO, Any, cast
from urllib.parse import parse_qs, urlsplit

import boto3
import botocore.exceptions
from botocore.config import Config

from . import StorageURLError
from .base import (
    CHUNK_SIZE,
    InvalidKeyError,
    StaleWriteError,
    Stat,
    validate_key,
    validate_prefix,
)

__all__ = ["ListingOrderError", "S3Storage"]

MiB = 1024 * 1024
DEFAULT_PART_SIZE = 8 * MiB
MIN_PART_SIZE = 5 * MiB  # S3's floor for every part but the last
MAX_PARTS = 10_000  # S3's ceiling on parts per upload

_OPTIONS = frozenset(
    {
        "endpoint_url",
        "region",
        "profile",
        "addressing_style",
        "part_size",
        "max_attempts",
        "listing",
    }
)
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
_SIZE = re.compile(r"(\d+)\s*([kmg]?)i?b?\Z", re.IGNORECASE)


class ListingOrderError(RuntimeError):
    """A store that lists keys out of string order, used with ``listing=flat``."""


class _PreconditionFailed(Exception):
    """An ``If-Match`` / ``If-None-Match`` that the store refused (412, or 409 in a race)."""


def _code(exc: botocore.exceptions.ClientError) -> tuple[str, int]:
    response = exc.response
    return (
        str(response.get("Error", {}).get("Code", "")),
        int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)),
    )


def _is_not_found(exc: botocore.exceptions.ClientError) -> bool:
    # HEAD answers have no body, so their code is the bare status "404".
    code, status = _code(exc)
    return status == 404 and code in ("NoSuchKey", "404", "NotFound")


def _is_precondition(exc: botocore.exceptions.ClientError) -> bool:
    # 409 ConditionalRequestConflict: AWS lost track of which of two racing conditional
    # writes came first; to the caller that is the same lost race as a 412.
    code, status = _code(exc)
    return status == 412 or code in ("PreconditionFailed", "ConditionalRequestConflict")


def _stat(response: dict[str, Any]) -> Stat:
    return Stat(
        size=int(response["ContentLength"]),
        mtime=response["LastModified"].timestamp(),
        etag=str(response["ETag"]),
    )


def _read_part(data: IO[bytes], size: int) -> tuple[io.BytesIO, int]:
    """Read up to ``size`` bytes into one buffer (a stream may return short reads)."""
    part = io.BytesIO()
    length = 0
    while length < size:
        # Small reads, so that the part is the only copy of its bytes in memory.
        chunk = data.read(min(size - length, CHUNK_SIZE))
        if not chunk:
            break
        part.write(chunk)
        length += len(chunk)
    part.seek(0)
    return part, length


def _parse_size(text: str) -> int:
    match = _SIZE.match(text.strip())
    if match is None:
        raise StorageURLError(f"part_size {text!r} is not a size like 8388608 or 16m")
    number, unit = match.groups()
    return int(number) * {"": 1, "k": 1024, "m": MiB, "g": 1024 * MiB}[unit.lower()]


class S3Storage:
    """The storage protocol on one bucket, every key under ``prefix/``.

    ``client`` is a boto3 S3 client; :meth:`from_url` builds one from a storage URL.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: Any,
        part_size: int = DEFAULT_PART_SIZE,
        listing: str = "walk",
        page_size: int = 1000,
    ) -> None:
        prefix = prefix.strip("/")
        if prefix:
            validate_key(prefix)
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum)")
        if listing not in ("walk", "flat"):
            raise ValueError(f"listing must be 'walk' or 'flat', not {listing!r}")
        self.bucket = bucket
        self.prefix = prefix
        self.client = client
        self.part_size = part_size
        self.listing = listing
        self.page_size = page_size  # keys per list request; S3 answers at most 1,000
        self._root = f"{prefix}/" if prefix else ""

    @classmethod
    def from_url(
        cls, url: str, *, session: boto3.Session | None = None, check: bool = True
    ) -> S3Storage:
        """Open ``s3://bucket/prefix?option=value...`` (see the module docstring).

        ``session`` supplies credentials instead of the environment (tests use it); with
        ``check``, one HeadBucket turns a wrong endpoint, bucket or credential into a
        one-line error now rather than on the first request.
        """
        parts = urlsplit(url)
        if parts.scheme != "s3":
            raise StorageURLError(f"storage URL {url!r} is not an s3:// URL")
        bucket = parts.netloc
        if not _BUCKET.match(bucket):
            raise StorageURLError(
                f"storage URL {url!r} needs a bucket name of 3 to 63 lowercase letters, "
                "digits, dots and hyphens: s3://bucket/prefix"
            )
        prefix = parts.path.strip("/")
        try:
            if prefix:
                validate_key(prefix)
        except InvalidKeyError as exc:
            raise StorageURLError(f"storage URL {url!r} has an invalid prefix: {exc}") from exc
        try:
            query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
        except ValueError as exc:
            raise StorageURLError(f"storage URL {url!r} has a malformed query") from exc
        unknown = sorted(set(query) - _OPTIONS)
        if unknown:
            raise StorageURLError(
                f"storage URL {url!r} has unknown options {', '.join(unknown)}; "
                f"known: {', '.join(sorted(_OPTIONS))}"
            )
        options = {name: values[-1] for name, values in query.items()}
        addressing = options.get("addressing_style", "auto")
        if addressing not in ("auto", "path", "virtual"):
            raise StorageURLError(
                f"addressing_style must be auto, path or virtual, not {addressing!r}"
            )
        listing = options.get("listing", "walk")
        if listing not in ("walk", "flat"):
            raise StorageURLError(f"listing must be walk or flat, not {listing!r}")
        part_size = _parse_size(options.get("part_size", str(DEFAULT_PART_SIZE)))
        if part_size < MIN_PART_SIZE:
            raise StorageURLError(f"part_size must be at least 5m, not {options['part_size']!r}")
        try:
            max_attempts = int(options.get("max_attempts", "3"))
        except ValueError:
            max_attempts = 0
        if max_attempts < 1:
            raise StorageURLError("max_attempts must be a whole number of at least 1")

        if session is None:
            try:
                session = boto3.Session(
                    profile_name=options.get("profile") or None,
                    region_name=options.get("region") or None,
                )
            except botocore.exceptions.ProfileNotFound as exc:
                raise StorageURLError(str(exc)) from exc
        config = Config(
            s3={"addressing_style": addressing},
            retries={"mode": "standard", "max_attempts": max_attempts},
            # Worker threads share one client; the default pool of 10 would thrash.
            max_pool_connections=64,
            connect_timeout=10,
            # boto3 >= 1.36 adds CRC checksums to every upload by default, which several
            # S3-compatible stores reject; SigV4 already signs the payload's SHA-256 over
            # plain HTTP, and TLS protects it over HTTPS.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        client = session.client(
            "s3",
            endpoint_url=options.get("endpoint_url") or None,
            region_name=options.get("region") or None,
            config=config,
        )
        storage = cls(bucket, prefix, client=client, part_size=part_size, listing=listing)
        if check:
            try:
                storage.check()
            except BaseException:
                client.close()
                raise
        return storage

    def __repr__(self) -> str:
        endpoint = self.client.meta.endpoint_url
        return f"S3Storage('s3://{self.bucket}/{self.prefix}', endpoint_url={endpoint!r})"

    def close(self) -> None:
        """Close the client's pooled connections."""
        self.client.close()

    def check(self) -> None:
        """Make sure the bucket exists and answers, else raise a one-line :class:`OSError`."""
        where = f"S3 bucket {self.bucket!r} at {self.client.meta.endpoint_url}"
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except botocore.exceptions.ClientError as exc:
            code, status = _code(exc)
            if status == 404:
                raise FileNotFoundError(f"{where} does not exist") from None
            if status in (401, 403):
                raise PermissionError(f"{where} refused our credentials ({code})") from None
            raise OSError(f"{where} answered {status} {code}") from None
        except botocore.exceptions.NoCredentialsError:
            raise PermissionError(
                f"no credentials for {where}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
            ) from None
        except (
            botocore.exceptions.EndpointConnectionError,
            botocore.exceptions.ConnectTimeoutError,
        ) as exc:
            raise ConnectionError(f"cannot reach {where}: {exc}") from None

    def _key(self, key: str) -> str:
        return self._root + validate_key(key)

    # Reads

    def open(self, key: str) -> tuple[IO[bytes], Stat]:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except botocore.exceptions.ClientError as exc:
            if _is_not_found(exc):
                raise FileNotFoundError(key) from None
            raise
        # botocore's StreamingBody is an io.IOBase with read() and close().
        return cast(IO[bytes], response["Body"]), _stat(response)

    def stat(self, key: str) -> Stat:
        try:
            return _stat(self.client.head_object(Bucket=self.bucket, Key=self._key(key)))
        except botocore.exceptions.ClientError as exc:
            if _is_not_found(exc):
                raise FileNotFoundError(key) from None
            raise

    def presigned_url(self, key: str, expires: int = 3600) -> str:  # PresignsURLs
        """A URL that lets anyone GET ``key`` for ``expires`` seconds, with no credentials."""
        return str(
            self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self._key(key)},
                ExpiresIn=expires,
            )
        )

    def clean_incomplete_writes(self, prefix: str, *, older_than: float) -> list[str]:
        """Abort multipart uploads under ``prefix`` begun before ``older_than`` and never
        completed (a process killed mid-write): the store keeps, and bills, their parts."""
        validate_prefix(prefix)
        aborted: list[str] = []
        params = {"Bucket": self.bucket, "Prefix": self._root + prefix}
        while True:
            page = self.client.list_multipart_uploads(**params)
            for upload in page.get("Uploads", ()):
                if upload["Initiated"].timestamp() >= older_than:
                    continue
                with contextlib.suppress(botocore.exceptions.ClientError):
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                    aborted.append(f"{upload['Key'][len(self._root) :]} (unfinished upload)")
            if not page.get("IsTruncated"):
                return aborted
            params["KeyMarker"] = page["NextKeyMarker"]
            params["UploadIdMarker"] = page["NextUploadIdMarker"]

    # Writes

    def put(self, key: str, data: IO[bytes], *, if_match: str | None = None) -> Stat:
        s3key = self._key(key)
        try:
            return self._write(s3key, data, {} if if_match is None else {"IfMatch": if_match})
        except _PreconditionFailed:
            raise StaleWriteError(key) from None
        except botocore.exceptions.ClientError as exc:
            # AWS answers If-Match on a missing key with 404; SeaweedFS with 412.
            if if_match is not None and _is_not_found(exc):
                raise StaleWriteError(key) from None
            raise

    def create(self, key: str, data: IO[bytes]) -> Stat:
        try:
            return self._write(self._key(key), data, {"IfNoneMatch": "*"})
        except _PreconditionFailed:
            raise FileExistsError(key) from None

    def _write(self, s3key: str, data: IO[bytes], conditions: dict[str, str]) -> Stat:
        # In a list that _multipart empties, so that no frame here keeps the part alive.
        head = [_read_part(data, self.part_size)]
        size = head[0][1]
        try:
            if size < self.part_size:
                response = self.client.put_object(
                    Bucket=self.bucket, Key=s3key, Body=head.pop()[0], **conditions
                )
            else:
                # A blob of exactly one part becomes a one-part upload: knowing it is the
                # last part would take reading a second part ahead, doubling the memory.
                response, size = self._multipart(s3key, head, data, conditions)
        except botocore.exceptions.ClientError as exc:
            if _is_precondition(exc):
                raise _PreconditionFailed from None
            raise
        return self._stat_written(s3key, str(response["ETag"]), size)

    def _multipart(
        self,
        s3key: str,
        head: list[tuple[io.BytesIO, int]],
        data: IO[bytes],
        conditions: dict[str, str],
    ) -> tuple[dict[str, Any], int]:
        """Upload ``head`` (the part already read; popped, so as not to keep it) and the rest."""
        if conditions and not self._may_write(s3key, conditions):
            # Not needed for correctness (the completion is conditional too), but it
            # spares uploading a large blob only to have it refused.
            raise _PreconditionFailed
        upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=s3key)["UploadId"]
        try:
            parts: list[dict[str, Any]] = []
            size = 0
            while True:
                body, length = head.pop() if head else _read_part(data, self.part_size)
                if length == 0:
                    break
                if len(parts) == MAX_PARTS:
                    raise ValueError(
                        f"blob exceeds {MAX_PARTS} parts of {self.part_size} bytes; "
                        "raise part_size in the storage URL"
                    )
                number = len(parts) + 1
                answer = self.client.upload_part(
                    Bucket=self.bucket, Key=s3key, UploadId=upload, PartNumber=number, Body=body
                )
                parts.append({"PartNumber": number, "ETag": answer["ETag"]})
                size += length
                del body  # before reading the next part into memory
            response = self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=s3key,
                UploadId=upload,
                MultipartUpload={"Parts": parts},
                **conditions,
            )
        except BaseException:
            # An interrupted upload must leave nothing, not parts billed forever.
            with contextlib.suppress(Exception):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=s3key, UploadId=upload)
            raise
        return response, size

    def _may_write(self, s3key: str, conditions: dict[str, str]) -> bool:
        try:
            etag: str | None = str(self.client.head_object(Bucket=self.bucket, Key=s3key)["ETag"])
        except botocore.exceptions.ClientError as exc:
            if not _is_not_found(exc):
                raise
            etag = None
        if "IfNoneMatch" in conditions:
            return etag is None
        return etag is not None and etag == conditions["IfMatch"]

    def _stat_written(self, s3key: str, etag: str, size: int) -> Stat:
        # PutObject and CompleteMultipartUpload answer no Last-Modified, and the stat
        # must equal what open() and stat() report later, so ask for it.
        try:
            return _stat(self.client.head_object(Bucket=self.bucket, Key=s3key, IfMatch=etag))
        except botocore.exceptions.ClientError as exc:
            if not (_is_precondition(exc) or _is_not_found(exc)):
                raise
        # Already replaced or deleted by another writer: what we wrote is all we know.
        return Stat(size=size, mtime=time.time(), etag=etag)

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        s3key = self._key(key)
        while True:
            # DeleteObject answers 204 for a missing key, and the protocol wants
            # FileNotFoundError, so look first; the delete itself is conditional on what
            # we saw (where the store honours If-Match on DELETE; see docs/storage.md).
            current = self.stat(key)
            if if_match is not None and current.etag != if_match:
                raise StaleWriteError(key)
            try:
                self.client.delete_object(Bucket=self.bucket, Key=s3key, IfMatch=current.etag)
            except botocore.exceptions.ClientError as exc:
                if _is_not_found(exc):
                    raise FileNotFoundError(key) from None
                if not _is_precondition(exc):
                    raise
                if if_match is not None:
                    raise StaleWriteError(key) from None
                continue  # replaced between our look and the delete: look again
            return

    # Listing

    def list(self, prefix: str) -> Iterator[str]:
        validate_prefix(prefix)
        keys = (
            self._flat(self._root + prefix)
            if self.listing == "flat"
            else self._walk(self._root + prefix)
        )
        cut = len(self._root)
        for s3key in keys:
            key = s3key[cut:]
            try:
                validate_key(key)
            except InvalidKeyError:
                continue  # an object someone else put in the bucket, e.g. a "folder/" marker
            yield key

    def _pages(self, **params: str) -> Iterator[dict[str, Any]]:
        paginator = self.client.get_paginator("list_objects_v2")
        yield from paginator.paginate(
            Bucket=self.bucket, PaginationConfig={"PageSize": self.page_size}, **params
        )

    def _flat(self, prefix: str) -> Iterator[str]:
        last = ""
        for page in self._pages(Prefix=prefix):
            for item in page.get("Contents", []):
                key = str(item["Key"])
                if key < last:
                    raise ListingOrderError(
                        f"the store listed {key!r} after {last!r}, out of string order; "
                        "use listing=walk in the storage URL"
                    )
                last = key
                yield key

    def _walk(self, prefix: str) -> Iterator[str]:
        # One level at a time: its keys and sub-prefixes ("a/"), sorted together, give
        # plain string order whatever order the store lists in, holding one level only.
        entries: list[str] = []
        for page in self._pages(Prefix=prefix, Delimiter="/"):
            entries.extend(str(item["Key"]) for item in page.get("Contents", []))
            entries.extend(str(item["Prefix"]) for item in page.get("CommonPrefixes", []))
        for entry in sorted(set(entries)):
            if not entry.endswith("/"):
                yield entry
            elif entry != prefix:  # a "folder/" marker object would otherwise loop
                yield from self._walk(entry)
