"""Errors that teach: a status code and one sentence the user can act on.

::

    raise http_error(400, "The filename 'x.whl' is not a valid wheel filename.")

The sentence goes into the body and also into the reason phrase, because twine (and
most HTTP clients in their error messages) print the reason phrase, not the body.  The
body is the sentence as plain text, or ``{"error": "<sentence>"}`` for a request of the
HTTP API (:data:`ERROR_FORMAT_KEY`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import HTTPException
from werkzeug.sansio.response import Response as SansIOResponse
from werkzeug.wrappers import Response

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["ERROR_FORMAT_KEY", "ChannelHTTPError", "http_error", "reason_phrase"]

#: Set to ``"json"`` in the environ of a request whose errors are answered as
#: ``{"error": "<sentence>"}`` (the HTTP API's), whichever middleware refuses it.
ERROR_FORMAT_KEY = "private_channels.error_format"

MAX_REASON = 200


# RFC 9112: reason-phrase = *( HTAB / SP / VCHAR / obs-text ), so no control character.
_NOT_IN_REASON = re.compile(r"[\x00-\x1f\x7f]")


def reason_phrase(sentence: str) -> str:
    """Make a sentence safe for an HTTP status line: one line of latin-1, no controls."""
    line = " ".join(sentence.split())
    line = line.encode("latin-1", "replace").decode("latin-1")
    return _NOT_IN_REASON.sub("?", line)[:MAX_REASON]


class ChannelHTTPError(HTTPException):
    """An HTTP error whose status line and body both carry one explanatory sentence."""

    def __init__(
        self,
        code: int,
        sentence: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        super().__init__(description=sentence)
        self.code = code
        self.sentence = sentence
        self.extra_headers = list(headers)

    @property
    def name(self) -> str:
        return reason_phrase(self.sentence)

    def get_response(  # type: ignore[override]
        self,
        environ: WSGIEnvironment | None = None,
        scope: dict[str, Any] | None = None,
    ) -> SansIOResponse:
        status = f"{self.code} {reason_phrase(self.sentence)}"
        if environ is not None and environ.get(ERROR_FORMAT_KEY) == "json":
            body = json.dumps({"error": self.sentence}) + "\n"
            response = Response(body, status=status, mimetype="application/json")
        else:
            response = Response(self.sentence + "\n", status=status, mimetype="text/plain")
        for name, value in self.extra_headers:
            response.headers.add(name, value)
        return response


def http_error(
    code: int, sentence: str, *, headers: Iterable[tuple[str, str]] = ()
) -> ChannelHTTPError:
    return ChannelHTTPError(code, sentence, headers=headers)
