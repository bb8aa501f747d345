"""Python packages as an ecosystem of the core (see :mod:`~..core.ecosystem`).

::

    make_app(storage)        # serves PythonEcosystem(storage) beside the others

Uploads are the legacy upload API's forms (``:action=file_upload``) that twine and
``uv publish`` send; the read side is the PEP 503/691 simple index with its files and
PEP 658 metadata; a yank, unyank or delete names a wheel or sdist, or a whole release
as ``PROJECT==VERSION``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.ecosystem import StoredEcosystem, UploadKind
from . import listing as listings
from . import manage
from .simple import SimpleIndexMiddleware
from .store import PythonStore
from .upload import upload_distribution

if TYPE_CHECKING:
    from werkzeug.datastructures import MultiDict
    from werkzeug.wrappers import Response

    from ..channels import Channel
    from ..core.ecosystem import Action, Target, Upload

__all__ = ["PythonEcosystem"]


class PythonEcosystem(StoredEcosystem[PythonStore]):
    name = manage.ECOSYSTEM
    upload_forms = ("':action=file_upload' (twine, uv publish)",)
    targets = ("a wheel or sdist filename", "PROJECT==VERSION")
    store_type = PythonStore
    reader_type = SimpleIndexMiddleware
    listing = listings  # packages, package, snippets (core.ecosystem.Listing)
    upload_kinds = (
        UploadKind(
            "python",
            "A Python wheel or sdist (.whl, .tar.gz, .zip)",
            # What twine sends; the file's own metadata says the rest.
            ((":action", "file_upload"), ("protocol_version", "1")),
            accept=".whl,.tar.gz,.zip",
        ),
    )

    def claims(self, form: MultiDict[str, str]) -> bool:
        # Any action is the legacy API's: the handler says which ones it supports.
        return ":action" in form

    def upload(self, upload: Upload) -> Response:
        return upload_distribution(self.store, upload)

    def find(self, channel: Channel, text: str) -> Target | None:
        if "==" not in text:
            try:
                manage.project_of(text)
            except manage.InvalidTargetError:
                return None  # not a Python filename: perhaps another ecosystem's
        return manage.parse_target(text)

    def change(self, channel: Channel, target: Target, action: Action, reason: str) -> list[str]:
        if action == "yank":
            return manage.yank(self.store, channel, target, reason)
        if action == "unyank":
            return manage.unyank(self.store, channel, target)
        return manage.delete(self.store, channel, target)
