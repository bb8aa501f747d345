"""Conda packages posted with curl at ``POST P/<CHANNEL>``: what a conda upload must be.

::

    response = upload_package(CondaStore(storage), upload)   # an Upload from the core

    # curl -F filetype=conda_package -F content=@demo-1.0-py_0.conda \\
    #      -H "X-Auth: TOKEN" http://HOST/api/repo/CHANNEL

The core's upload owner (:mod:`~..core.upload`) authorizes, parses the form once and
hands over forms with ``filetype=conda_package``.  The file keeps the name it was
sent with, which must be the one its ``info/index.json`` makes
(``<name>-<version>-<build>.conda`` or ``.tar.bz2``), and goes to the subdir that
``index.json`` names.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from werkzeug.wrappers import Response

from ..core.blobs import DeletedFilenameError, FileConflictError, hash_stream
from ..errors import http_error
from .package import InvalidPackageError, parse_filename, read_package
from .render import EXTRA
from .store import CondaRecord, CondaStore

if TYPE_CHECKING:
    from ..core.ecosystem import Upload

__all__ = ["FILETYPE", "upload_package"]

FILETYPE = "conda_package"


def upload_package(store: CondaStore, upload: Upload) -> Response:
    """Parse, validate, store, respond."""
    contents = upload.files.getlist("content")
    if len(contents) != 1:
        raise http_error(
            400, "Send exactly one package file in the field 'content' (curl -F content=@FILE)."
        )
    # The client's own name for the file: conda's names carry what a reader checks.
    filename = (contents[0].filename or "").replace("\\", "/").rpartition("/")[2]
    if len(filename) > upload.limits.max_filename:
        raise http_error(400, f"The file name is longer than {upload.limits.max_filename} "
                              "characters.")  # fmt: skip
    try:
        parsed = parse_filename(filename)
    except InvalidPackageError as exc:
        raise http_error(400, str(exc)) from None
    if parsed.extension == ".conda" and importlib.util.find_spec("zstandard") is None:
        raise http_error(
            501, f"This server cannot read .conda packages until zstandard is installed "
                 f"({EXTRA}); upload the .tar.bz2 build or ask its operator.",
        )  # fmt: skip
    stream = contents[0].stream  # spooled by the upload owner: seekable, ours to read
    digests = hash_stream(stream)
    if digests.size == 0:
        raise http_error(400, "The uploaded package file is empty.")
    try:
        package = read_package(filename, stream, limits=upload.limits)
    except InvalidPackageError as exc:
        raise http_error(400, str(exc)) from None
    record = store.uploaded(
        CondaRecord,
        filename,
        digests,
        upload.token,
        md5=digests.md5,
        subdir=package.subdir,
        name=package.name,
        index=package.index,
        about=package.about,
    )
    where = f"{package.subdir}/"
    try:
        added = store.add(upload.channel, record, stream)
    except FileConflictError as exc:
        why = (
            "was deleted from this channel and its name cannot be used again"
            if isinstance(exc, DeletedFilenameError)
            else "was uploaded with other bytes"
        )
        raise http_error(
            409, f"File already exists: {filename} in {where} {why}; "
                 "bump the build number to publish a change.",
        ) from None  # fmt: skip
    line = (
        f"Uploaded {filename} to {where}."
        if added
        else (f"{filename} is already in {where} with the same bytes; nothing changed.")
    )
    return Response(line + "\n", mimetype="text/plain")
