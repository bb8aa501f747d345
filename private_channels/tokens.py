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

Verified tokens are cached in-process for ``cache_ttl`` seconds (default 5): a
revocation made through any process takes effect everywhere within that time.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import hmac
import io
import re
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

from .storage import Storage, dump_json, read_bytes, read_json, update_json

__all__ = [
    "ALL_CHANNELS",
    "Scope",
    "Token",
    "TokenStore",
    "mint_signed_token",
    "parse_duration",
]

ALL_CHANNELS = "*"
_HEX_TOKEN = re.compile(r"[0-9a-f]{48}\Z")
_TOKEN_ID = re.compile(r"[0-9a-f]{12}\Z")
_SIGNED_SALT = "private-channels.token"
_KEY = "registry/token-key"


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

    def expired(self, now: float | None = None) -> bool:
        return self.expires is not None and (now or time.time()) >= self.expires

    def covers(self, channel: str) -> bool:
        return ALL_CHANNELS in self.channels or channel in self.channels

    def allows(self, channel: str, scope: Scope) -> bool:
        return self.covers(channel) and self.scope >= scope

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "channels": sorted(self.channels),
            "scope": str(self.scope),
            "created": self.created,
            "expires": self.expires,
            "note": self.note,
            "revoked": self.revoked,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any], *, signed: bool = False) -> Token:
        return cls(
            id=doc["id"],
            channels=frozenset(doc["channels"]),
            scope=Scope.parse(doc["scope"]),
            created=doc.get("created", 0.0),
            expires=doc.get("expires"),
            note=doc.get("note", ""),
            revoked=bool(doc.get("revoked", False)),
            signed=signed,
        )


_DURATION = re.compile(r"(\d+)([smhdw])\Z")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> int:
    """``90s``, ``30m``, ``12h``, ``30d``, ``2w`` to seconds."""
    match = _DURATION.match(text.strip())
    if not match or int(match[1]) == 0:
        raise ValueError(f"duration {text!r} is not a positive number followed by s, m, h, d or w")
    return int(match[1]) * _UNITS[match[2]]


def _normalize_channels(channels: Iterable[str]) -> frozenset[str]:
    from .channels import validate_channel_name

    names = frozenset(channels)
    if not names:
        raise ValueError("a token must name at least one channel, or '*' for all")
    for name in names - {ALL_CHANNELS}:
        validate_channel_name(name)
    return names


def mint_signed_token(
    secret_key: str | bytes,
    *,
    channels: Iterable[str],
    scope: Scope,
    expires_in: float | None = None,
    token_id: str | None = None,
) -> str:
    """Mint a stateless token signed with the host's secret key.

    It needs no storage write; :meth:`TokenStore.revoke` with its id still revokes it.
    """
    payload = {
        "id": token_id or secrets.token_hex(6),
        "ch": sorted(_normalize_channels(channels)),
        "sc": str(scope),
        "exp": None if expires_in is None else time.time() + expires_in,
    }
    token = URLSafeSerializer(secret_key, salt=_SIGNED_SALT).dumps(payload)
    assert isinstance(token, str)
    return token


@dataclass
class _CacheEntry:
    token: Token | None
    until: float


@dataclass
class TokenStore:
    storage: Storage
    secret_key: str | bytes | None = None
    cache_ttl: float = 5.0
    _hmac_key: bytes | None = field(default=None, init=False, repr=False)
    _cache: dict[str, _CacheEntry] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    # -- hashing ---------------------------------------------------------------

    def _key_bytes(self) -> bytes:
        if self._hmac_key is None:
            # If another process made it first, everyone uses that one.
            with contextlib.suppress(FileExistsError):
                self.storage.create(_KEY, io.BytesIO(secrets.token_bytes(32)))
            self._hmac_key, _ = read_bytes(self.storage, _KEY, limit=1024)
        return self._hmac_key

    def _hash(self, secret: str) -> str:
        return hmac.new(self._key_bytes(), secret.encode(), hashlib.sha256).hexdigest()

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
        now = time.time()
        secret = secrets.token_hex(24)
        token = Token(
            id=secrets.token_hex(6),
            channels=_normalize_channels(channels),
            scope=scope,
            created=now,
            expires=None if expires_in is None else now + expires_in,
            note=note,
        )
        digest = self._hash(secret)
        self.storage.create(
            f"registry/tokens/{digest}.json", io.BytesIO(dump_json(token.to_json()))
        )
        self.storage.create(
            f"registry/token-ids/{token.id}.json", io.BytesIO(dump_json({"hash": digest}))
        )
        return secret, token

    def list(self) -> Iterator[Token]:
        for key in self.storage.list("registry/token-ids/"):
            token_id = key.rpartition("/")[2].removesuffix(".json")
            token = self.get(token_id)
            if token is not None:
                yield token

    def get(self, token_id: str) -> Token | None:
        if not _TOKEN_ID.match(token_id):
            return None
        try:
            ref, _ = read_json(self.storage, f"registry/token-ids/{token_id}.json")
            doc, _ = read_json(self.storage, f"registry/tokens/{ref['hash']}.json")
        except FileNotFoundError:
            return None
        return Token.from_json(doc)

    def revoke(self, token_id: str) -> None:
        """Revoke a stored or a signed token by its id."""
        if not _TOKEN_ID.match(token_id):
            raise ValueError(f"token id {token_id!r} is not 12 hexadecimal characters")
        with contextlib.suppress(FileExistsError):
            self.storage.create(f"registry/revoked/{token_id}", io.BytesIO(b""))
        try:
            ref, _ = read_json(self.storage, f"registry/token-ids/{token_id}.json")
        except FileNotFoundError:
            return  # a signed token: the marker above is all it has
        update_json(
            self.storage,
            f"registry/tokens/{ref['hash']}.json",
            lambda doc: {**doc, "revoked": True},
        )

    # -- verification ------------------------------------------------------------

    def verify(self, secret: str) -> Token | None:
        """The token a secret stands for, or ``None`` if it is unknown, expired or revoked."""
        if _HEX_TOKEN.match(secret):
            cache_key = self._hash(secret)
            token = self._cached(cache_key, self._load_stored)
        elif self.secret_key is not None and "." in secret:
            token = self._load_signed(secret)
            if token is not None:
                revoked = self._cached(f"revoked:{token.id}", self._load_revocation)
                token = None if revoked is not None else token
        else:
            token = None
        if token is None or token.revoked or token.expired():
            return None
        return token

    def _cached(self, cache_key: str, load: Any) -> Token | None:
        now = time.monotonic()
        with self._lock:
            entry = self._cache.get(cache_key)
        if entry is not None and entry.until > now:
            return entry.token
        token: Token | None = load(cache_key)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[cache_key] = _CacheEntry(token, now + self.cache_ttl)
        return token

    def _load_stored(self, digest: str) -> Token | None:
        try:
            doc, _ = read_json(self.storage, f"registry/tokens/{digest}.json")
        except FileNotFoundError:
            return None
        return Token.from_json(doc)

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
            token = Token(
                id=payload["id"],
                channels=frozenset(payload["ch"]),
                scope=Scope.parse(payload["sc"]),
                expires=payload["exp"],
                signed=True,
            )
        except (BadSignature, KeyError, TypeError, ValueError):
            return None
        if not _TOKEN_ID.match(token.id):
            return None
        return token
