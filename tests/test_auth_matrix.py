"""The authentication matrix of SPEC.md ("Tokens"), cell by cell.

Five forms x token kinds x {public, private, unknown channel} x {read, upload}, each
with its exact status, mounted at two prefixes.  The full matrix runs against a probe
composition (token middleware, channel routing, and a handler that only authorizes),
so that it states the contract of the token layer by itself; a sample of its cells
runs through the real :func:`~private_channels.make_app`, where the handlers of the
other middlewares must give the same 401 and 403 answers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import webtest
from werkzeug.exceptions import HTTPException

from private_channels import make_app
from private_channels.auth import TokenAuthMiddleware, authorize
from private_channels.channels import ChannelRegistry
from private_channels.routing import ChannelMiddleware, current_channel
from private_channels.storage import MemoryStorage
from private_channels.tokens import Scope, TokenStore, mint_signed_token

from .support import mounted
from .test_auth import CHALLENGE, request_for

KEY = "the host's secret key"
PREFIXES = ["/api/repo", "/deep/er/mount"]
FORMS = ["basic", "pypi", "x-auth", "bearer", "path"]
PRIVATE, PUBLIC, UNKNOWN = "team", "open", "ghost"
OK = 200

# kind -> (what the token is, whether it is a valid token at all)
KINDS = [
    "none",
    "wrong",
    "malformed",
    "expired",
    "revoked",
    "read",
    "write",
    "admin",
    "other",
    "star",
    "star-read",
    "signed-write",
    "signed-expired",
    "signed-revoked",
    "signed-tampered",
    "signed-unknown-key",
]
BAD = {
    "wrong",
    "malformed",
    "expired",
    "revoked",
    "signed-expired",
    "signed-revoked",
    "signed-tampered",
    "signed-unknown-key",
}


def expected(kind: str, channel: str, action: str) -> int:
    """The status SPEC.md prescribes for one cell."""
    if kind in BAD:
        return 401  # whatever is asked, on whichever channel
    if kind == "none":
        return OK if (channel == PUBLIC and action == "read") else 401
    # tokens for PRIVATE and PUBLIC; "read" also names the UNKNOWN channel
    covers = {
        "read": {PRIVATE, PUBLIC, UNKNOWN},
        "write": {PRIVATE, PUBLIC},
        "admin": {PRIVATE, PUBLIC},
        "signed-write": {PRIVATE, PUBLIC},
        "other": {"elsewhere"},
        "star": {PRIVATE, PUBLIC, UNKNOWN},
        "star-read": {PRIVATE, PUBLIC, UNKNOWN},
    }[kind]
    may_write = kind in {"write", "admin", "star", "signed-write"}
    if channel == UNKNOWN:
        # 404 only to a caller allowed to know
        return 404 if UNKNOWN in covers else 403
    if action == "read":
        return OK if (channel == PUBLIC or channel in covers) else 403
    return OK if (channel in covers and may_write) else 403


@dataclass(frozen=True)
class Fixture:
    storage: MemoryStorage
    secrets: dict[str, str | None]


def build() -> Fixture:
    storage = MemoryStorage()
    registry = ChannelRegistry(storage)
    registry.create(PRIVATE)
    registry.create(PUBLIC, public=True)
    registry.create("elsewhere")
    store = TokenStore(storage, secret_key=KEY)
    both = [PRIVATE, PUBLIC]
    secrets: dict[str, str | None] = {"none": None, "wrong": "0123abcd" * 6, "malformed": "x!y"}
    secrets["read"], _ = store.create(channels=[*both, UNKNOWN], scope=Scope.READ)
    secrets["write"], _ = store.create(channels=both, scope=Scope.WRITE)
    secrets["admin"], _ = store.create(channels=both, scope=Scope.ADMIN)
    secrets["other"], _ = store.create(channels=["elsewhere"], scope=Scope.ADMIN)
    secrets["star"], _ = store.create(channels=["*"], scope=Scope.WRITE)
    secrets["star-read"], _ = store.create(channels=["*"], scope=Scope.READ)
    secrets["expired"], _ = store.create(channels=["*"], scope=Scope.ADMIN, expires_in=0.05)
    secrets["revoked"], revoked = store.create(channels=["*"], scope=Scope.ADMIN)
    store.revoke(revoked.id)
    secrets["signed-write"] = mint_signed_token(KEY, channels=both, scope=Scope.WRITE)
    secrets["signed-expired"] = mint_signed_token(
        KEY, channels=["*"], scope=Scope.ADMIN, expires_in=0.05
    )
    secrets["signed-revoked"] = mint_signed_token(
        KEY, channels=["*"], scope=Scope.ADMIN, token_id="0123456789ab"
    )
    store.revoke("0123456789ab")
    good = mint_signed_token(KEY, channels=["*"], scope=Scope.ADMIN)
    payload, _, signature = good.rpartition(".")
    secrets["signed-tampered"] = (
        payload + "." + ("A" if signature[0] != "A" else "B") + signature[1:]
    )
    secrets["signed-unknown-key"] = mint_signed_token(
        "not the key", channels=["*"], scope=Scope.ADMIN
    )
    time.sleep(0.1)  # for the two that expire
    return Fixture(storage, secrets)


@pytest.fixture(scope="module")
def fixture() -> Fixture:
    return build()


def probe(environ, start_response):  # type: ignore[no-untyped-def]
    """A handler that does nothing but the authorization check every handler makes."""
    scope = Scope.WRITE if environ["REQUEST_METHOD"] == "POST" else Scope.READ
    try:
        authorize(environ, current_channel(environ), scope)
    except HTTPException as error:
        return error(environ, start_response)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"authorized\n"]


def probe_app(fixture: Fixture, prefix: str) -> webtest.TestApp:
    store = TokenStore(fixture.storage, secret_key=KEY)
    inner = ChannelMiddleware(probe, ChannelRegistry(fixture.storage))
    return webtest.TestApp(mounted(TokenAuthMiddleware(inner, store), prefix))


def send(
    app: webtest.TestApp, form: str, prefix: str, channel: str, action: str, secret: str | None
) -> webtest.TestResponse:
    path = f"/{channel}/simple/" if action == "read" else f"/{channel}/"
    if secret is None:
        url, headers = f"{prefix}{path}", {}
    else:
        url, headers = request_for(form, prefix, path, secret)
    if action == "read":
        return app.get(url, headers=headers, expect_errors=True)
    return app.post(
        url,
        {":action": "file_upload", "name": "demo", "version": "1.0"},
        headers=headers,
        upload_files=[("content", "demo-1.0.tar.gz", b"not really a tarball")],
        expect_errors=True,
    )


def check_answer(response: webtest.TestResponse, kind: str, secret: str | None) -> list[str]:
    """What is wrong with a response besides its status (empty when all is well)."""
    problems = []
    if secret and (secret in response.text or secret in str(response.headers)):
        problems.append("echoes the token")
    if response.status_int == 401:
        if response.headers.get("WWW-Authenticate") != CHALLENGE:
            problems.append(f"401 without the challenge: {response.headers!r}")
        phrase = "missing" if kind == "none" else "invalid or expired"
        if phrase not in response.text:
            problems.append(f"401 body does not say {phrase!r}: {response.text!r}")
    return problems


def cells(channels: list[str]) -> Iterator[tuple[str, str, str]]:
    for channel in channels:
        for action in ("read", "upload"):
            for kind in KINDS:
                yield channel, action, kind


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("form", FORMS)
def test_matrix(fixture: Fixture, prefix: str, form: str) -> None:
    app = probe_app(fixture, prefix)
    wrong = []
    for channel, action, kind in cells([PRIVATE, PUBLIC, UNKNOWN]):
        secret = fixture.secrets[kind]
        response = send(app, form, prefix, channel, action, secret)
        want = expected(kind, channel, action)
        if response.status_int != want:
            wrong.append(f"{kind:18} {channel:6} {action:6}: {response.status_int}, want {want}")
        wrong += [f"{kind} {channel} {action}: {p}" for p in check_answer(response, kind, secret)]
    assert not wrong, "\n".join(wrong)


def test_matrix_states_the_spec() -> None:
    """A few cells spelled out, so the table above cannot drift from SPEC.md unseen."""
    assert expected("none", PRIVATE, "read") == 401
    assert expected("none", PUBLIC, "read") == 200
    assert expected("none", PUBLIC, "upload") == 401
    assert expected("wrong", PUBLIC, "read") == 401
    assert expected("revoked", PRIVATE, "read") == 401
    assert expected("read", PRIVATE, "upload") == 403
    assert expected("other", PRIVATE, "read") == 403
    assert expected("other", PUBLIC, "read") == 200
    assert expected("star", PRIVATE, "upload") == 200
    assert expected("star-read", PUBLIC, "upload") == 403
    assert expected("other", UNKNOWN, "read") == 403
    assert expected("none", UNKNOWN, "read") == 401
    assert expected("star", UNKNOWN, "upload") == 404


# -- the same cells through the real composition ------------------------------------

SAMPLE_FORMS = ["basic", "pypi", "path"]


@pytest.mark.parametrize(
    ("prefix", "form"),
    [("/api/repo", form) for form in SAMPLE_FORMS]
    + [("/deep/er/mount", "x-auth"), ("/deep/er/mount", "bearer")],
)
def test_matrix_through_make_app(fixture: Fixture, prefix: str, form: str) -> None:
    """Denied cells get exactly the probe's 401/403/404; allowed cells get anything else
    (what the upload and index handlers make of the request is theirs to decide)."""
    app = webtest.TestApp(mounted(make_app(fixture.storage, secret_key=KEY), prefix))
    wrong = []
    for channel, action, kind in cells([PRIVATE, PUBLIC, UNKNOWN]):
        secret = fixture.secrets[kind]
        response = send(app, form, prefix, channel, action, secret)
        want = expected(kind, channel, action)
        got = response.status_int
        if want in (401, 403, 404) and got != want:
            wrong.append(f"{kind:18} {channel:6} {action:6}: {got}, want {want}")
        if want == OK and got in (401, 403):
            wrong.append(f"{kind:18} {channel:6} {action:6}: {got}, want neither 401 nor 403")
        wrong += [f"{kind} {channel} {action}: {p}" for p in check_answer(response, kind, secret)]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("prefix", PREFIXES)
def test_cran_urls_through_make_app(fixture: Fixture, prefix: str) -> None:
    """The R side answers the same: reads of the CRAN index, curl's upload form."""
    app = webtest.TestApp(mounted(make_app(fixture.storage, secret_key=KEY), prefix))
    wrong = []
    for channel in (PRIVATE, PUBLIC, UNKNOWN):
        for kind in KINDS:
            secret = fixture.secrets[kind]
            for action in ("read", "upload"):
                path = f"/{channel}/src/contrib/PACKAGES" if action == "read" else f"/{channel}"
                if secret is None:
                    url, headers = f"{prefix}{path}", {}
                else:
                    url, headers = request_for("path", prefix, path, secret)
                if action == "read":
                    response = app.get(url, headers=headers, expect_errors=True)
                else:
                    response = app.post(
                        url,
                        {"filetype": "cran_source_package"},
                        headers=headers,
                        upload_files=[("content", "abc_1.0.tar.gz", b"not a tarball")],
                        expect_errors=True,
                    )
                want, got = expected(kind, channel, action), response.status_int
                if (want != OK and got != want) or (want == OK and got in (401, 403)):
                    wrong.append(f"{kind:18} {channel:6} {action:6}: {got}, want {want}")
                wrong += [f"{kind} {channel}: {p}" for p in check_answer(response, kind, secret)]
    assert not wrong, "\n".join(wrong)
