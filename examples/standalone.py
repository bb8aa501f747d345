"""The channels alone, served by werkzeug's ``run_simple`` at ``/api/repo``.

::

    PRIVATE_CHANNELS_STORAGE=./private-channels-data python examples/standalone.py

This is what ``private-channels serve`` does, in a few lines to copy and change:
``make_app`` mounted with ``DispatcherMiddleware``, a plain 404 for the rest, and the
access log instead of werkzeug's request log (whose error lines are redacted, as they
quote the request line), and each response closed when its client went away, which
werkzeug's server does not always do (the access line is written when it is closed).
werkzeug's server is for development and small teams; see the deployment docs for
gunicorn and waitress.
"""

from __future__ import annotations

import os
from typing import Any

from werkzeug.exceptions import NotFound
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import WSGIRequestHandler, run_simple

from private_channels import make_app, open_storage
from private_channels.accesslog import configure_logging
from private_channels.logs import redact_loggers
from private_channels.serving import close_dropped, closed_when_dropped

storage = open_storage(os.environ.get("PRIVATE_CHANNELS_STORAGE", "./private-channels-data"))
channels = make_app(
    storage, secret_key=os.environ.get("PRIVATE_CHANNELS_SECRET_KEY"), access_log="text"
)
app = closed_when_dropped(DispatcherMiddleware(NotFound(), {"/api/repo": channels}))


class AccessLoggedRequestHandler(WSGIRequestHandler):
    # werkzeug's request line would show a token sent in the path (/t/<TOKEN>/, for R);
    # the access log of make_app logs each request with the token cut out instead.
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def connection_dropped(
        self, error: BaseException, environ: dict[str, Any] | None = None
    ) -> None:
        close_dropped(environ)


if __name__ == "__main__":
    configure_logging()
    redact_loggers()
    port = int(os.environ.get("PORT", "8000"))
    run_simple("127.0.0.1", port, app, threaded=True, request_handler=AccessLoggedRequestHandler)
