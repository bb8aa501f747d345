"""Storage backends and the URL syntax that picks one.

::

    from private_channels.storage import open_storage

    storage = open_storage("./private-channels-data")   # or file://..., memory://, s3://...
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from .base import (
    RS,
    Appends,
    CleansIncompleteWrites,
    CorruptDocumentError,
    InvalidKeyError,
    JSONRead,
    PresignsURLs,
    StaleWriteError,
    Stat,
    Storage,
    TellsWrites,
    appended_sets,
    apply_sets,
    copy_storage,
    dump_json,
    read_bytes,
    read_document,
    read_json,
    sweep,
    update_json,
    validate_key,
)
from .filesystem import FileSystemStorage
from .memory import MemoryStorage

__all__ = [
    "DEFAULT_STORAGE",
    "RS",
    "Appends",
    "CleansIncompleteWrites",
    "CorruptDocumentError",
    "FileSystemStorage",
    "InvalidKeyError",
    "JSONRead",
    "MemoryStorage",
    "PresignsURLs",
    "StaleWriteError",
    "Stat",
    "Storage",
    "StorageURLError",
    "TellsWrites",
    "appended_sets",
    "apply_sets",
    "copy_storage",
    "dump_json",
    "open_storage",
    "read_bytes",
    "read_document",
    "read_json",
    "sweep",
    "update_json",
    "validate_key",
]

DEFAULT_STORAGE = "./private-channels-data"


class StorageURLError(ValueError):
    """A storage URL that names no backend this installation can open."""


def open_storage(url: str | None = None, *, create: bool = True) -> Storage:
    """Open the backend a storage URL names: a path, ``file://``, ``memory://`` or ``s3://``.

    With ``create=False``, a directory that does not exist is a :class:`FileNotFoundError`
    rather than a new, empty storage (a bucket must always exist already).
    """
    url = url or os.environ.get("PRIVATE_CHANNELS_STORAGE") or DEFAULT_STORAGE
    scheme = urlsplit(url).scheme
    if scheme in ("", "file") or len(scheme) == 1:  # one letter: a Windows drive
        path = url[len("file://") :] if scheme == "file" else url
        if not path:
            raise StorageURLError(f"storage URL {url!r} names no directory")
        return FileSystemStorage(path, create=create)
    if scheme == "memory":
        return MemoryStorage()
    if scheme == "s3":
        try:
            from .s3 import S3Storage  # type: ignore[import-not-found,unused-ignore]
        except ImportError as exc:
            raise StorageURLError(
                "the s3:// storage needs boto3 1.36 or later (the s3 extra): "
                "pip install 'boto3>=1.36'"
            ) from exc
        storage: Storage = S3Storage.from_url(url)
        return storage
    raise StorageURLError(
        f"storage URL {url!r} has an unknown scheme {scheme!r}; "
        "use a path, file://, memory:// or s3://"
    )
