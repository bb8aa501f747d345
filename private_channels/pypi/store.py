"""What a channel knows about its Python files, kept so that reads never open archives.

::

    store = PythonStore(storage)
    store.add_file(channel, record, stream, metadata=b"Metadata-Version: 2.1\\n...")
    project = store.project(channel, "my-pkg")      # every file with hashes, yank state, ...

Layout under ``channels/<channel>/pypi/``:

- ``blobs/<sha256>/<filename>``: the file itself, content-addressed so that two uploads
  that race on one filename can never overwrite each other's bytes;
  ``blobs/<sha256>/<filename>.metadata``: a wheel's METADATA, verbatim (PEP 658).
- ``projects/<normalized-name>.json``: the project document, one record per file. It is
  the commit point of an upload: a file exists for the index once its record is in it.
- ``projects.json``: the names of all projects, for the root page.

Both documents change only by compare-and-swap (:func:`~..storage.update_json`), so
uploads through any number of processes on one storage lose nothing, and a page view
costs one read of one document.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import IO, Any

from packaging.utils import NormalizedName, canonicalize_name

from ..channels import Channel
from ..storage import Stat, Storage, read_json, sweep, update_json
from .metadata import InvalidDistributionError, parse_filename

__all__ = [
    "DeletedFilenameError",
    "FileConflictError",
    "FileRecord",
    "Project",
    "PythonStore",
]


class FileConflictError(FileExistsError):
    """The filename exists in the channel with other bytes."""


class DeletedFilenameError(FileExistsError):
    """The filename was deleted from the channel and may not be used again."""


@dataclass(frozen=True)
class FileRecord:
    """One distribution file, everything the index shows about it."""

    filename: str
    project: NormalizedName
    version: str
    size: int
    sha256: str
    blake2b_256: str
    upload_time: float  # seconds since the epoch
    uploader: str | None = None  # token id
    requires_python: str | None = None
    yanked: str | None = None  # None: not yanked; "" yanked without a reason
    metadata_sha256: str | None = None  # set when the METADATA file is served (PEP 658)

    @property
    def blob(self) -> str:
        return f"blobs/{self.sha256}/{self.filename}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> FileRecord:
        return cls(**doc)


@dataclass(frozen=True)
class Project:
    name: NormalizedName
    display_name: str
    files: tuple[FileRecord, ...]
    stat: Stat  # of the project document: its etag validates caches of rendered pages
    deleted: frozenset[str] = field(default_factory=frozenset)


def _prefix(channel: Channel) -> str:
    return f"{channel.prefix}pypi/"


class PythonStore:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    # -- keys ------------------------------------------------------------------

    def project_key(self, channel: Channel, name: str) -> str:
        return f"{_prefix(channel)}projects/{canonicalize_name(name)}.json"

    def projects_key(self, channel: Channel) -> str:
        return f"{_prefix(channel)}projects.json"

    def blob_key(self, channel: Channel, sha256: str, filename: str) -> str:
        return f"{_prefix(channel)}blobs/{sha256}/{filename}"

    # -- reads -----------------------------------------------------------------

    def project(self, channel: Channel, name: str) -> Project | None:
        """The project's files in upload order, or ``None`` if it has none."""
        try:
            doc, stat = read_json(self.storage, self.project_key(channel, name))
        except FileNotFoundError:
            return None
        return Project(
            name=canonicalize_name(doc["name"]),
            display_name=doc["name"],
            files=tuple(FileRecord.from_json(f) for f in doc["files"].values()),
            stat=stat,
            deleted=frozenset(doc.get("deleted", ())),
        )

    def projects(self, channel: Channel) -> tuple[dict[NormalizedName, str], Stat | None]:
        """Normalized name to display name for every project; the stat validates caches."""
        try:
            doc, stat = read_json(self.storage, self.projects_key(channel))
        except FileNotFoundError:
            return {}, None
        return dict(doc["projects"]), stat

    def open_blob(self, channel: Channel, sha256: str, filename: str) -> tuple[IO[bytes], Stat]:
        """Open a committed file (or, with ``filename + ".metadata"``, its METADATA).

        Raises :class:`FileNotFoundError` unless a record of the channel names exactly
        this file: a blob whose upload never committed is never served.
        """
        wants_metadata = filename.endswith(".metadata")
        name = filename.removesuffix(".metadata")
        try:
            project = self.project(channel, parse_filename(name).name)
        except InvalidDistributionError:
            project = None
        for record in project.files if project is not None else ():
            if record.filename == name and record.sha256 == sha256:
                if wants_metadata and record.metadata_sha256 is None:
                    break
                return self.storage.open(self.blob_key(channel, sha256, filename))
        raise FileNotFoundError(f"{filename} ({sha256}) is not in channel {channel.name}")

    # -- writes ----------------------------------------------------------------

    def add_file(
        self,
        channel: Channel,
        record: FileRecord,
        content: IO[bytes],
        *,
        display_name: str,
        metadata: bytes | None = None,
    ) -> bool:
        """Store a file and commit its record; ``False`` if the very same file was there.

        ``metadata`` (a wheel's METADATA, verbatim) is served beside the file (PEP 658);
        the record's ``metadata_sha256`` is always derived from it (``None`` without
        it), so that the index promises a METADATA file exactly when one is stored.

        Raises :class:`FileConflictError` when the filename holds other bytes and
        :class:`DeletedFilenameError` when it was deleted; both are found before any
        write when possible, and otherwise what this call wrote is removed again.

        The blob is written before the record that names it is committed, so a
        process killed in between leaves an *orphan* blob: harmless, because nothing
        reads a blob that no record names (:meth:`open_blob` checks), and collected by
        :meth:`collect_garbage`.  (The filesystem backend may also leave hidden
        ``.tmp-*`` files of a write in progress; they are never listed or served.)
        """
        digest = hashlib.sha256(metadata).hexdigest() if metadata is not None else None
        record = replace(record, metadata_sha256=digest)
        try:
            existing, _ = read_json(self.storage, self.project_key(channel, record.project))
        except FileNotFoundError:
            existing = None
        reuse = channel.allow_reupload
        if existing is not None and self._is_new(existing, record, reuse=reuse) is False:
            # Re-running an upload also repairs a project name whose addition a
            # crash interrupted; unchanged documents are not rewritten.
            self._add_project_name(channel, record.project, existing["name"])
            return False

        blob = self.blob_key(channel, record.sha256, record.filename)
        self._write_blob(blob, content)
        if metadata is not None:
            self._write_blob(f"{blob}.metadata", io.BytesIO(metadata))
        added = [False]

        def commit(doc: dict[str, Any] | None) -> dict[str, Any]:
            doc = doc or {"name": display_name, "files": {}, "deleted": []}
            added[0] = self._is_new(doc, record, reuse=reuse)
            doc["files"].setdefault(record.filename, record.to_json())
            if record.filename in doc.get("deleted", ()):
                doc["deleted"].remove(record.filename)
            return doc

        try:
            doc = update_json(self.storage, self.project_key(channel, record.project), commit)
        except (FileConflictError, DeletedFilenameError):
            # The filename is bound to other bytes for good (records never change
            # their sha256, and a deleted name is reusable only where this error is
            # not raised), so no upload can ever commit this blob: removing it cannot
            # hurt a racing upload of the same file.
            self._forget([blob, f"{blob}.metadata"])
            raise
        # Other failures leave the blob: a racing upload of the same bytes may be about
        # to commit it, and an orphan is invisible until collected.
        self._add_project_name(channel, record.project, doc["name"])
        return added[0]

    def _write_blob(self, key: str, content: IO[bytes]) -> None:
        try:
            self.storage.create(key, content)
        except FileExistsError:
            # Same key, same bytes: a racing upload of this very file, or the orphan of
            # an interrupted one.  Writing it again renews its mtime, so that
            # collect_garbage's grace period protects it until this upload commits.
            content.seek(0)
            self.storage.put(key, content)

    @staticmethod
    def _is_new(doc: dict[str, Any], record: FileRecord, *, reuse: bool = False) -> bool:
        """Whether the project document lacks the file; raise if it may not be added.

        Looks at the one record by its filename, so that the cost of an upload does
        not grow with the number of files a project has.  A deleted filename may be
        used again only when ``reuse`` (the channel's ``allow_reupload``) says so.
        """
        if not reuse and record.filename in doc.get("deleted", ()):
            raise DeletedFilenameError(record.filename)
        old = doc["files"].get(record.filename)
        if old is None:
            return True
        if old["sha256"] != record.sha256:
            raise FileConflictError(record.filename)
        return False

    def _add_project_name(self, channel: Channel, name: NormalizedName, display: str) -> None:
        def add(doc: dict[str, Any] | None) -> dict[str, Any]:
            doc = doc or {"projects": {}}
            doc["projects"].setdefault(name, display)
            return doc

        update_json(self.storage, self.projects_key(channel), add)

    def _forget(self, keys: Iterable[str]) -> None:
        for key in keys:
            with contextlib.suppress(FileNotFoundError):
                self.storage.delete(key)

    def update_files(
        self,
        channel: Channel,
        name: str,
        change: Callable[[FileRecord], FileRecord | None],
    ) -> Project | None:
        """Replace records of one project: ``change(record) -> record | None`` (None deletes).

        Deleted filenames are remembered so that they cannot be uploaded again (unless
        the channel allows reuse), and their blobs are removed after the document no
        longer names them.
        """
        removed: list[FileRecord] = []

        def apply(doc: dict[str, Any] | None) -> dict[str, Any] | None:
            removed.clear()
            if doc is None:
                return None
            files: dict[str, Any] = {}
            for filename, raw in doc["files"].items():
                old = FileRecord.from_json(raw)
                new = change(old)
                if new is None:
                    removed.append(old)
                    deleted = doc.setdefault("deleted", [])
                    if filename not in deleted:
                        deleted.append(filename)
                else:
                    files[filename] = new.to_json()
            doc["files"] = files
            return doc

        update_json(self.storage, self.project_key(channel, name), apply)
        project = self.project(channel, name)
        # Where deleted names may be reused, the very same file may have been uploaded
        # again since the commit above: its blob is the same key, so keep it.
        named = {(f.sha256, f.filename) for f in project.files} if project else set()
        for record in removed:
            if (record.sha256, record.filename) in named:
                continue
            blob = self.blob_key(channel, record.sha256, record.filename)
            self._forget([blob, f"{blob}.metadata"])
        return project

    def collect_garbage(self, channel: Channel, *, grace: float = 3600.0) -> list[str]:
        """Remove blobs no record names, once older than ``grace`` seconds; repair names.

        Such blobs are left by uploads whose process died between writing the blob
        and committing its record.  The grace period spares uploads in progress (an
        upload renews its blob's mtime right before it commits).  Project documents
        missing from ``projects.json`` (a crash after the commit) are added back.
        Returns the keys removed.
        """
        prefix = _prefix(channel)
        referenced: set[str] = set()
        for key in self.storage.list(f"{prefix}projects/"):
            if not key.endswith(".json"):
                continue
            doc, _ = read_json(self.storage, key)
            for raw in doc["files"].values():
                record = FileRecord.from_json(raw)
                blob = self.blob_key(channel, record.sha256, record.filename)
                referenced.update((blob, f"{blob}.metadata"))
            if doc["files"]:
                self._add_project_name(channel, canonicalize_name(doc["name"]), doc["name"])
        return sweep(self.storage, f"{prefix}blobs/", referenced, older_than=time.time() - grace)
