"""Token authentication, and the authorization check every handler calls.

::

    app = TokenAuthMiddleware(app, TokenStore(storage))

Three separate steps, as devpi does them: :func:`credentials` finds a token in the
request (any of the five forms of SPEC.md), the middleware resolves it to a
:class:`~private_channels.tokens.Token` and puts it in
``environ["private_channels.identity"]`` (and its id in ``REMOTE_USER``), and each handler
decides access with :func:`authorize` for the scope it needs on its channel.

The path form ``/t/<TOKEN>/`` is cut out of ``PATH_INFO``, ``REQUEST_URI`` and
``RAW_URI`` before the wrapped app sees the request, so nothing downstream can log it.
When a request carries several forms, the path form wins, then ``Authorization``,
then ``X-Auth``.

The answers (SPEC.md, "Tokens"): a request with a token that is malformed, unknown,
expired or revoked is refused here with 401, whatever it asks for; everything else is
up to :func:`authorize`: anonymous requests may read public channels and get 401
elsewhere, a good token without the scope or channel gets 403.  Every 401 carries
``WWW-Authenticate: Basic realm="private-channels"`` (pip and twine send credentials
only after that challenge) and says "missing" or "invalid or expired", nothing more;
Basic credentials with another password than either form's (``TOKEN:mypassword``) are
told so, without a word on the token.
"""

from __future__ import annotations

import binascii
from typing import TYPE_CHECKING, NoReturn
from urllib.parse import quote, unquote, urlsplit

from .errors import ChannelHTTPError, http_error
from .redaction import redact_tokens
from .tokens import Scope, Token, TokenStore

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from .channels import Channel

__all__ = [
    "AUTH_ERROR_KEY",
    "IDENTITY_KEY",
    "SESSION_IDENTITY_KEY",
    "TOKEN_SOURCE_KEY",
    "TokenAuthMiddleware",
    "authorize",
    "credentials",
    "cut_path_token",
    "identity",
    "permit",
    "redact_tokens",
    "refuse_missing",
    "refuse_other_sites",
    "require_known",
    "same_origin",
]

IDENTITY_KEY = "private_channels.identity"
AUTH_ERROR_KEY = "private_channels.auth_error"
# Where the identity came from: "path", "header" or "session" (absent: anonymous).
TOKEN_SOURCE_KEY = "private_channels.token_source"  # noqa: S105 (an environ key)
# Set by the web pages' middleware for a request with a signed-in session: it stands
# for a token on reads (GET, HEAD) that carry no token of their own, so that a person
# signed in can follow the pages' download links.  Never on other methods: those
# would need the pages' CSRF check, which the machine endpoints do not make.
SESSION_IDENTITY_KEY = "private_channels.session_identity"
CHALLENGE = ("WWW-Authenticate", 'Basic realm="private-channels"')
PASSWORD_MARKER = "x-auth-token"  # noqa: S105 (a marker, not a secret)
PYPI_USERNAME = "__token__"
_CREDENTIAL_HEADERS = ("HTTP_AUTHORIZATION", "HTTP_X_AUTH")

MISSING = "Authentication is missing: send a token for this channel."
INVALID = "The token is invalid or expired."
# For Basic credentials of neither form, such as TOKEN:mypassword: the token may be
# fine, so the sentence blames the password and never says whether the token is.
WRONG_PASSWORD = (
    "The password is not one this server takes: send the token as the user name with "
    f"the password '{PASSWORD_MARKER}', or the user name '{PYPI_USERNAME}' with the token "
    "as the password."
)


def _basic_pair(value: str) -> tuple[str, str] | None:
    """The user name and password of Basic credentials; ``None`` if they do not decode."""
    try:
        # base64.b64decode(..., validate=True), without its two Python functions (each
        # a few cache misses on every request that carries Basic credentials).
        decoded = binascii.a2b_base64(value.strip().encode("ascii"), strict_mode=True).decode()
    except ValueError:  # binascii.Error, UnicodeDecodeError, and non-ASCII input ("Basic é")
        return None
    user, _, password = decoded.partition(":")
    return user, password


def _from_basic(value: str) -> str:
    pair = _basic_pair(value)
    if pair is None:
        return ""
    user, password = pair
    if user == PYPI_USERNAME:
        return password
    if password in (PASSWORD_MARKER, ""):
        return user
    return ""  # some other user:password pair: a credential, but not one of ours


def _other_password(environ: WSGIEnvironment) -> bool:
    """Whether the request sent Basic credentials whose password is neither form's."""
    scheme, _, value = str(environ.get("HTTP_AUTHORIZATION", "")).partition(" ")
    pair = _basic_pair(value) if scheme.lower() == "basic" else None
    return pair is not None and pair[0] != PYPI_USERNAME and pair[1] not in (PASSWORD_MARKER, "")


def credentials(environ: WSGIEnvironment) -> str | None:
    """The token a request carries in a header, ``None`` if none; ``""`` if malformed."""
    header = str(environ.get("HTTP_AUTHORIZATION", ""))
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic":
        return _from_basic(value)
    if scheme.lower() == "bearer":
        return value.strip()
    if header:
        return ""
    x_auth = environ.get("HTTP_X_AUTH")
    return None if x_auth is None else str(x_auth).strip()


def _cut_from_uri(uri: str, token: str) -> str | None:
    """``uri`` without its ``/t/<token>`` segments, matched after percent-decoding."""
    path, question, query = uri.partition("?")
    segments = path.split("/")
    for i in range(len(segments) - 1):
        if unquote(segments[i]) == "t" and unquote(segments[i + 1]) == token:
            return "/".join(segments[:i] + segments[i + 2 :]) + question + query
    return None


def cut_path_token(environ: WSGIEnvironment) -> str | None:
    """Remove ``/t/<TOKEN>`` from the front of the path and return the token."""
    path: str = environ.get("PATH_INFO", "")
    if not path.startswith("/t/"):
        return None
    token, slash, rest = path[3:].partition("/")
    environ["PATH_INFO"] = slash + rest
    for key in ("REQUEST_URI", "RAW_URI"):
        uri = environ.get(key)
        if uri:
            cut = _cut_from_uri(uri, token)
            if cut is None:
                # Encoded oddly (say, %2F between the segments): rebuild it from what
                # the wrapped app sees rather than leave the token in it.
                query = environ.get("QUERY_STRING", "")
                cut = quote(environ.get("SCRIPT_NAME", "") + environ["PATH_INFO"], safe="/")
                cut += f"?{query}" if query else ""
            environ[key] = cut
    return token


def identity(environ: WSGIEnvironment) -> Token | None:
    """The token that authenticated the request, ``None`` for an anonymous one."""
    token: Token | None = environ.get(IDENTITY_KEY)
    return token


class TokenAuthMiddleware:
    """Resolve the request's token, if any, to an identity; refuse bad tokens with 401."""

    def __init__(self, app: WSGIApplication, store: TokenStore) -> None:
        self.app = app
        self.store = store

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        secret = cut_path_token(environ)
        source = "path"
        if secret is None:
            secret, source = credentials(environ), "header"
        environ[IDENTITY_KEY] = None
        session: Token | None = environ.pop(SESSION_IDENTITY_KEY, None)
        if secret is None and session is not None:
            if environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
                environ[IDENTITY_KEY] = session
                environ[TOKEN_SOURCE_KEY] = "session"
                environ["REMOTE_USER"] = session.id
        elif secret is not None:
            token = self.store.verify(secret) if secret else None
            if token is None:
                sentence = WRONG_PASSWORD if not secret and _other_password(environ) else INVALID
                return http_error(401, sentence, headers=[CHALLENGE])(environ, start_response)
            # The identity replaces the credentials: an error reporter or debugger that
            # dumps the environ further in must find no token there, not even one sent
            # in a second form that lost to the one used.
            for key in _CREDENTIAL_HEADERS:
                environ.pop(key, None)
            environ[IDENTITY_KEY] = token
            environ[TOKEN_SOURCE_KEY] = source
            environ["REMOTE_USER"] = token.id
        return self.app(environ, start_response)


def authorize(environ: WSGIEnvironment, channel: Channel, scope: Scope) -> Token | None:
    """Allow the request ``scope`` on ``channel`` or raise 401/403; return the identity.

    ::

        token = authorize(environ, current_channel(environ), Scope.WRITE)

    Anyone may read a public channel, with a token for other channels or none at all
    (pip sends the same credentials to every channel of a host); everything else needs
    a token that covers the channel with at least ``scope``.
    """
    return permit(identity(environ), channel, scope)


def permit(token: Token | None, channel: Channel, scope: Scope) -> Token | None:
    """:func:`authorize` for an identity found elsewhere (a web session, the command
    line's): allow ``scope`` on ``channel`` or raise 401/403; return the identity."""
    if scope == Scope.READ and channel.public:
        return token
    if token is None:
        raise http_error(401, MISSING, headers=[CHALLENGE])
    if not token.covers(channel.name, created=channel.created):
        raise _not_covered(channel.name)
    if token.scope < scope:
        raise http_error(403, f"This token may not {_VERBS[scope]} channel {_named(channel.name)}.")
    return token


def require_known(environ: WSGIEnvironment, channel_name: str) -> NoReturn:
    """Raise the answer for a channel that does not exist, without letting callers
    who could not see it learn that it does not (SPEC.md: 404 only to those allowed).

    The 401 or 403 is word for word what :func:`authorize` answers for an existing
    private channel, whatever the request asked for.
    """
    refuse_missing(identity(environ), channel_name)


def refuse_missing(token: Token | None, channel_name: str) -> NoReturn:
    """:func:`require_known` for an identity found elsewhere (see :func:`permit`)."""
    if token is None:
        raise http_error(401, MISSING, headers=[CHALLENGE])
    if not token.covers(channel_name):
        raise _not_covered(channel_name)
    raise http_error(404, f"Channel {_named(channel_name)} does not exist.")


def _not_covered(channel_name: str) -> ChannelHTTPError:
    # One sentence whatever the scope asked for: a sentence that named the scope would
    # differ between an existing channel (the handler's scope) and a missing one.
    return http_error(403, f"This token is not for channel {_named(channel_name)}.")


def _named(channel_name: str) -> str:
    # The name comes from the URL, where a token sent in the wrong place (say,
    # P/<TOKEN>/simple/ for P/t/<TOKEN>/...) would otherwise be echoed to the client's
    # output; redacted the same way for every channel, so that no answer tells an
    # existing channel from a missing one.
    return repr(redact_tokens(channel_name))


_VERBS = {Scope.READ: "read", Scope.WRITE: "upload to", Scope.ADMIN: "administer"}


def same_origin(environ: WSGIEnvironment) -> bool:
    """Whether a state-changing request may come from a page of another site.

    A browser that holds Basic credentials for this host (or a session cookie) sends
    them with a form another site makes it post, so every ``POST`` that changes
    something checks this.  Browsers send ``Origin`` with every POST from a page
    (``null`` from sandboxes and some redirects, which is refused) and older ones at
    least ``Referer``; ``Sec-Fetch-Site`` says ``cross-site`` or ``same-site`` for a
    page of another site.  Clients that are not browsers (twine, uv, curl, R) send none
    of them, and are let through.
    """
    if environ.get("HTTP_SEC_FETCH_SITE", "").lower() in ("cross-site", "same-site"):
        return False
    ours = _origin(environ.get("wsgi.url_scheme", "http"), _host(environ))
    for header in ("HTTP_ORIGIN", "HTTP_REFERER"):
        value = environ.get(header)
        if value:
            parts = urlsplit(str(value)[:2048])
            return _origin(parts.scheme, parts.netloc) == ours
    return True


def _host(environ: WSGIEnvironment) -> str:
    host = environ.get("HTTP_HOST")
    if host:
        return str(host)
    port = str(environ.get("SERVER_PORT", ""))
    return (
        f"{environ.get('SERVER_NAME', '')}:{port}" if port else str(environ.get("SERVER_NAME", ""))
    )


def _origin(scheme: str, host: str) -> tuple[str, str]:
    """An origin, with the scheme's default port left out as browsers leave it out."""
    scheme, host = scheme.lower(), host.lower()
    default = {"http": ":80", "https": ":443"}.get(scheme)
    if default is not None and host.endswith(default):
        host = host.removesuffix(default)
    return scheme, host


def refuse_other_sites(environ: WSGIEnvironment) -> None:
    """403 for a state-changing request that a page of another site made."""
    if not same_origin(environ):
        raise http_error(
            403,
            "This request came from a page of another site; send it with twine, uv, curl "
            "or this server's own pages.",
        )
