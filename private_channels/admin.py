"""The management API: channels, tokens, package listings, yank/unyank/delete.

::

    admin = Admin(storage, ecosystems(storage), tokens=TokenStore(storage))
    admin.create_channel(OPERATOR, "data-team", public=False)
    secret, token = admin.create_token(actor, ["data-team"], Scope.READ, expires_in=86400)
    admin.packages(actor, "data-team")      # {"python": [Package...], "cran": [...]}
    admin.change(actor, "data-team", "yank", "abc_1.0.tar.gz", reason="Broken")

The command line, the web pages and the HTTP API all call this one class, so that the
rules of who may do what live here and nowhere else.  Every method takes the ``actor``:
the :class:`~.tokens.Token` of the request (``None`` when anonymous), or
:data:`OPERATOR` for the command line, which works on the storage directly and so may
do anything.  The rules (SPEC.md, "HTTP API"):

- anyone may list the channels they may read (public ones included) and read their
  packages;
- an ``admin`` token for ``*`` manages the instance: creates and deletes channels, lists
  and revokes every token, mints any token;
- an ``admin`` token for named channels manages those channels' packages (yank, unyank,
  delete) and tokens: it sees and revokes the tokens that name only its channels, and
  mints tokens for its channels, of at most its scope, expiring no later than itself;
- nobody mints a token wider than their own, and a token works on a channel it names
  only if it was made after that channel (see :meth:`~.tokens.Token.covers`), so tokens
  are minted only for channels that exist.

Refusals are the same :func:`~.errors.http_error` exceptions the middlewares raise (a
status code and one sentence): the HTTP API answers them as JSON, the pages show them,
the command line prints the sentence.  A channel the actor may not see answers exactly
as one that does not exist (401/403), as everywhere else.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any

from .auth import CHALLENGE, MISSING, permit, refuse_missing
from .channels import (
    Channel,
    ChannelExistsError,
    ChannelRegistry,
    InvalidChannelNameError,
    InvalidUpstreamError,
    validate_channel_name,
)
from .core.ecosystem import Action, Ecosystem, Package, PackageDetail, Target
from .core.manage import change_files
from .errors import ChannelHTTPError, http_error
from .storage import Storage
from .tokens import ALL_CHANNELS, Scope, Token, TokenStore, check_lifetime, check_note

__all__ = ["OPERATOR", "Admin", "ChannelContents", "token_state"]

#: The command line's actor: whoever can reach the storage may do anything.
OPERATOR = Token(id="operator", channels=frozenset({ALL_CHANNELS}), scope=Scope.ADMIN)

#: Channel fields a caller may set when creating one (the rest are the server's).
_SERVER_FIELDS = frozenset({"name", "created"})
#: Channel settings :meth:`Admin.update_channel` may change.
_UPDATABLE = frozenset(
    {"public", "python_upstream", "cran_upstream", "upstream_allow", "upstream_ttl",
     "upstream_min_age"}
)  # fmt: skip


def token_state(token: Token, now: float | None = None) -> str:
    """``active``, ``expired`` or ``revoked``."""
    if token.revoked:
        return "revoked"
    return "expired" if token.expired(now) else "active"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


@dataclass(frozen=True)
class ChannelContents:
    """What a channel holds, for the confirmation before it is deleted."""

    channel: Channel
    packages: dict[str, list[Package]]  # by ecosystem name
    tokens: int  # tokens that name it (they never work on a new channel of its name)

    def describe(self) -> str:
        """One sentence naming what deleting the channel removes."""
        held = [
            f"{_plural(len(found), f'{name} package')} "
            f"({_plural(sum(len(p.versions) for p in found), 'version')})"
            for name, found in self.packages.items()
            if found
        ]
        what = " and ".join(held) if held else "no packages"
        sentence = f"Channel {self.channel.name!r} holds {what}"
        if self.tokens:
            sentence += (
                f"; {_plural(self.tokens, 'token')} name it and will not work on a new "
                "channel of that name"
            )
        return sentence + "."

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.channel.name,
            "packages": {
                name: {"packages": len(found), "versions": sum(len(p.versions) for p in found)}
                for name, found in self.packages.items()
            },
            "tokens": self.tokens,
            "summary": self.describe(),
        }


class Admin:
    """Management of one storage's channels and tokens, on behalf of an actor."""

    def __init__(
        self,
        storage: Storage,
        ecosystems: Sequence[Ecosystem],
        *,
        tokens: TokenStore | None = None,
        registry: ChannelRegistry | None = None,
    ) -> None:
        self.storage = storage
        self.ecosystems = tuple(ecosystems)
        self.tokens = tokens or TokenStore(storage)
        self.registry = registry or ChannelRegistry(storage)

    # -- who may ---------------------------------------------------------------------

    @staticmethod
    def _signed_in(actor: Token | None) -> Token:
        if actor is None:
            raise http_error(401, MISSING, headers=[CHALLENGE])
        return actor

    def _instance_admin(self, actor: Token | None, doing: str) -> Token:
        token = self._signed_in(actor)
        if ALL_CHANNELS not in token.channels or token.scope < Scope.ADMIN:
            raise http_error(403, f"Only an admin token for '*' may {doing}.")
        return token

    def _token_admin(self, actor: Token | None) -> Token:
        token = self._signed_in(actor)
        if token.scope < Scope.ADMIN:
            raise http_error(403, "Managing tokens needs an admin token.")
        return token

    @staticmethod
    def manages_instance(actor: Token | None) -> bool:
        """Whether ``actor`` may create and delete channels (an admin token for ``*``)."""
        return actor is not None and ALL_CHANNELS in actor.channels and actor.scope >= Scope.ADMIN

    def may(self, actor: Token | None, channel: Channel, scope: Scope) -> bool:
        """Whether ``actor`` has ``scope`` on ``channel`` (for what the pages offer)."""
        try:
            permit(actor, channel, scope)
        except ChannelHTTPError:
            return False
        return True

    # -- channels ----------------------------------------------------------------------

    def channels(self, actor: Token | None) -> list[Channel]:
        """The channels ``actor`` may read, public ones included, by name."""
        return sorted(
            (c for c in self.registry.list() if self.may(actor, c, Scope.READ)),
            key=lambda c: c.name,
        )

    def channel(self, actor: Token | None, name: str, scope: Scope = Scope.READ) -> Channel:
        """The channel ``name`` if ``actor`` has ``scope`` on it; else 401/403, or 404
        to an actor allowed to know that it does not exist."""
        channel = self.registry.get(name)
        if channel is None:
            refuse_missing(actor, name)
        permit(actor, channel, scope)
        return channel

    def create_channel(self, actor: Token | None, name: str, **options: Any) -> Channel:
        """Create a channel (an admin token for ``*``); ``options`` are the
        :class:`~.channels.Channel` fields a caller may set (``public``,
        ``allow_reupload``...)."""
        self._instance_admin(actor, "create channels")
        settable = {f.name for f in fields(Channel)} - _SERVER_FIELDS
        unknown = sorted(set(options) - settable)
        if unknown:
            raise http_error(
                400, f"A channel has no setting {unknown[0]!r}; use {', '.join(sorted(settable))}."
            )
        try:
            return self.registry.create(name, **options)
        except (InvalidChannelNameError, InvalidUpstreamError) as exc:
            raise http_error(400, str(exc)) from None
        except ChannelExistsError as exc:
            raise http_error(409, str(exc)) from None

    def update_channel(self, actor: Token | None, name: str, **changes: Any) -> Channel:
        """Change only the settings given (an admin token for ``*``): ``public`` and the
        upstream settings of :meth:`~.channels.ChannelRegistry.update`."""
        self._instance_admin(actor, "change channels")
        self.channel(actor, name, Scope.ADMIN)
        unknown = sorted(set(changes) - _UPDATABLE)
        if unknown:
            settable = ", ".join(sorted(_UPDATABLE))
            raise http_error(400, f"A channel's {unknown[0]!r} cannot be changed; use {settable}.")
        try:
            return self.registry.update(name, **changes)
        except InvalidUpstreamError as exc:
            raise http_error(400, str(exc)) from None
        except FileNotFoundError:
            raise http_error(404, f"Channel {name!r} does not exist.") from None

    def contents(self, actor: Token | None, name: str) -> ChannelContents:
        """What deleting the channel would remove (an admin token for ``*``)."""
        self._instance_admin(actor, "delete channels")
        channel = self.channel(actor, name, Scope.ADMIN)
        naming = sum(1 for t in self.tokens.list() if channel.name in t.channels)
        return ChannelContents(channel, self._packages(channel), naming)

    def delete_channel(self, actor: Token | None, name: str) -> ChannelContents:
        """Delete a channel and everything it holds; returns what it held."""
        contents = self.contents(actor, name)
        try:
            self.registry.delete(name)
        except FileNotFoundError:
            raise http_error(404, f"Channel {name!r} does not exist.") from None
        return contents

    # -- packages ----------------------------------------------------------------------

    def _packages(self, channel: Channel) -> dict[str, list[Package]]:
        return {e.name: e.packages(channel) for e in self.ecosystems}

    def packages(self, actor: Token | None, name: str) -> dict[str, list[Package]]:
        """Every package of the channel, by ecosystem (every ecosystem has a key)."""
        return self._packages(self.channel(actor, name))

    def ecosystem(self, name: str) -> Ecosystem:
        for ecosystem in self.ecosystems:
            if ecosystem.name == name:
                return ecosystem
        known = ", ".join(e.name for e in self.ecosystems)
        raise http_error(404, f"There is no ecosystem {name[:40]!r} here; there are {known}.")

    def package(
        self,
        actor: Token | None,
        name: str,
        ecosystem: str,
        package: str,
        version: str | None = None,
    ) -> PackageDetail:
        """One package of the channel, with its files (404 when it has none)."""
        channel = self.channel(actor, name)
        detail = self.ecosystem(ecosystem).package(channel, package, version)
        if detail is None:
            raise http_error(404, f"Channel {name!r} has no {ecosystem} package {package[:80]!r}.")
        return detail

    def change(
        self, actor: Token | None, name: str, action: Action, target: str, *, reason: str = ""
    ) -> tuple[Target, list[str]]:
        """Yank, unyank or delete a file (or a release) of any ecosystem (admin scope)."""
        channel = self.channel(actor, name, Scope.ADMIN)
        try:
            return change_files(self.ecosystems, channel, action, target, reason=reason)
        except ValueError as exc:
            raise http_error(400, str(exc)) from None
        except LookupError as exc:
            raise http_error(404, str(exc.args[0] if exc.args else exc)) from None

    # -- tokens ------------------------------------------------------------------------

    @staticmethod
    def _within(actor: Token, token: Token) -> bool:
        """Whether ``token`` names only channels that ``actor`` manages."""
        if ALL_CHANNELS in actor.channels:
            return True
        return ALL_CHANNELS not in token.channels and token.channels <= actor.channels

    def list_tokens(self, actor: Token | None) -> list[Token]:
        """The stored tokens ``actor`` manages (never a secret), oldest first."""
        token = self._token_admin(actor)
        return sorted(
            (t for t in self.tokens.list() if self._within(token, t)), key=lambda t: t.created
        )

    def token_channels(self, actor: Token | None) -> list[str]:
        """What ``actor`` may name when minting a token: ``*`` and every channel, or
        its own channels that exist and that it covers."""
        token = self._token_admin(actor)
        if ALL_CHANNELS in token.channels:
            return [ALL_CHANNELS, *(c.name for c in self.registry.list())]
        return sorted(
            c.name
            for name in token.channels
            if (c := self.registry.get(name)) is not None and self.may(token, c, Scope.ADMIN)
        )

    def create_token(
        self,
        actor: Token | None,
        channels: Iterable[str],
        scope: Scope,
        *,
        expires_in: float | None = None,
        note: str = "",
    ) -> tuple[str, Token]:
        """Mint a token no wider than ``actor``: its channels, its scope, its expiry."""
        token = self._token_admin(actor)
        names = sorted({channels} if isinstance(channels, str) else set(channels))
        if not names:
            raise http_error(400, "Name at least one channel, or '*' for all.")
        try:
            check_note(note)
            check_lifetime(expires_in)
        except ValueError as exc:
            raise http_error(400, str(exc)) from None
        if scope > token.scope:
            raise http_error(403, f"This token may mint tokens of scope {token.scope} at most.")
        for name in names:
            if name != ALL_CHANNELS:
                try:
                    validate_channel_name(name)
                except InvalidChannelNameError as exc:
                    raise http_error(400, str(exc)) from None
            if name == ALL_CHANNELS:
                if ALL_CHANNELS not in token.channels:
                    raise http_error(
                        403, "Only a token for '*' may mint a token for '*'; name channels."
                    )
                continue
            if ALL_CHANNELS in names and ALL_CHANNELS in token.channels:
                continue  # '*' covers it whatever it is
            if self.registry.get(name) is None and ALL_CHANNELS in token.channels:
                raise http_error(
                    404,
                    f"Channel {name!r} does not exist; create it first (a token made before "
                    "its channel never works on it).",
                )
            self.channel(token, name, Scope.ADMIN)
        if token.expires is not None:
            latest = token.expires - time.time()
            if expires_in is None or expires_in > latest:
                raise http_error(
                    403,
                    "This token expires; a token it mints must expire no later, within "
                    f"{max(int(latest), 0)} seconds.",
                )
        try:
            return self.tokens.create(channels=names, scope=scope, expires_in=expires_in, note=note)
        except ValueError as exc:
            raise http_error(400, str(exc)) from None

    def revoke_token(self, actor: Token | None, token_id: str) -> bool:
        """Revoke a token by id; whether a stored token had it.  An admin for named
        channels revokes only tokens it manages (others are 404 to it, like unknown
        ids); an admin for ``*`` may also revoke ids no store knows (signed tokens)."""
        token = self._token_admin(actor)
        target = self.tokens.get(token_id)
        if ALL_CHANNELS not in token.channels and (
            target is None or not self._within(token, target)
        ):
            raise http_error(404, f"No token you manage has id {token_id[:20]!r}.")
        try:
            return self.tokens.revoke(token_id)
        except ValueError as exc:
            raise http_error(400, str(exc)) from None
