"""The legacy upload API of twine and ``uv publish``: what a Python upload form must say.

::

    response = upload_distribution(PythonStore(storage), upload)   # an Upload from the core

    $ twine upload --repository-url https://host/api/repo/team/ -u __token__ -p TOKEN dist/*
    $ uv publish --publish-url https://host/api/repo/team/ --token TOKEN dist/*

The core's upload owner (:mod:`~..core.upload`) authorizes, parses the form once and
hands over forms with an ``:action``.  The story from there: check the action, hash the
file, check the client's digests and the archive's own metadata against the filename
and the form, then hand it to :class:`~.store.PythonStore`, whose commit makes it
visible to the index.  Every rejection is a 400 (or 409) whose one sentence is in the
reason phrase, because twine prints only that, and never a 5xx, which twine would
retry.  Nothing is written to storage before every check has passed, and what a failed
commit wrote is removed again, so a rejected upload leaves nothing there.
"""

from __future__ import annotations

from typing import IO, TYPE_CHECKING

from packaging.utils import canonicalize_name
from packaging.version import Version
from werkzeug.wrappers import Response

from ..core.blobs import DeletedFilenameError, Digests, FileConflictError, hash_stream
from ..errors import http_error
from .metadata import Distribution, InvalidDistributionError, read_distribution
from .store import FileRecord, PythonStore, SdistExistsError

if TYPE_CHECKING:
    from werkzeug.datastructures import MultiDict

    from ..channels import Channel
    from ..core.ecosystem import Upload
    from ..tokens import Token

__all__ = ["upload_distribution"]

# Form field -> the digest it carries, for every digest the legacy API defines.
DIGESTS = {"sha256_digest": "sha256", "blake2_256_digest": "blake2_256", "md5_digest": "md5"}
FILETYPES = {"wheel": "bdist_wheel", "sdist": "sdist"}


def upload_distribution(store: PythonStore, upload: Upload) -> Response:
    """Check one upload form and store its file; raise an HTTP error otherwise."""
    form, channel = upload.form, upload.channel
    check_form(form)
    content = upload.files.get("content")
    if content is None or not content.filename:
        raise http_error(400, "The upload has no file in its 'content' field.")
    digests = hash_stream(content.stream)
    check_digests(form, digests)
    try:
        dist = read_distribution(content.filename, content.stream, limits=upload.limits)
    except InvalidDistributionError as error:
        raise http_error(400, str(error)) from None
    check_against_form(dist, form)
    # Attestations (PEP 740), when sent, are accepted and not kept: serving them
    # would claim a verification this server does not make.
    record = new_record(store, dist, digests, upload.token)
    if store_file(store, channel, record, content.stream, dist):
        text = f"Uploaded {dist.filename} to channel {channel.name}.\n"
    else:
        text = f"{dist.filename} is already in channel {channel.name}, with the same content.\n"
    return Response(text, status=200, mimetype="text/plain")


def store_file(
    store: PythonStore, channel: Channel, record: FileRecord, stream: IO[bytes], dist: Distribution
) -> bool:
    """Hand the checked file to the store; its conflicts become 409 answers."""
    try:
        return store.add_file(
            channel,
            record,
            stream,
            display_name=dist.display_name,
            # PEP 658 serves a wheel's METADATA; an sdist's PKG-INFO may be
            # incomplete (dynamic fields), so installers never ask for it.
            metadata=dist.metadata if dist.kind == "wheel" else None,
            pkg_info=dist.metadata if dist.kind == "sdist" else None,
        )
    except SdistExistsError as error:
        raise http_error(
            400,
            f"Only one sdist may be uploaded per release: version {dist.version} of "
            f"{dist.display_name!r} has {error.filename!r} already; upload wheels beside "
            "it, or the change under a new version.",
        ) from None
    except DeletedFilenameError:
        raise http_error(
            409,
            f"File already exists: {dist.filename!r} was deleted from channel "
            f"{channel.name!r} and its name cannot be used again; upload a new version.",
        ) from None
    except FileConflictError:
        raise http_error(
            409,
            f"File already exists: {dist.filename!r} is in channel {channel.name!r} with "
            "other content; upload the change under a new version.",
        ) from None


def new_record(
    store: PythonStore, dist: Distribution, digests: Digests, token: Token | None
) -> FileRecord:
    """Everything the index will show about the file, so that it never opens archives."""
    return store.uploaded(
        FileRecord,
        dist.filename,
        digests,
        token,
        project=dist.name,
        version=dist.version,
        blake2b_256=digests.blake2_256,
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


def check_digests(form: MultiDict[str, str], digests: Digests) -> None:
    for field, attribute in DIGESTS.items():
        sent = form.get(field, "").strip().lower()
        if sent and sent != getattr(digests, attribute):
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
        except ValueError:  # InvalidVersion, or an int past Python's digit limit
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
