"""Answers kept whole: a read given again from memory while nothing that decided it has
changed.

::

    # None on a storage that cannot tell its writes
    answers = Answers.of(storage, ttl=5.0, tokens=token_store)
    app = ReadPath(app, read, answers=answers)

    # In a read side, once every check is made, for an answer decided by the request's
    # method, path, query and credentials, the storage's content and the named fields:
    return offer(environ, DocumentResponse(...), vary=("HTTP_ACCEPT",), size=len(body))

Most of what a package server answers is the same file or index page asked again, by
the same client with the same token.  Each such read walks the token check, the
channel's record, the committed-file check, a ``stat`` and a cache: some fifty Python
functions, and on a busy small machine every one of them starts with the CPU's caches
cold (docs/performance.md).  A kept answer is found with one lookup and given with one
call, after the checks that make it the answer the whole walk would give (the fields it
varies on, below, and these three):

- **the storage has not been written since** the kept answer was decided: a storage
  that can tell (:class:`~..storage.TellsWrites`: the file system's word shared by every
  process of the host, the memory storage's count) gives a value read *before* the
  walk, which any write after it changes.  An upload, a yank, a deletion, a new or
  revoked token, a changed channel: each is a write, seen by the next request of every
  process, as the walk itself would see it;
- **it is younger than** :data:`KEPT_FOR` seconds (a minute), so that a change made
  behind the storage's back (a file edited by hand), which no word tells, is seen
  within that (or it is *renewed* for as long again, below); and, for an answer to a
  token whose record was read *before* a write
  the word tells of (a token the cache trusts for a while by time alone, however it
  was changed since: revoked, perhaps, by another process), no longer than the token
  cache trusts that read (:meth:`~..tokens.TokenStore.trust`, at most ``ttl``, the
  token cache's: how long a process may trust what it read of a token).  A token read
  since the last write is as the storage holds it: revoking it is a write, which ends
  the answer;
- **its token has not expired**: checked against the clock on every use, as the token
  layer checks it on every request.

An answer past its minute is renewed, not walked again, when the read side that offered
it named every stored document it was decided by (``offer(..., renew=True)``): the
walk's layers tell each document they checked, with the storage ETag they found, by
:func:`depends` (the channel's record, a project's document), and the renewal checks
each of them again with one ``stat``.  A document edited by hand is then seen within
the minute, as before, for the price of the ``stat`` calls instead of the walk; the token
is vouched for by the token cache (:meth:`~..tokens.TokenStore.vouches`: a read of its
record made since the last write, still trusted, and the same token), or the walk
reads it again.  A server asked for more pages than a minute brings back (10,000
projects, each asked for now and then) then answers a page it has kept for what one
asked every second costs, less a few ``stat`` calls (docs/performance.md, seventeenth
round).

It is kept under a keyed digest of the request's method, ``SCRIPT_NAME``,
``PATH_INFO``, query, credential headers (``Authorization``, ``X-Auth``; a token in the
path is in ``PATH_INFO``) and ``Accept`` (so that the HTML and the JSON of one page are
kept side by side), each told apart from its neighbours by its length, so
that only the same request with the same credentials finds it and no secret is kept
in memory past its request; and with the values its read side named in ``vary`` (a
download's conditional headers, all absent; a page's ``Accept``), which a request must
have too.  What the walk leaves in the environ for the layers outside (the identity,
``REMOTE_USER``, the token cut out of the path and the credential headers taken out)
is left there again.

Only an answer a read side offers is kept, and it offers only answers that its checks
decided from those alone: a small file's bytes and its headers, a rendered page (whose
``304`` the kept :class:`~.document.DocumentResponse` decides itself for each request's
``If-None-Match``).  Never a refusal, a redirect, a streamed file, a proxied page (its
upstream's freshness is a matter of time, not of the storage) or anything under a
session cookie (:class:`~..app.ReadPath` sends those the whole way).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from ..auth import IDENTITY_KEY, TOKEN_SOURCE_KEY, cut_path_token
from ..storage import TellsWrites

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from ..storage import Stat, Storage
    from ..tokens import Token, TokenStore

__all__ = [
    "ANSWERS_KEY",
    "KEPT_FOR",
    "MAX_ANSWERS",
    "MAX_BYTES",
    "PRECONDITIONS",
    "SOURCES_KEY",
    "Answers",
    "depends",
    "offer",
]

#: Where a read side finds the list its offers go to (absent: nothing is kept).
ANSWERS_KEY = "private_channels.answers"
#: Where the walk's layers name the stored documents an answer was decided by.
SOURCES_KEY = "private_channels.sources"
#: At most this many answers are kept (each format of each page of 10,000 projects),
#: and at most :data:`MAX_BYTES` of their bodies; past either, the older half of them
#: go at once.
MAX_ANSWERS = 32_768
MAX_BYTES = 64 * 1024 * 1024
#: Seconds an answer is kept at most while nothing is written before its documents are
#: checked again: how long a change made behind the storage's back may go unseen.
KEPT_FOR = 60.0

#: The request fields after which a server may answer 304, 206, 412 or 416 instead:
#: what an answer kept for a request with none of them must find absent.
PRECONDITIONS = (
    "HTTP_RANGE",
    "HTTP_IF_RANGE",
    "HTTP_IF_NONE_MATCH",
    "HTTP_IF_MATCH",
    "HTTP_IF_MODIFIED_SINCE",
    "HTTP_IF_UNMODIFIED_SINCE",
)

R = TypeVar("R", bound="WSGIApplication")

# An answer kept: the storage's word it was decided under, until when (monotonic), its
# token's expiry (time.time(), as Token.expired reads it; None: none), the fields it
# varies on and their values, the response, the identity to leave in the environ (the
# token and where it came from; None for an anonymous read), about its bytes, and the
# documents it was decided by with their ETags (None: it is not renewed).
_Entry = tuple[
    int,
    float,
    "float | None",
    tuple[str, ...],
    tuple[Any, ...],
    "WSGIApplication",
    "Token | None",
    str,
    int,
    "tuple[tuple[str, str], ...] | None",
]
#: How a token is trusted: TokenStore.trust.
Trust = Callable[["Token"], tuple["int | None", float]]
#: Whether the token cache vouches for a token under a write word: TokenStore.vouches.
Vouches = Callable[["Token", int], bool]


def offer(
    environ: WSGIEnvironment,
    response: R,
    *,
    vary: tuple[str, ...] = (),
    size: int = 0,
    renew: bool = False,
) -> R:
    """Offer ``response``, the answer to this request, to be kept; return it.

    Only for an answer decided by the request's method, path, query and credentials,
    the storage's content and the request fields named in ``vary`` (their absence
    counts as a value), that answers every request like it the same way, any number
    of times at once: a :class:`~.document.DocumentResponse`, a small file in memory.
    ``size`` is about the bytes it holds.  ``renew``: besides the token, the answer was
    decided by the stored documents named with :func:`depends` in this walk alone, so
    that it may be renewed past :data:`KEPT_FOR` while each has the ETag named.
    """
    offers: list[tuple[Any, ...]] | None = environ.get(ANSWERS_KEY)
    if offers is not None:
        offers.append((response, vary, tuple(map(environ.get, vary)), size, renew))
    return response


def depends(environ: WSGIEnvironment, key: str, etag: str) -> None:
    """Name a stored document that decides this request's answer, with the storage ETag
    the walk found it at (see :func:`offer`'s ``renew``)."""
    sources: list[tuple[str, str]] | None = environ.get(SOURCES_KEY)
    if sources is not None:
        sources.append((key, etag))


class Answers:
    """The answers kept for one storage (see the module)."""

    __slots__ = (
        "_bytes", "_entries", "_kept_for", "_secret", "_stat", "_trust", "_ttl", "_vouches",
        "_written",
    )  # fmt: skip

    def __init__(
        self,
        written: Callable[[], int],
        *,
        ttl: float,
        trust: Trust,
        vouches: Vouches,
        stat: Callable[[str], Stat],
    ) -> None:
        self._written = written
        self._ttl = ttl
        self._kept_for = max(KEPT_FOR, ttl)
        self._trust = trust
        self._vouches = vouches
        self._stat = stat
        self._secret = os.urandom(32)
        self._entries: dict[bytes, _Entry] = {}
        self._bytes = 0

    @classmethod
    def of(cls, storage: Storage, *, ttl: float, tokens: TokenStore) -> Answers | None:
        """Answers for ``storage`` (whose tokens ``tokens`` verifies), or ``None`` where
        they could not be kept soundly (a storage that cannot tell its writes, such as
        S3 or a network file system) or are not wanted (``ttl`` 0: tokens are checked
        on every request)."""
        if ttl <= 0 or not isinstance(storage, TellsWrites):
            return None
        written = storage.writes()
        if written is None:
            return None
        return cls(written, ttl=ttl, trust=tokens.trust, vouches=tokens.vouches, stat=storage.stat)

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries = {}
        self._bytes = 0

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse, read: WSGIApplication
    ) -> Iterable[bytes]:
        """The kept answer to the request, else ``read``'s (kept if it offers it)."""
        get = environ.get
        method = get("REQUEST_METHOD") or ""
        script = get("SCRIPT_NAME") or ""
        path = get("PATH_INFO") or ""
        query = get("QUERY_STRING") or ""
        authorization = get("HTTP_AUTHORIZATION")
        x_auth = get("HTTP_X_AUTH")
        accept = get("HTTP_ACCEPT")  # pages are negotiated: each kind kept beside the other
        # Each field after its length (an absent header as "-"): no two requests that
        # differ in any of them spell the same text.
        spelled = (
            f"{len(method)}:{method}{len(script)}:{script}{len(path)}:{path}"
            f"{len(query)}:{query}"
            f"{'-' if authorization is None else f'{len(authorization)}:{authorization}'}"
            f"{'-' if x_auth is None else f'{len(x_auth)}:{x_auth}'}"
            f"{'-' if accept is None else f'{len(accept)}:{accept}'}"
        )
        key = hashlib.blake2b(
            spelled.encode("utf-8", "surrogatepass"), digest_size=16, key=self._secret
        ).digest()
        word = self._written()
        entry = self._entries.get(key)
        if entry is not None:
            kept_word, until, expires, names, values, response, token, source, _, _ = entry
            if (
                kept_word == word
                and (expires is None or time.time() < expires)
                and tuple(map(get, names)) == values
                and (time.monotonic() < until or self._renewed(key, entry, word))
            ):
                # What the token layer leaves in the environ (auth.TokenAuthMiddleware).
                if token is None:
                    environ[IDENTITY_KEY] = None
                else:
                    if source == "path":
                        cut_path_token(environ)
                    if authorization is not None:
                        del environ["HTTP_AUTHORIZATION"]
                    if x_auth is not None:
                        del environ["HTTP_X_AUTH"]
                    environ[IDENTITY_KEY] = token
                    environ[TOKEN_SOURCE_KEY] = source
                    environ["REMOTE_USER"] = token.id
                return response(environ, start_response)
        started = time.monotonic()
        offers: list[tuple[Any, ...]] = []
        environ[ANSWERS_KEY] = offers
        environ[SOURCES_KEY] = []
        body = read(environ, start_response)
        if len(offers) == 1:
            self._keep(key, word, started, offers[0], environ)
        return body

    def _renewed(self, key: bytes, entry: _Entry, word: int) -> bool:
        """Whether an answer past its time, kept under ``word`` (still the storage's),
        is renewed: it names the documents it was decided by, each has the ETag it had,
        and the token cache vouches for its token under ``word`` (read since the last
        write, trusted still, and the same token)."""
        sources, token = entry[9], entry[6]
        if sources is None or (token is not None and not self._vouches(token, word)):
            return False
        try:
            if any(self._stat(source).etag != etag for source, etag in sources):
                return False
        except OSError:  # gone, or not readable: the walk says what
            return False
        self._entries[key] = (entry[0], time.monotonic() + self._kept_for, *entry[2:])
        return True

    def _keep(
        self,
        key: bytes,
        word: int,
        started: float,
        offered: tuple[Any, ...],
        environ: WSGIEnvironment,
    ) -> None:
        response, names, values, size, renew = offered
        token: Token | None = environ.get(IDENTITY_KEY)
        if token is None:  # an anonymous read: decided by the storage alone
            until = started + self._kept_for
        else:
            read_under, trusted_until = self._trust(token)
            if read_under == word:  # its record read since the last write
                until = started + self._kept_for
            else:  # no longer than the cache trusts it (not at all: not known)
                until = min(started + self._ttl, trusted_until)
                if until <= started:
                    return
        if len(self._entries) >= MAX_ANSWERS or self._bytes + size > MAX_BYTES:
            self._halve()
        self._entries[key] = (
            word,
            until,
            None if token is None else token.expires,
            names,
            values,
            response,
            token,
            environ.get(TOKEN_SOURCE_KEY, ""),
            size,
            tuple(environ[SOURCES_KEY]) if renew else None,
        )
        self._bytes += size

    def _halve(self) -> None:
        """Let the older half of the answers go (a dict keeps them in the order kept)."""
        entries = self._entries
        try:
            newer = dict(itertools.islice(entries.items(), len(entries) // 2, None))
        except RuntimeError:  # changed by another thread meanwhile: let all go
            newer = {}
        # Counted before other threads can add to it.
        self._bytes = sum(entry[8] for entry in newer.values())
        self._entries = newer
