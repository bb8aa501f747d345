"""R packages as an ecosystem of the core (see :mod:`~..core.ecosystem`).

::

    $ curl -F filetype=cran_source_package -F content=@abc_1.0.tar.gz \\
           -H "X-Auth: TOKEN" https://host/api/repo/team

Its read side is a CRAN-like repository (``src/contrib``, ``bin/windows``, ``bin/macosx``
and Posit-style ``__linux__`` binaries) for ``install.packages`` and pak.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.ecosystem import StoredEcosystem
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
    name = "cran"
    upload_forms = ("'filetype=cran_source_package' or 'cran_binary_package' (R)",)
    # R packages cannot be yanked or deleted yet: no target is theirs.
    targets: tuple[str, ...] = ()

    def claims(self, form: MultiDict[str, str]) -> bool:
        # Any cran_ filetype: the handler names the two it accepts.
        return form.get("filetype", "").startswith("cran_")

    def upload(self, upload: Upload) -> Response:
        return upload_package(self.store, upload)

    def find(self, channel: Channel, text: str) -> Target | None:
        return None

    def change(self, channel: Channel, target: Target, action: Action, reason: str) -> list[str]:
        raise ValueError("R packages cannot be yanked, unyanked or deleted yet.")
