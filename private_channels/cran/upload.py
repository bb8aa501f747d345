"""R packages posted with curl at ``POST P/<CHANNEL>``: what an R upload form must say.

::

    response = upload_package(CranStore(storage), upload)   # an Upload from the core

    # curl -F filetype=cran_source_package -F content=@abc_2.1.tar.gz \\
    #      -H "X-Auth: TOKEN" http://HOST/api/repo/CHANNEL

A source package (``R CMD build``) goes to ``src/contrib/``; a binary
(``R CMD INSTALL --build``) goes where its ``Built:`` field says R looks for it:
``bin/windows/contrib/<x.y>/`` for a Windows ``.zip``, ``bin/macosx/.../contrib/<x.y>/``
for a macOS ``.tgz``.  Files are stored under the name their DESCRIPTION gives
(``<Package>_<Version>``), because that is the name R asks for.  The core's upload
owner (:mod:`~..core.upload`) authorizes, parses the form once and hands over forms
whose ``filetype`` starts with ``cran_``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from werkzeug.wrappers import Response

from ..core.blobs import DeletedFilenameError, FileConflictError, hash_stream
from ..errors import http_error
from .description import InvalidPackageError, PackageFile, read_package
from .store import (
    DISTRIBUTION_PATTERN,
    CranRecord,
    CranStore,
    about_fields,
    directories_for,
    fields_for,
)

if TYPE_CHECKING:
    from ..core.ecosystem import Upload

__all__ = ["FILETYPES", "upload_package"]

FILETYPES = {"cran_source_package": False, "cran_binary_package": True}  # -> binary?


def upload_package(store: CranStore, upload: Upload) -> Response:
    """Parse, validate, store, respond."""
    filetype = upload.form.get("filetype", "")
    distribution = upload.form.get("distribution")
    if filetype not in FILETYPES:
        raise http_error(400, "The filetype must be cran_source_package or cran_binary_package.")
    binary = FILETYPES[filetype]
    if distribution is not None:
        if not binary:
            raise http_error(400, "A distribution names the Linux system of a binary only.")
        if not re.fullmatch(DISTRIBUTION_PATTERN, distribution):
            raise http_error(
                400, "The distribution must be a short lowercase name such as bookworm."
            )
    contents = upload.files.getlist("content")
    if len(contents) != 1:
        raise http_error(
            400, "Send exactly one package file in the field 'content' (curl -F content=@FILE)."
        )
    stream = contents[0].stream  # spooled by the upload owner: seekable, ours to read
    digests = hash_stream(stream)
    if digests.size == 0:
        raise http_error(400, "The uploaded package file is empty.")
    try:
        package = read_package(
            stream,
            binary=binary,
            linux=distribution is not None,
            limits=upload.limits,
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
    record = store.uploaded(
        CranRecord,
        package.filename,
        digests,
        upload.token,
        package=package.name,
        version=package.version,
        md5=digests.md5,
        fields=fields_for(package, digests.md5),
        about=about_fields(package),
    )
    try:
        added = store.add(upload.channel, directories, record, stream)
    except DeletedFilenameError:
        raise http_error(
            409,
            f"File already exists: {package.filename} was deleted from this channel and its "
            "name cannot be used again; bump the Version.",
        ) from None
    except FileConflictError:
        raise http_error(
            409,
            f"File already exists: {package.filename} was uploaded with other bytes; "
            "bump the Version to publish a change.",
        ) from None
    where = ", ".join(_describe(d) for d in directories)
    if added:
        return _text(f"Uploaded {package.filename} to {where}.")
    return _text(f"{package.filename} is already in {where} with the same bytes; nothing changed.")


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
