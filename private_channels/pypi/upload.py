"""Accepts twine and ``uv publish`` uploads: the legacy upload API at ``POST P/<CHANNEL>``.

::

    app = PythonUploadMiddleware(app, storage, max_upload_size=1 << 30)

    $ twine upload --repository-url https://host/api/repo/team/ -u __token__ -p TOKEN dist/*
    $ uv publish --publish-url https://host/api/repo/team/ --token TOKEN dist/*

A request is this middleware's when it is a ``POST`` to the channel itself and its
form has an ``:action``; a form without one (curl uploading an R package) passes on,
with the parsed form left in the environ for the R upload middleware.

The story of an upload: authorize (before the body is read), parse the form (werkzeug
spools the file to disk), hash the file, check the client's digests and the archive's
own metadata against the filename and the form, then hand it to
:class:`~.store.PythonStore`, whose commit makes it visible to the index.  Every
rejection is a 400 (or 409, 413) whose one sentence is in the reason phrase, because
twine prints only that, and never a 5xx, which twine would retry.  Nothing is written
to storage before every check has passed, so a rejected or interrupted upload leaves
nothing there: the body is spooled to an anonymous temporary file outside the storage,
which the operating system removes even when the server is killed.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from ..core.limits import Limits
from ..errors import http_error
from ..forms import DEFAULT_MAX_UPLOAD_SIZE, claim_upload
from ..routing import current_channel
from ..storage.base import CHUNK_SIZE
from .metadata import Distribution, InvalidDistributionError, read_distribution
from .store import DeletedFilenameError, FileConflictError, FileRecord, PythonStore

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from werkzeug.datastructures import FileStorage, MultiDict

    from ..channels import Channel
    from ..storage import Storage
    from ..tokens import Token

__all__ = ["PythonUploadMiddleware"]

# Form field -> hashlib constructor, for every digest the legacy API defines.
DIGESTS: dict[str, Callable[[], Any]] = {
    "sha256_digest": hashlib.sha256,
    "blake2_256_digest": lambda: hashlib.blake2b(digest_size=32),
    "md5_digest": lambda: hashlib.md5(usedforsecurity=False),
}
FILETYPES = {"wheel": "bdist_wheel", "sdist": "sdist"}


class PythonUploadMiddleware:
    """Serve ``:action=file_upload`` posts to ``P/<CHANNEL>``; pass on everything else."""

    def __init__(
        self,
        app: WSGIApplication,
        storage: Storage,
        *,
        max_upload_size: int = DEFAULT_MAX_UPLOAD_SIZE,
        limits: Limits | None = None,
    ) -> None:
        self.app = app
        self.store = PythonStore(storage)
        self.max_upload_size = max_upload_size
        self.limits = limits or Limits()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            channel = current_channel(environ)
            claimed = claim_upload(environ, channel, max_size=self.max_upload_size)
            if claimed is not None and ":action" in claimed[1]:
                response = self.upload(channel, *claimed)
                return response(environ, start_response)
        except HTTPException as error:
            return error(environ, start_response)
        return self.app(environ, start_response)

    def upload(
        self,
        channel: Channel,
        token: Token | None,
        form: MultiDict[str, str],
        files: MultiDict[str, FileStorage],
    ) -> Response:
        """Check one upload form and store its file; raise an HTTP error otherwise."""
        check_form(form)
        content = files.get("content")
        if content is None or not content.filename:
            raise http_error(400, "The upload has no file in its 'content' field.")
        digests = hash_stream(content.stream)
        check_digests(form, digests)
        try:
            dist = read_distribution(content.filename, content.stream, limits=self.limits)
        except InvalidDistributionError as error:
            raise http_error(400, str(error)) from None
        check_against_form(dist, form)
        # Attestations (PEP 740), when sent, are accepted and not kept: serving them
        # would claim a verification this server does not make.
        added = self.store_file(channel, new_record(dist, digests, token), content.stream, dist)
        if added:
            text = f"Uploaded {dist.filename} to channel {channel.name}.\n"
        else:
            text = f"{dist.filename} is already in channel {channel.name}, with the same content.\n"
        return Response(text, status=200, mimetype="text/plain")

    def store_file(
        self, channel: Channel, record: FileRecord, stream: IO[bytes], dist: Distribution
    ) -> bool:
        """Hand the checked file to the store; its conflicts become 409 answers."""
        stream.seek(0)
        try:
            return self.store.add_file(
                channel,
                record,
                stream,
                display_name=dist.display_name,
                # PEP 658 serves a wheel's METADATA; an sdist's PKG-INFO may be
                # incomplete (dynamic fields), so installers never ask for it.
                metadata=dist.metadata if dist.kind == "wheel" else None,
            )
        except FileConflictError:
            raise http_error(
                409,
                f"File already exists: {dist.filename!r} is in channel {channel.name!r} with "
                "other content; upload the change under a new version.",
            ) from None
        except DeletedFilenameError:
            raise http_error(
                409,
                f"File already exists: {dist.filename!r} was deleted from channel "
                f"{channel.name!r} and its name cannot be used again; upload a new version.",
            ) from None


def new_record(dist: Distribution, digests: dict[str, Any], token: Token | None) -> FileRecord:
    """Everything the index will show about the file, so that it never opens archives."""
    return FileRecord(
        filename=dist.filename,
        project=dist.name,
        version=dist.version,
        size=digests["size"],
        sha256=digests["sha256_digest"],
        blake2b_256=digests["blake2_256_digest"],
        upload_time=time.time(),
        uploader=token.id if token is not None else None,
        requires_python=dist.requires_python,
    )


def check_form(form: MultiDict[str, str]) -> None:
    action = form.get(":action")
    if action != "file_upload":
        raise http_error(
            400,
            f"The upload action {action!r} is not supported; this server accepts only "
            "':action=file_upload'.",
        )
    # Like PyPI, a missing protocol_version means version 1.
    if form.get("protocol_version", "1") != "1":
        raise http_error(
            400, "Unknown upload protocol_version; this server speaks protocol_version=1."
        )


def hash_stream(stream: IO[bytes]) -> dict[str, Any]:
    """Every digest of the legacy API and the size, in one pass over the spooled file."""
    hashes = {field: new() for field, new in DIGESTS.items()}
    size = 0
    stream.seek(0)
    while chunk := stream.read(CHUNK_SIZE):
        size += len(chunk)
        for digest in hashes.values():
            digest.update(chunk)
    stream.seek(0)
    result: dict[str, Any] = {field: digest.hexdigest() for field, digest in hashes.items()}
    result["size"] = size
    return result


def check_digests(form: MultiDict[str, str], digests: dict[str, Any]) -> None:
    for field in DIGESTS:
        sent = form.get(field, "").strip().lower()
        if sent and sent != digests[field]:
            raise http_error(
                400,
                f"The {field} sent does not match the file received; the upload was "
                "corrupted or the digest is wrong, so upload the file again.",
            )


def check_against_form(dist: Distribution, form: MultiDict[str, str]) -> None:
    """The form's name, version and filetype, where sent, must agree with the file."""
    name = form.get("name", "").strip()
    if name and canonicalize_name(name) != dist.name:
        raise http_error(
            400,
            f"The form names project {name!r} but the file {dist.filename!r} is "
            f"{dist.display_name!r}.",
        )
    version = form.get("version", "").strip()
    if version:
        try:
            agrees = Version(version) == Version(dist.version)
        except InvalidVersion:
            agrees = False
        if not agrees:
            raise http_error(
                400,
                f"The form says version {version!r} but the file {dist.filename!r} has "
                f"version {dist.version!r}.",
            )
    filetype = form.get("filetype", "").strip()
    if filetype and filetype != FILETYPES[dist.kind]:
        raise http_error(
            400,
            f"The form says filetype {filetype!r} but {dist.filename!r} is a {dist.kind} "
            f"(filetype {FILETYPES[dist.kind]!r}).",
        )
