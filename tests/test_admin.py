"""The management API the command line, the pages and the HTTP API share: who may do what."""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import pytest

from private_channels.admin import OPERATOR, Admin
from private_channels.app import ecosystems
from private_channels.channels import ChannelRegistry
from private_channels.errors import ChannelHTTPError
from private_channels.storage import FileSystemStorage, MemoryStorage, Storage, dump_json
from private_channels.tokens import Scope, Token, TokenStore, mint_signed_token

from .support import cli
from .test_cran_description import source_package

KEY = "a host's secret key"


@pytest.fixture
def admin() -> Admin:
    storage: Storage = MemoryStorage()
    return Admin(storage, ecosystems(storage), tokens=TokenStore(storage, secret_key=KEY))


def refused(status: int, call, *args, **kwargs) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(ChannelHTTPError) as caught:
        call(*args, **kwargs)
    assert caught.value.code == status, caught.value.sentence
    return caught.value.sentence


def token(admin: Admin, channels: list[str], scope: Scope = Scope.READ, **kw) -> Token:  # type: ignore[no-untyped-def]
    _, made = admin.create_token(OPERATOR, channels, scope, **kw)
    return made


def test_a_token_named_a_channel_before_it_existed_never_works_on_it(admin: Admin) -> None:
    admin.create_channel(OPERATOR, "team")
    old = token(admin, ["team"], Scope.ADMIN)
    every = token(admin, ["*"])
    admin.delete_channel(OPERATOR, "team")
    time.sleep(0.01)
    admin.create_channel(OPERATOR, "team")
    assert refused(403, admin.channel, old, "team") == "This token is not for channel 'team'."
    assert admin.channels(old) == []
    assert admin.channel(every, "team").name == "team"  # '*' covers channels made later
    new = token(admin, ["team"])
    assert admin.channel(new, "team").name == "team"


def test_signed_tokens_carry_when_they_were_made(admin: Admin) -> None:
    admin.create_channel(OPERATOR, "team")
    made_after = mint_signed_token(KEY, channels=["team"], scope=Scope.READ)
    verified = admin.tokens.verify(made_after)
    assert verified is not None and verified.created > 0
    assert admin.channel(verified, "team").name == "team"
    admin.delete_channel(OPERATOR, "team")
    time.sleep(0.01)
    admin.create_channel(OPERATOR, "team")
    refused(403, admin.channel, admin.tokens.verify(made_after), "team")
    # One minted before tokens carried the time: made at the epoch, for all it says.
    from itsdangerous import URLSafeSerializer

    legacy = URLSafeSerializer(KEY, salt="private-channels.token").dumps(
        {"id": "0123456789ab", "ch": ["team", "*"], "sc": "read", "exp": None}
    )
    old = admin.tokens.verify(legacy)
    assert old is not None and old.created == 0.0
    assert admin.channel(old, "team").name == "team"  # through '*' only


def test_reading_is_for_everyone_who_may(admin: Admin) -> None:
    admin.create_channel(OPERATOR, "team")
    admin.create_channel(OPERATOR, "open", public=True)
    reader = token(admin, ["team"])
    assert [c.name for c in admin.channels(None)] == ["open"]
    assert [c.name for c in admin.channels(reader)] == ["open", "team"]
    assert admin.packages(None, "open") == {"python": [], "cran": [], "conda": []}
    refused(401, admin.packages, None, "team")
    assert refused(404, admin.packages, OPERATOR, "nope") == "Channel 'nope' does not exist."
    refused(403, admin.packages, reader, "nope")  # it may not learn that it does not exist


def test_channel_creation_passes_the_records_fields_and_no_others(admin: Admin) -> None:
    made = admin.create_channel(OPERATOR, "team", public=True, allow_reupload=True)
    assert made.public and made.allow_reupload
    assert ChannelRegistry(admin.storage).get("team") == made
    sentence = refused(400, admin.create_channel, OPERATOR, "x", created=1.0)
    assert sentence == (
        "A channel has no setting 'created'; use allow_reupload, cran_upstream, public, "
        "python_upstream, upstream_allow, upstream_min_age, upstream_ttl."
    )
    refused(400, admin.create_channel, OPERATOR, ".hidden")
    refused(409, admin.create_channel, OPERATOR, "team")
    named = token(admin, ["team"], Scope.ADMIN)
    refused(403, admin.create_channel, named, "more")
    refused(401, admin.create_channel, None, "more")


def test_upstream_settings_are_set_and_changed_through_the_management_api(
    admin: Admin,
) -> None:
    made = admin.create_channel(OPERATOR, "team", python_upstream="https://u:pw@pypi.example/s")
    assert made.python_upstream is not None and made.python_upstream.password == "pw"
    sentence = refused(400, admin.create_channel, OPERATOR, "x", cran_upstream="ftp://x")
    assert sentence == "The CRAN upstream URL must start with http:// or https:// and name a host."
    changed = admin.update_channel(OPERATOR, "team", upstream_allow=["a"], upstream_min_age=2)
    assert changed.python_upstream == made.python_upstream  # untouched
    assert (changed.upstream_allow, changed.upstream_min_age) == (("a",), 2.0)
    assert refused(400, admin.update_channel, OPERATOR, "team", upstream_ttl=-1).endswith(
        "must be between 0 and 30 days."
    )
    refused(400, admin.update_channel, OPERATOR, "team", created=1.0)
    refused(404, admin.update_channel, OPERATOR, "nope", public=True)
    refused(403, admin.update_channel, token(admin, ["team"], Scope.ADMIN), "team", public=True)


def test_contents_name_what_a_delete_removes(admin: Admin) -> None:
    admin.create_channel(OPERATOR, "team")
    assert admin.contents(OPERATOR, "team").describe() == "Channel 'team' holds no packages."
    token(admin, ["team"])
    store = admin.ecosystems[1].store  # type: ignore[attr-defined]
    team = admin.channel(OPERATOR, "team")
    from private_channels.core.blobs import hash_stream
    from private_channels.cran.description import read_package
    from private_channels.cran.store import CranRecord, fields_for

    for version in ("1.0", "1.1"):
        data = io.BytesIO(source_package("abc", version))
        package = read_package(data, binary=False)
        digests = hash_stream(data)
        record = CranRecord.uploaded(
            package.filename,
            digests,
            None,
            package="abc",
            version=version,
            md5=digests.md5,
            fields=fields_for(package, digests.md5),
        )
        store.add(team, ["src/contrib"], record, data)
    assert admin.contents(OPERATOR, "team").describe() == (
        "Channel 'team' holds 1 cran package (2 versions); 1 token name it and will not work "
        "on a new channel of that name."
    )


def test_a_named_admin_sees_and_revokes_only_its_channels_tokens(admin: Admin) -> None:
    for name in ("team", "other"):
        admin.create_channel(OPERATOR, name)
    lead = token(admin, ["team"], Scope.ADMIN)
    mine = token(admin, ["team"], Scope.WRITE)
    mixed = token(admin, ["team", "other"])
    every = token(admin, ["*"])
    assert {t.id for t in admin.list_tokens(lead)} == {lead.id, mine.id}
    assert {t.id for t in admin.list_tokens(OPERATOR)} == {lead.id, mine.id, mixed.id, every.id}
    for other in (mixed, every):
        refused(404, admin.revoke_token, lead, other.id)
    assert admin.revoke_token(lead, mine.id) is True
    assert admin.token_channels(lead) == ["team"]
    assert admin.token_channels(OPERATOR) == ["*", "other", "team"]
    refused(403, admin.list_tokens, mine)
    # An id no store knows: signed tokens may carry it, so '*' admins may revoke it.
    assert admin.revoke_token(OPERATOR, "0123456789ab") is False
    refused(404, admin.revoke_token, lead, "0123456789ab")


def test_nobody_mints_a_token_wider_than_itself(admin: Admin) -> None:
    admin.create_channel(OPERATOR, "team")
    admin.create_channel(OPERATOR, "other")
    writer = token(admin, ["team"], Scope.WRITE)
    refused(403, admin.create_token, writer, ["team"], Scope.READ)
    lead = token(admin, ["team"], Scope.ADMIN, expires_in=600)
    refused(403, admin.create_token, lead, ["*"], Scope.READ, expires_in=60)
    refused(403, admin.create_token, lead, ["other"], Scope.READ, expires_in=60)
    refused(403, admin.create_token, lead, ["team"], Scope.READ)  # never expires
    refused(403, admin.create_token, lead, ["team"], Scope.READ, expires_in=601)
    _, made = admin.create_token(lead, ["team"], Scope.ADMIN, expires_in=60, note="ci")
    assert made.channels == {"team"} and made.scope is Scope.ADMIN and made.note == "ci"
    capped = token(admin, ["*"], Scope.WRITE)
    refused(403, admin.create_token, capped, ["team"], Scope.READ)  # write is no admin
    root = token(admin, ["*"], Scope.ADMIN)
    assert admin.create_token(root, ["*"], Scope.ADMIN)[1].channels == {"*"}
    refused(400, admin.create_token, root, ["team"], Scope.READ, note="a\nb")
    refused(400, admin.create_token, root, ["../x"], Scope.READ)
    refused(404, admin.create_token, root, ["later"], Scope.READ)


def test_last_use_is_noted_once_per_resolution(tmp_path: Path) -> None:
    storage = FileSystemStorage(tmp_path)
    store = TokenStore(storage, cache_ttl=0, last_use_resolution=3600)
    secret, made = store.create(channels=["*"], scope=Scope.READ)
    assert store.get(made.id).last_used is None  # type: ignore[union-attr]
    before = time.time()
    store.verify(secret)
    used = store.get(made.id).last_used  # type: ignore[union-attr]
    assert used is not None and used >= before
    key = next(k for k in storage.list("registry/tokens/"))
    mtime = storage.stat(key).mtime
    time.sleep(0.01)
    for _ in range(5):
        store.verify(secret)
    assert storage.stat(key).mtime == mtime  # within the hour: no write
    eager = TokenStore(storage, cache_ttl=0, last_use_resolution=0)
    eager.verify(secret)
    assert store.get(made.id).last_used > used  # type: ignore[operator, union-attr]
    # Never over a revocation made meanwhile: the note is conditional on what was read.
    store.revoke(made.id)
    assert eager.verify(secret) is None
    assert store.get(made.id).revoked  # type: ignore[union-attr]


def test_a_revocation_is_never_undone_by_a_note_of_use() -> None:
    """A revocation lands between the read of a record and the note of its use."""
    storage: Storage = MemoryStorage()
    store = TokenStore(storage, cache_ttl=0, last_use_resolution=0)
    secret, made = store.create(channels=["*"], scope=Scope.READ)
    key = next(k for k in storage.list("registry/tokens/"))
    original = storage.open

    def read_then_revoke(k: str):  # type: ignore[no-untyped-def]
        stream, stat = original(k)
        raw = stream.read()
        if k == key:
            revoked = {**json.loads(raw), "revoked": True}
            storage.put(key, io.BytesIO(dump_json(revoked)))
        return io.BytesIO(raw), stat  # what was read, and the version it was

    storage.open = read_then_revoke  # type: ignore[method-assign]
    assert store.verify(secret) is not None  # it read the record before the revocation
    storage.open = original  # type: ignore[method-assign]
    assert store.get(made.id).revoked  # type: ignore[union-attr]
    assert store.verify(secret) is None


# -- the command line ------------------------------------------------------------------


def test_channel_delete_asks_at_a_terminal(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cli("channel", "create", "team", storage=data)

    def run(answer: str) -> tuple[int, str]:
        leader, follower = pty.openpty()
        process = subprocess.Popen(
            [sys.executable, "-m", "private_channels", "channel", "delete", "team"],
            stdin=follower,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PRIVATE_CHANNELS_STORAGE": str(data)},
        )
        os.close(follower)
        os.write(leader, answer.encode() + b"\n")
        _, err = process.communicate(timeout=60)
        os.close(leader)
        return process.returncode, err

    code, err = run("tea")
    assert code == 1
    assert "Channel 'team' holds no packages. Deleting removes it for good." in err
    assert "channel 'team' was not deleted" in err
    assert cli("channel", "list", storage=data).stdout == "team\tprivate\n"
    code, err = run("team")
    assert code == 0 and "deleted channel team" in err
    assert cli("channel", "list", storage=data).stdout == ""
