"""What a channel knows about its Python files, kept so that reads never open archives.

::

    store = PythonStore(storage)
    store.add_file(channel, record, stream, metadata=b"Metadata-Version: 2.1\\n...")
    project = store.project(channel, "my-pkg")      # every file with hashes, yank state, ...

Layout under ``channels/<channel>/pypi/``:

- ``blobs/<sha256>-<filename>``: the file itself, content-addressed so that two uploads
  that race on one filename can never overwrite each other's bytes
  (``blobs/<sha256>/<filename>`` in a storage made before flat blobs:
  :attr:`~..core.blobs.StoredFile.flat`);
  ``blobs/<sha256>-<filename>.metadata``: a wheel's METADATA, verbatim (PEP 658);
  ``blobs/<sha256>-<filename>.pkg-info``: an sdist's PKG-INFO, for the pages only.
  On a local store these two are written on their first read, from the file itself
  (:meth:`PythonStore.keep_beside`), not by the upload.
- ``projects/<normalized-name>.json``: the project document, one record per file. It is
  the commit point of an upload: a file exists for the index once its record is in it.
- ``projects.json``: the names of all projects, for the root page.

Both documents change only by compare-and-swap, through the core's blob-and-record
machinery (:mod:`~..core.blobs`), so uploads through any number of processes on one
storage lose nothing, a rejected upload leaves nothing, and a page view costs one read
of one document.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import IO, Any

from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from ..channels import Channel
from ..core.blobs import (
    ChannelStore,
    DeletedFilenameError,
    FileConflictError,
    RecordDocument,
    StoredFile,
    forget,
    store_blob,
)
from ..core.limits import Limits
from ..storage import (
    FileSystemStorage,
    MemoryStorage,
    Stat,
    Storage,
    read_bytes,
    read_document,
    read_json,
    update_json,
)
from ..storage.base import CHUNK_SIZE
from .metadata import InvalidDistributionError, parse_filename, read_distribution

_log = logging.getLogger("private_channels.pypi")

# What is stored beside a file: its METADATA (served, PEP 658), an sdist's PKG-INFO.
_BESIDE = (".metadata", ".pkg-info")

__all__ = [
    "DeletedFilenameError",
    "FileConflictError",
    "FileRecord",
    "Project",
    "PythonStore",
]


#: The longest project name a distribution filename can carry (``<name>-0.zip``); longer
#: names in URLs and targets are refused before they reach a storage key.
MAX_PROJECT_NAME = Limits.max_filename - len("-0.zip")


@dataclass(frozen=True, kw_only=True)
class FileRecord(StoredFile):
    """One distribution file, everything the index shows about it."""

    project: NormalizedName
    version: str
    blake2b_256: str
    requires_python: str | None = None
    yanked: str | None = None  # None: not yanked; "" yanked without a reason
    metadata_sha256: str | None = None  # set when the METADATA file is served (PEP 658)


@dataclass(frozen=True)
class Project:
    name: NormalizedName
    display_name: str
    files: tuple[FileRecord, ...]
    stat: Stat  # of the project document: its etag validates caches of rendered pages
    deleted: frozenset[str] = field(default_factory=frozenset)


class SdistExistsError(ValueError):
    """A release has an sdist already, under another filename."""

    def __init__(self, filename: str) -> None:
        super().__init__(filename)
        self.filename = filename


def is_sdist(filename: str) -> bool:
    return not filename.endswith(".whl")


def same_version(a: str, b: str) -> bool:
    """PEP 440 equality (``1.0 == 1.0.0``); plain equality for what does not parse."""
    try:
        return Version(a) == Version(b)
    except ValueError:  # InvalidVersion, or an int past Python's digit limit
        return a == b


def _one_sdist_per_release(record: FileRecord, doc: Mapping[str, Any]) -> None:
    """PyPI's rule: an sdist is the release's source, so a release has one."""
    if not is_sdist(record.filename):
        return
    for other in doc["files"].values():
        if (
            other["filename"] != record.filename
            and is_sdist(other["filename"])
            and same_version(other["version"], record.version)
        ):
            raise SdistExistsError(other["filename"])


def _project(doc: dict[str, Any]) -> tuple[str, tuple[FileRecord, ...], frozenset[str]]:
    """A project document's display name, records and deleted filenames."""
    if not isinstance(doc["name"], str):
        raise TypeError("its name is not a string")
    files = tuple(FileRecord.from_json(f) for f in doc["files"].values())
    return doc["name"], files, frozenset(doc.get("deleted", ()))


class PythonStore(ChannelStore):
    folder = "pypi"

    def __init__(self, storage: Storage, *, limits: Limits | None = None) -> None:
        super().__init__(storage, limits=limits)
        self._names: dict[str, tuple[str, frozenset[str]]] = {}
        #: Whether an upload leaves what is kept beside its file (METADATA, PKG-INFO)
        #: to the first read of it, which derives it from the file (:meth:`keep_beside`):
        #: on a local store, where that saves every upload a synced write and reading a
        #: file again is cheap; an object store gets it with the upload.
        self.derives_beside = isinstance(storage, FileSystemStorage | MemoryStorage)

    # -- keys ------------------------------------------------------------------

    def project_key(self, channel: Channel, name: str) -> str:
        return f"{self.prefix(channel)}projects/{canonicalize_name(name)}.json"

    def projects_key(self, channel: Channel) -> str:
        return f"{self.prefix(channel)}projects.json"

    def blob_key(self, channel: Channel, record: FileRecord) -> str:
        return f"{self.prefix(channel)}{record.blob}"

    def _document(self, channel: Channel, name: str, display_name: str = "") -> RecordDocument:
        return RecordDocument(
            self.storage,
            self.project_key(channel, name),
            initial={"name": display_name},
            kept=self._derived,
            appends=self.appends,
        )

    # -- reads -----------------------------------------------------------------

    def project(self, channel: Channel, name: str) -> Project | None:
        """The project's files in upload order, or ``None`` if it has none."""
        try:
            parsed, stat = read_document(self.storage, self.project_key(channel, name), _project)
        except FileNotFoundError:
            return None
        display_name, files, deleted = parsed
        return Project(
            name=canonicalize_name(display_name),
            display_name=display_name,
            files=files,
            stat=stat,
            deleted=deleted,
        )

    def projects(self, channel: Channel) -> tuple[dict[NormalizedName, str], Stat | None]:
        """Normalized name to display name for every project; the stat validates caches."""
        try:
            projects, stat = read_document(
                self.storage, self.projects_key(channel), lambda doc: dict(doc["projects"])
            )
        except FileNotFoundError:
            return {}, None
        return projects, stat

    def beside_key(self, channel: Channel, record: FileRecord) -> str:
        """Where a file's METADATA (a wheel) or PKG-INFO (an sdist) is kept beside it."""
        blob = self.blob_key(channel, record)
        return f"{blob}.metadata" if record.metadata_sha256 is not None else f"{blob}.pkg-info"

    def read_metadata(self, channel: Channel, record: FileRecord, *, limit: int) -> bytes | None:
        """The file's METADATA (a wheel) or PKG-INFO (an sdist) as kept beside it, at
        most ``limit`` bytes; ``None`` when there is none (a wheel stored before the
        index served METADATA)."""
        key = self.beside_key(channel, record)
        for _ in range(2):
            try:
                data, _ = read_bytes(self.storage, key, limit=limit)
            except FileNotFoundError:
                if not self.keep_beside(channel, record):
                    return None
                continue
            except ValueError:
                return None
            return data
        return None

    def keep_beside(self, channel: Channel, record: FileRecord) -> bool:
        """Store what is kept beside a file, from the file itself, unless it is there;
        whether it is now.

        Uploads to a local store leave it to this (:attr:`derives_beside`), and a copy
        of a channel may lack it.  The file is read as its upload read it, within this
        store's limits, and a METADATA whose sha256 is not the record's is not kept.
        """
        key = self.beside_key(channel, record)
        with contextlib.suppress(FileNotFoundError):
            self.storage.stat(key)
            return True
        if not is_sdist(record.filename) and record.metadata_sha256 is None:
            return False  # a wheel stored before the index served METADATA
        try:
            data = self._derive_beside(channel, record)
        except (FileNotFoundError, InvalidDistributionError):
            return False
        if (
            record.metadata_sha256 is not None
            and hashlib.sha256(data).hexdigest() != record.metadata_sha256
        ):
            return False
        try:
            self.storage.create(key, io.BytesIO(data))
        except FileExistsError:  # another request kept it first
            pass
        except OSError as error:  # a storage that is read-only here, say
            _log.warning("cannot keep %s beside its file: %s", key, error)
            return False
        return True

    def _derive_beside(self, channel: Channel, record: FileRecord) -> bytes:
        stream, _ = self.storage.open(self.blob_key(channel, record))
        with contextlib.ExitStack() as stack:
            stack.enter_context(stream)
            if not stream.seekable():  # an object store's body: archives are read by seeking
                spool = stack.enter_context(tempfile.TemporaryFile())
                shutil.copyfileobj(stream, spool, CHUNK_SIZE)
                spool.seek(0)
                stream = spool
            return read_distribution(record.filename, stream, limits=self.limits).metadata

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
                if wants_metadata and (
                    record.metadata_sha256 is None or not self.keep_beside(channel, record)
                ):
                    break
                suffix = ".metadata" if wants_metadata else ""
                return self.storage.open(self.blob_key(channel, record) + suffix)
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
        pkg_info: bytes | None = None,
    ) -> bool:
        """Store a file and commit its record; ``False`` if the very same file was there.

        ``metadata`` (a wheel's METADATA, verbatim) is served beside the file (PEP 658);
        the record's ``metadata_sha256`` is always derived from it (``None`` without
        it), so that the index promises a METADATA file exactly when one is kept.
        ``pkg_info`` (an sdist's PKG-INFO) is kept beside the file for the pages'
        description, and never served: it may be incomplete (dynamic fields).  Both
        are written now on an object store, and on their first read on a local one
        (:attr:`derives_beside`).

        Raises :class:`FileConflictError` when the filename holds other bytes,
        :class:`DeletedFilenameError` when it was deleted, and :class:`SdistExistsError`
        for an sdist of a release that has another one (``demo-1.0.tar.gz`` beside
        ``demo-1.0.0.tar.gz`` or ``Demo-1.0.tar.gz``: one sdist per release, as on PyPI);
        all are found before any write when possible.  Whatever makes the commit fail,
        what this call wrote is removed again (:func:`~..core.blobs.store_blob`).
        """
        digest = hashlib.sha256(metadata).hexdigest() if metadata is not None else None
        record = replace(record, metadata_sha256=digest)
        document = self._document(channel, record.project, display_name)
        reuse = channel.allow_reupload
        existing = document.read()
        if not document.is_new(existing, record.filename, record.sha256, reuse=reuse):
            assert existing is not None
            # Re-running an upload also repairs a project name whose addition a
            # crash interrupted; unchanged documents are not rewritten.
            self._add_project_name(channel, record.project, existing["name"])
            return False
        check = partial(_one_sdist_per_release, record)
        if existing is not None:
            check(existing)
        blob = self.blob_key(channel, record)
        blobs = {blob: content}
        if metadata is not None and not self.derives_beside:
            blobs[f"{blob}.metadata"] = io.BytesIO(metadata)
        if pkg_info is not None and not self.derives_beside:
            blobs[f"{blob}.pkg-info"] = io.BytesIO(pkg_info)
        added, doc = store_blob(
            self.storage,
            blobs,
            commit=lambda: document.add(record.to_json(), reuse=reuse, check=check),
            referenced=lambda: document.holds(record.filename, record.sha256),
        )
        self._add_project_name(channel, record.project, doc["name"])
        return added

    def _add_project_name(self, channel: Channel, name: NormalizedName, display: str) -> None:
        if name in self._project_names(channel):
            return

        def add(doc: dict[str, Any] | None) -> dict[str, Any]:
            doc = doc or {"projects": {}}
            doc["projects"].setdefault(name, display)
            return doc

        update_json(self.storage, self.projects_key(channel), add)

    def _project_names(self, channel: Channel) -> frozenset[str]:
        """The names in ``projects.json``, read again only when its ETag changed (an
        upload of a known project then costs a stat here, not a read of every name)."""
        key = self.projects_key(channel)
        try:
            etag = self.storage.stat(key).etag
        except FileNotFoundError:
            return frozenset()
        known = self._names.get(key)
        if known is None or known[0] != etag:
            try:
                doc, stat = read_json(self.storage, key)
            except FileNotFoundError:
                return frozenset()
            known = (stat.etag, frozenset(doc["projects"]))
            self._names[key] = known
        return known[1]

    def update_files(
        self,
        channel: Channel,
        name: str,
        change: Callable[[FileRecord], FileRecord | None],
    ) -> Project | None:
        """Replace records of one project: ``change(record) -> record | None`` (None deletes).

        Deleted filenames are remembered so that they cannot be uploaded again (unless
        the channel allows it), and their blobs are removed after the document no
        longer names them.
        """

        def apply(raw: dict[str, Any]) -> dict[str, Any] | None:
            new = change(FileRecord.from_json(raw))
            return None if new is None else new.to_json()

        removed = self._document(channel, name).update(apply)
        project = self.project(channel, name)
        # Where deleted names may be reused, the very same file may have been uploaded
        # again since the commit above: its blob is the same key, so keep it.
        named = {self.blob_key(channel, f) for f in project.files} if project else set()
        for raw in removed:
            blob = self.blob_key(channel, FileRecord.from_json(raw))
            if blob not in named:
                forget(self.storage, [blob, *(blob + suffix for suffix in _BESIDE)])
        return project

    def referenced(self, channel: Channel) -> set[str]:
        """Every blob a record names; also adds back to ``projects.json`` the projects a
        crash right after their commit left out of it."""
        referenced: set[str] = set()
        for key in self.storage.list(f"{self.prefix(channel)}projects/"):
            if not key.endswith(".json"):
                continue
            doc, _ = read_json(self.storage, key)
            for raw in doc["files"].values():
                record = FileRecord.from_json(raw)
                blob = self.blob_key(channel, record)
                referenced.update((blob, *(blob + suffix for suffix in _BESIDE)))
            if doc["files"]:
                self._add_project_name(channel, canonicalize_name(doc["name"]), doc["name"])
        return referenced
