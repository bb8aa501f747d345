"""The one cache of derived documents: valid per storage ETag, bounded by weight."""

from __future__ import annotations

import threading
import time

from private_channels.core.cache import DocumentCache

from .support import at_once


def test_an_entry_is_valid_for_its_etag_only() -> None:
    cache = DocumentCache(1000)
    cache.put(("team", "index"), "etag-1", b"page", 4)
    assert cache.get(("team", "index"), "etag-1") == b"page"
    assert cache.get(("team", "index"), "etag-2") is None
    assert cache.get(("other", "index"), "etag-1") is None


def test_least_recently_used_go_first_past_the_limit() -> None:
    cache = DocumentCache(100)
    for name in "abcd":
        cache.put(name, "e", name, 25)
    cache.get("a", "e")  # used: b is now the oldest
    cache.put("e", "e", "e", 25)
    assert [cache.get(k, "e") for k in "abcde"] == ["a", None, "c", "d", "e"]


def test_one_huge_entry_does_not_flush_the_rest() -> None:
    cache = DocumentCache(100)
    cache.put("small", "e", 1, 10)
    cache.put("huge", "e", 2, 26)  # over a quarter of the limit: not kept
    assert cache.get("huge", "e") is None and cache.get("small", "e") == 1


def test_get_or_make_makes_once_per_etag() -> None:
    cache = DocumentCache(1000)
    made: list[str] = []

    def make(etag: str):  # type: ignore[no-untyped-def]
        def inner():  # type: ignore[no-untyped-def]
            made.append(etag)
            return f"rendered {etag}", 10

        return inner

    assert cache.get_or_make("k", "1", make("1")) == "rendered 1"
    assert cache.get_or_make("k", "1", make("1")) == "rendered 1"
    assert cache.get_or_make("k", "2", make("2")) == "rendered 2"
    assert made == ["1", "2"]


def test_threads_share_it_safely() -> None:
    cache = DocumentCache(10_000)

    def work(n: int) -> None:
        for i in range(500):
            cache.put((n, i % 50), "e", i, 8)
            cache.get((n, i % 50), "e")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache._weight == sum(w for _, _, w in cache._entries.values()) <= 10_000


def test_holds_tells_a_key_kept_for_any_etag() -> None:
    cache = DocumentCache(100)
    assert not cache.holds("a")
    cache.put("a", "etag-1", b"x", 10)
    assert cache.holds("a") and cache.get("a", "etag-2") is None
    for name in "bcde":  # past the limit: "a", the least recently used, goes
        cache.put(name, "etag-1", b"y", 25)
    assert not cache.holds("a") and cache.holds("b") and cache.holds("e")


def test_a_value_asked_for_at_once_is_made_once_and_handed_to_all() -> None:
    cache, made = DocumentCache(1000), []

    def make():  # type: ignore[no-untyped-def]
        made.append(1)
        time.sleep(0.2)  # long enough for every other thread to ask meanwhile
        return object(), 10

    results = at_once(lambda: cache.get_or_make("k", "1", make), count=8)
    assert len(made) == 1
    assert len({id(value) for value in results}) == 1  # the very value it made, to each
    assert cache.get("k", "1") is results[0]
    assert not cache._flights  # nothing left behind: a key a client chose cannot pile up


def test_other_keys_and_etags_are_not_held_up_by_a_flight() -> None:
    cache, release = DocumentCache(1000), threading.Event()

    def slow():  # type: ignore[no-untyped-def]
        release.wait(10)
        return "slow", 1

    waiting = threading.Thread(target=cache.get_or_make, args=("k", "1", slow))
    waiting.start()
    try:
        assert cache.get_or_make("k", "2", lambda: ("newer", 1)) == "newer"
        assert cache.get_or_make("other", "1", lambda: ("other", 1)) == "other"
    finally:
        release.set()
        waiting.join(10)


def test_when_its_maker_fails_the_waiting_threads_make_it_in_turn() -> None:
    cache, made = DocumentCache(1000), []

    def make():  # type: ignore[no-untyped-def]
        made.append(1)
        time.sleep(0.1)
        if len(made) == 1:
            raise OSError("storage unreachable")
        return "page", 4

    def ask():  # type: ignore[no-untyped-def]
        try:
            return cache.get_or_make("k", "1", make)
        except OSError as error:  # what it raised is its result
            return error

    results = at_once(ask)
    failures = [r for r in results if isinstance(r, OSError)]
    assert len(failures) == 1 and results.count("page") == 5
    assert len(made) == 2  # the failed one, then one of those that waited for it
    assert not cache._flights


def test_a_snapshot_is_kept_under_the_version_its_read_found() -> None:
    cache = DocumentCache(1000)
    # The stat found "1"; the read, after an upload meanwhile, read "2".
    assert cache.snapshot("k", "1", lambda: ("v2", 2, "2")) == ("v2", "2")
    assert cache.get("k", "1") is None and cache.get("k", "2") == "v2"
    # A document gone meanwhile: what the read made is handed back, and kept under none.
    assert cache.snapshot("g", "1", lambda: ("gone", 0, None)) == ("gone", "1")
    assert not cache.holds("g")


def test_a_make_that_asks_for_its_own_key_does_not_wait_for_itself() -> None:
    cache = DocumentCache(1000)

    def make():  # type: ignore[no-untyped-def]
        inner = cache.get_or_make("k", "1", lambda: ("inner", 1))
        return f"outer of {inner}", 1

    done: list[str] = []
    thread = threading.Thread(target=lambda: done.append(cache.get_or_make("k", "1", make)))
    thread.start()
    thread.join(5)
    assert done == ["outer of inner"]
