"""R packages as an ecosystem of the core (see :mod:`~..core.ecosystem`).

::

    $ curl -F filetype=cran_source_package -F content=@abc_1.0.tar.gz \\
           -H "X-Auth: TOKEN" https://host/api/repo/team

Its read side is a CRAN-like repository (``src/contrib``, ``bin/windows``, ``bin/macosx``
and Posit-style ``__linux__`` binaries) for ``install.packages`` and pak; a yank, unyank
or delete names a package file (``abc_1.0.tar.gz``) or a version (``abc==1.0``), see
:mod:`~.manage`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.ecosystem import StoredEcosystem, UploadKind
from . import listing as listings
from . import manage
from .repository import CranRepositoryMiddleware
from .store import CranStore
from .upload import upload_package

if TYPE_CHECKING:
    from werkzeug.datastructures import MultiDict
    from werkzeug.wrappers import Response

    from ..channels import Channel
    from ..core.ecosystem import Action, Target, Upload

__all__ = ["CranEcosystem"]


class CranEcosystem(StoredEcosystem[CranStore]):
    """R source and binary packages; the core's name for them is ``cran``."""

    store_type, reader_type = CranStore, CranRepositoryMiddleware
    listing = listings  # packages, package, snippets (core.ecosystem.Listing)
    name = manage.ECOSYSTEM
    upload_forms = ("'filetype=cran_source_package' or 'cran_binary_package' (R)",)
    targets = ("an R package filename (abc_1.0.tar.gz, .zip, .tgz)", "PACKAGE==VERSION")
    upload_kinds = (
        UploadKind(
            "cran_source_package",
            "An R source package (.tar.gz, from R CMD build)",
            (("filetype", "cran_source_package"),),
            accept=".tar.gz",
        ),
        UploadKind(
            "cran_binary_package",
            "An R binary package (.zip for Windows, .tgz for macOS, .tar.gz for Linux)",
            (("filetype", "cran_binary_package"),),
            accept=".zip,.tgz,.tar.gz",
            options=(("distribution", "Linux distribution, for a Linux binary only (bookworm)"),),
        ),
    )

    def claims(self, form: MultiDict[str, str]) -> bool:
        # Any cran_ filetype: the handler names the two it accepts.
        return form.get("filetype", "").startswith("cran_")

    def upload(self, upload: Upload) -> Response:
        return upload_package(self.store, upload)

    def find(self, channel: Channel, text: str) -> Target | None:
        return manage.parse_target(text)

    def change(self, channel: Channel, target: Target, action: Action, reason: str) -> list[str]:
        return manage.change(self.store, channel, target, action, reason)
