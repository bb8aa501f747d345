"""Tokens: the secrets that pip, uv, twine, curl and R send, and what they grant.

::

    store = TokenStore(storage)
    secret, token = store.create(channels=["data-team"], scope=Scope.WRITE, expires_in=3600)
    store.verify(secret)        # -> Token(id=..., channels=frozenset({'data-team'}), ...)
    store.revoke(token.id)

Only a keyed hash of a token is stored: ``registry/tokens/<hmac-sha256>.json`` holds its
record, so a lookup is one read by hash, constant-time with respect to the secret.
``registry/token-ids/<id>.json`` maps the public id back to that hash for listing and
revocation.  The HMAC key lives in the storage too (``registry/token-key``), created once
by whichever process needs it first, so every process on the storage agrees on it.

Hosts that mint their own tokens use :func:`mint_signed_token` with their secret key
(itsdangerous); such tokens carry their grants and are revoked by id through the same
store (``registry/revoked/<id>``).

Verification results are cached in-process for ``cache_ttl`` seconds (default 5,
``make_app(..., token_cache_ttl=...)``), keyed by the token's hash, never by the
secret.  That bounds revocation across processes: once ``token revoke`` (or
:meth:`TokenStore.revoke` in any process on the same storage) has returned, every
process refuses the token at most ``cache_ttl`` seconds later; the process that
revoked refuses it at once.  The same bound applies the other way round: a token
tried *before* it existed may stay refused for up to ``cache_ttl`` seconds.  Expiry
is checked on every request, cache or not.  ``cache_ttl=0`` disables the cache.

A token works on a channel it names only if it was made after that channel was
created (:meth:`Token.covers`), so a token for a deleted channel never opens a new
channel of the same name; a token for ``*`` covers every channel.  A verification that
reads a stored token's record also notes its last use there, at most once per
``last_use_resolution`` seconds (an hour by default), for ``token list`` and the pages.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import hmac
import io
import re
import secrets
import string
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

from .errors import quoted
from .storage import (
    CorruptDocumentError,
    StaleWriteError,
    Storage,
    TellsWrites,
    dump_json,
    read_bytes,
    read_document,
    update_json,
)

__all__ = [
    "ALL_CHANNELS",
    "TOKEN_ID",
    "TOKEN_KEY",
    "Scope",
    "Token",
    "TokenStore",
    "check_lifetime",
    "check_note",
    "mint_signed_token",
    "parse_duration",
    "stored_key",
]

ALL_CHANNELS = "*"
_HEX_TOKEN = re.compile(r"[0-9a-f]{48}\Z")
_DIGEST = re.compile(r"[0-9a-f]{64}\Z")
TOKEN_ID = re.compile(r"[0-9a-f]{12}\Z")
_SIGNED_SALT = "private-channels.token"
TOKEN_KEY = "registry/token-key"  # noqa: S105 (a storage key, not a secret)
# Far longer than any token we mint or sign; a bound so that junk is not hashed or decoded.
_MAX_SECRET_LENGTH = 4096
_MAX_NOTE_LENGTH = 200
# Ten years: enough for any sensible expiry, small enough for every date library.
_MAX_LIFETIME = 10 * 366 * 86400


class Scope(enum.IntEnum):
    """What a token may do; each scope implies the ones below it."""

    READ = 1
    WRITE = 2
    ADMIN = 3

    @classmethod
    def parse(cls, text: str) -> Scope:
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f"scope {text!r} is not one of read, write, admin") from None

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Token:
    """A token's grants; never its secret."""

    id: str
    channels: frozenset[str]
    scope: Scope
    created: float = 0.0
    expires: float | None = None
    note: str = ""
    revoked: bool = False
    signed: bool = False
    # When it was last used, to within TokenStore.last_use_resolution; not part of
    # what a token is, so two reads of one token compare equal across a use.
    last_used: float | None = field(default=None, compare=False)

    def expired(self, now: float | None = None) -> bool:
        if self.expires is None:
            return False
        return (time.time() if now is None else now) >= self.expires

    def covers(self, channel: str, *, created: float = 0.0) -> bool:
        """Whether the token grants anything on the channel ``channel``, created at
        ``created`` (seconds since the epoch; 0 when unknown).

        A token for ``*`` covers every channel, those created after it too; a token
        that names a channel covers only a channel of that name created before the
        token was (SPEC.md: a token made before a channel was created never works on
        it, even if an older channel had the same name).
        """
        if ALL_CHANNELS in self.channels:
            return True
        return channel in self.channels and self.created >= created

    def allows(self, channel: str, scope: Scope, *, created: float = 0.0) -> bool:
        return self.covers(channel, created=created) and self.scope >= scope

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "channels": sorted(self.channels),
            "scope": str(self.scope),
            "created": self.created,
            "expires": self.expires,
            "note": self.note,
            "revoked": self.revoked,
            "last_used": self.last_used,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Token:
        return cls(
            id=doc["id"],
            channels=frozenset(doc["channels"]),
            scope=Scope.parse(doc["scope"]),
            created=doc.get("created", 0.0),
            expires=doc.get("expires"),
            note=doc.get("note", ""),
            revoked=bool(doc.get("revoked", False)),
            last_used=doc.get("last_used"),
        )


_DURATION = re.compile(r"(\d+)([smhdw])\Z")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> int:
    """``90s``, ``30m``, ``12h``, ``30d``, ``2w`` to seconds.

    >>> parse_duration("30d")
    2592000
    """
    # Bounded before the pattern runs: no sensible duration needs more characters.
    match = _DURATION.match(text.strip()) if len(text) <= 64 else None
    if not match or int(match[1]) == 0:
        raise ValueError(
            f"duration {quoted(text)} is not a positive number followed by s, m, h, d or w"
        )
    seconds = int(match[1]) * _UNITS[match[2]]
    check_lifetime(seconds)
    return seconds


def check_lifetime(expires_in: float | None) -> None:
    """Raise :class:`ValueError` unless ``expires_in`` is a sensible token lifetime."""
    if expires_in is None:
        return
    if not 0 < expires_in <= _MAX_LIFETIME:
        raise ValueError(
            f"expiry {expires_in!r} seconds is not between 1 second and 10 years; "
            "leave it out for a token that does not expire"
        )


def _normalize_channels(channels: Iterable[str]) -> frozenset[str]:
    from .channels import validate_channel_name

    if isinstance(channels, str):
        # A bare string would silently become a set of one-letter channel names.
        channels = [channels]
    names = frozenset(channels)
    if not names:
        raise ValueError("a token must name at least one channel, or '*' for all")
    for name in names - {ALL_CHANNELS}:
        validate_channel_name(name)
    return names


def check_note(note: str) -> str:
    """Raise :class:`ValueError` unless ``note`` is one short printable line."""
    if len(note) > _MAX_NOTE_LENGTH or any(ch.isspace() and ch != " " for ch in note):
        raise ValueError(
            f"a note must be one line of at most {_MAX_NOTE_LENGTH} characters, "
            "without tabs or newlines"
        )
    if any(not ch.isprintable() for ch in note):
        raise ValueError("a note must not contain control characters")
    return note


def mint_signed_token(
    secret_key: str | bytes,
    *,
    channels: Iterable[str],
    scope: Scope,
    expires_in: float | None = None,
    token_id: str | None = None,
) -> str:
    """Mint a stateless token signed with the host's secret key (itsdangerous).

    ::

        token = mint_signed_token(key, channels=["data-team"], scope=Scope.READ,
                                  expires_in=3600, token_id="0123456789ab")
        app = make_app(storage, secret_key=key)      # accepts it like a stored token
        TokenStore(storage).revoke("0123456789ab")   # and refuses it from then on

    It needs no storage write.  ``token_id`` (12 lowercase hex digits, random when left
    out) is what :meth:`TokenStore.revoke` takes and what ``REMOTE_USER`` shows.  The
    token carries the time it was made: it works on no channel it names that was
    created after that.
    """
    if token_id is not None and not TOKEN_ID.match(token_id):
        raise ValueError(f"token id {token_id!r} is not 12 lowercase hexadecimal characters")
    check_lifetime(expires_in)
    now = time.time()
    payload = {
        "id": token_id or secrets.token_hex(6),
        "ch": sorted(_normalize_channels(channels)),
        "sc": str(scope),
        "exp": None if expires_in is None else now + expires_in,
        # When it was made: it works on no channel it names that was created later.
        "iat": now,
    }
    token = URLSafeSerializer(secret_key, salt=_SIGNED_SALT).dumps(payload)
    assert isinstance(token, str)
    return token


def _digest(ref: dict[str, Any]) -> str:
    digest = ref["hash"]
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise ValueError("its hash is not 64 hexadecimal digits")
    return digest


def stored_key(storage: Storage, key: str, *, purpose: str) -> bytes:
    """The random key kept in ``storage`` at ``key``, made by the first process that
    needs it; every process on the storage then agrees on it.  A damaged one (``purpose``
    names it) is a :class:`~.storage.CorruptDocumentError`."""
    try:
        data, _ = read_bytes(storage, key, limit=1024)
    except FileNotFoundError:
        # If another process makes it first, everyone uses that one.
        with contextlib.suppress(FileExistsError):
            storage.create(key, io.BytesIO(secrets.token_bytes(32)))
        data, _ = read_bytes(storage, key, limit=1024)
    if len(data) < 16:
        raise CorruptDocumentError(key, f"the {purpose} has {len(data)} bytes, fewer than 16")
    return data


@dataclass
class _CacheEntry:
    token: Token | None
    until: float
    # The storage's write word read before the token (or its revocation marker) was
    # read; None where the storage cannot tell its writes.
    word: int | None = None


#: The characters of a signed token: URL-safe base64 and the dots between its parts.
_SIGNED_ALPHABET = frozenset(string.ascii_letters + string.digits + "-_.")


def _live(token: Token | None) -> Token | None:
    """The token, unless it is none, revoked or expired."""
    if token is None or token.revoked or token.expired():
        return None
    return token


@dataclass
class TokenStore:
    """Stored tokens (and revocations of signed ones) in a :class:`Storage`.

    ``secret_key`` enables signed tokens (see :func:`mint_signed_token`); ``cache_ttl``
    bounds how long a revocation made by another process may go unnoticed here;
    a token's last use is recorded (one conditional write on a verification that
    read its record) when the record's is older than ``last_use_resolution`` seconds.
    """

    storage: Storage
    secret_key: str | bytes | None = None
    cache_ttl: float = 5.0
    last_use_resolution: float = 3600.0
    _hmac_key: bytes | None = field(default=None, init=False, repr=False)
    _cache: dict[str, _CacheEntry] = field(default_factory=dict, init=False, repr=False)
    # The keyed hash of each secret this process has seen, found by another keyed hash
    # of it (see _hash): never the secret itself.
    _hashes: dict[bytes, str] = field(default_factory=dict, init=False, repr=False)
    _hashes_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), init=False,
                               repr=False)  # fmt: skip
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    # The entry of each stored token in _cache by the token's id (see trust), and the
    # storage's write word (None: a storage that cannot tell its writes).
    _entries: dict[str, _CacheEntry] = field(default_factory=dict, init=False, repr=False)
    _written: Callable[[], int] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.storage, TellsWrites):
            self._written = self.storage.writes()

    # -- hashing ---------------------------------------------------------------

    def _key_bytes(self) -> bytes:
        if self._hmac_key is None:
            self._hmac_key = stored_key(self.storage, TOKEN_KEY, purpose="token hashing key")
        return self._hmac_key

    def _hash(self, secret: str) -> str:
        """The secret's HMAC-SHA256 under the stored key: what names its record.

        Every request that carries a token asks for it, and OpenSSL's HMAC costs a
        request on a busy small machine about three times what BLAKE2b (built into
        Python) does with cold caches (docs/performance.md): so the process keeps the
        HMAC of each secret it has seen under the keyed BLAKE2b of that secret, with a
        key of its own that never leaves it.  Neither hash gives the secret back, and
        the memory holds no secret.
        """
        data = secret.encode()
        seen = hashlib.blake2b(data, key=self._hashes_key, digest_size=32).digest()
        digest = self._hashes.get(seen)
        if digest is None:
            digest = hmac.new(self._key_bytes(), data, hashlib.sha256).hexdigest()
            if len(self._hashes) >= 10_000:  # a bound, whatever secrets are sent
                self._hashes.clear()
            self._hashes[seen] = digest
        return digest

    # -- administration ----------------------------------------------------------

    def create(
        self,
        *,
        channels: Iterable[str],
        scope: Scope,
        expires_in: float | None = None,
        note: str = "",
    ) -> tuple[str, Token]:
        """Make a new token; the secret is returned once and never stored."""
        names = _normalize_channels(channels)
        check_lifetime(expires_in)
        check_note(note)
        secret = secrets.token_hex(24)
        digest = self._hash(secret)
        # Claim the id first: a (rare) collision then costs a retry, never an orphan
        # record that works but cannot be listed or revoked.
        for _ in range(10):
            token_id = secrets.token_hex(6)
            try:
                self.storage.create(
                    f"registry/token-ids/{token_id}.json", io.BytesIO(dump_json({"hash": digest}))
                )
            except FileExistsError:
                continue
            break
        else:
            raise RuntimeError("could not find a free token id")
        now = time.time()
        token = Token(
            id=token_id,
            channels=names,
            scope=scope,
            created=now,
            expires=None if expires_in is None else now + expires_in,
            note=note,
        )
        self.storage.create(
            f"registry/tokens/{digest}.json", io.BytesIO(dump_json(token.to_json()))
        )
        with self._lock:
            # A guess of this very secret before it existed must not keep it refused here.
            self._cache.pop(digest, None)
        return secret, token

    def list(self) -> Iterator[Token]:
        """Every stored token (revoked and expired ones too), by id."""
        for key in self.storage.list("registry/token-ids/"):
            token_id = key.rpartition("/")[2].removesuffix(".json")
            token = self.get(token_id)
            if token is not None:
                yield token

    def get(self, token_id: str) -> Token | None:
        """The stored token with this id, or ``None``."""
        if not TOKEN_ID.match(token_id):
            return None
        try:
            digest = self._hash_of(token_id)
        except FileNotFoundError:
            return None
        return self._load_stored(digest, touch=False)

    def _hash_of(self, token_id: str) -> str:
        key = f"registry/token-ids/{token_id}.json"
        digest, _ = read_document(self.storage, key, _digest)
        return digest

    def revoke(self, token_id: str) -> bool:
        """Revoke a stored or a signed token by its id, for good.

        Returns whether a stored token has that id (``False``: only signed tokens
        minted with it are refused from now on).
        """
        if not TOKEN_ID.match(token_id):
            # Not echoed: what was passed for an id may be a secret.
            raise ValueError("a token id is 12 lowercase hexadecimal characters")
        try:
            digest: str | None = self._hash_of(token_id)
        except FileNotFoundError:
            digest = None
        # The stored flag first: should the marker below fail, the token is refused anyway.
        if digest is not None:
            update_json(
                self.storage,
                f"registry/tokens/{digest}.json",
                lambda doc: None if doc is None else {**doc, "revoked": True},
            )
        with contextlib.suppress(FileExistsError):
            self.storage.create(f"registry/revoked/{token_id}", io.BytesIO(b""))
        with self._lock:
            self._cache.pop(f"revoked:{token_id}", None)
            self._entries.pop(token_id, None)
            if digest is not None:
                self._cache.pop(digest, None)
        return digest is not None

    # -- verification ------------------------------------------------------------

    def verify(self, secret: str) -> Token | None:
        """The token a secret stands for, or ``None`` if it is unknown, expired or revoked.

        A stored token is found by its keyed hash (one read, no listing, no comparison
        that depends on the secret); a signed one by checking its signature.
        """
        if _HEX_TOKEN.match(secret):  # the usual token: what recheck does, less its checks
            return _live(self._cached(self._hash(secret), self._load_used))
        reference = self.reference(secret)
        return None if reference is None else self.recheck(reference)

    def reference(self, secret: str) -> dict[str, Any] | None:
        """What identifies the token of ``secret`` without being a secret: its keyed
        hash, or a signed token's grants; ``None`` for a secret that cannot be a token.

        The web session keeps it (signed, in a cookie) and passes it to
        :meth:`recheck` on every request, so that a session never holds the secret and
        ends with its token's expiry or revocation, within the cache bound.
        """
        if len(secret) > _MAX_SECRET_LENGTH:
            return None
        if _HEX_TOKEN.match(secret):
            return {"hash": self._hash(secret)}
        if self.secret_key is not None and "." in secret and _SIGNED_ALPHABET.issuperset(secret):
            # itsdangerous decodes base64 leniently ("<token>:\r" verified as the token):
            # a signed token is spelled one way only.
            token = self._load_signed(secret)
            if token is not None:
                return {"signed": token.to_json()}
        return None

    def recheck(self, reference: dict[str, Any]) -> Token | None:
        """The token a :meth:`reference` stands for now, or ``None`` if it is unknown,
        expired or revoked (cached for ``cache_ttl`` seconds, as :meth:`verify` is).

        Only references this store made (or that came back signed by a key the host
        keeps) may be passed: a signed token's reference carries its grants.
        """
        token: Token | None = None
        digest = reference.get("hash")
        signed = reference.get("signed")
        if isinstance(digest, str) and _DIGEST.match(digest):
            token = self._cached(digest, self._load_used)
        elif isinstance(signed, dict) and self.secret_key is not None:
            try:
                token = replace(Token.from_json(signed), signed=True, revoked=False)
            except (KeyError, TypeError, ValueError, AttributeError):
                return None
            if self._cached(f"revoked:{token.id}", self._load_revocation):
                return None
        return _live(token)

    def trust(self, token: Token) -> tuple[int | None, float]:
        """How this process trusts ``token``, which a verification of it just returned:
        the storage's write word (:class:`~.storage.TellsWrites`) read before its record
        (or a signed token's revocation marker) was read, and until when (monotonic)
        the cache keeps that read.  ``(None, 0.0)`` when the word is not known or the
        token is not the one the cache holds (read again since, by another thread).

        While the word is still the one read, nothing was written since, so no
        revocation either: what keeps whole answers (``core.answers``) keeps an
        answer to this token as long as nothing is written, and otherwise no longer
        than the cache trusts the token.
        """
        with self._lock:
            if token.signed:
                entry = self._cache.get(f"revoked:{token.id}")
                if entry is not None and entry.token is None:  # read as not revoked
                    return entry.word, entry.until
            else:
                entry = self._entries.get(token.id)
                if entry is not None and entry.token is token:
                    return entry.word, entry.until
        return None, 0.0

    def vouches(self, token: Token, word: int) -> bool:
        """Whether this process read ``token``'s record (or a signed token's revocation
        marker) while the storage's write word was ``word``, trusts that read still,
        and read this same token there (another thread's read of it counts): what
        renews an answer kept for it (``core.answers``) without a walk."""
        with self._lock:
            if token.signed:
                entry = self._cache.get(f"revoked:{token.id}")
            else:
                entry = self._entries.get(token.id)
        if entry is None or entry.word != word or entry.until <= time.monotonic():
            return False
        # A signed token's entry is its revocation marker, read as absent (None).
        return entry.token is None if token.signed else entry.token == token

    def _cached(self, cache_key: str, load: Callable[[str], Token | None]) -> Token | None:
        now = time.monotonic()
        with self._lock:
            entry = self._cache.get(cache_key)
        if entry is not None and entry.until > now:
            return entry.token
        word = None if self._written is None else self._written()  # before the read
        token = load(cache_key)
        if self.cache_ttl > 0:
            entry = _CacheEntry(token, now + self.cache_ttl, word)
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                    self._entries.clear()
                self._cache[cache_key] = entry
                if token is not None and not cache_key.startswith("revoked:"):
                    self._entries[token.id] = entry
        return token

    def _load_stored(self, digest: str, *, touch: bool) -> Token | None:
        key = f"registry/tokens/{digest}.json"
        try:
            (doc, token), stat = read_document(
                self.storage, key, lambda doc: (doc, Token.from_json(doc))
            )
        except FileNotFoundError:
            return None
        now = time.time()
        if touch and not (token.revoked or token.expired(now)):
            last = token.last_used
            if last is None or now - last >= self.last_use_resolution:
                # Conditional on the version just read, so that it never undoes a
                # revocation; a lost race or a read-only storage only skips the note.
                with contextlib.suppress(OSError, StaleWriteError):
                    body = io.BytesIO(dump_json({**doc, "last_used": now}))
                    self.storage.put(key, body, if_match=stat.etag)
                    token = replace(token, last_used=now)
        return token

    def _load_used(self, digest: str) -> Token | None:
        return self._load_stored(digest, touch=True)

    def _load_revocation(self, cache_key: str) -> Token | None:
        token_id = cache_key.removeprefix("revoked:")
        try:
            self.storage.stat(f"registry/revoked/{token_id}")
        except FileNotFoundError:
            return None
        # Any non-None value marks "revoked" in the cache.
        return Token(id=token_id, channels=frozenset(), scope=Scope.READ, revoked=True)

    def _load_signed(self, secret: str) -> Token | None:
        assert self.secret_key is not None
        try:
            payload = URLSafeSerializer(self.secret_key, salt=_SIGNED_SALT).loads(secret)
            expires = payload["exp"]
            channels = payload["ch"]
            # Tokens minted before creation times were signed in count as made at the
            # epoch: they keep working on '*', and on no channel they name.
            created = payload.get("iat", 0.0)
            if not (expires is None or isinstance(expires, int | float)):
                return None
            if not isinstance(created, int | float) or isinstance(created, bool):
                return None
            if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
                return None
            token = Token(
                id=str(payload["id"]),
                channels=frozenset(channels),
                scope=Scope.parse(payload["sc"]),
                created=float(created),
                expires=expires,
                signed=True,
            )
        except (BadSignature, KeyError, TypeError, ValueError, AttributeError):
            return None
        if not TOKEN_ID.match(token.id):
            return None
        return token
