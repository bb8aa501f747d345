"""Conda packages as an ecosystem of the core (see :mod:`~..core.ecosystem`).

::

    $ curl -F filetype=conda_package -F content=@demo-1.0-py_0.conda \\
           -H "X-Auth: TOKEN" https://host/api/repo/team
    $ private-channels yank team demo-1.0-py_0.conda --reason "Broken on Windows"

Its read side is a conda channel (``<subdir>/repodata.json``, CEP-16 shards,
``channeldata.json``) for conda, mamba, pixi and rattler.  A yank, unyank or delete names
a package file; the same filename may exist in several subdirs (a build for linux-64 and
one for osx-64), and then it applies to each.  A yanked file is no longer offered
(repodata lists it under ``removed``) but stays downloadable for the lock files that
name it; a deleted one is gone, and its name cannot be uploaded again unless the
channel allows it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ..core.ecosystem import StoredEcosystem, Target, UploadKind
from . import listing as listings
from .channel import CondaChannelMiddleware
from .package import InvalidPackageError, parse_filename
from .store import CondaRecord, CondaStore
from .upload import FILETYPE, upload_package

if TYPE_CHECKING:
    from werkzeug.datastructures import MultiDict
    from werkzeug.wrappers import Response

    from ..channels import Channel
    from ..core.ecosystem import Action, Upload

__all__ = ["CondaEcosystem"]

MAX_REASON_LENGTH = 1000


class CondaEcosystem(StoredEcosystem[CondaStore]):
    store_type, reader_type = CondaStore, CondaChannelMiddleware
    listing = listings  # packages, package, snippets (core.ecosystem.Listing)
    name = listings.ECOSYSTEM
    upload_forms = (f"'filetype={FILETYPE}' (curl)",)
    targets = ("a conda package filename",)
    upload_kinds = (
        UploadKind(
            FILETYPE,
            "A conda package (.conda or .tar.bz2, from conda-build or rattler-build)",
            (("filetype", FILETYPE),),
            accept=".conda,.tar.bz2",
        ),
    )

    def claims(self, form: MultiDict[str, str]) -> bool:
        return form.get("filetype") == FILETYPE

    def upload(self, upload: Upload) -> Response:
        return upload_package(self.store, upload)

    def find(self, channel: Channel, text: str) -> Target | None:
        try:
            parsed = parse_filename(text)
        except InvalidPackageError:
            return None
        return Target(self.name, parsed.name, filename=text)

    def change(self, channel: Channel, target: Target, action: Action, reason: str) -> list[str]:
        assert target.filename is not None
        reason = " ".join(reason.split())
        if len(reason) > MAX_REASON_LENGTH:
            raise ValueError(f"The reason is longer than {MAX_REASON_LENGTH} characters.")

        def change(record: CondaRecord) -> CondaRecord | None:
            if action == "delete":
                return None
            return replace(record, yanked=reason if action == "yank" else None)

        touched = [
            f"{subdir}/{target.filename}"
            for subdir in self.store.subdir_names(channel)
            if self.store.update(channel, subdir, target.filename, change)
        ]
        if not touched:
            raise LookupError(f"Channel {channel.name!r} has no file {target.filename!r}.")
        return touched
