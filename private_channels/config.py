"""One way to configure a deployment: environment variables over an optional TOML file.

::

    # /etc/private-channels.toml               (named by PRIVATE_CHANNELS_CONFIG)
    storage = "s3://packages/private-channels"
    secret_key = "a long random string"        # or PRIVATE_CHANNELS_SECRET_KEY
    max_upload_size = "500m"
    log_format = "json"
    public_channels = ["docs"]

    from private_channels.config import load_config

    config = load_config()             # reads os.environ, then the file it names
    app = config.build_app()           # make_app(...) mounted at config.prefix

Every setting has an environment variable ``PRIVATE_CHANNELS_<NAME>`` that wins over
the file; the file is named by ``PRIVATE_CHANNELS_CONFIG`` (or passed explicitly).
Anything invalid raises :class:`ConfigError` whose message is one sentence naming the
setting, where it came from, and what would be accepted, so that a server refuses to
start rather than run half-configured.

=======================  =======================================  ==============================
setting                  environment variable                     default
=======================  =======================================  ==============================
``storage``              ``PRIVATE_CHANNELS_STORAGE``             ``./private-channels-data``
``secret_key``           ``PRIVATE_CHANNELS_SECRET_KEY``          none (no signed tokens)
``max_upload_size``      ``PRIVATE_CHANNELS_MAX_UPLOAD_SIZE``     ``1g``
``prefix``               ``PRIVATE_CHANNELS_PREFIX``              ``/api/repo``
``log_format``           ``PRIVATE_CHANNELS_LOG_FORMAT``          ``text`` (or ``json``, ``off``)
``public_channels``      ``PRIVATE_CHANNELS_PUBLIC_CHANNELS``     none (comma-separated in env)
``trusted_proxies``      ``PRIVATE_CHANNELS_TRUSTED_PROXIES``     ``0`` (number of proxies)
``token_cache_ttl``      ``PRIVATE_CHANNELS_TOKEN_CACHE_TTL``     ``5`` (seconds)
``redirect_downloads``   ``PRIVATE_CHANNELS_REDIRECT_DOWNLOADS``  ``0`` (off; seconds, S3 only)
=======================  =======================================  ==============================
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .channels import ChannelRegistry, InvalidChannelNameError, validate_channel_name
from .core.limits import Limits
from .storage import DEFAULT_STORAGE, StorageURLError, open_storage

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from .storage import Storage

__all__ = [
    "ENV_PREFIX",
    "LOG_FORMATS",
    "Config",
    "ConfigError",
    "load_config",
    "parse_size",
]

ENV_PREFIX = "PRIVATE_CHANNELS_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"
LOG_FORMATS = ("text", "json", "off")
# A signed token is only as strong as the key that signs it; 32 characters of
# `secrets.token_urlsafe` carry far more than the 128 bits this asks for.
MIN_SECRET_KEY_LENGTH = 32
_SIZE = re.compile(r"(\d+)\s*([kmgt]?)i?b?", re.IGNORECASE)
_PREFIX = re.compile(r"(/[A-Za-z0-9._~-]+)*")


class ConfigError(ValueError):
    """An invalid setting; the message is one sentence fit to print before exiting."""


def _token_before_prefix(app: WSGIApplication, prefix: str) -> WSGIApplication:
    """Take ``/t/<TOKEN>/<prefix>/...`` as ``<prefix>/t/<TOKEN>/...``.

    rattler and pixi send a conda token (``pixi auth login --conda-token``) in front of
    the whole path, where anaconda.org has its channels: for a channel at
    ``https://HOST/api/repo/team`` they ask for ``https://HOST/t/<TOKEN>/api/repo/team/...``.
    The standalone server owns the whole host, so it moves the token to where the
    channels' own path form has it; the token middleware then cuts it as usual.
    """

    def moved(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        if path.startswith("/t/"):
            token, _, rest = path[3:].partition("/")
            if token and ("/" + rest + "/").startswith(prefix + "/"):
                environ["PATH_INFO"] = f"{prefix}/t/{token}{rest[len(prefix) - 1 :]}"
        return app(environ, start_response)

    return moved


def parse_size(text: str | int) -> int:
    """``1048576``, ``500k``, ``500m``, ``2g`` (powers of 1024) to a number of bytes."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text <= 0:
            raise ValueError(f"size {text} is not a positive number of bytes")
        return text
    match = _SIZE.fullmatch(str(text).strip())
    if not match or int(match[1]) == 0:
        raise ValueError(f"size {text!r} is not a positive number of bytes like 500m or 2g")
    exponent = " kmgt".index(match[2].lower() or " ")
    size: int = int(match[1]) * 1024**exponent
    return size


@dataclass(frozen=True)
class Config:
    """A validated deployment configuration; build one with :func:`load_config`."""

    storage: str = DEFAULT_STORAGE
    secret_key: str | None = field(default=None, repr=False)
    max_upload_size: int = Limits.max_upload_size
    prefix: str = "/api/repo"
    log_format: str = "text"
    public_channels: tuple[str, ...] = ()
    trusted_proxies: int = 0
    token_cache_ttl: float = 5.0
    redirect_downloads: int = 0

    def open_storage(self) -> Storage:
        """Open the configured storage, or raise :class:`ConfigError` saying why not."""
        try:
            return open_storage(self.storage)
        except (StorageURLError, OSError) as exc:
            raise ConfigError(f"The storage {self.storage!r} cannot be opened: {exc}.") from exc

    def prepare(self, storage: Storage) -> None:
        """Create the configured public channels that do not exist yet.

        A listed channel that exists as a private one stops start-up: making it public
        silently would publish packages someone uploaded as private.
        """
        registry = ChannelRegistry(storage)
        for name in self.public_channels:
            channel = registry.get(name)
            if channel is None:
                try:
                    registry.create(name, public=True)
                except FileExistsError:  # another worker created it meanwhile
                    channel = registry.get(name)
            if channel is not None and not channel.public:
                raise ConfigError(
                    f"Channel {name!r} is listed in public_channels but exists as a private "
                    "channel; remove it from the list or delete the channel first."
                )

    def make_app(self, storage: Storage | None = None) -> WSGIApplication:
        """The channels app for this configuration, to mount at :attr:`prefix` yourself."""
        from .app import make_app

        if storage is None:
            storage = self.open_storage()
        self.prepare(storage)
        return make_app(
            storage,
            secret_key=self.secret_key,
            max_upload_size=self.max_upload_size,
            token_cache_ttl=self.token_cache_ttl,
            access_log=None if self.log_format == "off" else self.log_format,
            redirect_downloads=self.redirect_downloads,
        )

    def build_app(self, storage: Storage | None = None) -> WSGIApplication:
        """A whole server's app: the channels at :attr:`prefix`, 404 elsewhere, and
        werkzeug's ``ProxyFix`` in front when :attr:`trusted_proxies` is set."""
        from werkzeug.middleware.dispatcher import DispatcherMiddleware
        from werkzeug.middleware.proxy_fix import ProxyFix

        from .errors import http_error

        app = self.make_app(storage)
        if self.prefix:
            outside = http_error(404, f"Channels are served under {self.prefix}/.")
            app = _token_before_prefix(
                DispatcherMiddleware(outside, {self.prefix: app}), self.prefix
            )
        if self.trusted_proxies:
            n = self.trusted_proxies
            app = ProxyFix(app, x_for=n, x_proto=n, x_host=n, x_port=n, x_prefix=n)
        return app

    def environ(self) -> dict[str, str]:
        """These settings as ``PRIVATE_CHANNELS_*`` variables, for a child process to
        :func:`load_config` (the secret key included: keep the result out of logs)."""
        values = {
            "storage": self.storage,
            "secret_key": self.secret_key,
            "max_upload_size": str(self.max_upload_size),
            "prefix": self.prefix or "/",  # an empty variable would mean the default
            "log_format": self.log_format,
            "public_channels": ",".join(self.public_channels),
            "trusted_proxies": str(self.trusted_proxies),
            "token_cache_ttl": repr(self.token_cache_ttl),
            "redirect_downloads": str(self.redirect_downloads),
        }
        return {ENV_PREFIX + k.upper(): v for k, v in values.items() if v}

    def replace(self, **changes: Any) -> Config:
        """A copy with some settings changed, validated like the rest (``None`` ignored)."""
        values = {k: v for k, v in changes.items() if v is not None}
        return _validated({**dataclasses.asdict(self), **values}, dict.fromkeys(values, "argument"))


_FIELDS = {f.name for f in dataclasses.fields(Config)}


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            doc = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"The configuration file {str(path)!r} does not exist.") from None
    except OSError as exc:
        raise ConfigError(
            f"The configuration file {str(path)!r} cannot be read: {exc.strerror}."
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"The configuration file {str(path)!r} is not valid TOML: {exc}."
        ) from None
    # Accept the settings at the top level or in a [private-channels] table, so that
    # one file can also hold a host application's own settings.
    table = doc.get("private-channels", doc) if isinstance(doc, dict) else doc
    unknown = sorted(set(table) - _FIELDS - ({"private-channels"} if table is doc else set()))
    if unknown:
        raise ConfigError(
            f"The configuration file {str(path)!r} has an unknown setting {unknown[0]!r}; "
            f"known settings are {', '.join(sorted(_FIELDS))}."
        )
    return {k: v for k, v in table.items() if k in _FIELDS}


def load_config(
    environ: Mapping[str, str] | None = None, *, path: str | os.PathLike[str] | None = None
) -> Config:
    """Read the configuration: defaults, then the TOML file, then the environment.

    ``path`` names the file; otherwise ``PRIVATE_CHANNELS_CONFIG`` does, and without
    either there is no file.  Raises :class:`ConfigError` for anything invalid.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    file = path if path is not None else environ.get(CONFIG_ENV) or None
    if file is not None:
        values.update(_read_file(Path(file)))
        origin.update(dict.fromkeys(values, f"{str(file)!r}"))
    for name in sorted(_FIELDS):
        text = environ.get(ENV_PREFIX + name.upper())
        if text is not None and text.strip() != "":
            values[name] = text.strip()
            origin[name] = ENV_PREFIX + name.upper()
    return _validated(values, origin)


def _validated(values: dict[str, Any], origin: Mapping[str, str]) -> Config:
    converted: dict[str, Any] = {}
    for name, value in values.items():
        where = origin.get(name, "the defaults")
        try:
            converted[name] = _CONVERTERS[name](value)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"The setting {name} (from {where}) is invalid: {exc}.") from None
    return Config(**converted)


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TypeError(f"expected a non-empty string, got {value!r}")
    return value.strip()


def _secret_key(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError("expected a string")
    if len(value) < MIN_SECRET_KEY_LENGTH:
        # Never echo the key itself: this message ends up in logs.
        raise ValueError(
            f"it has {len(value)} characters, fewer than {MIN_SECRET_KEY_LENGTH}; generate one "
            'with python -c "import secrets; print(secrets.token_urlsafe(48))"'
        )
    return value


def _size(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"expected a size like 500m or a number of bytes, got {value!r}")
    return parse_size(value)


def _prefix(value: Any) -> str:
    text = _text(value) if value != "" else ""
    prefix = "/" + text.strip("/") if text.strip("/") else ""
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(f"{value!r} is not a URL path like /api/repo")
    return prefix


def _log_format(value: Any) -> str:
    text = _text(value).lower()
    if text not in LOG_FORMATS:
        raise ValueError(f"{value!r} is not one of {', '.join(LOG_FORMATS)}")
    return text


def _channels(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        names = [part.strip() for part in value.split(",") if part.strip()]
    elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        names = list(value)
    else:
        raise TypeError(f"expected a list of channel names, got {value!r}")
    try:
        return tuple(validate_channel_name(name) for name in dict.fromkeys(names))
    except InvalidChannelNameError as exc:
        raise ValueError(str(exc).rstrip(".")) from None


def _count(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError(f"expected a whole number, got {value!r}")
    number = int(value)
    if not 0 <= number <= 10:
        raise ValueError(f"{value!r} is not a number of proxies between 0 and 10")
    return number


def _seconds(value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError(f"expected a number of seconds, got {value!r}")
    number = float(value)
    if not 0 <= number <= 3600:
        raise ValueError(f"{value!r} is not a number of seconds between 0 and 3600")
    return number


def _expiry(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError(f"expected a number of seconds, got {value!r}")
    number = int(value)
    # SigV4 presigned URLs live at most seven days.
    if not 0 <= number <= 7 * 24 * 3600:
        raise ValueError(f"{value!r} is not a number of seconds between 0 (off) and 604800")
    return number


_CONVERTERS = {
    "storage": _text,
    "secret_key": _secret_key,
    "max_upload_size": _size,
    "prefix": _prefix,
    "log_format": _log_format,
    "public_channels": _channels,
    "trusted_proxies": _count,
    "token_cache_ttl": _seconds,
    "redirect_downloads": _expiry,
}
