"""The token store, signed tokens, and the ``token`` commands."""

from __future__ import annotations

import hashlib
import hmac
import io
import re
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

import pytest

import private_channels.tokens as tokens_module
from private_channels.storage import FileSystemStorage, MemoryStorage, Stat, Storage, read_bytes
from private_channels.tokens import (
    Scope,
    Token,
    TokenStore,
    mint_signed_token,
    parse_duration,
)

from .support import cli

KEY = "host secret key"
HEX48 = re.compile(r"[0-9a-f]{48}\Z")


class FakeClock:
    """Stands in for the ``time`` module inside private_channels.tokens."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(
        tokens_module, "time", types.SimpleNamespace(time=fake.time, monotonic=fake.monotonic)
    )
    return fake


class SpyStorage:
    """A storage that records what is read and refuses listings."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.opened: list[str] = []
        self.allow_list = True

    def open(self, key: str) -> tuple[IO[bytes], Stat]:
        self.opened.append(key)
        return self.inner.open(key)

    def stat(self, key: str) -> Stat:
        self.opened.append(key)
        return self.inner.stat(key)

    def put(self, key: str, data: IO[bytes], *, if_match: str | None = None) -> Stat:
        return self.inner.put(key, data, if_match=if_match)

    def create(self, key: str, data: IO[bytes]) -> Stat:
        return self.inner.create(key, data)

    def list(self, prefix: str) -> Iterator[str]:
        assert self.allow_list, f"listed {prefix!r} during a lookup"
        return self.inner.list(prefix)

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        self.inner.delete(key, if_match=if_match)


def everything_stored(storage: Storage) -> dict[str, bytes]:
    return {key: read_bytes(storage, key)[0] for key in storage.list("")}


# -- the store ---------------------------------------------------------------------


def test_create_returns_a_48_hex_secret_and_a_record(storage: Storage) -> None:
    store = TokenStore(storage)
    before = time.time()
    secret, token = store.create(
        channels=["data-team", "other"], scope=Scope.WRITE, expires_in=3600, note="ci runner"
    )
    assert HEX48.match(secret)
    assert re.fullmatch(r"[0-9a-f]{12}", token.id)
    assert token.channels == {"data-team", "other"}
    assert token.scope is Scope.WRITE
    assert before <= token.created <= time.time()
    assert token.expires == pytest.approx(token.created + 3600)
    assert token.note == "ci runner"
    assert not token.revoked and not token.signed
    assert store.get(token.id) == token
    assert store.verify(secret) == token
    secrets_made = {store.create(channels=["*"], scope=Scope.READ)[0] for _ in range(20)}
    assert len(secrets_made) == 20


def test_only_a_keyed_hash_is_stored(storage: Storage) -> None:
    store = TokenStore(storage)
    secret, token = store.create(channels=["*"], scope=Scope.ADMIN, note="n")
    stored = everything_stored(storage)
    assert any(token.id.encode() in blob for blob in stored.values())
    plain_hashes = {
        hashlib.sha256(secret.encode()).hexdigest(),
        hashlib.sha1(secret.encode()).hexdigest(),  # noqa: S324
    }
    for key, blob in stored.items():
        assert secret not in key
        assert secret.encode() not in blob
        assert secret.upper().encode() not in blob
        for plain in plain_hashes:
            assert plain not in key and plain.encode() not in blob
    record_keys = [key for key in stored if key.startswith("registry/tokens/")]
    assert len(record_keys) == 1
    digest = record_keys[0].removeprefix("registry/tokens/").removesuffix(".json")
    assert re.fullmatch(r"[0-9a-f]{64}", digest)


def test_the_hashes_a_process_keeps_are_the_stored_ones_and_hold_no_secret(
    storage: Storage,
) -> None:
    store = TokenStore(storage)
    secret, token = store.create(channels=["*"], scope=Scope.READ)
    key = read_bytes(storage, "registry/token-key")[0]
    expected = hmac.new(key, secret.encode(), hashlib.sha256).hexdigest()
    assert store.verify(secret) == token
    assert expected in store._hashes.values()
    assert store._hash(secret) == expected  # from the memory, as computed
    # Found by a keyed hash of the secret: neither the secret nor an unkeyed hash of it.
    for seen in store._hashes:
        assert len(seen) == 32
        assert secret.encode() not in seen
        assert seen != hashlib.blake2b(secret.encode(), digest_size=32).digest()
    # Another process keys its memory differently, and finds the same record.
    other = TokenStore(storage)
    assert other.verify(secret) == token and set(other._hashes) != set(store._hashes)


def test_the_hashes_kept_are_bounded(storage: Storage) -> None:
    store = TokenStore(storage)
    for i in range(10_050):
        store._hash(f"{i:048x}")
    assert len(store._hashes) <= 10_000


def test_every_store_on_one_storage_agrees_on_the_hash_key(storage: Storage) -> None:
    secret, token = TokenStore(storage).create(channels=["a"], scope=Scope.READ)
    assert TokenStore(storage).verify(secret) == token
    # and another storage does not know the token at all
    assert TokenStore(MemoryStorage()).verify(secret) is None


def test_lookup_reads_by_hash_and_never_lists(storage: Storage) -> None:
    spy = SpyStorage(storage)
    secret, token = TokenStore(spy).create(channels=["a"], scope=Scope.READ)
    for _ in range(30):
        TokenStore(spy).create(channels=["a"], scope=Scope.READ)
    spy.allow_list = False
    spy.opened.clear()
    store = TokenStore(spy, cache_ttl=60)
    assert store.verify(secret) == token
    assert store.verify("0" * 48) is None
    # one read of the hash key, then one record read per secret: no scan, no listing
    assert spy.opened[0] == "registry/token-key"
    assert len(spy.opened) == 3
    assert all(secret not in key for key in spy.opened)
    spy.opened.clear()
    assert store.verify(secret) == token  # from the cache
    assert spy.opened == []


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "not-a-token",
        "0" * 47,
        "0" * 49,
        "g" * 48,
        "x" * 100_000,
    ],
)
def test_malformed_secrets_are_unknown(storage: Storage, secret: str) -> None:
    store = TokenStore(storage, secret_key=KEY)
    store.create(channels=["a"], scope=Scope.READ)
    assert store.verify(secret) is None


def test_secret_is_case_sensitive(storage: Storage) -> None:
    store = TokenStore(storage)
    secret, _ = store.create(channels=["a"], scope=Scope.READ)
    assert store.verify(secret.upper()) is None
    assert store.verify(secret + " ") is None


def test_expiry(storage: Storage, clock: FakeClock) -> None:
    store = TokenStore(storage, cache_ttl=60)
    secret, token = store.create(channels=["a"], scope=Scope.READ, expires_in=30)
    assert token.expires == clock.now + 30
    assert store.verify(secret) == token
    clock.now += 29.9
    assert store.verify(secret) == token
    clock.now += 0.1
    # expiry is checked on every request, even with the token still in the cache
    assert store.verify(secret) is None
    assert store.get(token.id) == token  # still listed, for the record


def test_expiry_in_real_time(storage: Storage) -> None:
    store = TokenStore(storage)
    # A second, not less: creating and verifying on S3 under a loaded test run can take
    # a good part of one, and the token must not expire before it is first verified.
    secret, token = store.create(channels=["a"], scope=Scope.READ, expires_in=1)
    assert store.verify(secret) is not None
    assert token.expires is not None
    time.sleep(max(0.0, token.expires - time.time()) + 0.05)
    assert store.verify(secret) is None


def test_revoke_by_id(storage: Storage) -> None:
    store = TokenStore(storage, cache_ttl=60)
    secret, token = store.create(channels=["a"], scope=Scope.WRITE)
    keep, kept = store.create(channels=["a"], scope=Scope.WRITE)
    assert store.verify(secret) == token
    assert store.revoke(token.id) is True
    # at once in the process that revoked, its cache notwithstanding
    assert store.verify(secret) is None
    assert store.verify(keep) == kept
    revoked = store.get(token.id)
    assert revoked is not None and revoked.revoked
    assert store.revoke(token.id) is True  # again: no harm
    assert store.revoke("0123456789ab") is False
    with pytest.raises(ValueError, match="12 lowercase hexadecimal"):
        store.revoke("../../x")
    assert [t.id for t in store.list()] == sorted([token.id, kept.id])


def test_revocation_reaches_other_processes_within_the_cache_ttl(
    storage: Storage, clock: FakeClock
) -> None:
    ttl = 5.0
    admin = TokenStore(storage, cache_ttl=ttl)  # say, the command line
    server = TokenStore(storage, cache_ttl=ttl)  # a server process on the same storage
    secret, token = admin.create(channels=["a"], scope=Scope.READ)
    assert server.verify(secret) == token
    admin.revoke(token.id)
    assert admin.verify(secret) is None
    # the documented bound: the other process may accept it until its cache entry ends
    clock.now += ttl - 0.01
    assert server.verify(secret) == token
    clock.now += 0.01
    assert server.verify(secret) is None
    assert TokenStore(storage).verify(secret) is None


def test_revocation_across_stores_in_real_time(storage: Storage) -> None:
    ttl = 0.1
    admin = TokenStore(storage, cache_ttl=ttl)
    server = TokenStore(storage, cache_ttl=ttl)
    secret, token = admin.create(channels=["a"], scope=Scope.READ)
    signed = mint_signed_token(KEY, channels=["a"], scope=Scope.READ, token_id="aaaaaaaaaaaa")
    server_signed = TokenStore(storage, secret_key=KEY, cache_ttl=ttl)
    assert server.verify(secret) == token
    assert server_signed.verify(signed) is not None
    admin.revoke(token.id)
    admin.revoke("aaaaaaaaaaaa")
    time.sleep(ttl * 2)
    assert server.verify(secret) is None
    assert server_signed.verify(signed) is None


def test_without_cache_revocation_is_immediate_everywhere(storage: Storage) -> None:
    admin = TokenStore(storage)
    server = TokenStore(storage, cache_ttl=0)
    secret, token = admin.create(channels=["a"], scope=Scope.READ)
    assert server.verify(secret) == token
    admin.revoke(token.id)
    assert server.verify(secret) is None


def test_a_guess_before_creation_does_not_stick(storage: Storage) -> None:
    store = TokenStore(storage, cache_ttl=60)
    assert store.verify("1" * 48) is None
    secret, token = store.create(channels=["a"], scope=Scope.READ)
    assert store.verify(secret) == token


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"channels": []}, "at least one channel"),
        ({"channels": ["../etc"]}, "is invalid"),
        ({"channels": ["t"]}, "reserved"),
        ({"channels": ["a"], "expires_in": 0}, "between 1 second and 10 years"),
        ({"channels": ["a"], "expires_in": -5}, "between 1 second and 10 years"),
        ({"channels": ["a"], "note": "two\nlines"}, "one line"),
        ({"channels": ["a"], "note": "tab\there"}, "one line"),
        ({"channels": ["a"], "note": "x" * 201}, "at most 200"),
        ({"channels": ["a"], "note": "bell\x07"}, "control characters"),
    ],
)
def test_create_refuses_bad_input(storage: Storage, kwargs: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        TokenStore(storage).create(scope=Scope.READ, **kwargs)
    assert not [k for k in storage.list("registry/token") if "token-key" not in k]


def test_a_bare_string_is_one_channel(storage: Storage) -> None:
    _, token = TokenStore(storage).create(channels="data", scope=Scope.READ)
    assert token.channels == {"data"}


@pytest.mark.parametrize(
    ("channels", "scope", "channel", "needed", "allowed"),
    [
        ({"a"}, Scope.READ, "a", Scope.READ, True),
        ({"a"}, Scope.READ, "a", Scope.WRITE, False),
        ({"a"}, Scope.WRITE, "a", Scope.READ, True),
        ({"a"}, Scope.WRITE, "a", Scope.WRITE, True),
        ({"a"}, Scope.WRITE, "a", Scope.ADMIN, False),
        ({"a"}, Scope.ADMIN, "a", Scope.WRITE, True),
        ({"a"}, Scope.ADMIN, "b", Scope.READ, False),
        ({"a", "b"}, Scope.READ, "b", Scope.READ, True),
        ({"*"}, Scope.READ, "anything", Scope.READ, True),
        ({"*"}, Scope.READ, "anything", Scope.WRITE, False),
    ],
)
def test_scopes_imply_the_ones_below(
    channels: set[str], scope: Scope, channel: str, needed: Scope, allowed: bool
) -> None:
    token = Token(id="0" * 12, channels=frozenset(channels), scope=scope)
    assert token.allows(channel, needed) is allowed


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("12h", 43200), ("30d", 2592000), ("2w", 1209600)],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0d", "30", "d", "-1d", "1.5h", "30y", "99999999d"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|expiry"):
        parse_duration(text)


def test_scope_parse() -> None:
    assert Scope.parse("Write") is Scope.WRITE
    assert str(Scope.ADMIN) == "admin"
    with pytest.raises(ValueError, match="not one of read, write, admin"):
        Scope.parse("owner")


# -- signed tokens -------------------------------------------------------------------


def test_signed_token_round_trip(storage: Storage) -> None:
    signed = mint_signed_token(
        KEY, channels=["a", "b"], scope=Scope.WRITE, expires_in=60, token_id="0123456789ab"
    )
    token = TokenStore(storage, secret_key=KEY).verify(signed)
    assert token is not None
    assert token.id == "0123456789ab"
    assert token.channels == {"a", "b"}
    assert token.scope is Scope.WRITE
    assert token.signed
    assert token.expires is not None and token.expires > time.time()
    assert list(storage.list("")) in ([], ["registry/token-key"])  # minting writes nothing


def test_signed_token_needs_the_same_key(storage: Storage) -> None:
    signed = mint_signed_token(KEY, channels=["a"], scope=Scope.READ)
    assert TokenStore(storage).verify(signed) is None
    assert TokenStore(storage, secret_key="another key").verify(signed) is None
    assert TokenStore(storage, secret_key=KEY.encode()).verify(signed) is not None


def test_tampered_signed_tokens_are_refused(storage: Storage) -> None:
    store = TokenStore(storage, secret_key=KEY)
    signed = mint_signed_token(KEY, channels=["a"], scope=Scope.READ, token_id="0123456789ab")
    assert store.verify(signed) is not None
    payload, _, signature = signed.rpartition(".")
    # a payload that grants more, with the old signature
    admin = mint_signed_token("guessed key", channels=["*"], scope=Scope.ADMIN)
    forged = [
        admin.rpartition(".")[0] + "." + signature,
        payload + "." + signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB"),
        payload[:-1] + ("A" if payload[-1] != "A" else "B") + "." + signature,
        payload + ".",
        payload,
        signed + "x",
        admin,
    ]
    for token in forged:
        assert store.verify(token) is None, token


def test_signed_token_expiry(storage: Storage, clock: FakeClock) -> None:
    store = TokenStore(storage, secret_key=KEY)
    signed = mint_signed_token(KEY, channels=["a"], scope=Scope.READ, expires_in=10)
    assert store.verify(signed) is not None
    clock.now += 10
    assert store.verify(signed) is None


def test_signed_token_revoked_by_id(storage: Storage) -> None:
    store = TokenStore(storage, secret_key=KEY, cache_ttl=60)
    signed = mint_signed_token(KEY, channels=["a"], scope=Scope.READ, token_id="0123456789ab")
    other = mint_signed_token(KEY, channels=["a"], scope=Scope.READ, token_id="ba9876543210")
    assert store.verify(signed) is not None
    assert store.revoke("0123456789ab") is False  # no stored token of that id
    assert store.verify(signed) is None
    assert store.verify(other) is not None
    assert TokenStore(storage, secret_key=KEY).verify(signed) is None


def test_signed_token_payloads_are_checked(storage: Storage) -> None:
    from itsdangerous import URLSafeSerializer

    store = TokenStore(storage, secret_key=KEY)
    serializer = URLSafeSerializer(KEY, salt="private-channels.token")
    good = {"id": "0123456789ab", "ch": ["a"], "sc": "read", "exp": None}
    assert store.verify(serializer.dumps(good)) is not None
    for bad in [
        {**good, "id": "../x"},
        {**good, "ch": "abc"},
        {**good, "sc": "root"},
        {**good, "sc": 3},
        {**good, "exp": "tomorrow"},
        {"id": "0123456789ab"},
        ["not", "a", "dict"],
    ]:
        assert store.verify(serializer.dumps(bad)) is None, bad


def test_mint_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="12 lowercase hexadecimal"):
        mint_signed_token(KEY, channels=["a"], scope=Scope.READ, token_id="ABC")
    with pytest.raises(ValueError, match="at least one channel"):
        mint_signed_token(KEY, channels=[], scope=Scope.READ)
    with pytest.raises(ValueError, match="10 years"):
        mint_signed_token(KEY, channels=["a"], scope=Scope.READ, expires_in=-1)


# -- the command line ----------------------------------------------------------------


def test_token_create_prints_the_token_alone_on_the_last_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cli("channel", "create", "data-team", storage=data)
    result = cli(
        "token", "create", "--channel", "data-team", "--channel", "*", "--scope", "write",
        "--expires", "30d", "--note", "ci runner", storage=data,
    )  # fmt: skip
    secret = result.stdout.splitlines()[-1]
    assert HEX48.match(secret)
    assert result.stdout == secret + "\n"
    assert secret not in result.stderr
    token = TokenStore(FileSystemStorage(data)).verify(secret)
    assert token is not None
    assert token.channels == {"data-team", "*"}
    assert token.scope is Scope.WRITE
    assert token.note == "ci runner"
    assert token.expires == pytest.approx(time.time() + 30 * 86400, abs=60)
    assert token.id in result.stderr


def test_token_list_and_revoke(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for channel in ("a", "b"):
        cli("channel", "create", channel, storage=data)
    first = cli("token", "create", "--channel", "a", "--scope", "read", storage=data).stdout
    second = cli(
        "token", "create", "--channel", "b", "--channel", "a", "--scope", "admin",
        "--expires", "12h", "--note", "deploy key", storage=data,
    ).stdout  # fmt: skip
    store = TokenStore(FileSystemStorage(data))
    one, two = (store.verify(out.strip()) for out in (first, second))
    assert one is not None and two is not None
    listing = cli("token", "list", storage=data).stdout
    for secret in (first.strip(), second.strip()):
        assert secret not in listing
    lines = {line.split("\t")[0]: line.split("\t") for line in listing.splitlines()}
    assert set(lines) == {one.id, two.id}
    assert lines[one.id][:6] == [one.id, "a", "read", "never", "", "active"]
    assert lines[two.id][:3] == [two.id, "a,b", "admin"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", lines[two.id][3])
    assert lines[two.id][4:6] == ["deploy key", "active"]
    # The last column is the last use (verified just above), to within an hour.
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", line[6]) for line in lines.values())

    revoked = cli("token", "revoke", one.id, storage=data)
    assert revoked.stdout == ""
    assert f"revoked token {one.id}" in revoked.stderr
    assert TokenStore(FileSystemStorage(data)).verify(first.strip()) is None
    assert TokenStore(FileSystemStorage(data)).verify(second.strip()) is not None
    listing = cli("token", "list", storage=data).stdout
    assert f"{one.id}\ta\tread\tnever\t\trevoked\t" in listing

    unknown = cli("token", "revoke", "0123456789ab", storage=data)
    assert "no stored token has id 0123456789ab" in unknown.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "--channel", "a", "--scope", "owner"], "scope 'owner' is not one of"),
        (["create", "--channel", "../a", "--scope", "read"], "Channel name '../a' is invalid"),
        (["create", "--channel", "a", "--scope", "read", "--expires", "0d"], "duration '0d'"),
        (["create", "--channel", "a", "--scope", "read", "--note", "a\tb"], "one line"),
        (["revoke", "not-an-id"], "takes a token's id: 12 lowercase hexadecimal"),
    ],
)
def test_token_command_errors_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    cli("channel", "create", "a", storage=tmp_path / "data")
    result = cli("token", *args, storage=tmp_path / "data", check=False)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("private-channels: error: ")
    assert result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr


def test_token_create_needs_a_channel(tmp_path: Path) -> None:
    result = cli("token", "create", "--scope", "read", storage=tmp_path / "d", check=False)
    assert result.returncode == 2
    assert "--channel" in result.stderr
    assert result.stdout == ""


def test_list_on_a_storage_without_tokens(tmp_path: Path) -> None:
    cli("channel", "create", "a", storage=tmp_path / "d")
    assert cli("token", "list", storage=tmp_path / "d").stdout == ""


def test_store_round_trip_through_json(storage: Storage) -> None:
    store = TokenStore(storage)
    _, token = store.create(channels=["x", "*"], scope=Scope.ADMIN, note="é ok")
    assert Token.from_json(token.to_json()) == token
    storage.put("registry/unrelated", io.BytesIO(b"x"))
    assert [t.id for t in store.list()] == [token.id]


def _watched_store(
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[list[float], TokenStore, Callable[[], int]]:
    """A token store over memory (5 s cache, a signing key), ``time.monotonic`` moved
    on by ``offset[0]``, and the storage's write word."""
    offset = [0.0]
    real = time.monotonic
    monkeypatch.setattr(time, "monotonic", lambda: real() + offset[0])
    storage = MemoryStorage()
    written = storage.writes()
    assert written is not None
    return offset, TokenStore(storage, cache_ttl=5, secret_key="k" * 32), written


def test_the_token_store_tells_how_it_trusts_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """What kept answers (core.answers) ask: the write word read before the token's
    record (or a signed token's revocation marker) was read, while the cache holds
    that very read."""
    offset, store, written = _watched_store(monkeypatch)
    secret, made = store.create(channels=["*"], scope=Scope.READ)
    before = written()
    token = store.verify(secret)  # reads its record, then notes its first use (a write)
    assert token is not None and written() != before
    word, until = store.trust(token)
    assert word == before and until == pytest.approx(time.monotonic() + 5, abs=1)
    assert store.trust(made) == (None, 0.0)  # not the token the cache holds
    offset[0] += 6
    again = store.verify(secret)
    assert again is not token and store.trust(again)[0] == written()
    assert store.trust(token) == (None, 0.0)
    signed = store.verify(mint_signed_token("k" * 32, channels=["*"], scope=Scope.READ))
    assert signed is not None and store.trust(signed)[0] == written()
    store.revoke(signed.id)
    assert store.verify(mint_signed_token("k" * 32, channels=["*"], scope=Scope.READ,
                                          token_id=signed.id)) is None  # fmt: skip
    assert store.trust(signed) == (None, 0.0)  # read as revoked


def test_the_token_store_vouches_for_a_token_it_read_since_the_last_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What renews a kept answer past its minute (core.answers): a read of the token's
    record made under the write word given, still trusted, that found this token."""
    offset, store, written = _watched_store(monkeypatch)
    secret, _ = store.create(channels=["team"], scope=Scope.READ)
    token = store.verify(secret)  # read, then its first use noted: a write after the read
    assert token is not None
    assert not store.vouches(token, written())
    offset[0] += 6
    again = store.verify(secret)  # read again, since that write
    assert again is not None and again is not token and again == token
    assert store.vouches(token, written()) and store.vouches(again, written())
    assert not store.vouches(token, written() + 1)  # under another word
    assert not store.vouches(replace(token, channels=frozenset(["other"])), written())
    assert not store.vouches(replace(token, id="b" * 12), written())  # never read
    offset[0] += 6  # no longer trusted
    assert not store.vouches(token, written())
    signed = store.verify(mint_signed_token("k" * 32, channels=["*"], scope=Scope.READ))
    assert signed is not None and store.vouches(signed, written())
    offset[0] += 6
    assert not store.vouches(signed, written())
    store.revoke(signed.id)
    again_signed = mint_signed_token("k" * 32, channels=["*"], scope=Scope.READ, token_id=signed.id)
    assert store.verify(again_signed) is None  # read as revoked
    assert not store.vouches(signed, written())
