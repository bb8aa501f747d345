"""The health endpoint ``P/-/health``: storage checked, outside every channel, no token."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import IO

import pytest
import webtest

from private_channels import ChannelRegistry, MemoryStorage, Storage
from private_channels.health import HealthMiddleware, check_storage
from private_channels.storage import Stat

from .support import mounted, test_app

PREFIXES = ["/api/repo", "/deep/er/mount"]


class BrokenStorage(MemoryStorage):
    """A storage whose backend stopped answering (a dead NFS mount, S3 outage)."""

    def __init__(self, *, broken: str = "list") -> None:
        super().__init__()
        self.broken = broken

    def list(self, prefix: str) -> Iterator[str]:
        if self.broken == "list":
            raise OSError("connection refused to 10.1.2.3 with password hunter2")
        return super().list(prefix)

    def create(self, key: str, data: IO[bytes]) -> Stat:
        if self.broken == "create":
            raise PermissionError("read-only file system")
        return super().create(key, data)


@pytest.mark.parametrize("prefix", PREFIXES)
def test_healthy_storage_answers_200_json(storage: Storage, prefix: str) -> None:
    app = test_app(storage, prefix)
    response = app.get(f"{prefix}/-/health")
    assert response.status_int == 200
    assert response.content_type == "application/json"
    assert response.json["status"] == "ok"
    assert response.headers["Cache-Control"] == "no-store"
    assert app.head(f"{prefix}/-/health").status_int == 200


@pytest.mark.parametrize("prefix", PREFIXES)
def test_broken_storage_is_503_without_details(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = test_app(BrokenStorage(), prefix)
    with caplog.at_level(logging.ERROR, logger="private_channels.health"):
        response = app.get(f"{prefix}/-/health", status=503)
    assert "storage does not answer" in response.text
    assert "hunter2" not in response.text and "10.1.2.3" not in response.text
    # The operator finds the reason in the log.
    assert "connection refused" in caplog.text


def test_write_check_catches_a_read_only_storage() -> None:
    storage = BrokenStorage(broken="create")
    check_storage(storage)  # reading works
    with pytest.raises(PermissionError):
        check_storage(storage, write=True)

    def host(environ, start_response):  # type: ignore[no-untyped-def]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"host"]

    app = webtest.TestApp(mounted(HealthMiddleware(host, storage, check_write=True), "/api/repo"))
    app.get("/api/repo/-/health", status=503)
    # Everything else passes on untouched to the wrapped app.
    assert app.get("/api/repo/other").text == "host"
    # A successful write check leaves nothing behind.
    healthy = MemoryStorage()
    check_storage(healthy, write=True)
    assert list(healthy.list("")) == []


@pytest.mark.parametrize("prefix", PREFIXES)
def test_health_needs_no_token_even_with_private_channels(prefix: str) -> None:
    storage = MemoryStorage()
    ChannelRegistry(storage).create("team")
    app = test_app(storage, prefix)
    assert app.get(f"{prefix}/-/health").status_int == 200
    # A wrong token sent by a probe that shares a client with real requests does not
    # matter to the health check, which is outside the token layer.
    assert app.get(f"{prefix}/-/health", headers={"X-Auth": "nonsense"}).status_int == 200
    # And the channel namespace is untouched: '-' is not a channel name.
    app.get(f"{prefix}/team/simple/", status=401)
    app.get(f"{prefix}/-/other", status=401)


@pytest.mark.parametrize("prefix", PREFIXES)
def test_only_get_and_head(prefix: str) -> None:
    app = test_app(MemoryStorage(), prefix)
    response = app.post(f"{prefix}/-/health", status=405)
    assert response.headers["Allow"] == "GET, HEAD"
    assert "GET and HEAD" in response.status


def test_health_can_be_turned_off() -> None:
    app = test_app(MemoryStorage(), "/api/repo", health=False)
    assert app.get("/api/repo/-/health", expect_errors=True).status_int in (401, 404)
