"""What a request that fails inside the server gets: a status and one sentence, never a
bare 500, and a line in the log that says what failed.

::

    app = FailureMiddleware(app)        # inside the access log, outside everything else

A failure is something no client sent and no client can cure: a damaged document in
the storage, a storage that may not be written, a full disk, a bug.  The answer names
none of the storage's insides (its caller may be anyone, even anonymous); the
``private_channels.errors`` log names the document, the path and the request id, with
tokens redacted, so that an administrator can find it from the sentence a user quotes.

===========================================  ======  ================================
failure                                      status  the sentence says
===========================================  ======  ================================
a storage document that does not parse       500     the storage holds a damaged
(:class:`~.storage.CorruptDocumentError`)            document; see the server's log
a read-only storage (``EROFS``)              500     the storage is read-only
no permission on the storage (``EACCES``)    500     the server may not write it
a full storage (``ENOSPC``, ``EDQUOT``)      507     the storage is full
a name no storage can hold (an over-long     404     nothing is at this URL (400 for
project or version in the URL)                       other methods than GET and HEAD)
anything else                                500     the server failed; see its log
===========================================  ======  ================================

Only failures raised before the response starts are answered here: once a body is
being sent, the status is gone, and the server logs what happens (redacted: see
:mod:`~private_channels.logs`).
"""

from __future__ import annotations

import errno
import logging
import sys
import traceback
from typing import TYPE_CHECKING, Any

from .accesslog import REQUEST_ID_KEY
from .auth import redact_tokens
from .errors import ChannelHTTPError, http_error
from .storage import CorruptDocumentError, InvalidKeyError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["FailureMiddleware", "answer_failure"]

LOGGER_NAME = "private_channels.errors"

DAMAGED = "The server's storage holds a damaged document"
READ_ONLY = "The server's storage is read-only, so nothing can be uploaded or changed"
FORBIDDEN = "The server is not permitted to write (or read) its storage"
FULL = "The server's storage is full"
FAILED = "The server failed on this request"


def _is_permission(exc: BaseException) -> bool:
    if isinstance(exc, PermissionError):
        return True
    # botocore's ClientError, unless the storage turned it into an OSError: no import
    # of boto3 here, whose extra may not be installed.
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return code in ("AccessDenied", "AllAccessDisabled")


def answer_failure(environ: WSGIEnvironment, exc: BaseException) -> tuple[ChannelHTTPError, str]:
    """The answer to a request that raised ``exc``, and what to log about it."""
    request_id = environ.get(REQUEST_ID_KEY)
    where = f"; its administrator can find why in the server's log (request id {request_id})." \
        if request_id else "; its administrator can find why in the server's log."  # fmt: skip
    if isinstance(exc, InvalidKeyError) or (
        isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG
    ):
        # Names in the URL are bounded before they reach the storage; this is the
        # backstop for one that slipped through: the client's mistake, not the server's.
        if environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            sentence = "Nothing is at this URL: a name in it is longer than any stored name."
            return http_error(404, sentence), f"a name no storage holds: {exc}"
        sentence = "A name in this request is longer than this server can store; shorten it."
        return http_error(400, sentence), f"a name no storage holds: {exc}"
    if isinstance(exc, CorruptDocumentError):
        return http_error(500, DAMAGED + where), str(exc)
    if isinstance(exc, OSError) and exc.errno == errno.EROFS:
        return http_error(500, READ_ONLY + where), f"the storage is read-only: {exc}"
    if _is_permission(exc):
        return http_error(500, FORBIDDEN + where), f"no permission on the storage: {exc}"
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return http_error(507, FULL + where), f"the storage is full: {exc}"
    return http_error(500, FAILED + where), "".join(traceback.format_exception(exc)).rstrip()


class FailureMiddleware:
    """Turn an exception of the wrapped app into an answer with one sentence, and log it."""

    def __init__(self, app: WSGIApplication, *, logger: logging.Logger | None = None) -> None:
        self.app = app
        self.logger = logger or logging.getLogger(LOGGER_NAME)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            return self.app(environ, start_response)
        except Exception as exc:
            error, what = answer_failure(environ, exc)
            path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
            request_id = environ.get(REQUEST_ID_KEY, "-")
            level = logging.ERROR if (error.code or 500) >= 500 else logging.INFO
            self.logger.log(
                level,
                "%s",
                redact_tokens(
                    f"{environ.get('REQUEST_METHOD', '')} {path} (request id {request_id}) "
                    f"answered {error.code}: {what}"
                ),
            )

            def restart(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                # The app may have called start_response before it failed.
                return start_response(status, headers, sys.exc_info())

            return error(environ, restart)
