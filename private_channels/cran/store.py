"""What a channel knows about its R packages: one JSON document per repository directory.

::

    store = CranStore(storage)
    store.add(channel, package, record, stream)      # False: the very same file was there
    directory = store.directory(channel, "src/contrib")
    directory.latest()                               # what PACKAGES lists
    directory.archived()                             # what Archive/<pkg>/ holds

Layout under ``channels/<channel>/cran/``:

- ``blobs/<sha256>-<filename>``: the file itself, content-addressed, so two uploads that
  race on one filename never overwrite each other's bytes (``blobs/<sha256>/<filename>``
  in a storage made before flat blobs: :attr:`~..core.blobs.StoredFile.flat`).
- ``index/<directory>.json`` (``index/src/contrib.json``,
  ``index/bin/windows/contrib/4.3.json``...): one record per file of that repository
  directory.  It is the commit point of an upload and changes only by compare-and-swap,
  through the core's blob-and-record machinery (:mod:`~..core.blobs`), so concurrent
  uploads through several server processes lose nothing, and a rejected upload leaves
  nothing; ``PACKAGES``, ``PACKAGES.gz``, ``PACKAGES.rds`` and ``Meta/archive.rds``
  are rendered from one snapshot of it, never half-written.
- ``index/linux/<distribution>/<x.y>.json``: Linux binaries for one distribution and R
  version, served in place of the source of the same version to the R that can use them.

A newer version "moves" the older one to ``Archive/`` simply by being newer: the
document keeps every file, and which one is the latest is decided when it is read.
A yanked file is never the latest: it leaves ``PACKAGES`` (R then installs the newest
version left) and stays in ``Archive/`` and at its URL; a deleted one leaves the
document, and its filename stays taken in that directory unless the channel allows
reuse (:meth:`CranStore.update`).
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import IO, Any

from ..channels import Channel
from ..core.blobs import (
    ChannelStore,
    FileConflictError,
    RecordDocument,
    RecordSnapshot,
    StoredFile,
    forget,
    store_blob,
)
from ..storage import Stat, read_json
from .description import PackageFile, r_version_key

__all__ = [
    "ABOUT_FIELDS",
    "BINARY_FIELDS",
    "DIRECTORY_PATTERN",
    "DISTRIBUTION_PATTERN",
    "SOURCE_FIELDS",
    "CranRecord",
    "CranStore",
    "Directory",
    "FileConflictError",
    "about_fields",
    "directories_for",
    "fields_for",
    "index_fields",
    "is_directory",
    "linux_directory",
    "listing_order",
]

# tools:::.get_standard_repository_db_fields("source") in R 4.2, in R's order.
SOURCE_FIELDS = (
    "Package", "Version", "Priority", "Depends", "Imports", "LinkingTo", "Suggests",
    "Enhances", "License", "License_is_FOSS", "License_restricts_use", "OS_type", "Archs",
    "MD5sum", "NeedsCompilation",
)  # fmt: skip
# R's binary fields leave NeedsCompilation out; CRAN's binary indexes add it and Built.
BINARY_FIELDS = (*SOURCE_FIELDS, "Built")

# A repository directory: src/contrib, bin/windows/contrib/<x.y>, or
# bin/macosx[/<platform>]/contrib/<x.y> (what R's contrib.url() builds for each type).
DIRECTORY_PATTERN = (
    r"src/contrib|bin/windows/contrib/[0-9]+\.[0-9]+"
    r"|bin/macosx/(?:[a-z0-9][a-z0-9_-]{0,40}/)?contrib/[0-9]+\.[0-9]+"
)
_DIRECTORY = re.compile(DIRECTORY_PATTERN)
DISTRIBUTION_PATTERN = r"[a-z0-9][a-z0-9._-]{0,40}"
# Linux binaries are not a directory of the layout: they are chosen per request among
# the files of src/contrib (see repository.py), by distribution and R version.
_LINUX = re.compile(rf"linux/{DISTRIBUTION_PATTERN}/[0-9]+\.[0-9]+")


def is_directory(path: str) -> bool:
    return bool(_DIRECTORY.fullmatch(path))


def linux_directory(distribution: str, r_version: str) -> str:
    return f"linux/{distribution}/{r_version}"


def index_fields(directory: str) -> tuple[str, ...]:
    return SOURCE_FIELDS if directory == "src/contrib" else BINARY_FIELDS


def _mac_directories(r_version: str, platform: str) -> list[str]:
    """Where R's contrib.url(repos, "mac.binary[.<x>]") looks for this build.

    R 4.0-4.2 on Intel used bin/macosx/contrib/<x.y>; Apple silicon builds (R 4.1+) and
    all builds from R 4.3 on live under bin/macosx/big-sur-<arch>/contrib/<x.y>.  A
    package without compiled code (empty platform) suits both architectures.
    """
    key = r_version_key(r_version)
    arm = "aarch64" in platform or "arm64" in platform
    intel = "x86_64" in platform
    both = not platform
    dirs = []
    if (arm or both) and key >= (4, 1):
        dirs.append(f"bin/macosx/big-sur-arm64/contrib/{r_version}")
    if intel or both:
        if key >= (4, 3):
            dirs.append(f"bin/macosx/big-sur-x86_64/contrib/{r_version}")
        elif key >= (4, 0):
            dirs.append(f"bin/macosx/contrib/{r_version}")
        elif key >= (3, 4):
            dirs.append(f"bin/macosx/el-capitan/contrib/{r_version}")
    return dirs


def directories_for(package: PackageFile, distribution: str | None = None) -> list[str]:
    """The repository directories that serve this file (empty: no R reads there)."""
    if package.kind == "source":
        return ["src/contrib"]
    assert package.built is not None
    if package.kind == "linux.binary":
        assert distribution is not None
        return [linux_directory(distribution, package.built.r_version)]
    if package.kind == "win.binary":
        return [f"bin/windows/contrib/{package.built.r_version}"]
    return _mac_directories(package.built.r_version, package.built.platform)


def fields_for(package: PackageFile, md5: str) -> dict[str, str | None]:
    """The index fields of one file, as ``tools::write_PACKAGES`` computes them."""
    names = SOURCE_FIELDS if package.kind == "source" else BINARY_FIELDS
    values: dict[str, str | None] = {}
    for name in names:
        value = package.fields.get(name)
        # write_PACKAGES turns empty values into NA.
        values[name] = value if value else None
    values["MD5sum"] = md5
    if values["NeedsCompilation"] is None and package.kind == "source":
        # As write_PACKAGES decides it for a tarball that does not say.
        values["NeedsCompilation"] = "yes" if package.has_src else "no"
    return values


# What the pages show of a DESCRIPTION beyond the index fields, each value bounded:
# the records live in the index document that every PACKAGES rendering reads.
ABOUT_FIELDS = {"Title": 300, "Description": 4000, "Maintainer": 300, "URL": 1000,
                "BugReports": 300}  # fmt: skip


def about_fields(package: PackageFile) -> dict[str, str]:
    """The DESCRIPTION fields the pages show (:data:`ABOUT_FIELDS`), shortened to bounds."""
    about = {}
    for name, limit in ABOUT_FIELDS.items():
        value = " ".join(package.fields.get(name, "").split())
        if value:
            about[name] = value if len(value) <= limit else value[: limit - 1] + "\u2026"
    return about


@dataclass(frozen=True, kw_only=True)
class CranRecord(StoredFile):
    """One file of one repository directory."""

    package: str
    version: str
    md5: str
    fields: dict[str, str | None] = field(default_factory=dict)
    # None: not yanked; "" yanked without a reason.  A yanked file leaves the PACKAGES
    # files (R installs the newest version left) and stays downloadable by its URL.
    yanked: str | None = None
    about: dict[str, str] = field(default_factory=dict)


def _newest_first(record: CranRecord) -> tuple[tuple[int, ...], float]:
    return r_version_key(record.version), record.upload_time


def listing_order(package: str, filename: str) -> tuple[str, str, str]:
    """Where R's ``list.files()``, hence ``write_PACKAGES``, puts this file in a UTF-8
    locale.  R collates with ICU there, which ranks ``_`` below ``.``, digits and
    letters, so the package name decides as if it ended the name; letter case only
    breaks ties, lowercase first.  (In the C locale R sorts bytes, capitals first; no R
    client depends on the order of index rows.)"""
    return package.casefold(), filename.casefold(), filename.swapcase()


def _listing_order(record: CranRecord) -> tuple[str, str, str]:
    return listing_order(record.package, record.filename)


@dataclass(frozen=True)
class Directory(RecordSnapshot[CranRecord]):
    """A snapshot of one directory's index document (its etag validates rendered caches)."""

    path: str

    # A Directory is an immutable snapshot, so what is derived from it is computed once
    # (the repository middleware keeps snapshots while their document is unchanged).

    @cached_property
    def _latest(self) -> tuple[CranRecord, ...]:
        best: dict[str, CranRecord] = {}
        for record in self.records:
            if record.yanked is not None:
                continue
            old = best.get(record.package)
            if old is None or _newest_first(record) > _newest_first(old):
                best[record.package] = record
        return tuple(sorted(best.values(), key=_listing_order))

    @cached_property
    def _latest_names(self) -> frozenset[str]:
        return frozenset(r.filename for r in self._latest)

    def latest(self) -> list[CranRecord]:
        """The newest version of each package that is not yanked, in the order of
        ``write_PACKAGES``: what the ``PACKAGES`` files list."""
        return list(self._latest)

    def is_latest(self, record: CranRecord) -> bool:
        return record.filename in self._latest_names

    def archived(self) -> list[CranRecord]:
        """Every file that is not the latest of its package (CRAN's Archive/), yanked
        files included."""
        return sorted(
            (r for r in self.records if r.filename not in self._latest_names),
            key=lambda r: (r.package.encode(), r_version_key(r.version), r.upload_time),
        )


def _apply(
    change: Callable[[CranRecord], CranRecord | None],
    touched: dict[str, CranRecord],
    raw: dict[str, Any],
) -> dict[str, Any] | None:
    old = CranRecord.from_json(raw)
    new = change(old)
    if new != old:
        touched[old.filename] = old
    return None if new is None else new.to_json()


class CranStore(ChannelStore):
    folder = "cran"

    def index_key(self, channel: Channel, directory: str) -> str:
        if not (is_directory(directory) or _LINUX.fullmatch(directory)):
            raise ValueError(f"{directory!r} is not a repository directory")
        return f"{self.prefix(channel)}index/{directory}.json"

    def directory_paths(self, channel: Channel) -> list[str]:
        """Every directory something was uploaded to (one listing of the index folder)."""
        folder = f"{self.prefix(channel)}index/"
        paths = []
        for key in self.storage.list(folder):
            path = key.removeprefix(folder).removesuffix(".json")
            if key.endswith(".json") and (is_directory(path) or _LINUX.fullmatch(path)):
                paths.append(path)
        return sorted(paths)

    def blob_key(self, channel: Channel, record: CranRecord) -> str:
        return f"{self.prefix(channel)}{record.blob}"

    # -- reads -----------------------------------------------------------------

    def directory(self, channel: Channel, path: str) -> Directory:
        """The records of one directory (none if nothing was uploaded there)."""
        read = self.read_records(self.index_key(channel, path), CranRecord)
        return Directory(path=path, records=read.records, stat=read.stat)

    def open_blob(self, channel: Channel, record: CranRecord) -> tuple[IO[bytes], Stat]:
        return self.storage.open(self.blob_key(channel, record))

    # -- writes ----------------------------------------------------------------

    def _document(self, channel: Channel, path: str) -> RecordDocument:
        return RecordDocument(
            self.storage, self.index_key(channel, path), kept=self._derived, appends=self.appends
        )

    def add(self, channel: Channel, directories: Iterable[str], record: CranRecord,
            content: IO[bytes]) -> bool:  # fmt: skip
        """Store a file and commit its record in each directory.

        Returns ``False`` when every directory had the very same file already.  Raises
        :class:`FileConflictError` when one holds that filename with other bytes; then,
        as on any failure, nothing of this upload stays in storage.
        """
        documents = [self._document(channel, path) for path in directories]
        reuse = channel.allow_reupload
        # Read as each commit starts from it (the version this process committed, when
        # it is still the stored one): the index is parsed, not made into records.
        existing = [
            (doc or {}).get("files", {}).get(record.filename)
            for doc in (document.read() for document in documents)
        ]
        for found in existing:
            if found is not None and found["sha256"] != record.sha256:
                raise FileConflictError(record.filename)
        if all(found is not None for found in existing):
            return False  # re-running an upload writes nothing, not even the blob

        def commit() -> bool:
            committed: list[RecordDocument] = []
            try:
                for document in documents:
                    if document.add(record.to_json(), reuse=reuse)[0]:
                        committed.append(document)
            except BaseException:
                # All directories or none: a record in one would serve a file that
                # another directory refused.
                for document in committed:
                    with contextlib.suppress(Exception):
                        document.remove(record.to_json())
                raise
            return bool(committed)

        return store_blob(
            self.storage,
            {self.blob_key(channel, record): content},
            commit=commit,
            referenced=lambda: any(d.holds(record.filename, record.sha256) for d in documents),
        )

    def update(
        self, channel: Channel, change: Callable[[CranRecord], CranRecord | None]
    ) -> tuple[list[CranRecord], list[CranRecord]]:
        """Replace records in every directory: ``change(record) -> record | None``
        (``None`` deletes); each directory's document is one compare-and-swap.

        Returns the records changed and those deleted.  Deleted filenames stay taken
        in their directory unless the channel allows reuse; a deleted file's blob is
        removed once no directory names it any more.
        """
        changed: list[CranRecord] = []
        deleted: list[CranRecord] = []
        for path in self.directory_paths(channel):
            # By filename: a compare-and-swap that lost a race applies the change again.
            touched: dict[str, CranRecord] = {}
            removed = self._document(channel, path).update(
                functools.partial(_apply, change, touched)
            )
            changed += touched.values()
            deleted += (CranRecord.from_json(raw) for raw in removed)
        if deleted:
            named = self.referenced(channel)
            forget(self.storage, {self.blob_key(channel, r) for r in deleted} - named)
        return changed, deleted

    def referenced(self, channel: Channel) -> set[str]:
        referenced: set[str] = set()
        for key in self.storage.list(f"{self.prefix(channel)}index/"):
            if key.endswith(".json"):
                doc, _ = read_json(self.storage, key)
                referenced.update(
                    self.blob_key(channel, CranRecord.from_json(raw))
                    for raw in doc["files"].values()
                )
        return referenced
