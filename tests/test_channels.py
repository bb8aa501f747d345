from __future__ import annotations

import io

import pytest

from private_channels.channels import (
    FORMAT_KEY,
    Channel,
    ChannelExistsError,
    ChannelRegistry,
    InvalidChannelNameError,
    InvalidUpstreamError,
    StorageFormat,
    Upstream,
    keeps_blobs_flat,
    parse_upstream_url,
    storage_format,
    upstream_settings,
    validate_channel_name,
    validate_upstream_settings,
)
from private_channels.storage import Storage, read_json


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


def test_a_new_storage_s_first_channel_says_its_blobs_are_flat_and_records_appended(
    storage: Storage,
) -> None:
    assert storage_format(storage) == StorageFormat() and not keeps_blobs_flat(storage)
    ChannelRegistry(storage).create("first")
    assert read_json(storage, FORMAT_KEY)[0] == {"blobs": "flat", "records": "appended"}
    assert storage_format(storage) == StorageFormat(flat_blobs=True, appended_records=True)
    assert keeps_blobs_flat(storage)
    # A storage an older version made: channels, and no word; a later channel adds none.
    storage.delete(FORMAT_KEY)
    ChannelRegistry(storage).create("second")
    assert storage_format(storage) == StorageFormat()
    # The thirtieth round's word: flat blobs, records written whole.
    storage.put(FORMAT_KEY, io.BytesIO(b'{"blobs": "flat"}'))
    assert storage_format(storage) == StorageFormat(flat_blobs=True)
    for damaged in (b"{", b"[]", b'{"blobs": "folders", "records": "whole"}'):
        storage.put(FORMAT_KEY, io.BytesIO(damaged))
        assert storage_format(storage) == StorageFormat()


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


# -- upstream settings ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "url", "username", "password"),
    [
        ("https://pypi.org/simple", "https://pypi.org/simple/", None, None),
        ("https://PyPI.org:443/simple/", "https://pypi.org:443/simple/", None, None),
        ("http://u:p%40ss@127.0.0.1:8080/r", "http://127.0.0.1:8080/r/", "u", "p@ss"),
        ("https://TOKEN@host/", "https://host/", "TOKEN", ""),
        ("https://[::1]:9/cran", "https://[::1]:9/cran/", None, None),
        ("  https://host/a%20b  ", "https://host/a%20b/", None, None),
    ],
)
def test_upstream_urls(text: str, url: str, username: str | None, password: str | None) -> None:
    upstream = parse_upstream_url(text)
    assert (upstream.url, upstream.username, upstream.password) == (url, username, password)
    assert "p@ss" not in repr(upstream) and "TOKEN" not in str(upstream)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"python_upstream": "ftp://host/"}, "must start with http:// or https://"),
        ({"python_upstream": "https://"}, "must start with http:// or https://"),
        ({"cran_upstream": "https://host/?q=1"}, "must not have a query or a fragment"),
        ({"cran_upstream": "https://host/#x"}, "must not have a query or a fragment"),
        ({"python_upstream": "https://h/api/t/abc/team/simple/"}, "path token"),
        ({"python_upstream": "https://h/" + "x" * 3000}, "at most 2048 characters"),
        ({"python_upstream": "https://h/a b"}, "without spaces or controls"),
        ({"python_upstream": "https://h:99999/"}, "not a valid URL"),
        ({"python_upstream": ""}, "is empty"),
        ({"upstream_allow": "acme"}, "must be a list of names"),
        ({"upstream_allow": ["ok", "no/slash"]}, "'no/slash' is not a project"),
        ({"upstream_allow": [f"n{i}" for i in range(1001)]}, "more than 1000 names"),
        ({"upstream_ttl": -1}, "between 0 and 30 days"),
        ({"upstream_ttl": "10m"}, "must be a number of seconds"),
        ({"upstream_ttl": True}, "must be a number of seconds"),
        ({"upstream_min_age": float("nan")}, "must be a number of days"),
        ({"upstream_min_age": 4000}, "between 0 and 3650 days"),
    ],
)
def test_bad_upstream_settings_are_one_sentence_each(settings: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(InvalidUpstreamError) as error:
        validate_upstream_settings(**settings)
    assert message in str(error.value)
    assert str(error.value).count(". ") == 0 and str(error.value).endswith(".")


def test_upstreams_are_stored_and_updated_one_setting_at_a_time(storage: Storage) -> None:
    registry = ChannelRegistry(storage)
    created = registry.create(
        "team", python_upstream="https://robot:pw@pypi.example/simple/", upstream_allow=["a"]
    )
    assert created.python_upstream is not None and created.python_upstream.password == "pw"
    assert registry.get("team") == created
    updated = registry.update("team", cran_upstream="https://cran.example", upstream_min_age=3)
    assert updated.python_upstream == created.python_upstream  # untouched
    assert updated.upstream_allow == ("a",)
    assert updated.cran_upstream == Upstream("https://cran.example/")
    assert registry.get("team") == updated
    assert registry.update("team", python_upstream=None).python_upstream is None
    assert registry.update("team", public=True).public
    with pytest.raises(InvalidUpstreamError):
        registry.update("team", upstream_ttl=-5)
    assert registry.get("team").upstream_min_age == 3  # type: ignore[union-attr]
    with pytest.raises(FileNotFoundError):
        registry.update("nope", upstream_ttl=5)


def test_listings_never_show_credentials() -> None:
    channel = Channel(
        "team", python_upstream=parse_upstream_url("https://robot:s3cret@pypi.example/simple/")
    )
    settings = upstream_settings(channel)
    assert settings["python_upstream"] == "https://pypi.example/simple/"
    assert settings["upstream_credentials"] == {"python": True, "cran": False}
    assert "s3cret" not in repr(settings) + repr(channel) and "robot" not in repr(channel)


def test_a_record_without_upstream_fields_still_reads(storage: Storage) -> None:
    import io

    from private_channels.storage import dump_json

    old = {"name": "old", "public": False, "created": 1.0, "allow_reupload": False}
    storage.create("registry/channels/old.json", io.BytesIO(dump_json(old)))
    channel = ChannelRegistry(storage).get("old")
    assert channel == Channel("old", created=1.0)
    assert not channel.has_upstream  # type: ignore[union-attr]
