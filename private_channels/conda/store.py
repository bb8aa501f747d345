"""What a channel knows about its conda packages: one JSON document per subdir.

::

    store = CondaStore(storage)
    store.add(channel, record, stream)           # False: the very same file was there
    subdir = store.subdir(channel, "noarch")     # a snapshot: records and the stat
    subdir.listed()                              # what repodata.json lists

Layout under ``channels/<channel>/conda/``:

- ``blobs/<sha256>-<filename>``: the package file, content-addressed, so two uploads
  that race on one filename never overwrite each other's bytes (``blobs/<sha256>/<filename>``
  in a storage made before flat blobs: :attr:`~..core.blobs.StoredFile.flat`).
- ``index/<subdir>.json`` (``index/noarch.json``, ``index/linux-64.json``...): one record
  per file of the subdir, with what its ``info/index.json`` and ``info/about.json`` say.
  It is the commit point of an upload and changes only by compare-and-swap, through the
  core's blob-and-record machinery (:mod:`~..core.blobs`), so uploads through any number
  of processes lose nothing and a rejected upload leaves nothing.  ``repodata.json``,
  its ``.zst`` and ``.bz2``, the CEP-16 shards and ``channeldata.json`` are all rendered
  from snapshots of these documents, never stored, so they cannot disagree.

A yanked file stays downloadable (a lock file that names it keeps working) but is no
longer offered: repodata lists it under ``removed``, as conda's own patches do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from ..channels import Channel
from ..core.blobs import (
    ChannelStore,
    RecordDocument,
    RecordSnapshot,
    StoredFile,
    forget,
    store_blob,
)
from .package import SUBDIRS

__all__ = ["CondaRecord", "CondaStore", "Subdir"]


@dataclass(frozen=True, kw_only=True)
class CondaRecord(StoredFile):
    """One package file of one subdir."""

    md5: str
    subdir: str
    name: str
    index: dict[str, Any] = field(default_factory=dict)  # the repodata fields
    about: dict[str, str] = field(default_factory=dict)  # the channeldata fields
    yanked: str | None = None  # None: offered; a reason ("" for none): listed as removed

    @classmethod
    def stored_name(cls, filename: str) -> str:
        # A version's epoch ("1!2.0") has a "!", which no storage key may hold; "=" is in
        # no conda filename, so the key still names one file.
        return filename.replace("!", "=")

    def entry(self) -> dict[str, Any]:
        """The file's repodata entry: index.json's fields and the stored file's digests."""
        uploaded = int(self.upload_time * 1000)
        entry = {**self.index, "md5": self.md5, "sha256": self.sha256, "size": self.size,
                 "indexed_timestamp": uploaded}  # fmt: skip
        # conda-index takes the build's timestamp; a package built without one gets
        # the upload's, so that clients' exclude-newer filters still see it (rattler
        # prefers indexed_timestamp, when the channel published it, as rattler-index does).
        entry.setdefault("timestamp", uploaded)
        return dict(sorted(entry.items()))


@dataclass(frozen=True)
class Subdir(RecordSnapshot[CondaRecord]):
    """A snapshot of one subdir's index document."""

    name: str

    def listed(self) -> list[CondaRecord]:
        """The files repodata offers, by filename."""
        return sorted((r for r in self.records if r.yanked is None), key=lambda r: r.filename)

    def removed(self) -> list[str]:
        """The yanked files, which repodata lists as removed."""
        return sorted(r.filename for r in self.records if r.yanked is not None)


class CondaStore(ChannelStore):
    folder = "conda"

    def index_key(self, channel: Channel, subdir: str) -> str:
        if subdir not in SUBDIRS:
            raise ValueError(f"{subdir!r} is not a conda subdir")
        return f"{self.prefix(channel)}index/{subdir}.json"

    def blob_key(self, channel: Channel, record: CondaRecord) -> str:
        return f"{self.prefix(channel)}{record.blob}"

    def _document(self, channel: Channel, subdir: str) -> RecordDocument:
        return RecordDocument(
            self.storage, self.index_key(channel, subdir), kept=self._derived, appends=self.appends
        )

    # -- reads -----------------------------------------------------------------

    def subdir(self, channel: Channel, name: str) -> Subdir:
        """The records of one subdir (none if nothing was uploaded there)."""
        read = self.read_records(self.index_key(channel, name), CondaRecord)
        return Subdir(name, records=read.records, stat=read.stat)

    def subdir_names(self, channel: Channel) -> list[str]:
        """The subdirs something was ever uploaded to, in sorted order."""
        prefix = f"{self.prefix(channel)}index/"
        names = (key[len(prefix) : -len(".json")] for key in self.storage.list(prefix))
        return [name for name in names if name in SUBDIRS]

    # -- writes ----------------------------------------------------------------

    def add(self, channel: Channel, record: CondaRecord, content: IO[bytes]) -> bool:
        """Store a file and commit its record; ``False`` if the very same file was there.

        Raises :class:`~..core.blobs.FileConflictError` when the filename holds other
        bytes in the subdir (:class:`~..core.blobs.DeletedFilenameError` when it was
        deleted), found before any write when possible; whatever makes the commit fail,
        what this call wrote is removed again.
        """
        document = self._document(channel, record.subdir)
        reuse = channel.allow_reupload
        if not document.is_new(document.read(), record.filename, record.sha256, reuse=reuse):
            return False
        added, _ = store_blob(
            self.storage,
            {self.blob_key(channel, record): content},
            commit=lambda: document.add(record.to_json(), reuse=reuse),
            referenced=lambda: document.holds(record.filename, record.sha256),
        )
        return added

    def update(
        self,
        channel: Channel,
        subdir: str,
        filename: str,
        change: Callable[[CondaRecord], CondaRecord | None],
    ) -> bool:
        """Replace the record of ``filename`` in ``subdir`` (``None`` deletes it and its
        blob; the name stays unusable unless the channel allows it); whether it was there."""
        touched = [False]

        def apply(raw: dict[str, Any]) -> dict[str, Any] | None:
            if raw["filename"] != filename:
                return raw
            touched[0] = True
            new = change(CondaRecord.from_json(raw))
            return None if new is None else new.to_json()

        removed = self._document(channel, subdir).update(apply)
        current = self.subdir(channel, subdir).find(filename)
        for raw in removed:
            blob = self.blob_key(channel, CondaRecord.from_json(raw))
            # Where deleted names may be reused, the very same file may be back already.
            if current is None or self.blob_key(channel, current) != blob:
                forget(self.storage, [blob])
        return touched[0]

    def referenced(self, channel: Channel) -> set[str]:
        return {
            self.blob_key(channel, record)
            for name in self.subdir_names(channel)
            for record in self.subdir(channel, name).records
        }
