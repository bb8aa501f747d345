"""The composition under any mount prefix, and the channel routing layer."""

from __future__ import annotations

import pytest

from private_channels import ChannelRegistry, MemoryStorage, Scope, TokenStore
from private_channels.routing import CHANNEL_KEY

from .support import mounted, test_app

PREFIXES = ["/", "/api/repo", "/deep/er/mount"]


@pytest.fixture
def storage() -> MemoryStorage:  # type: ignore[override]
    storage = MemoryStorage()
    ChannelRegistry(storage).create("team")
    ChannelRegistry(storage).create("open", public=True)
    return storage


def _base(prefix: str) -> str:
    return prefix.rstrip("/")


@pytest.mark.parametrize("prefix", PREFIXES)
def test_routing_moves_channel_into_script_name(storage: MemoryStorage, prefix: str) -> None:
    import webtest

    from private_channels.routing import ChannelMiddleware

    seen = {}

    def inner(environ, start_response):  # type: ignore[no-untyped-def]
        seen.update(
            script=environ["SCRIPT_NAME"], path=environ["PATH_INFO"], channel=environ[CHANNEL_KEY]
        )
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    app = webtest.TestApp(mounted(ChannelMiddleware(inner, ChannelRegistry(storage)), prefix))
    app.get(f"{_base(prefix)}/open/simple/x/")
    assert seen["script"] == f"{_base(prefix)}/open"
    assert seen["path"] == "/simple/x/"
    assert seen["channel"].name == "open"
    app.get(f"{_base(prefix)}/open")
    assert seen["path"] == ""


@pytest.mark.parametrize("prefix", PREFIXES)
def test_unknown_channel_is_hidden_from_outsiders(storage: MemoryStorage, prefix: str) -> None:
    tokens = TokenStore(storage)
    team_token, _ = tokens.create(channels=["team"], scope=Scope.READ)
    all_token, _ = tokens.create(channels=["*"], scope=Scope.READ)
    app = test_app(storage, prefix)
    url = f"{_base(prefix)}/nosuch/simple/"
    anonymous = app.get(url, status=401)
    assert anonymous.headers["WWW-Authenticate"] == 'Basic realm="private-channels"'
    assert "missing" in anonymous.text
    app.get(url, headers={"X-Auth": team_token}, status=403)
    app.get(url, headers={"X-Auth": all_token}, status=404)


@pytest.mark.parametrize("prefix", PREFIXES)
def test_unclaimed_requests_are_404_not_fake_answers(storage: MemoryStorage, prefix: str) -> None:
    tokens = TokenStore(storage)
    token, _ = tokens.create(channels=["team"], scope=Scope.WRITE)
    app = test_app(storage, prefix)
    response = app.get(f"{_base(prefix)}/team/nothing-here", headers={"X-Auth": token}, status=404)
    assert response.content_type == "text/plain"
    response = app.post(
        f"{_base(prefix)}/team/",
        {"unrelated": "field"},
        headers={"X-Auth": token},
        status=400,
    )
    assert "file_upload" in response.text and "cran_source_package" in response.text


def test_mount_root_without_channel_is_404() -> None:
    app = test_app(MemoryStorage(), "/api/repo")
    app.get("/api/repo/", status=404)
    app.get("/api/repo", status=404)
