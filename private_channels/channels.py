"""The channel registry, kept in the storage itself (there is no second database).

::

    registry = ChannelRegistry(storage)
    registry.create("data-team", public=False)
    registry.get("data-team")          # Channel(name='data-team', public=False, ...)

A channel is the record ``registry/channels/<name>.json`` (so listing channels costs
one listing of small records); everything a channel holds lives under
``channels/<name>/``, so deleting a channel is deleting that prefix.
"""

from __future__ import annotations

import contextlib
import io
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from .storage import Storage, dump_json, read_json

__all__ = [
    "RESERVED_CHANNEL_NAMES",
    "Channel",
    "ChannelExistsError",
    "ChannelRegistry",
    "InvalidChannelNameError",
    "channel_prefix",
    "validate_channel_name",
]

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}\Z")

# "t" is the path-token segment (P/t/<TOKEN>/<CHANNEL>/...), so a channel named "t"
# could never be reached; names starting with "." would be "." and ".." on disk.
RESERVED_CHANNEL_NAMES = frozenset({"t"})


class InvalidChannelNameError(ValueError):
    """A channel name outside letters, digits, ``-``, ``_``, ``.`` and 1-64 characters."""


class ChannelExistsError(FileExistsError):
    """A channel of that name exists already."""


def validate_channel_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidChannelNameError(
            f"Channel name {name!r} is invalid: use 1 to 64 letters, digits, '-', '_' or '.',"
            " not starting with '.' or '-'."
        )
    if name.lower() in RESERVED_CHANNEL_NAMES:
        raise InvalidChannelNameError(f"Channel name {name!r} is reserved; choose another.")
    return name


def channel_prefix(name: str) -> str:
    """The storage prefix under which a channel keeps everything it holds."""
    return f"channels/{name}/"


@dataclass(frozen=True)
class Channel:
    name: str
    public: bool = False
    created: float = 0.0
    # A deleted filename stays taken (as on PyPI), so that a name never stands for two
    # different files, unless the channel was created to allow its reuse.
    allow_reupload: bool = False

    @property
    def prefix(self) -> str:
        return channel_prefix(self.name)


class ChannelRegistry:
    """The channels of a storage.  :meth:`get` keeps the records it read, and checks each
    against its storage ETag (one ``stat``) on every call, so a channel created,
    changed or deleted through any process is seen at once."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._known: dict[str, tuple[str, Channel]] = {}

    @staticmethod
    def _key(name: str) -> str:
        return f"registry/channels/{name}.json"

    def create(self, name: str, *, public: bool = False, allow_reupload: bool = False) -> Channel:
        channel = Channel(
            name=validate_channel_name(name),
            public=public,
            created=time.time(),
            allow_reupload=allow_reupload,
        )
        try:
            self.storage.create(self._key(name), io.BytesIO(dump_json(asdict(channel))))
        except FileExistsError:
            raise ChannelExistsError(f"Channel {name!r} exists already.") from None
        return channel

    def get(self, name: str) -> Channel | None:
        """The channel called ``name``, or ``None`` (also for names that are invalid)."""
        try:
            validate_channel_name(name)
            etag = self.storage.stat(self._key(name)).etag
        except (FileNotFoundError, InvalidChannelNameError):
            self._known.pop(name, None)
            return None
        known = self._known.get(name)
        if known is not None and known[0] == etag:
            return known[1]
        try:
            doc, stat = read_json(self.storage, self._key(name))
        except FileNotFoundError:
            return None
        channel = Channel(
            name=doc["name"],
            public=bool(doc["public"]),
            created=doc["created"],
            allow_reupload=bool(doc.get("allow_reupload", False)),
        )
        if len(self._known) >= 10_000:  # a bound, whatever names are asked for
            self._known.clear()
        self._known[name] = (stat.etag, channel)
        return channel

    def list(self) -> Iterator[Channel]:
        for key in self.storage.list("registry/channels/"):
            channel = self.get(key.rpartition("/")[2].removesuffix(".json"))
            if channel is not None:
                yield channel

    def delete(self, name: str) -> None:
        """Delete a channel and everything it holds; the record goes first, so a
        half-finished delete leaves an unreachable remainder, never a broken channel."""
        validate_channel_name(name)
        try:
            self.storage.delete(self._key(name))
        except FileNotFoundError:
            raise FileNotFoundError(f"Channel {name!r} does not exist.") from None
        for key in list(self.storage.list(channel_prefix(name))):
            with contextlib.suppress(FileNotFoundError):
                self.storage.delete(key)
