"""Tokens against a running ``private-channels serve``: curl, raw HTTP, and the log.

Every request carries a token in one of the five forms (good, wrong, expired, revoked,
signed), on happy and error paths alike; afterwards the server's whole log output is
searched for every token, and no response may have echoed one.
"""

from __future__ import annotations

import base64
import http.client
import re
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from private_channels.tokens import Scope, mint_signed_token

from .support import LiveServer, live_server, require_client

pytestmark = pytest.mark.e2e

SECRET_KEY = "a host secret key that is long enough for the config"
CHALLENGE = 'Basic realm="private-channels"'
FORMS = ["basic", "pypi", "x-auth", "bearer", "path"]


@dataclass
class Answer:
    status: int
    reason: str
    headers: http.client.HTTPMessage
    body: str


@dataclass
class Client:
    """Raw HTTP to the live server, so that request lines are sent exactly as written."""

    server: LiveServer
    answers: list[Answer] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return urlsplit(self.server.url).path

    def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> Answer:
        parts = urlsplit(self.server.url)
        assert parts.hostname is not None
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            answer = Answer(
                response.status, response.reason, response.headers, response.read().decode()
            )
            response.close()
        finally:
            connection.close()
        self.answers.append(answer)
        return answer

    def send(
        self, form: str, secret: str | None, channel: str, action: str, **kwargs: str
    ) -> Answer:
        path = f"/{channel}/simple/" if action == "read" else f"/{channel}/"
        url, headers = carry(form, self.prefix, path, secret)
        if action == "read":
            return self.request("GET", url, headers)
        body, content_type = multipart(
            {":action": "file_upload", "name": "demo", "version": "1.0"},
            ("content", "demo-1.0.tar.gz", b"not really a tarball"),
        )
        return self.request("POST", url, {**headers, "Content-Type": content_type}, body)


def raw_request(server: LiveServer, request_line: str) -> bytes:
    """Send one request line as is, and return what the server answers."""
    parts = urlsplit(server.url)
    assert parts.hostname is not None and parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        # Closed after the answer: waitress keeps a connection open for the next request.
        sock.sendall(request_line.encode("latin-1") + b"\r\nHost: x\r\nConnection: close\r\n\r\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def carry(form: str, prefix: str, path: str, secret: str | None) -> tuple[str, dict[str, str]]:
    if secret is None:
        return prefix + path, {}
    if form == "path":
        return f"{prefix}/t/{secret}{path}", {}
    header = {
        "basic": ("Authorization", basic(secret, "x-auth-token")),
        "pypi": ("Authorization", basic("__token__", secret)),
        "x-auth": ("X-Auth", secret),
        "bearer": ("Authorization", f"Bearer {secret}"),
    }[form]
    return prefix + path, dict([header])


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def multipart(fields: dict[str, str], file: tuple[str, str, bytes]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    chunks = []
    for name, value in fields.items():
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + f"{value}\r\n".encode()
        )
    name, filename, data = file
    chunks.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
        f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
        + data
        + b"\r\n"
    )
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


@dataclass
class Setup:
    server: LiveServer
    tokens: dict[str, str]


# "text": the access log middleware logs requests (on the default server, waitress);
# "off": werkzeug's development server's own request log does.
@pytest.fixture(scope="module", params=["text", "off"], ids=["access-log", "werkzeug-log"])
def setup(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("e2e-auth")
    env = {
        "PRIVATE_CHANNELS_SECRET_KEY": SECRET_KEY,
        "PRIVATE_CHANNELS_TOKEN_CACHE_TTL": "1",
        "PRIVATE_CHANNELS_LOG_FORMAT": request.param,
    }
    server_name = "werkzeug" if request.param == "off" else None
    with live_server(str(tmp / "data"), tmp, extra_env=env, server=server_name) as server:
        server.cli("channel", "create", "team")
        server.cli("channel", "create", "open", "--public")
        server.cli("channel", "create", "elsewhere")
        tokens = {
            "write": server.token("team", "write"),
            "read": server.token("team", "read"),
            "other": server.token("elsewhere", "admin"),
            "star": server.token("*", "write"),
            "wrong": "0123abcd" * 6,
            "signed": mint_signed_token(SECRET_KEY, channels=["team"], scope=Scope.WRITE),
            "signed-revoked": mint_signed_token(
                SECRET_KEY, channels=["*"], scope=Scope.ADMIN, token_id="0123456789ab"
            ),
            "signed-foreign": mint_signed_token("x" * 40, channels=["*"], scope=Scope.ADMIN),
        }
        expiring = server.cli(
            "token", "create", "--channel", "*", "--scope", "admin", "--expires", "1s"
        )
        tokens["expired"] = expiring.stdout.splitlines()[-1]
        revoked = server.cli("token", "create", "--channel", "*", "--scope", "admin")
        tokens["revoked"] = revoked.stdout.splitlines()[-1]
        server.cli("token", "revoke", created_id(revoked))
        server.cli("token", "revoke", "0123456789ab")
        time.sleep(1.1)  # the expiring token's second
        yield Setup(server, tokens)


def created_id(result: subprocess.CompletedProcess[str]) -> str:
    """The id ``token create`` reports on stderr."""
    match = re.search(r"created token ([0-9a-f]{12})", result.stderr)
    assert match, result.stderr
    return match[1]


def expected(kind: str, channel: str, action: str) -> int:
    if kind in {"wrong", "expired", "revoked", "signed-revoked", "signed-foreign"}:
        return 401
    if kind == "none":
        return 200 if (channel, action) == ("open", "read") else 401
    if action == "read":
        if channel == "open":
            return 200
        return 403 if kind == "other" else 200
    if kind == "star" or (kind in {"write", "signed"} and channel == "team"):
        return 200
    return 403  # read-only, or a token for another channel


def test_every_form_every_kind_over_http(setup: Setup) -> None:
    client = Client(setup.server)
    wrong = []
    for form in FORMS:
        for kind in ["none", *setup.tokens]:
            secret = setup.tokens.get(kind)
            for channel in ("team", "open"):
                for action in ("read", "upload"):
                    answer = client.send(form, secret, channel, action)
                    want = expected(kind, channel, action)
                    ok = answer.status == want if want != 200 else answer.status not in (401, 403)
                    if not ok:
                        wrong.append(f"{form} {kind} {channel} {action}: {answer.status} != {want}")
                    if answer.status == 401 and answer.headers["WWW-Authenticate"] != CHALLENGE:
                        wrong.append(f"{form} {kind}: 401 without the challenge")
    assert not wrong, "\n".join(wrong)
    assert_no_token_in(setup, client.answers)


def test_error_paths_do_not_leak(setup: Setup) -> None:
    client = Client(setup.server)
    prefix = client.prefix
    tokens = setup.tokens
    good, wrong = tokens["write"], tokens["wrong"]
    statuses = {
        # unknown channels: 401/403 to outsiders, 404 to a token allowed to know
        f"{prefix}/t/{good}/nosuch/simple/": 403,
        f"{prefix}/t/{tokens['star']}/nosuch/simple/": 404,
        f"{prefix}/t/{wrong}/nosuch/simple/": 401,
        # nothing after the token, or after the channel
        f"{prefix}/t/{good}": 404,
        f"{prefix}/t/{good}/": 404,
        f"{prefix}/t/{good}/team/no/such/thing": 404,
        # an empty token segment
        f"{prefix}/t//team/simple/": 401,
        # the path form as clients may encode it
        f"{prefix}/%74/{good}/team/simple/": 200,
        f"{prefix}/t%2F{good}/team/simple/": 200,
        f"{prefix}/t/{good}/team/simple/?q={good[:8]}": 200,
        # outside the mount
        f"/t/{good}/team/simple/": 404,
        f"/elsewhere/t/{good}/x": 404,
    }
    wrong_answers = []
    for path, status in statuses.items():
        answer = client.request("GET", path)
        if answer.status != status:
            wrong_answers.append(f"{path}: {answer.status} != {status}")
    # a token where a channel belongs, and in a header nobody asked for
    client.request("GET", f"{prefix}/{good}/simple/")
    client.request("GET", f"{prefix}/{good}/simple/", {"X-Auth": good})  # 403
    client.request("GET", f"{prefix}/{good}/simple/", {"X-Auth": tokens["star"]})  # 404
    client.request("GET", f"{prefix}/team/simple/", {"Authorization": f"Token {good}"})
    client.request("GET", f"{prefix}/team/simple/", {"Authorization": basic("me", good)})
    # request lines the server refuses outright (werkzeug logs them whole)
    for line in (
        f"GET {prefix}/t/{good}/team/simple/ HTTP/1.1 extra",
        f"GET {prefix}/t/{good}/team/simple/ extra HTTP/1.1",
        f"GET {prefix}/team/simple/ {good} HTTP/1.1",
        f"GET {prefix}/t/{good}/team/simple/ HTTP/9.9",
        f"GET {prefix}/t/{good}/team/simple/\x01 HTTP/1.1",
    ):
        refused = raw_request(setup.server, line)
        assert refused.startswith(b"HTTP/1.") or b"Error code: " in refused, refused
        assert good.encode() not in refused, refused
    # uploads refused before their body is read
    for secret in (tokens["read"], wrong, tokens["expired"]):
        answer = client.send("path", secret, "team", "upload")
        if answer.status not in (401, 403):
            wrong_answers.append(f"upload with {secret[:4]}...: {answer.status}")
    assert not wrong_answers, "\n".join(wrong_answers)
    assert_no_token_in(setup, client.answers)


def test_revocation_reaches_the_running_server(setup: Setup) -> None:
    server = setup.server
    client = Client(server)
    created = server.cli("token", "create", "--channel", "team", "--scope", "read")
    secret = created.stdout.splitlines()[-1]
    token_id = created_id(created)
    assert f"{token_id}\tteam\tread\tnever\t\tactive" in server.cli("token", "list").stdout
    assert client.send("x-auth", secret, "team", "read").status == 200
    server.cli("token", "revoke", token_id)
    # PRIVATE_CHANNELS_TOKEN_CACHE_TTL=1: refused within that second
    time.sleep(1.2)
    for form in FORMS:
        assert client.send(form, secret, "team", "read").status == 401
    assert_no_token_in(setup, client.answers, also=[secret])


CURL_CELLS = [
    # (form, kind, channel, action)
    ("basic", "write", "team", "upload"),
    ("basic", "read", "team", "upload"),
    ("pypi", "write", "team", "read"),
    ("pypi", "wrong", "open", "read"),
    ("x-auth", "other", "team", "read"),
    ("x-auth", "none", "open", "read"),
    ("bearer", "revoked", "team", "read"),
    ("bearer", "star", "team", "upload"),
    ("path", "read", "team", "read"),
    ("path", "expired", "team", "read"),
    ("path", "signed", "team", "upload"),
    ("path", "none", "team", "read"),
    ("path", "other", "open", "upload"),
]


def test_curl_sample(setup: Setup, tmp_path: Path) -> None:
    curl = require_client("curl")
    server = setup.server
    upload = tmp_path / "demo-1.0.tar.gz"
    upload.write_bytes(b"not really a tarball")
    wrong = []
    for form, kind, channel, action in CURL_CELLS:
        secret = setup.tokens.get(kind)
        path = f"/{channel}/simple/" if action == "read" else f"/{channel}"
        base = server.url
        args = [curl, "-sS", "-o", str(tmp_path / "body"), "-D", str(tmp_path / "head")]
        args += ["-w", "%{http_code}"]
        if secret is not None:
            if form == "basic":
                args += ["-u", f"{secret}:x-auth-token"]
            elif form == "pypi":
                args += ["-u", f"__token__:{secret}"]
            elif form == "x-auth":
                args += ["-H", f"X-Auth: {secret}"]
            elif form == "bearer":
                args += ["-H", f"Authorization: Bearer {secret}"]
            else:
                base = f"{server.url}/t/{secret}"
        if action == "upload":
            args += ["-F", ":action=file_upload", "-F", "name=demo", "-F", "version=1.0"]
            args += ["-F", f"content=@{upload}"]
        result = subprocess.run(
            [*args, base + path], capture_output=True, text=True, timeout=60, check=True
        )
        status = int(result.stdout)
        want = expected("none" if secret is None else kind, channel, action)
        if (want != 200 and status != want) or (want == 200 and status in (401, 403)):
            wrong.append(f"curl {form} {kind} {channel} {action}: {status} != {want}")
        head, body = (tmp_path / "head").read_text(), (tmp_path / "body").read_text()
        # Header names are case-insensitive; waitress sends "Www-Authenticate".
        if status == 401 and f"www-authenticate: {CHALLENGE}".lower() not in head.lower():
            wrong.append(f"curl {form} {kind}: 401 without the challenge:\n{head}")
        if secret is not None and (secret in head or secret in body):
            wrong.append(f"curl {form} {kind}: the answer echoes the token")
    assert not wrong, "\n".join(wrong)
    assert_no_token_in(setup, [])


def assert_no_token_in(setup: Setup, answers: list[Answer], also: Sequence[str] = ()) -> None:
    secrets = [*setup.tokens.values(), *also]
    for answer in answers:
        text = f"{answer.reason}\n{answer.headers}\n{answer.body}"
        for secret in secrets:
            assert secret not in text, f"a response echoes a token: {text[:300]}"
    log = setup.server.log_text()
    assert '"GET /api/repo/' in log, "the server logged no request at all"
    for secret in secrets:
        for needle in (
            secret,
            base64.b64encode(f"{secret}:x-auth-token".encode()).decode(),
            base64.b64encode(f"__token__:{secret}".encode()).decode(),
        ):
            assert needle not in log, f"the server log holds a token:\n{_lines_with(log, needle)}"


def _lines_with(log: str, needle: str) -> str:
    return "\n".join(line.replace(needle, "<TOKEN>") for line in log.splitlines() if needle in line)
