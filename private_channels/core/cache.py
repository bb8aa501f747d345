"""One cache for what a process derives from storage documents: pages, indexes, snapshots.

::

    cache = DocumentCache(64 * MiB)
    body = cache.get(("team", "index", "json"), storage_etag)
    if body is None:
        body = render(...)
        cache.put(("team", "index", "json"), storage_etag, body, weight=len(body))

Every entry is valid for one storage ETag of the document it was derived from; the
caller stats that document (one cheap request) and asks for the entry under the ETag
it found, so an upload or a yank through any process is seen on the next request.
Entries go least recently used first once their weights (about the bytes they hold)
pass the limit, and no single entry may take more than a quarter of it (or
``max_entry``), so one huge page cannot flush everything else.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

__all__ = ["DocumentCache"]

T = TypeVar("T")


class DocumentCache:
    """A thread-safe LRU of values, each tagged with the storage ETag it belongs to."""

    def __init__(self, limit: int, *, max_entry: int | None = None) -> None:
        self._limit = limit
        self._max_entry = limit // 4 if max_entry is None else max_entry
        self._weight = 0
        self._entries: OrderedDict[Hashable, tuple[str, Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, storage_etag: str) -> Any:
        """The value kept for ``key`` if it was derived from that very ETag, else ``None``."""
        with self._lock:
            cached = self._entries.get(key)
            if cached is None or cached[0] != storage_etag:
                return None
            self._entries.move_to_end(key)
            return cached[1]

    def latest(self, key: Hashable) -> Any:
        """The value kept for ``key``, for whatever ETag, or ``None``: for a caller that
        can tell what changed since (it is not moved up as :meth:`get` moves it)."""
        cached = self._entries.get(key)
        return None if cached is None else cached[1]

    def holds(self, key: Hashable) -> bool:
        """Whether some value is kept for ``key``, for whatever ETag (a caller may then
        skip the stat that would find the ETag to ask for)."""
        return key in self._entries

    def put(self, key: Hashable, storage_etag: str, value: Any, weight: int) -> None:
        if weight > self._max_entry:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._weight -= old[2]
            self._entries[key] = (storage_etag, value, weight)
            self._weight += weight
            while self._weight > self._limit:
                _, (_, _, dropped) = self._entries.popitem(last=False)
                self._weight -= dropped

    def get_or_make(self, key: Hashable, storage_etag: str, make: Callable[[], tuple[T, int]]) -> T:
        """The cached value, or ``make()``'s (value, weight), kept for next time."""
        value: T | None = self.get(key, storage_etag)
        if value is None:
            value, weight = make()
            self.put(key, storage_etag, value, weight)
        return value
