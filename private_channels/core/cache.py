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

What :meth:`DocumentCache.get_or_make` and :meth:`DocumentCache.snapshot` make is made
once: the threads that ask for the same key and ETag while it is being made wait for
it, and are handed what it made (eight clients asking at once for the index of 10,000
packages that no request read yet parse it once, not eight times, in a fraction of the
memory: docs/performance.md, twenty-third and twenty-fourth rounds).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

__all__ = ["DocumentCache"]

T = TypeVar("T")


class _Flight:
    """One value being made: its maker's thread, then what it made (or that it failed)."""

    __slots__ = ("done", "failed", "maker", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.maker = threading.get_ident()
        self.failed = False
        self.value: Any = None


class DocumentCache:
    """A thread-safe LRU of values, each tagged with the storage ETag it belongs to."""

    def __init__(self, limit: int, *, max_entry: int | None = None) -> None:
        self._limit = limit
        self._max_entry = limit // 4 if max_entry is None else max_entry
        self._weight = 0
        self._entries: OrderedDict[Hashable, tuple[str, Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        # The values being made, by key and ETag; each leaves when made (or failed), so
        # that keys a client chose cannot pile up here.
        self._flights: dict[tuple[Hashable, str], _Flight] = {}

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
        """The cached value, or ``make()``'s (value, weight), kept for next time; made
        once while threads ask for it at the same time (see :meth:`snapshot`)."""

        def made() -> tuple[T, int, str | None]:
            value, weight = make()
            return value, weight, storage_etag

        return self.snapshot(key, storage_etag, made)[0]

    def snapshot(
        self, key: Hashable, storage_etag: str, read: Callable[[], tuple[T, int, str | None]]
    ) -> tuple[T, str]:
        """The value kept for ``key`` at ``storage_etag``, or ``read()``'s (value, weight,
        ETag), with the ETag it is valid for.

        ``read`` says which version it read: a document read after the stat that found
        ``storage_etag`` may be a newer one, and what it gives is kept under the ETag of
        that version (``None``: kept under none, a document gone meanwhile).  It runs in
        one thread at a time for a key and ETag: the others that ask meanwhile wait and
        are handed its value and ETag.  If it raises, its caller gets the error and the
        threads that waited for it call their own ``read``, one at a time.  A ``read`` may
        ask for other keys (a compressed index made from the plain one), not for its own
        in another thread.
        """
        flight_key = (key, storage_etag)
        while True:
            with self._lock:
                cached = self._entries.get(key)
                if cached is not None and cached[0] == storage_etag:
                    self._entries.move_to_end(key)
                    return cached[1], storage_etag
                flight = self._flights.get(flight_key)
                if flight is None:
                    flight = self._flights[flight_key] = _Flight()
                    break
            if flight.maker == threading.get_ident():
                # Its own read asks for it again: made here, as it would be without flights.
                value, weight, etag = read()
                if etag is not None:
                    self.put(key, etag, value, weight)
                return value, storage_etag if etag is None else etag
            flight.done.wait()
            if not flight.failed:
                return flight.value  # type: ignore[no-any-return]
            # Its maker failed (and told its caller why): this thread tries in turn.
        try:
            value, weight, etag = read()
            if etag is not None:
                self.put(key, etag, value, weight)
            flight.value = (value, storage_etag if etag is None else etag)
        except BaseException:
            flight.failed = True
            raise
        finally:
            with self._lock:
                del self._flights[flight_key]
            flight.done.set()
        return flight.value  # type: ignore[no-any-return]
