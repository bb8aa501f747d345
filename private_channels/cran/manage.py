"""Yank, unyank and delete targets of R packages: a filename, or ``PACKAGE==VERSION``.

::

    target = parse_target("abc_1.0.tar.gz")      # or "abc==1.0": every file of abc 1.0
    change(store, channel, target, "yank", "Breaks on R 4.4")   # -> ["abc_1.0.tar.gz"]

A filename names that file in every repository directory that holds it (a source
package and the Linux binaries built from it share their name); ``PACKAGE==VERSION``
names every file of that version, sources and binaries, compared as R compares versions.
What yanking means for R, which has no such notion: the file leaves the ``PACKAGES``
files (so ``install.packages`` takes the newest version left) but stays downloadable at
its URL and in ``Archive/`` (so ``remotes::install_version`` still finds it); see
:mod:`~.store`.  A deleted file is gone, and its filename stays taken unless the
channel allows reuse.
"""

from __future__ import annotations

import re
from dataclasses import replace

from ..channels import Channel
from ..core.ecosystem import Action, Target
from .description import r_version_key, valid_package_name, valid_version
from .store import CranRecord, CranStore

__all__ = ["ECOSYSTEM", "FILENAME", "change", "matches", "parse_target"]

ECOSYSTEM = "cran"
# What the upload stores: <Package>_<Version> and the type's extension.
FILENAME = re.compile(
    r"(?P<package>[A-Za-z][A-Za-z0-9.]*[A-Za-z0-9])_(?P<version>[0-9][0-9.-]*)"
    r"\.(?:tar\.gz|zip|tgz)\Z"
)


def parse_target(text: str) -> Target | None:
    """The R target ``text`` names, or ``None`` when it cannot be an R package's."""
    name, sep, version = text.partition("==")
    if sep:
        name, version = name.strip(), version.strip()
        if valid_package_name(name) and valid_version(version):
            return Target(ECOSYSTEM, name, version=version)
        return None
    match = FILENAME.match(text)
    if match is None or not valid_version(match["version"]):
        return None
    return Target(ECOSYSTEM, match["package"], filename=text)


def matches(target: Target, record: CranRecord) -> bool:
    if target.filename is not None:
        return record.filename == target.filename
    assert target.version is not None
    return record.package == target.key and r_version_key(record.version) == r_version_key(
        target.version
    )


def change(
    store: CranStore, channel: Channel, target: Target, action: Action, reason: str = ""
) -> list[str]:
    """Yank (with ``reason``), unyank or delete the target's files in every directory;
    returns their names.  Raises :class:`LookupError` when the channel has none."""
    found: set[str] = set()

    def apply(record: CranRecord) -> CranRecord | None:
        if not matches(target, record):
            return record
        found.add(record.filename)
        if action == "delete":
            return None
        return replace(record, yanked=reason if action == "yank" else None)

    store.update(channel, apply)
    if not found:
        raise LookupError(f"Channel {channel.name!r} has no file {str(target)!r}.")
    return sorted(found)
