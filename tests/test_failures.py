"""Failures inside the server: one sentence that names nothing of the storage, a log
line that names the document, and never a bare 500."""

from __future__ import annotations

import errno
import io
import logging
from pathlib import Path
from typing import IO, Any

import pytest
import webtest

from private_channels import ChannelRegistry, MemoryStorage, Scope, TokenStore, make_app
from private_channels.failures import DAMAGED, FAILED, FORBIDDEN, FULL, READ_ONLY
from private_channels.storage import FileSystemStorage, Stat, Storage

from .packages import make_wheel
from .support import mounted
from .test_cran_description import source_package

PREFIX = "/api/repo"


def app_for(storage: Storage, **options: Any) -> webtest.TestApp:
    return webtest.TestApp(mounted(make_app(storage, **options), PREFIX))


def upload_wheel(app: webtest.TestApp, token: str, wheel: Path, status: int = 200) -> Any:
    return app.post(
        f"{PREFIX}/team",
        {":action": "file_upload", "protocol_version": "1"},
        upload_files=[("content", wheel.name, wheel.read_bytes())],
        headers={"X-Auth": token},
        content_type="multipart/form-data",
        status=status,
    )


@pytest.fixture
def stocked(tmp_path: Path) -> tuple[FileSystemStorage, webtest.TestApp, str]:
    """A filesystem storage with channel ``team``, a wheel and an R package in it, and
    an admin token for it."""
    storage = FileSystemStorage(tmp_path / "data")
    ChannelRegistry(storage).create("team")
    token, _ = TokenStore(storage).create(channels=["team"], scope=Scope.ADMIN)
    app = app_for(storage)
    upload_wheel(app, token, make_wheel(tmp_path, "demo", "1.0"))
    app.post(
        f"{PREFIX}/team",
        {"filetype": "cran_source_package"},
        upload_files=[("content", "abc_1.0.tar.gz", source_package("abc", "1.0"))],
        headers={"X-Auth": token},
        content_type="multipart/form-data",
    )
    return storage, app, token


def damage(storage: FileSystemStorage, key: str, content: bytes = b'{"files": {') -> None:
    storage.put(key, io.BytesIO(content))


DOCUMENTS = {
    "channel record": ("registry/channels/team.json", "team/simple/"),
    "channel record of the wrong shape": ("registry/channels/team.json", "team/simple/"),
    "project document": ("channels/team/pypi/projects/demo.json", "team/simple/demo/"),
    "project list": ("channels/team/pypi/projects.json", "team/simple/"),
    "CRAN index": ("channels/team/cran/index/src/contrib.json", "team/src/contrib/PACKAGES"),
}


@pytest.mark.parametrize("what", DOCUMENTS)
@pytest.mark.parametrize("who", ["anonymous", "token"])
def test_a_damaged_document_is_one_sentence_and_a_log_line_naming_it(
    stocked: tuple[FileSystemStorage, webtest.TestApp, str],
    what: str,
    who: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    storage, app, token = stocked
    key, path = DOCUMENTS[what]
    damage(storage, key, b'["a list"]' if "shape" in what else b'{"files": {')
    headers = {"X-Auth": token} if who == "token" else {}
    with caplog.at_level(logging.ERROR, logger="private_channels.errors"):
        answer = app.get(f"{PREFIX}/{path}", headers=headers, expect_errors=True)
    if who == "anonymous" and key != DOCUMENTS["channel record"][0]:
        # The channel record is fine: anonymous callers are refused before any read.
        assert answer.status_int == 401
        return
    assert answer.status_int == 500
    assert answer.text.startswith(DAMAGED) and answer.status.startswith(f"500 {DAMAGED}")
    assert answer.text.count("\n") == 1
    # Nothing of the storage's insides for the caller, whoever it is...
    for inside in (key, "registry", "json", "Expecting", str(storage.root)):
        assert inside not in answer.text
    # ...and the document named in the log, for the administrator.
    assert f"storage document {key!r} is damaged" in caplog.text
    assert f"GET {PREFIX}/" in caplog.text


def test_a_damaged_token_record_is_one_sentence_and_named_in_the_log(
    stocked: tuple[FileSystemStorage, webtest.TestApp, str], caplog: pytest.LogCaptureFixture
) -> None:
    storage, _, token = stocked
    (key,) = storage.list("registry/tokens/")
    damage(storage, key, b"")
    fresh = app_for(storage)  # no verification cached
    with caplog.at_level(logging.ERROR, logger="private_channels.errors"):
        answer = fresh.get(f"{PREFIX}/team/simple/", headers={"X-Auth": token}, status=500)
    assert answer.text.startswith(DAMAGED) and "registry" not in answer.text
    assert f"storage document {key!r} is damaged" in caplog.text
    assert token not in caplog.text
    # Requests without that token are untouched.
    fresh.get(f"{PREFIX}/team/simple/", status=401)


def test_health_reports_a_damaged_registry_document(
    stocked: tuple[FileSystemStorage, webtest.TestApp, str], caplog: pytest.LogCaptureFixture
) -> None:
    storage, app, _ = stocked
    assert app.get(f"{PREFIX}/-/health").json["status"] == "ok"
    damage(storage, "registry/channels/team.json")
    with caplog.at_level(logging.ERROR, logger="private_channels.health"):
        answer = app.get(f"{PREFIX}/-/health", status=503)
    assert "damaged document" in answer.text and "team" not in answer.text
    assert "'registry/channels/team.json' is damaged" in caplog.text
    storage.put("registry/channels/team.json", io.BytesIO(b'{"name": "team", "public": false, '
                                                           b'"created": 1.0}'))  # fmt: skip
    assert app.get(f"{PREFIX}/-/health").json["status"] == "ok"
    storage.put("registry/token-key", io.BytesIO(b"short"))
    answer = app.get(f"{PREFIX}/-/health", status=503)
    assert "damaged document" in answer.text


class FailingStorage(MemoryStorage):
    """A storage whose writes fail the way a disk or a bucket does."""

    def __init__(self, error: OSError) -> None:
        super().__init__()
        self.error: OSError | None = None
        self.failure = error

    def create(self, key: str, data: IO[bytes]) -> Stat:
        if self.error is not None:
            raise self.error
        return super().create(key, data)

    def put(self, key: str, data: IO[bytes], *, if_match: str | None = None) -> Stat:
        if self.error is not None:
            raise self.error
        return super().put(key, data, if_match=if_match)


@pytest.mark.parametrize(
    ("error", "status", "sentence"),
    [
        (OSError(errno.EROFS, "Read-only file system"), 500, READ_ONLY),
        (PermissionError(errno.EACCES, "Permission denied"), 500, FORBIDDEN),
        (OSError(errno.ENOSPC, "No space left on device"), 507, FULL),
        (OSError(errno.EIO, "Input/output error"), 500, FAILED),
    ],
)
def test_a_storage_that_refuses_writes_says_so_in_one_sentence(
    tmp_path: Path, error: OSError, status: int, sentence: str, caplog: pytest.LogCaptureFixture
) -> None:
    storage = FailingStorage(error)
    ChannelRegistry(storage).create("team")
    token, _ = TokenStore(storage).create(channels=["team"], scope=Scope.WRITE)
    app = app_for(storage, access_log="json")
    storage.error = error
    with caplog.at_level(logging.ERROR, logger="private_channels.errors"):
        answer = upload_wheel(app, token, make_wheel(tmp_path, "demo", "1.0"), status=status)
    request_id = answer.headers["X-Request-ID"]
    assert answer.text == f"{sentence}; its administrator can find why in the server's log " \
        f"(request id {request_id}).\n"  # fmt: skip
    assert error.strerror in caplog.text and request_id in caplog.text
    assert list(storage.list("channels/")) == []  # a rejected upload leaves nothing


def test_a_failure_after_start_response_still_gets_its_sentence() -> None:
    def failing(environ, start_response):  # type: ignore[no-untyped-def]
        start_response("200 OK", [("Content-Type", "text/plain")])
        raise RuntimeError("a bug")

    from private_channels.failures import FailureMiddleware

    answer = webtest.TestApp(FailureMiddleware(failing)).get("/", status=500)
    assert answer.text.startswith(FAILED)


def test_a_bug_is_logged_with_its_traceback_and_no_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from private_channels.failures import FailureMiddleware

    secret = "46e98d3dbf2378bb26e2107867652ee734eb098ea5b96f35"

    def failing(environ, start_response):  # type: ignore[no-untyped-def]
        raise RuntimeError(f"could not parse /api/repo/t/{secret}/x")

    with caplog.at_level(logging.ERROR, logger="private_channels.errors"):
        answer = webtest.TestApp(FailureMiddleware(failing)).get(f"/t/{secret}/x", status=500)
    assert answer.text.startswith(FAILED) and secret not in answer.text
    assert "Traceback" in caplog.text and "RuntimeError: could not parse" in caplog.text
    assert secret not in caplog.text and "/t/<redacted>/x" in caplog.text


# -- names longer than any storage key ----------------------------------------------

LINUX_AGENT = "R (4.{} x86_64-pc-linux-gnu x86_64 linux-gnu)"


@pytest.mark.parametrize(
    ("method", "path", "headers", "statuses"),
    [
        ("GET", "team/simple/" + "a" * 251 + "/", {}, {404}),
        ("GET", "team/simple/" + "a" * 2000 + "/", {}, {404}),
        ("GET", "team/files/" + "a" * 64 + "/" + "a" * 300 + "-1.0.tar.gz", {}, {404}),
        ("GET", "team/bin/windows/contrib/4." + "1" * 1000 + "/PACKAGES", {}, {404}),
        ("GET", "team/bin/windows/contrib/4." + "1" * 250 + "/PACKAGES", {}, {404}),
        ("GET", "team/bin/windows/contrib/4." + "1" * 250 + "/abc_1.0.zip", {}, {404}),
        # A Linux R whose version no binary can have gets the source, as any other R.
        ("GET", "team/__linux__/jammy/src/contrib/abc_1.0.tar.gz",
         {"User-Agent": LINUX_AGENT.format("1" * 1000)}, {200}),
        ("GET", "team/__linux__/jammy/src/contrib/abc_1.0.tar.gz",
         {"User-Agent": LINUX_AGENT.format("1" * 240)}, {200}),
        ("POST", "team/-/yank", {"project": "a" * 300, "version": "1.0"}, {400}),
        ("POST", "team/-/yank", {"project": "a" * 249, "version": "1.0"}, {404}),
        ("POST", "team/-/yank", {"filename": "a" * 246 + "-1.0.zip"}, {404}),
        ("POST", "team/-/yank", {"filename": "a" * 300 + "-1.0.tar.gz"}, {400}),
    ],
)  # fmt: skip
def test_over_long_names_are_404_or_400_never_500(
    stocked: tuple[FileSystemStorage, webtest.TestApp, str],
    method: str,
    path: str,
    headers: dict[str, str],
    statuses: set[int],
) -> None:
    """On the filesystem, where a name over 255 bytes fails in the kernel (with a
    project directory that exists, so the kernel gets as far as the name)."""
    _, app, token = stocked
    if method == "GET":
        answer = app.get(f"{PREFIX}/{path}", headers={"X-Auth": token, **headers}, status="*")
    else:
        answer = app.post(f"{PREFIX}/{path}", headers, headers={"X-Auth": token}, status="*")
    assert answer.status_int in statuses, answer.body[:200]
    if answer.status_int != 200:
        assert answer.text.count("\n") == 1


def test_a_bucket_that_refuses_writes_is_said_to_refuse_them() -> None:
    """boto3 raises its own error, not an OSError, for a policy that allows no write."""
    from botocore.exceptions import ClientError

    from private_channels.failures import answer_failure

    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "PutObject")
    error, logged = answer_failure({"REQUEST_METHOD": "POST"}, denied)
    assert error.code == 500 and error.sentence.startswith(FORBIDDEN)
    assert "AccessDenied" in logged
    other = ClientError({"Error": {"Code": "SlowDown", "Message": "later"}}, "PutObject")
    assert answer_failure({}, other)[0].sentence.startswith(FAILED)
