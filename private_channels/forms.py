"""The upload form, parsed once per request and shared by the upload handlers.

::

    form, files = upload_form(environ, max_size=1 << 30)

twine, ``uv publish`` and curl all ``POST P/<CHANNEL>`` with a multipart body, and
``wsgi.input`` can be read only once: whichever upload middleware looks first parses
it (werkzeug's parser spools large files to disk, never holding them in memory) and
leaves the result in the environ for the next one.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.exceptions import BadRequest, ClientDisconnected, RequestEntityTooLarge
from werkzeug.formparser import parse_form_data

from .auth import authorize
from .errors import http_error
from .tokens import Scope

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

    from .channels import Channel
    from .tokens import Token

__all__ = [
    "FORM_KEY",
    "UploadForm",
    "claim_upload",
    "close_upload_form",
    "is_upload",
    "upload_form",
]

FORM_KEY = "private_channels.upload_form"
DEFAULT_MAX_UPLOAD_SIZE = 1024 * 1024 * 1024
# Metadata fields are small; a description can be long but not this long.
MAX_FORM_MEMORY = 16 * 1024 * 1024

UploadForm = tuple[MultiDict[str, str], MultiDict[str, FileStorage]]


def is_upload(environ: WSGIEnvironment) -> bool:
    """A POST to the channel itself (``P/<CHANNEL>`` or ``P/<CHANNEL>/``)."""
    return environ.get("REQUEST_METHOD") == "POST" and environ.get("PATH_INFO", "") in ("", "/")


def claim_upload(
    environ: WSGIEnvironment, channel: Channel, *, max_size: int = DEFAULT_MAX_UPLOAD_SIZE
) -> tuple[Token | None, MultiDict[str, str], MultiDict[str, FileStorage]] | None:
    """Where every upload middleware starts: ``None`` unless this is a multipart POST
    to the channel; else the uploader's token and the parsed form.

    Write access is checked before the body is read, so that nobody without it can make
    the server spool a large body.  Upload forms are always multipart (twine, uv, curl
    -F); any other body is left for the fallback, which explains what an upload is.
    """
    content_type = str(environ.get("CONTENT_TYPE", ""))
    if not is_upload(environ) or not content_type.startswith("multipart/form-data"):
        return None
    token = authorize(environ, channel, Scope.WRITE)
    form, files = upload_form(environ, max_size=max_size)
    return token, form, files


def upload_form(environ: WSGIEnvironment, *, max_size: int = DEFAULT_MAX_UPLOAD_SIZE) -> UploadForm:
    """Parse (once) and return the request's form fields and files.

    Raises 413 past ``max_size`` bytes, 400 for a body that is not a multipart form or
    that ends before its declared length.
    """
    cached: UploadForm | None = environ.get(FORM_KEY)
    if cached is not None:
        return cached
    content_type = environ.get("CONTENT_TYPE", "")
    if not content_type.startswith("multipart/form-data"):
        raise http_error(400, "Send the upload as a multipart/form-data body.")
    try:
        _, form, files = parse_form_data(
            environ,
            max_content_length=max_size,
            max_form_memory_size=MAX_FORM_MEMORY,
            silent=False,
        )
    except RequestEntityTooLarge:
        raise http_error(
            413, f"The upload is larger than this server's limit of {max_size} bytes."
        ) from None
    except ClientDisconnected:
        raise http_error(
            400, "The upload ended before its declared length; send it again."
        ) from None
    except (BadRequest, ValueError):
        raise http_error(400, "The upload body is not a valid multipart form.") from None
    environ[FORM_KEY] = (form, files)
    return form, files


def close_upload_form(environ: WSGIEnvironment) -> None:
    parsed: UploadForm | None = environ.pop(FORM_KEY, None)
    if parsed is None:
        return
    for _, upload in parsed[1].items(multi=True):
        with contextlib.suppress(Exception):
            upload.close()
