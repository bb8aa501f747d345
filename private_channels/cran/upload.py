"""Accepts R packages posted with curl at ``POST P/<CHANNEL>``.

::

    app = CranUploadMiddleware(app, storage, max_upload_size=1 << 30)

    # curl -F filetype=cran_source_package -F content=@abc_2.1.tar.gz \\
    #      -H "X-Auth: TOKEN" http://HOST/api/repo/CHANNEL

A source package (``R CMD build``) goes to ``src/contrib/``; a binary
(``R CMD INSTALL --build``) goes where its ``Built:`` field says R looks for it:
``bin/windows/contrib/<x.y>/`` for a Windows ``.zip``, ``bin/macosx/.../contrib/<x.y>/``
for a macOS ``.tgz``.  Files are stored under the name their DESCRIPTION gives
(``<Package>_<Version>``), because that is the name R asks for.  Uploads whose form has
no ``filetype=cran_*`` are passed on untouched (the form is parsed once and shared).
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from ..core.limits import Limits
from ..errors import http_error
from ..forms import DEFAULT_MAX_UPLOAD_SIZE, claim_upload
from ..pypi.upload import hash_stream
from ..routing import current_channel
from .description import InvalidPackageError, PackageFile, read_package
from .store import (
    DISTRIBUTION_PATTERN,
    CranRecord,
    CranStore,
    FileConflictError,
    directories_for,
    fields_for,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from werkzeug.datastructures import FileStorage

    from ..storage import Storage
    from ..tokens import Token

__all__ = ["FILETYPES", "CranUploadMiddleware"]

FILETYPES = {"cran_source_package": False, "cran_binary_package": True}  # -> binary?


class CranUploadMiddleware:
    def __init__(
        self,
        app: WSGIApplication,
        storage: Storage,
        *,
        max_upload_size: int = DEFAULT_MAX_UPLOAD_SIZE,
        limits: Limits | None = None,
    ) -> None:
        self.app = app
        self.store = CranStore(storage)
        self.max_upload_size = max_upload_size
        self.limits = limits or Limits()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            claimed = claim_upload(environ, current_channel(environ), max_size=self.max_upload_size)
            if claimed is None:
                return self.app(environ, start_response)
            token, form, files = claimed
            filetype = form.get("filetype", "")
            if not filetype.startswith("cran_"):
                return self.app(environ, start_response)
            response = self.upload(
                environ, filetype, files.getlist("content"), token, form.get("distribution")
            )
        except HTTPException as error:
            return error(environ, start_response)
        return response(environ, start_response)

    def upload(
        self,
        environ: WSGIEnvironment,
        filetype: str,
        contents: list[FileStorage],
        token: Token | None,
        distribution: str | None = None,
    ) -> Response:
        """Parse, validate, store, respond."""
        if filetype not in FILETYPES:
            raise http_error(
                400, "The filetype must be cran_source_package or cran_binary_package."
            )
        binary = FILETYPES[filetype]
        if distribution is not None:
            if not binary:
                raise http_error(400, "A distribution names the Linux system of a binary only.")
            if not re.fullmatch(DISTRIBUTION_PATTERN, distribution):
                raise http_error(
                    400, "The distribution must be a short lowercase name such as bookworm."
                )
        if len(contents) != 1:
            raise http_error(
                400, "Send exactly one package file in the field 'content' (curl -F content=@FILE)."
            )
        stream = contents[0].stream  # spooled by the form parser: seekable, ours to read
        digests = hash_stream(stream)
        if digests["size"] == 0:
            raise http_error(400, "The uploaded package file is empty.")
        try:
            package = read_package(
                stream, binary=binary, linux=distribution is not None, limits=self.limits
            )
        except InvalidPackageError as exc:
            raise http_error(400, str(exc)) from None
        _check_client_name(contents[0].filename, package)
        directories = directories_for(package, distribution)
        if not directories:
            raise http_error(
                400,
                f"No R version reads a {package.kind} built for "
                f"R {package.built.r_version if package.built else '?'} on this platform.",
            )
        record = CranRecord(
            filename=package.filename,
            package=package.name,
            version=package.version,
            size=digests["size"],
            md5=digests["md5_digest"],
            sha256=digests["sha256_digest"],
            upload_time=time.time(),
            fields=fields_for(package, digests["md5_digest"]),
            uploader=token.id if token is not None else None,
        )
        try:
            added = self.store.add(current_channel(environ), directories, record, stream)
        except FileConflictError:
            raise http_error(
                409,
                f"File already exists: {package.filename} was uploaded with other bytes; "
                "bump the Version to publish a change.",
            ) from None
        where = ", ".join(_describe(d) for d in directories)
        if added:
            return _text(f"Uploaded {package.filename} to {where}.")
        return _text(
            f"{package.filename} is already in {where} with the same bytes; nothing changed."
        )


def _check_client_name(filename: str | None, package: PackageFile) -> None:
    """The client's name for the file, if it sent one, must agree with the DESCRIPTION
    (the file is stored under the DESCRIPTION's name whatever the client called it)."""
    client_name = (filename or "").replace("\\", "/").rpartition("/")[2]
    if client_name and not package.named_by(client_name):
        raise http_error(
            400,
            f"The file is named {client_name[:80]!r} but its DESCRIPTION makes it "
            f"{package.filename!r}; rename it or fix the DESCRIPTION.",
        )


def _describe(directory: str) -> str:
    if directory.startswith("linux/"):
        _, distribution, r_version = directory.split("/")
        return f"__linux__/{distribution}/src/contrib/ (for R {r_version})"
    return f"{directory}/"


def _text(line: str) -> Response:
    return Response(line + "\n", status=200, mimetype="text/plain")
