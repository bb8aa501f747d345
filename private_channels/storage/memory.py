"""A process-local backend for tests and throwaway servers.

::

    storage = MemoryStorage()

Two servers share nothing through it, so it suits one process only.
"""

from __future__ import annotations

import functools
import io
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import IO

from .base import CHUNK_SIZE, StaleWriteError, Stat, validate_key, validate_prefix

__all__ = ["MemoryStorage"]


class MemoryStorage:
    def __init__(self) -> None:
        self._blobs: dict[str, tuple[bytes, Stat]] = {}
        self._lock = threading.Lock()
        self._count = [0]  # of writes done (TellsWrites)

    def __repr__(self) -> str:
        return f"MemoryStorage(<{len(self._blobs)} keys>)"

    def writes(self) -> Callable[[], int]:  # TellsWrites
        """The count of writes done, read by a call into C alone."""
        return functools.partial(self._count.__getitem__, 0)

    def _get(self, key: str) -> tuple[bytes, Stat]:
        try:
            return self._blobs[validate_key(key)]
        except KeyError:
            raise FileNotFoundError(key) from None

    def open(self, key: str) -> tuple[IO[bytes], Stat]:
        data, stat = self._get(key)
        return io.BytesIO(data), stat

    def stat(self, key: str) -> Stat:
        return self._get(key)[1]

    @staticmethod
    def _read(data: IO[bytes]) -> tuple[bytes, Stat]:
        buffer = bytearray()
        while chunk := data.read(CHUNK_SIZE):
            buffer += chunk
        return bytes(buffer), Stat(size=len(buffer), mtime=time.time(), etag=uuid.uuid4().hex)

    def put(self, key: str, data: IO[bytes], *, if_match: str | None = None) -> Stat:
        validate_key(key)
        blob = self._read(data)
        with self._lock:
            if if_match is not None:
                current = self._blobs.get(key)
                if current is None or current[1].etag != if_match:
                    raise StaleWriteError(key)
            self._blobs[key] = blob
            self._count[0] += 1
        return blob[1]

    def create(self, key: str, data: IO[bytes]) -> Stat:
        validate_key(key)
        blob = self._read(data)
        with self._lock:
            if key in self._blobs:
                raise FileExistsError(key)
            self._blobs[key] = blob
            self._count[0] += 1
        return blob[1]

    def append(self, key: str, data: bytes, *, if_match: str) -> Stat:  # Appends
        validate_key(key)
        with self._lock:
            current = self._blobs.get(key)
            if current is None:
                raise FileNotFoundError(key)
            if current[1].etag != if_match:
                raise StaleWriteError(key)
            blob = self._read(io.BytesIO(current[0] + data))
            self._blobs[key] = blob
            self._count[0] += 1
        return blob[1]

    def list(self, prefix: str) -> Iterator[str]:
        validate_prefix(prefix)
        with self._lock:
            keys = sorted(k for k in self._blobs if k.startswith(prefix))
        yield from keys

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        validate_key(key)
        with self._lock:
            current = self._blobs.get(key)
            if current is None:
                raise FileNotFoundError(key)
            if if_match is not None and current[1].etag != if_match:
                raise StaleWriteError(key)
            del self._blobs[key]
            self._count[0] += 1
