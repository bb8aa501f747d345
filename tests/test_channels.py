from __future__ import annotations

import pytest

from private_channels.channels import (
    ChannelExistsError,
    ChannelRegistry,
    InvalidChannelNameError,
    validate_channel_name,
)
from private_channels.storage import Storage


@pytest.mark.parametrize(
    "name",
    ["a", "data-team", "Team_1.2", "x" * 64, "_private", "9lives"],
)
def test_valid_names(name: str) -> None:
    assert validate_channel_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "x" * 65, ".", "..", ".hidden", "-dash", "a/b", "a b", "ünï", "t", "T", "a\n"],
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(InvalidChannelNameError):
        validate_channel_name(name)


def test_create_get_list_delete(storage: Storage) -> None:
    registry = ChannelRegistry(storage)
    registry.create("b-private")
    registry.create("a-public", public=True)
    assert [(c.name, c.public) for c in registry.list()] == [
        ("a-public", True),
        ("b-private", False),
    ]
    assert registry.get("a-public").public  # type: ignore[union-attr]
    assert registry.get("missing") is None
    assert registry.get("../etc") is None
    with pytest.raises(ChannelExistsError):
        registry.create("a-public")
    registry.delete("a-public")
    assert registry.get("a-public") is None
    with pytest.raises(FileNotFoundError):
        registry.delete("a-public")


def test_delete_removes_everything_the_channel_holds(storage: Storage) -> None:
    import io

    registry = ChannelRegistry(storage)
    registry.create("gone")
    registry.create("gone-too-not")
    storage.create("channels/gone/pypi/x.json", io.BytesIO(b"{}"))
    storage.create("channels/gone-too-not/keep", io.BytesIO(b"{}"))
    registry.delete("gone")
    assert list(storage.list("channels/gone/")) == []
    assert list(storage.list("channels/gone-too-not/")) == ["channels/gone-too-not/keep"]
