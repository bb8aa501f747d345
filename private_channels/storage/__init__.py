"""Storage backends and the URL syntax that picks one.

::

    from private_channels.storage import open_storage

    storage = open_storage("./private-channels-data")   # or file://..., memory://, s3://...
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from .base import (
    CleansIncompleteWrites,
    InvalidKeyError,
    JSONRead,
    PresignsURLs,
    StaleWriteError,
    Stat,
    Storage,
    dump_json,
    read_bytes,
    read_json,
    sweep,
    update_json,
    validate_key,
)
from .filesystem import FileSystemStorage
from .memory import MemoryStorage

__all__ = [
    "DEFAULT_STORAGE",
    "CleansIncompleteWrites",
    "FileSystemStorage",
    "InvalidKeyError",
    "JSONRead",
    "MemoryStorage",
    "PresignsURLs",
    "StaleWriteError",
    "Stat",
    "Storage",
    "StorageURLError",
    "dump_json",
    "open_storage",
    "read_bytes",
    "read_json",
    "sweep",
    "update_json",
    "validate_key",
]

DEFAULT_STORAGE = "./private-channels-data"


class StorageURLError(ValueError):
    """A storage URL that names no backend this installation can open."""


def open_storage(url: str | None = None) -> Storage:
    """Open the backend a storage URL names: a path, ``file://``, ``memory://`` or ``s3://``."""
    url = url or os.environ.get("PRIVATE_CHANNELS_STORAGE") or DEFAULT_STORAGE
    scheme = urlsplit(url).scheme
    if scheme in ("", "file") or len(scheme) == 1:  # one letter: a Windows drive
        path = url[len("file://") :] if scheme == "file" else url
        if not path:
            raise StorageURLError(f"storage URL {url!r} names no directory")
        return FileSystemStorage(path)
    if scheme == "memory":
        return MemoryStorage()
    if scheme == "s3":
        try:
            from .s3 import S3Storage  # type: ignore[import-not-found,unused-ignore]
        except ImportError as exc:
            raise StorageURLError(
                "the s3:// storage needs boto3: pip install 'private-channels[s3]'"
            ) from exc
        storage: Storage = S3Storage.from_url(url)
        return storage
    raise StorageURLError(
        f"storage URL {url!r} has an unknown scheme {scheme!r}; "
        "use a path, file://, memory:// or s3://"
    )
