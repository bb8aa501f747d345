"""Keep tokens out of the logs of the servers and frameworks that host the channels.

::

    from private_channels.logs import redact_loggers

    redact_loggers()        # werkzeug's, gunicorn's and waitress's loggers, in this process

    $ gunicorn --logger-class private_channels.logs.GunicornLogger 'myapp:app'

The channels cut ``/t/<TOKEN>/`` out of ``PATH_INFO``, ``REQUEST_URI`` and ``RAW_URI``
before any wrapped app sees a request, but the server in front logs its own copy of
the request line: werkzeug's development server (``flask run``) logs every request
line, gunicorn's "Error handling request" line names the URI of any request that
failed, waitress's "Exception while serving" too, and their access logs show the
Basic user name, which for pip's ``TOKEN:x-auth-token`` form is the token.
:class:`RedactTokens` is a :class:`logging.Filter` that rewrites each record of a
logger (its message, its arguments and its traceback) with
:func:`~private_channels.auth.redact_tokens`; :func:`redact_loggers` installs it on
those servers' loggers, and :class:`GunicornLogger` is gunicorn's own logger with it
installed, for ``--logger-class``.  ``private_channels.wsgi`` installs it when
imported, so ``gunicorn private_channels.wsgi:app`` and ``waitress-serve`` need nothing
more.
"""

from __future__ import annotations

import functools
import logging
import traceback
from typing import Any

from .auth import redact_tokens

__all__ = ["SERVER_LOGGERS", "RedactTokens", "redact_loggers"]  # and GunicornLogger, on use

#: The loggers of the servers that log request lines or URIs of their own.
SERVER_LOGGERS = ("werkzeug", "gunicorn.error", "gunicorn.access", "waitress")


class RedactTokens(logging.Filter):
    """Rewrite every record with anything shaped like a token redacted; drop none."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format: let the handler report it, redacted
            message = f"{record.msg!r} % {record.args!r}"
        record.msg, record.args = redact_tokens(message), None
        if record.exc_info and not record.exc_text:
            # Formatters use exc_text when it is set, so the traceback, which may
            # quote a URI in an exception's message, is redacted once here.
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:
            record.exc_text = redact_tokens(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_tokens(record.stack_info)
        return True


def redact_loggers(*names: str) -> None:
    """Install :class:`RedactTokens` on these loggers (default :data:`SERVER_LOGGERS`),
    once each, however often this is called."""
    for name in names or SERVER_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())


@functools.cache
def _gunicorn_logger() -> type[Any]:
    # Made on first use: gunicorn is no dependency, and hosts on other servers never
    # need it imported.
    from gunicorn.glogging import Logger

    class GunicornLogger(Logger):  # type: ignore[misc]
        """gunicorn's logger, with tokens redacted from its error and access logs.

        ``gunicorn --logger-class private_channels.logs.GunicornLogger APP`` (or
        ``logger_class = "private_channels.logs.GunicornLogger"`` in its config file).
        """

        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            redact_loggers(self.error_log.name, self.access_log.name)

    GunicornLogger.__module__, GunicornLogger.__qualname__ = __name__, "GunicornLogger"
    return GunicornLogger


def __getattr__(name: str) -> Any:
    if name == "GunicornLogger":
        return _gunicorn_logger()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
