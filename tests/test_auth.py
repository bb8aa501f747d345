"""Credentials in the five forms, the path form's removal, identity, and the 401 answers."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import webtest

from private_channels.auth import (
    IDENTITY_KEY,
    WRONG_PASSWORD,
    TokenAuthMiddleware,
    authorize,
    credentials,
    require_known,
)
from private_channels.channels import Channel
from private_channels.cli import redact
from private_channels.errors import ChannelHTTPError
from private_channels.storage import MemoryStorage
from private_channels.tokens import Scope, Token, TokenStore, mint_signed_token

from .support import mounted

PREFIXES = ["/api/repo", "/deep/er/mount"]
TOKEN = "46e98d3dbf2378bb26e2107867652ee734eb098ea5b96f35"
CHALLENGE = 'Basic realm="private-channels"'


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"HTTP_AUTHORIZATION": basic(TOKEN, "x-auth-token")}, TOKEN),
        ({"HTTP_AUTHORIZATION": basic("__token__", TOKEN)}, TOKEN),
        ({"HTTP_AUTHORIZATION": basic(TOKEN, "")}, TOKEN),  # curl -u TOKEN:
        ({"HTTP_AUTHORIZATION": basic("alice", "hunter2")}, ""),
        ({"HTTP_AUTHORIZATION": basic("__token__", "")}, ""),
        ({"HTTP_AUTHORIZATION": "Basic !!!notbase64"}, ""),
        ({"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"\xff\xfe:x").decode()}, ""),
        ({"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}, TOKEN),
        ({"HTTP_AUTHORIZATION": f"bearer  {TOKEN} "}, TOKEN),
        ({"HTTP_AUTHORIZATION": "Bearer"}, ""),
        ({"HTTP_AUTHORIZATION": f"Digest {TOKEN}"}, ""),
        ({"HTTP_X_AUTH": TOKEN}, TOKEN),
        ({"HTTP_X_AUTH": ""}, ""),
        # Authorization is read before X-Auth
        ({"HTTP_AUTHORIZATION": f"Bearer {TOKEN}", "HTTP_X_AUTH": "other"}, TOKEN),
    ],
)
def test_credentials(environ: dict[str, str], expected: str | None) -> None:
    assert credentials(environ) == expected


@pytest.fixture
def store() -> TokenStore:
    return TokenStore(MemoryStorage(), secret_key="k")


class Probe:
    """A wrapped app that records the environ it was given."""

    def __init__(self) -> None:
        self.environ: dict[str, Any] | None = None

    def __call__(self, environ, start_response):  # type: ignore[no-untyped-def]
        self.environ = dict(environ)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"probe"]


def probe_app(store: TokenStore, prefix: str) -> tuple[webtest.TestApp, Probe]:
    probe = Probe()
    return webtest.TestApp(mounted(TokenAuthMiddleware(probe, store), prefix)), probe


@pytest.mark.parametrize("prefix", PREFIXES)
def test_path_token_is_cut_before_the_app_sees_it(store: TokenStore, prefix: str) -> None:
    secret, token = store.create(channels=["team"], scope=Scope.READ)
    app, probe = probe_app(store, prefix)
    raw = f"{prefix}/t/{secret}/team/simple/pkg/?x=1"
    app.get(raw, extra_environ={"REQUEST_URI": raw, "RAW_URI": raw})
    seen = probe.environ
    assert seen is not None
    assert seen["SCRIPT_NAME"] == prefix
    assert seen["PATH_INFO"] == "/team/simple/pkg/"
    assert seen["QUERY_STRING"] == "x=1"
    assert seen["REQUEST_URI"] == f"{prefix}/team/simple/pkg/?x=1"
    assert seen["RAW_URI"] == f"{prefix}/team/simple/pkg/?x=1"
    assert seen[IDENTITY_KEY] == token
    assert seen["REMOTE_USER"] == token.id
    for value in seen.values():
        assert secret not in repr(value)


@pytest.mark.parametrize(
    ("raw_path", "expected"),
    [
        # percent-encoded token characters: matched after decoding
        ("/t/{enc}/team/x", "{prefix}/team/x"),
        # an encoded "t"
        ("/%74/{secret}/team/x", "{prefix}/team/x"),
        # an encoded slash between the segments: rebuilt from what the app sees
        ("/t%2F{secret}/team/x", "{prefix}/team/x"),
    ],
)
def test_path_token_is_cut_from_oddly_encoded_uris(
    store: TokenStore, raw_path: str, expected: str
) -> None:
    prefix = "/api/repo"
    secret, _ = store.create(channels=["team"], scope=Scope.READ)
    enc = "".join(f"%{ord(c):02X}" if i % 3 == 0 else c for i, c in enumerate(secret))
    app, probe = probe_app(store, prefix)
    raw = prefix + raw_path.format(secret=secret, enc=enc)
    app.get(f"{prefix}/t/{secret}/team/x", extra_environ={"REQUEST_URI": raw, "RAW_URI": raw})
    assert probe.environ is not None
    assert probe.environ["REQUEST_URI"] == expected.format(prefix=prefix)
    assert probe.environ["RAW_URI"] == expected.format(prefix=prefix)
    assert probe.environ["PATH_INFO"] == "/team/x"


def test_path_token_without_a_channel(store: TokenStore) -> None:
    secret, _ = store.create(channels=["team"], scope=Scope.READ)
    app, probe = probe_app(store, "/api/repo")
    app.get(f"/api/repo/t/{secret}")
    assert probe.environ is not None and probe.environ["PATH_INFO"] == ""


def test_path_form_wins_over_headers(store: TokenStore) -> None:
    path_secret, path_token = store.create(channels=["team"], scope=Scope.READ)
    header_secret, _ = store.create(channels=["team"], scope=Scope.ADMIN)
    app, probe = probe_app(store, "/api/repo")
    app.get(f"/api/repo/t/{path_secret}/team/", headers={"X-Auth": header_secret})
    assert probe.environ is not None and probe.environ[IDENTITY_KEY] == path_token
    # the form that lost is gone from the environ too
    assert header_secret not in repr(probe.environ)


def test_no_credential_header_reaches_the_app(store: TokenStore) -> None:
    used, token = store.create(channels=["team"], scope=Scope.READ)
    unused, _ = store.create(channels=["team"], scope=Scope.ADMIN)
    app, probe = probe_app(store, "/api/repo")
    app.get("/api/repo/team/", headers={"Authorization": f"Bearer {used}", "X-Auth": unused})
    assert probe.environ is not None and probe.environ[IDENTITY_KEY] == token
    assert "HTTP_AUTHORIZATION" not in probe.environ
    assert "HTTP_X_AUTH" not in probe.environ
    assert used not in repr(probe.environ) and unused not in repr(probe.environ)


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("form", ["basic", "pypi", "x-auth", "bearer", "path"])
def test_every_form_gives_the_same_identity(store: TokenStore, prefix: str, form: str) -> None:
    secret, token = store.create(channels=["team"], scope=Scope.WRITE)
    signed = mint_signed_token("k", channels=["team"], scope=Scope.READ, token_id="0123456789ab")
    app, probe = probe_app(store, prefix)
    for credential, expected in [(secret, token), (signed, store.verify(signed))]:
        url, headers = request_for(form, prefix, "/team/simple/", credential)
        app.get(url, headers=headers)
        assert probe.environ is not None
        assert probe.environ["PATH_INFO"] == "/team/simple/"
        assert probe.environ[IDENTITY_KEY] == expected
        assert expected is not None and probe.environ["REMOTE_USER"] == expected.id
        assert credential not in repr(probe.environ)


def request_for(form: str, prefix: str, path: str, secret: str) -> tuple[str, dict[str, str]]:
    """The URL and headers that carry ``secret`` in one of the five forms."""
    if form == "path":
        return f"{prefix}/t/{secret}{path}", {}
    header = {
        "basic": ("Authorization", basic(secret, "x-auth-token")),
        "pypi": ("Authorization", basic("__token__", secret)),
        "x-auth": ("X-Auth", secret),
        "bearer": ("Authorization", f"Bearer {secret}"),
    }[form]
    return f"{prefix}{path}", dict([header])


def test_anonymous_requests_pass_with_no_identity(store: TokenStore) -> None:
    app, probe = probe_app(store, "/api/repo")
    app.get("/api/repo/team/simple/")
    assert probe.environ is not None
    assert probe.environ[IDENTITY_KEY] is None
    assert "REMOTE_USER" not in probe.environ


@pytest.mark.parametrize("form", ["basic", "pypi", "x-auth", "bearer", "path"])
@pytest.mark.parametrize(
    "secret",
    [
        "0" * 48,
        "not-a-token",
        "eyJpZCI6IjAxMjM0NTY3ODlhYiJ9.forged",
    ],
)
def test_bad_tokens_are_401_and_never_echoed(store: TokenStore, form: str, secret: str) -> None:
    app, probe = probe_app(store, "/api/repo")
    url, headers = request_for(form, "/api/repo", "/team/simple/", secret)
    response = app.get(url, headers=headers, status=401)
    assert probe.environ is None
    assert response.headers["WWW-Authenticate"] == CHALLENGE
    assert "invalid or expired" in response.text
    assert "missing" not in response.text
    assert secret not in response.text
    assert secret not in response.status
    assert all(secret not in value for _, value in response.headerlist)


def test_a_foreign_basic_password_is_401(store: TokenStore) -> None:
    app, _ = probe_app(store, "/api/repo")
    response = app.get(
        "/api/repo/team/", headers={"Authorization": basic("alice", "hunter2")}, status=401
    )
    assert response.headers["WWW-Authenticate"] == CHALLENGE
    assert "hunter2" not in response.text


@pytest.mark.parametrize("valid", [True, False])
def test_a_wrong_basic_password_is_blamed_not_the_token(store: TokenStore, valid: bool) -> None:
    """``TOKEN:mypassword``: the same sentence whether the token is good or not, and it
    is about the password, so it never says which part of a token was wrong."""
    secret = store.create(channels=["team"], scope=Scope.READ)[0] if valid else TOKEN
    app, probe = probe_app(store, "/api/repo")
    for user in (secret, "alice"):
        response = app.get(
            "/api/repo/team/simple/", headers={"Authorization": basic(user, "mypassword")},
            status=401,
        )  # fmt: skip
        assert probe.environ is None
        assert response.headers["WWW-Authenticate"] == CHALLENGE
        assert response.text == f"{WRONG_PASSWORD}\n"
        assert "'x-auth-token'" in response.text and "'__token__'" in response.text
        assert "invalid or expired" not in response.text
        assert secret not in response.text and "mypassword" not in response.text
    # A wrong token with the right password is still the token's fault.
    response = app.get(
        "/api/repo/team/simple/", headers={"Authorization": basic("0" * 48, "x-auth-token")},
        status=401,
    )  # fmt: skip
    assert response.text == "The token is invalid or expired.\n"


PRIVATE = Channel("team")
PUBLIC = Channel("open", public=True)


def environ_with(token: Token | None, method: str = "GET") -> dict[str, Any]:
    return {IDENTITY_KEY: token, "REQUEST_METHOD": method}


def status_of(call: Any) -> int:
    try:
        call()
    except ChannelHTTPError as error:
        return error.code
    return 200


def test_authorize_answers() -> None:
    reader = Token(id="0" * 12, channels=frozenset({"team", "open"}), scope=Scope.READ)
    other = Token(id="1" * 12, channels=frozenset({"elsewhere"}), scope=Scope.ADMIN)
    assert authorize(environ_with(None), PUBLIC, Scope.READ) is None
    assert authorize(environ_with(reader), PRIVATE, Scope.READ) is reader
    assert authorize(environ_with(other), PUBLIC, Scope.READ) is other
    with pytest.raises(ChannelHTTPError) as anonymous:
        authorize(environ_with(None), PRIVATE, Scope.READ)
    assert anonymous.value.code == 401
    assert ("WWW-Authenticate", CHALLENGE) in anonymous.value.get_response().headers.items()
    assert "missing" in anonymous.value.sentence
    with pytest.raises(ChannelHTTPError) as upload:
        authorize(environ_with(reader), PUBLIC, Scope.WRITE)
    assert upload.value.code == 403
    assert upload.value.sentence == "This token may not upload to channel 'open'."
    assert status_of(lambda: authorize(environ_with(None), PUBLIC, Scope.WRITE)) == 401
    assert status_of(lambda: authorize(environ_with(other), PRIVATE, Scope.READ)) == 403


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
@pytest.mark.parametrize("scope", list(Scope))
def test_unknown_channels_answer_like_hidden_ones(method: str, scope: Scope) -> None:
    """A caller who may not see a channel cannot tell a missing one from a hidden one,
    whatever the handler of the existing channel asks for (read, upload, admin)."""
    other = Token(id="1" * 12, channels=frozenset({"elsewhere"}), scope=Scope.ADMIN)
    for token in (None, other):
        with pytest.raises(ChannelHTTPError) as hidden:
            authorize(environ_with(token, method), PRIVATE, scope)
        with pytest.raises(ChannelHTTPError) as missing:
            require_known(environ_with(token, method), PRIVATE.name)
        assert hidden.value.code == missing.value.code
        assert hidden.value.sentence == missing.value.sentence
        headers = dict(hidden.value.get_response().headers)
        assert headers == dict(missing.value.get_response().headers)
    for channels in ({"team"}, {"*"}):
        allowed = Token(id="2" * 12, channels=frozenset(channels), scope=Scope.READ)
        with pytest.raises(ChannelHTTPError) as known:
            require_known(environ_with(allowed, method), "team")
        assert known.value.code == 404


@pytest.mark.parametrize(("channels", "status"), [({"team"}, 403), ({"*"}, 404)])
def test_a_token_in_the_channel_position_is_not_echoed(channels: set[str], status: int) -> None:
    """``P/<TOKEN>/simple/`` (the ``t/`` forgotten) with a token in a header as well."""
    token = Token(id="2" * 12, channels=frozenset(channels), scope=Scope.READ)
    with pytest.raises(ChannelHTTPError) as refused:
        require_known(environ_with(token), TOKEN)
    assert refused.value.code == status
    assert "'<redacted>'" in refused.value.sentence
    response = refused.value.get_response()
    assert TOKEN not in response.status
    assert TOKEN not in response.get_data(as_text=True)


def test_403_says_what_is_missing() -> None:
    reader = Token(id="0" * 12, channels=frozenset({"team"}), scope=Scope.READ)
    writer = Token(id="0" * 12, channels=frozenset({"team"}), scope=Scope.WRITE)
    sentences = {}
    for token, scope in [(reader, Scope.WRITE), (writer, Scope.ADMIN), (reader, Scope.ADMIN)]:
        with pytest.raises(ChannelHTTPError) as refused:
            authorize(environ_with(token), PRIVATE, scope)
        assert refused.value.code == 403
        sentences[token.scope, scope] = refused.value.sentence
    assert sentences == {
        (Scope.READ, Scope.WRITE): "This token may not upload to channel 'team'.",
        (Scope.WRITE, Scope.ADMIN): "This token may not administer channel 'team'.",
        (Scope.READ, Scope.ADMIN): "This token may not administer channel 'team'.",
    }
    other = Token(id="1" * 12, channels=frozenset({"elsewhere"}), scope=Scope.ADMIN)
    with pytest.raises(ChannelHTTPError) as refused:
        authorize(environ_with(other), PRIVATE, Scope.READ)
    assert refused.value.sentence == "This token is not for channel 'team'."


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            f'"GET /api/repo/t/{TOKEN}/team/simple/ HTTP/1.1" 200 -',
            '"GET /api/repo/t/<redacted>/team/simple/ HTTP/1.1" 200 -',
        ),
        (f"GET /api/repo/%74/{TOKEN}/x", "GET /api/repo/t/<redacted>/x"),
        (f"GET /api/repo/t%2F{TOKEN}/x", "GET /api/repo/t/<redacted>/x"),
        (f"GET /api/repo/T//{TOKEN}/x", "GET /api/repo/t/<redacted>/x"),
        (f"code 400, message Bad request syntax ('GET /t/{TOKEN}')", None),
        (f"GET /api/repo/{TOKEN}/simple/", "GET /api/repo/<redacted>/simple/"),
        # Encoded slashes, also encoded twice, as werkzeug logs the line the client sent.
        (f"GET /api/repo/x%2F{TOKEN}/simple/", "GET /api/repo/x%2F<redacted>/simple/"),
        (f"GET /api/repo/x%2f{TOKEN}/simple/", "GET /api/repo/x%2f<redacted>/simple/"),
        (f"GET /api/repo/%252F{TOKEN}/x", "GET /api/repo/%252F<redacted>/x"),
        (f"GET /api/repo/%252f{TOKEN}/x", "GET /api/repo/%252f<redacted>/x"),
        (f"GET /api/repo/t%252F{TOKEN}/x", "GET /api/repo/t/<redacted>/x"),
        (f"GET /api/repo/%2574%252F{TOKEN}/x", "GET /api/repo/t/<redacted>/x"),
        (f"GET /api/repo/team/simple/x%2F{TOKEN}", "GET /api/repo/team/simple/x%2F<redacted>"),
        ("GET /api/repo/eyJpZCI6IjEifQ.abc-_def/x", "GET /api/repo/<redacted>/x"),
        # what is not a token stays
        ("GET /api/repo/team/simple/t/ HTTP/1.1", "GET /api/repo/team/simple/t/ HTTP/1.1"),
        ("sha256=" + "a" * 64, "sha256=" + "a" * 64),
        # A digest where our URLs put one stays; after anything else it may hide a token.
        ("/files/" + "a" * 64 + "/f.whl", "/files/" + "a" * 64 + "/f.whl"),
        ("/files/%2F" + "a" * 64 + "/f.whl", "/files/%2F<redacted>/f.whl"),
    ],
)
def test_log_redaction(line: str, expected: str | None) -> None:
    redacted = redact(line)
    assert TOKEN not in redacted
    if expected is not None:
        assert redacted == expected
