"""Browser sessions for the web pages: a signed cookie, CSRF tokens, same-origin checks.

::

    sessions = Sessions(TokenStore(storage), key=None)     # the key is kept in storage
    session = sessions.load(request)                       # None: no valid cookie
    actor = sessions.identity(session)                     # the token, rechecked now
    sessions.save(response, request, session)

A person signs in by typing a token into the form at ``P/-/login``.  The session cookie
holds no secret: only a random session id and what identifies the token without being
it (:meth:`~..tokens.TokenStore.reference`: its keyed hash, or a signed token's grants),
signed with itsdangerous.  Every request checks that token again through the same
:class:`~..tokens.TokenStore` as the middleware, so a session ends with its token's
expiry or revocation: at once in the process that revoked it, and within the store's
cache bound (``token_cache_ttl``, 5 seconds by default) in every other process.  A
session also ends after :data:`MAX_AGE` (the cookie's signature carries its time).

The cookie is ``HttpOnly``, ``SameSite=Strict``, ``Secure`` when the request came over
HTTPS, and scoped to the mount prefix.  Every form carries a CSRF token, signed and tied
to the session id, which sign-in renews; every state-changing request must also come
from the same origin (``Origin``, else ``Referer``, when the browser sends them).

The signing key is ``secret_key`` when the host gives one (``make_app(secret_key=...)``)
and otherwise 32 random bytes kept in storage at ``registry/session-key``, made by the
first process that needs it, so every process on one storage accepts every session.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

from ..tokens import Token, TokenStore, stored_key

if TYPE_CHECKING:
    from werkzeug.wrappers import Request, Response

__all__ = ["COOKIE", "CSRF_FIELD", "MAX_AGE", "Session", "Sessions"]

COOKIE = "private_channels_session"
CSRF_FIELD = "csrf_token"
#: Seconds a session lasts at most, whatever its token allows: sign in again weekly.
MAX_AGE = 7 * 86400
_KEY = "registry/session-key"
# Browsers keep cookies up to 4096 bytes; a signed token naming many channels could
# make a larger one, which the browser would drop without a word.
MAX_COOKIE = 4000


@dataclass(frozen=True)
class Session:
    """What the cookie holds: never a token's secret."""

    sid: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    reference: dict[str, Any] | None = None  # the signed-in token's, or None
    flash: str = ""  # one message for the next page (the result of a form)

    def to_json(self) -> dict[str, Any]:
        return {"sid": self.sid, "ref": self.reference, "flash": self.flash}

    @classmethod
    def from_json(cls, doc: Any) -> Session | None:
        if not isinstance(doc, dict):
            return None
        sid, reference, flash = doc.get("sid"), doc.get("ref"), doc.get("flash", "")
        if not isinstance(sid, str) or not isinstance(flash, str):
            return None
        if reference is not None and not isinstance(reference, dict):
            return None
        return cls(sid=sid, reference=reference, flash=flash)


class Sessions:
    """Sign, read and check sessions; ``key`` is the host's secret key, or ``None`` to
    keep one in the token store's storage."""

    def __init__(self, tokens: TokenStore, *, key: str | bytes | None = None) -> None:
        self.tokens = tokens
        self._key = key
        self._lock = threading.Lock()
        self._serializers: tuple[URLSafeTimedSerializer, URLSafeTimedSerializer] | None = None

    def _signers(self) -> tuple[URLSafeTimedSerializer, URLSafeTimedSerializer]:
        with self._lock:
            if self._serializers is None:
                key = self._key
                if key is None:
                    key = stored_key(self.tokens.storage, _KEY, purpose="session signing key")
                self._serializers = (
                    URLSafeTimedSerializer(key, salt="private-channels.session"),
                    URLSafeTimedSerializer(key, salt="private-channels.csrf"),
                )
            return self._serializers

    # -- the cookie --------------------------------------------------------------------

    def load(self, request: Request) -> Session | None:
        """The session of the request's cookie, or ``None`` (none, forged, too old)."""
        value = request.cookies.get(COOKIE)
        if not value or len(value) > MAX_COOKIE:
            return None
        try:
            doc = self._signers()[0].loads(value, max_age=MAX_AGE)
        except BadSignature:
            return None
        return Session.from_json(doc)

    def identity(self, session: Session | None) -> Token | None:
        """The session's token as the store knows it now: ``None`` when signed out, or
        when the token expired or was revoked."""
        if session is None or session.reference is None:
            return None
        return self.tokens.recheck(session.reference)

    def sign_in(self, secret: str) -> tuple[Session, Token] | None:
        """A new session (a new id, so CSRF tokens of before are void) for the token of
        ``secret``, or ``None`` when it is not a valid token."""
        reference = self.tokens.reference(secret.strip())
        token = None if reference is None else self.tokens.recheck(reference)
        if token is None or reference is None:
            return None
        return Session(reference=reference), token

    def save(
        self,
        response: Response,
        request: Request,
        session: Session,
        *,
        expires: float | None = None,
    ) -> bool:
        """Set the cookie; ``False`` (and no cookie) when it would be too large."""
        value = self._signers()[0].dumps(session.to_json())
        if len(value) > MAX_COOKIE:
            return False
        left = MAX_AGE if expires is None else math.ceil(expires - time.time())
        max_age = max(0, min(MAX_AGE, left))
        response.set_cookie(
            COOKIE,
            value,
            max_age=max_age,
            path=_path(request),
            secure=request.scheme == "https",
            httponly=True,
            samesite="Strict",
        )
        return True

    def clear(self, response: Response, request: Request) -> None:
        response.delete_cookie(
            COOKIE,
            path=_path(request),
            secure=request.scheme == "https",
            httponly=True,
            samesite="Strict",
        )

    @staticmethod
    def with_flash(session: Session, message: str) -> Session:
        return replace(session, flash=message[:500])

    # -- CSRF --------------------------------------------------------------------------

    def csrf_token(self, session: Session) -> str:
        """The token every form of this session carries."""
        token: str = self._signers()[1].dumps(session.sid)
        return token

    def check_csrf(self, session: Session | None, value: str | None) -> bool:
        """Whether ``value`` is a CSRF token of this very session, at most MAX_AGE old."""
        if session is None or not value or len(value) > 200:
            return False
        try:
            sid = self._signers()[1].loads(value, max_age=MAX_AGE)
        except BadSignature:
            return False
        return isinstance(sid, str) and secrets.compare_digest(sid, session.sid)


def _path(request: Request) -> str:
    # The mount prefix: the cookie goes to the pages and the downloads they link.
    return request.script_root.rstrip("/") + "/"
