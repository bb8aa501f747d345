"""The channel registry, kept in the storage itself (there is no second database).

::

    registry = ChannelRegistry(storage)
    registry.create("data-team", public=False)
    registry.get("data-team")          # Channel(name='data-team', public=False, ...)
    registry.update("data-team", python_upstream="https://pypi.org/simple/",
                    upstream_allow=["acme-utils"])

A channel is the record ``registry/channels/<name>.json`` (so listing channels costs
one listing of small records); everything a channel holds lives under
``channels/<name>/``, so deleting a channel is deleting that prefix.  The first channel
of a storage also writes ``registry/format.json``, which says that the storage keeps
its files' blobs flat (:func:`keeps_blobs_flat`) and takes a new record as a text
appended to its document (:func:`storage_format`).

Every request reads the record afresh (:class:`~.routing.ChannelMiddleware` calls
:meth:`ChannelRegistry.get`, one small read), so a change made by ``channel update``
through any process is seen by every server of the same storage on its next request;
SPEC.md allows 15 seconds, should a cache ever be put in front of it.

A channel may name upstreams (see ``docs/upstreams.md``): a Python simple index and a
CRAN-like repository whose packages it serves beside its own.  The settings go through
one function, :func:`validate_upstream_settings`, whoever sets them (the command line,
the HTTP API, a host's code), and it raises :class:`InvalidUpstreamError` with one
sentence.  Credentials for an upstream are given in its URL
(``https://user:password@host/simple/``), kept apart from it in the record, and never
shown: :class:`Upstream` prints as its URL without them, and
:func:`upstream_settings` is what listings show.
"""

from __future__ import annotations

import contextlib
import enum
import io
import ipaddress
import math
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Final
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from .storage import CorruptDocumentError, Storage, dump_json, read_document, read_json, update_json

__all__ = [
    "DEFAULT_UPSTREAM_TTL",
    "FORMAT",
    "FORMAT_KEY",
    "KEEP",
    "RESERVED_CHANNEL_NAMES",
    "Channel",
    "ChannelExistsError",
    "ChannelRegistry",
    "InvalidChannelNameError",
    "InvalidUpstreamError",
    "StorageFormat",
    "Upstream",
    "channel_prefix",
    "keeps_blobs_flat",
    "parse_upstream_url",
    "storage_format",
    "upstream_settings",
    "validate_channel_name",
    "validate_upstream_settings",
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


class InvalidUpstreamError(ValueError):
    """An upstream setting that cannot be used; the message is one sentence to act on."""


#: How long an upstream index page is used before it is revalidated, by default.
DEFAULT_UPSTREAM_TTL: Final = 600.0
MAX_UPSTREAM_TTL: Final = 30 * 24 * 3600.0
MAX_MIN_AGE_DAYS: Final = 3650.0
MAX_URL_LENGTH: Final = 2048
MAX_ALLOWED: Final = 1000
# What both a Python project name (PEP 508) and an R package name are made of.
_ALLOWED_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,198}[A-Za-z0-9])?\Z")


@dataclass(frozen=True)
class Upstream:
    """An upstream index: its root URL (no credentials in it) and the credentials to
    send to that URL's origin.  ``str()`` and ``repr()`` never show the credentials."""

    url: str
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        return self.url

    @property
    def has_credentials(self) -> bool:
        return self.username is not None

    def to_json(self) -> dict[str, str | None]:
        return {"url": self.url, "username": self.username, "password": self.password}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any] | None) -> Upstream | None:
        if not doc:
            return None
        return cls(url=doc["url"], username=doc.get("username"), password=doc.get("password"))


class _Keep(enum.Enum):
    KEEP = "keep"


#: The default of every :meth:`ChannelRegistry.update` argument: leave that setting alone.
KEEP: Final = _Keep.KEEP


@dataclass(frozen=True)
class Channel:
    name: str
    public: bool = False
    created: float = 0.0
    # A deleted filename stays taken (as on PyPI), so that a name never stands for two
    # different files, unless the channel was created to allow its reuse.
    allow_reupload: bool = False
    #: A PEP 503/691 simple index root whose projects this channel serves beside its own.
    python_upstream: Upstream | None = None
    #: A CRAN-like repository root (as R's ``repos``), likewise.
    cran_upstream: Upstream | None = None
    #: Names whose upstream versions merge with the channel's own; any other name that
    #: exists in the channel is served from the channel alone (the guard against
    #: dependency confusion).  Python names compare normalized, R names exactly.
    upstream_allow: tuple[str, ...] = ()
    #: Seconds an upstream index page is used before it is revalidated.
    upstream_ttl: float = DEFAULT_UPSTREAM_TTL
    #: Days an upstream release must have been public before it is offered (0: off).
    upstream_min_age: float = 0.0

    @property
    def prefix(self) -> str:
        return channel_prefix(self.name)

    @property
    def has_upstream(self) -> bool:
        return self.python_upstream is not None or self.cran_upstream is not None


def parse_upstream_url(text: str, *, what: str = "The upstream URL") -> Upstream:
    """An upstream root from a URL that may carry ``user:password@``.

    The URL must be ``http`` or ``https`` with a host and no query or fragment; its path
    gets a trailing ``/`` (a root is a directory).  Credentials are percent-decoded and
    kept apart, so that the URL can be shown.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidUpstreamError(f"{what} is empty; give an http:// or https:// URL.")
    text = text.strip()
    if len(text) > MAX_URL_LENGTH or any(ord(c) < 0x21 or ord(c) == 0x7F for c in text):
        raise InvalidUpstreamError(
            f"{what} must be at most {MAX_URL_LENGTH} characters without spaces or controls."
        )
    try:
        parts = urlsplit(text)
        port = parts.port
        hostname = parts.hostname
    except ValueError:
        raise InvalidUpstreamError(f"{what} is not a valid URL.") from None
    if parts.scheme not in ("http", "https") or not hostname:
        raise InvalidUpstreamError(f"{what} must start with http:// or https:// and name a host.")
    if parts.query or parts.fragment:
        raise InvalidUpstreamError(f"{what} must not have a query or a fragment.")
    if re.search(r"/t/[^/]+/", f"{parts.path}/"):
        # A token in the path would show wherever the URL is shown (listings, logs).
        raise InvalidUpstreamError(
            f"{what} carries a path token (/t/...); give the token as user:password@ instead."
        )
    host = hostname
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(hostname).version == 6:
            host = f"[{hostname}]"
    netloc = host if port is None else f"{host}:{port}"
    path = parts.path or "/"
    if not path.endswith("/"):
        path += "/"
    path = quote(unquote(path), safe="/:@!$&'()*+,;=~-._")
    url = urlunsplit((parts.scheme, netloc, path, "", ""))
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    if username is not None and password is None:
        password = ""
    return Upstream(url=url, username=username, password=password)


def _upstream(value: str | Upstream | None, what: str) -> Upstream | None:
    if value is None or isinstance(value, Upstream):
        return value
    return parse_upstream_url(value, what=what)


def _number(value: Any, what: str, unit: str, maximum: float, most: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise InvalidUpstreamError(f"{what} must be a number of {unit}.")
    if not 0 <= value <= maximum:
        raise InvalidUpstreamError(f"{what} must be between 0 and {most}.")
    return float(value)


def validate_upstream_settings(
    *,
    python_upstream: str | Upstream | None = None,
    cran_upstream: str | Upstream | None = None,
    upstream_allow: Iterable[str] = (),
    upstream_ttl: float = DEFAULT_UPSTREAM_TTL,
    upstream_min_age: float = 0.0,
) -> dict[str, Any]:
    """Check every upstream setting and return them as :class:`Channel` fields.

    URLs may carry credentials (``https://user:password@host/simple/``); ``upstream_allow``
    names projects or packages (duplicates dropped, order kept); ``upstream_ttl`` is in
    seconds, ``upstream_min_age`` in days.  Raises :class:`InvalidUpstreamError`, one
    sentence per error, for the first setting that is wrong.
    """
    if isinstance(upstream_allow, str):
        raise InvalidUpstreamError("The upstream allowlist must be a list of names.")
    allowed: dict[str, None] = {}
    for name in upstream_allow:
        if not isinstance(name, str) or not _ALLOWED_NAME.match(name):
            raise InvalidUpstreamError(
                f"{str(name)[:100]!r} is not a project or package name to allow from upstream;"
                " use letters, digits, '.', '-' and '_'."
            )
        allowed[name] = None
    if len(allowed) > MAX_ALLOWED:
        raise InvalidUpstreamError(f"The upstream allowlist holds more than {MAX_ALLOWED} names.")
    return {
        "python_upstream": _upstream(python_upstream, "The Python upstream URL"),
        "cran_upstream": _upstream(cran_upstream, "The CRAN upstream URL"),
        "upstream_allow": tuple(allowed),
        "upstream_ttl": _number(
            upstream_ttl, "The upstream TTL", "seconds", MAX_UPSTREAM_TTL, "30 days"
        ),
        "upstream_min_age": _number(
            upstream_min_age, "The upstream minimum age", "days", MAX_MIN_AGE_DAYS, "3650 days"
        ),
    }


def upstream_settings(channel: Channel) -> dict[str, Any]:
    """A channel's upstream settings as a listing shows them: JSON-ready, without
    credentials (only whether there are some)."""
    return {
        "python_upstream": str(channel.python_upstream) if channel.python_upstream else None,
        "cran_upstream": str(channel.cran_upstream) if channel.cran_upstream else None,
        "upstream_credentials": {
            "python": bool(channel.python_upstream and channel.python_upstream.has_credentials),
            "cran": bool(channel.cran_upstream and channel.cran_upstream.has_credentials),
        },
        "upstream_allow": list(channel.upstream_allow),
        "upstream_ttl": channel.upstream_ttl,
        "upstream_min_age": channel.upstream_min_age,
    }


def _record(channel: Channel) -> dict[str, Any]:
    """The channel as its stored record."""
    doc = asdict(channel)
    for key in ("python_upstream", "cran_upstream"):
        upstream = getattr(channel, key)
        doc[key] = upstream.to_json() if upstream is not None else None
    doc["upstream_allow"] = list(channel.upstream_allow)
    return doc


def _channel(doc: Mapping[str, Any]) -> Channel:
    """The channel a stored record holds; a record of the wrong shape raises (which
    :func:`~.storage.read_document` reports as a damaged document)."""
    return Channel(
        name=validate_channel_name(doc["name"]),
        public=bool(doc["public"]),
        created=float(doc["created"]),
        allow_reupload=bool(doc.get("allow_reupload", False)),
        python_upstream=Upstream.from_json(doc.get("python_upstream")),
        cran_upstream=Upstream.from_json(doc.get("cran_upstream")),
        upstream_allow=tuple(doc.get("upstream_allow", ())),
        upstream_ttl=float(doc.get("upstream_ttl", DEFAULT_UPSTREAM_TTL)),
        upstream_min_age=float(doc.get("upstream_min_age", 0.0)),
    )


#: Says how a storage keeps its files, where its first channel was made by a version
#: that writes it: ``{"blobs": "flat"}`` since the thirtieth round of
#: docs/performance.md (:attr:`~.core.blobs.StoredFile.flat`), ``"records":
#: "appended"`` too since the thirty-first (:attr:`~.core.blobs.ChannelStore.appends`).
#: A storage made before has none, or says less, and keeps what every version before
#: reads: so an older version still serves all a storage it made holds after an
#: upgrade (docs/upgrading.md).
FORMAT_KEY = "registry/format.json"
#: What a storage made now says (:data:`FORMAT_KEY`).
FORMAT = {"blobs": "flat", "records": "appended"}


@dataclass(frozen=True)
class StorageFormat:
    """What :data:`FORMAT_KEY` says of a storage."""

    #: The files uploaded get flat blobs (:attr:`~.core.blobs.StoredFile.flat`).
    flat_blobs: bool = False
    #: A record uploaded may be appended to its document as a text
    #: (:func:`~.storage.update_json`'s ``append``), which no version before reads.
    appended_records: bool = False


def storage_format(storage: Storage) -> StorageFormat:
    """What the storage says of itself (:data:`FORMAT_KEY`): one read."""
    try:
        doc, _ = read_json(storage, FORMAT_KEY)
    except (FileNotFoundError, CorruptDocumentError):
        doc = None
    if not isinstance(doc, dict):
        return StorageFormat()
    return StorageFormat(
        flat_blobs=doc.get("blobs") == "flat", appended_records=doc.get("records") == "appended"
    )


def keeps_blobs_flat(storage: Storage) -> bool:
    """Whether the files uploaded to ``storage`` get flat blobs (:data:`FORMAT_KEY`)."""
    return storage_format(storage).flat_blobs


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

    def create(
        self,
        name: str,
        *,
        public: bool = False,
        allow_reupload: bool = False,
        python_upstream: str | Upstream | None = None,
        cran_upstream: str | Upstream | None = None,
        upstream_allow: Iterable[str] = (),
        upstream_ttl: float = DEFAULT_UPSTREAM_TTL,
        upstream_min_age: float = 0.0,
    ) -> Channel:
        """Create a channel; the upstream settings are :func:`validate_upstream_settings`'s.

        Raises :class:`InvalidChannelNameError`, :class:`InvalidUpstreamError` or
        :class:`ChannelExistsError`, each with one sentence.
        """
        upstreams = validate_upstream_settings(
            python_upstream=python_upstream,
            cran_upstream=cran_upstream,
            upstream_allow=upstream_allow,
            upstream_ttl=upstream_ttl,
            upstream_min_age=upstream_min_age,
        )
        channel = Channel(
            name=validate_channel_name(name),
            public=public,
            created=time.time(),
            allow_reupload=allow_reupload,
            **upstreams,
        )
        if next(iter(self.storage.list("registry/channels/")), None) is None:
            # A new storage (a storage made before has channels, and no format).
            with contextlib.suppress(FileExistsError):
                self.storage.create(FORMAT_KEY, io.BytesIO(dump_json(FORMAT)))
        try:
            self.storage.create(self._key(name), io.BytesIO(dump_json(_record(channel))))
        except FileExistsError:
            raise ChannelExistsError(f"Channel {name!r} exists already.") from None
        return channel

    def update(
        self,
        name: str,
        *,
        public: bool | _Keep = KEEP,
        python_upstream: str | Upstream | _Keep | None = KEEP,
        cran_upstream: str | Upstream | _Keep | None = KEEP,
        upstream_allow: Iterable[str] | _Keep = KEEP,
        upstream_ttl: float | _Keep = KEEP,
        upstream_min_age: float | _Keep = KEEP,
    ) -> Channel:
        """Change only the settings given (``None`` removes an upstream); the rest keep
        their values.  The record changes by compare-and-swap, so concurrent updates
        of different settings both hold.  Raises :class:`FileNotFoundError` for a
        channel that does not exist and :class:`InvalidUpstreamError` as :meth:`create`.
        """
        validate_channel_name(name)
        given: dict[str, Any] = {
            key: value
            for key, value in {
                "python_upstream": python_upstream,
                "cran_upstream": cran_upstream,
                "upstream_allow": upstream_allow,
                "upstream_ttl": upstream_ttl,
                "upstream_min_age": upstream_min_age,
            }.items()
            if value is not KEEP
        }
        # Checked before the record is read, so that a wrong value writes nothing.
        given = {k: v for k, v in validate_upstream_settings(**given).items() if k in given}
        if public is not KEEP and not isinstance(public, bool):
            raise InvalidUpstreamError("The setting 'public' must be true or false.")
        updated: list[Channel] = []

        def change(doc: dict[str, Any] | None) -> dict[str, Any]:
            if doc is None:
                raise FileNotFoundError(f"Channel {name!r} does not exist.")
            new = replace(_channel(doc), **given)
            if isinstance(public, bool):
                new = replace(new, public=public)
            updated[:] = [new]
            # Fields a later version added stay as they are.
            return {**doc, **_record(new)}

        update_json(self.storage, self._key(name), change)
        return updated[0]

    def get(self, name: str) -> Channel | None:
        """The channel called ``name``, or ``None`` (also for names that are invalid)."""
        found = self.find(name)
        return None if found is None else found[0]

    def find(self, name: str) -> tuple[Channel, str, str] | None:
        """The channel called ``name``, its record's storage key and the ETag it was
        read at, or ``None`` (also for names that are invalid)."""
        try:
            validate_channel_name(name)
            key = self._key(name)
            etag = self.storage.stat(key).etag
        except (FileNotFoundError, InvalidChannelNameError):
            self._known.pop(name, None)
            return None
        known = self._known.get(name)
        if known is not None and known[0] == etag:
            return known[1], key, etag
        try:
            channel, stat = read_document(self.storage, key, _channel)
        except FileNotFoundError:
            return None
        if len(self._known) >= 10_000:  # a bound, whatever names are asked for
            self._known.clear()
        self._known[name] = (stat.etag, channel)
        return channel, key, stat.etag

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
