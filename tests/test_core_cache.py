"""The one cache of derived documents: valid per storage ETag, bounded by weight."""

from __future__ import annotations

import threading

from private_channels.core.cache import DocumentCache


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
