"""A health endpoint for load balancers and orchestrators: ``P/-/health``.

::

    app = HealthMiddleware(app, storage)             # GET P/-/health -> 200 or 503

``-`` can never be a channel name (names start with a letter, a digit or ``_``), so
``P/-/`` is outside every channel's URL space.  The check reads the registry from the
storage: every channel record, parsed, and the token-hashing key (and, with
``check_write=True``, writes and deletes a small probe record), answering
``200`` with ``{"status": "ok"}`` or ``503`` with one sentence.  It needs no token:
it says nothing but whether the storage answers, and the reason for a failure goes to
the ``private_channels.health`` logger, not to the caller.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
import uuid
from typing import TYPE_CHECKING

from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from .channels import ChannelRegistry
from .errors import http_error
from .storage import CorruptDocumentError, read_bytes
from .tokens import TOKEN_KEY

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from .storage import Storage

__all__ = ["HEALTH_PATH", "HealthMiddleware", "check_storage"]

HEALTH_PATH = "/-/health"
_log = logging.getLogger("private_channels.health")


def check_storage(storage: Storage, *, write: bool = False) -> None:
    """Raise whatever the storage raises when it cannot list, read or (optionally) write,
    and :class:`~.storage.CorruptDocumentError` for a damaged registry document."""
    # Every channel record, parsed as every request parses it: the registry is small,
    # and a damaged record makes every request to its channel fail.
    for _ in ChannelRegistry(storage).list():
        pass
    # A fresh storage has no token key yet, and that is healthy.
    with contextlib.suppress(FileNotFoundError):
        hashing_key, _ = read_bytes(storage, TOKEN_KEY, limit=1024)
        if len(hashing_key) < 16:
            raise CorruptDocumentError(TOKEN_KEY, f"{len(hashing_key)} bytes, fewer than 16")
    if write:
        key = f"registry/health/{uuid.uuid4().hex}"
        storage.create(key, io.BytesIO(b"{}"))
        storage.delete(key)


class HealthMiddleware:
    """Answer ``GET``/``HEAD`` on ``path`` (below the mount) and pass on the rest."""

    def __init__(
        self,
        app: WSGIApplication,
        storage: Storage,
        *,
        path: str = HEALTH_PATH,
        check_write: bool = False,
    ) -> None:
        self.app = app
        self.storage = storage
        self.path = path
        self.check_write = check_write

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "") != self.path:
            return self.app(environ, start_response)
        try:
            response = self.respond(environ)
        except HTTPException as error:
            return error(environ, start_response)
        return response(environ, start_response)

    def respond(self, environ: WSGIEnvironment) -> Response:
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            raise http_error(
                405,
                "The health endpoint answers GET and HEAD only.",
                headers=[("Allow", "GET, HEAD")],
            )
        started = time.monotonic()
        try:
            check_storage(self.storage, write=self.check_write)
        except CorruptDocumentError as exc:
            _log.error("health check failed on %r: %s", self.storage, exc)
            raise http_error(
                503, "The storage holds a damaged document; see the server's log."
            ) from None
        except Exception:
            _log.exception("health check failed on %r", self.storage)
            raise http_error(503, "The storage does not answer; see the server's log.") from None
        body = {"status": "ok", "storage_ms": round((time.monotonic() - started) * 1000, 3)}
        response = Response(json.dumps(body) + "\n", mimetype="application/json")
        response.headers["Cache-Control"] = "no-store"
        return response
