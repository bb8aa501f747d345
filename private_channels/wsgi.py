"""A module-level WSGI ``app`` for production servers, configured from the environment.

::

    PRIVATE_CHANNELS_STORAGE=/srv/packages PRIVATE_CHANNELS_LOG_FORMAT=json \\
        gunicorn --workers 4 --bind 127.0.0.1:8000 'private_channels.wsgi:app'

    waitress-serve --listen 127.0.0.1:8000 private_channels.wsgi:app

The app serves the channels under ``PRIVATE_CHANNELS_PREFIX`` (``/api/repo``) and is
configured by :func:`private_channels.config.load_config`: the ``PRIVATE_CHANNELS_*``
variables over the TOML file that ``PRIVATE_CHANNELS_CONFIG`` names.  An invalid
setting stops the import with :class:`~private_channels.config.ConfigError`, whose
one-sentence message is also printed alone on stderr, so that a server refuses to
start (gunicorn: "Worker failed to boot") instead of serving half-configured.

Importing it also installs :class:`~private_channels.logs.RedactTokens` on the
loggers of gunicorn, waitress and werkzeug (:func:`~private_channels.logs.redact_loggers`),
whose own lines quote request URIs, path tokens included, and lets the cyclic garbage
collector run less often (:func:`~private_channels.serving.collect_less`), as
``private-channels serve`` does.

Every worker process builds its own app over the same storage; the storage backends
are safe for that (compare-and-swap, atomic creates), so any number of workers works.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from .accesslog import FLUSH_INTERVAL, configure_logging
from .config import ConfigError, load_config
from .logs import redact_loggers
from .serving import collect_less

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = ["app"]


def _load() -> WSGIApplication:
    # The server's own logs quote request URIs (gunicorn's "Error handling request",
    # waitress's "Exception while serving"), where a path token would be in clear.
    redact_loggers()
    try:
        config = load_config()
        app = config.build_app()
    except ConfigError as exc:
        print(f"private-channels: configuration error: {exc}", file=sys.stderr, flush=True)
        raise
    if config.log_format != "off":
        configure_logging(flush_interval=FLUSH_INTERVAL)
    # The server's process is this app's alone: see serving.collect_less.
    collect_less()
    return app


app: WSGIApplication = _load()
