"""The interface an ecosystem implements to plug into the core.

::

    class CondaEcosystem:
        name = "conda"
        upload_forms = ("'filetype=conda_package' (curl)",)
        targets = ("a conda package filename",)

        def claims(self, form): return form.get("filetype") == "conda_package"
        def upload(self, upload): ...            # -> a Response, or raise http_error(...)
        def middleware(self, app): ...           # the read side: indexes and downloads
        def find(self, channel, text): ...       # a yank/unyank/delete target, or None
        def change(self, channel, target, action, reason): ...
        def collect_garbage(self, channel, grace): ...
        def packages(self, channel): ...         # listings for the pages and the API
        def package(self, channel, name, version=None): ...
        def snippets(self, channel_url, package): ...   # setup and install, for the pages
        upload_kinds = (UploadKind(...),)        # what the upload page offers

    app = make_app(storage)   # builds the Python and R ecosystems and wires each in

Each ecosystem knows its formats (filenames, metadata, index rendering) and nothing of
HTTP bodies, archives' hostility, blobs' commit or downloads' ranges: the core does
those once (:mod:`~private_channels.core.upload`, :mod:`~private_channels.core.archive`,
:mod:`~private_channels.core.blobs`, :mod:`~private_channels.core.download`,
:mod:`~private_channels.core.cache`).  The core knows no ecosystem by name: it calls these methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar
from urllib.parse import urlsplit

from .blobs import ChannelStore, StoredFile

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from _typeshed.wsgi import WSGIApplication
    from werkzeug.datastructures import FileStorage, MultiDict
    from werkzeug.wrappers import Response

    from ..channels import Channel
    from ..storage import Storage
    from ..tokens import Token
    from .limits import Limits
    from .reader import ReadMiddleware

__all__ = [
    "Action",
    "Description",
    "Ecosystem",
    "ListedFile",
    "Listing",
    "Package",
    "PackageDetail",
    "Snippet",
    "StoredEcosystem",
    "Target",
    "Upload",
    "UploadKind",
    "curl_upload",
    "listed_packages",
    "package_detail",
    "path_token_url",
    "shown_version",
]

S = TypeVar("S", bound=ChannelStore)
S_contra = TypeVar("S_contra", bound=ChannelStore, contravariant=True)

Action = Literal["yank", "unyank", "delete"]


@dataclass(frozen=True)
class Upload:
    """One upload form, parsed once by the core and handed to the ecosystem that claims it.

    Its files are spooled to anonymous temporary files (seekable, removed by the
    operating system even if the server is killed), closed by the core afterwards.
    """

    channel: Channel
    token: Token | None
    form: MultiDict[str, str]
    files: MultiDict[str, FileStorage]
    limits: Limits


@dataclass(frozen=True)
class Target:
    """What a yank, unyank or delete names: one file, or every file of one release.

    ``key`` is the ecosystem's own handle (a normalized project, an R package);
    ``filename`` or ``version`` says which of its files.
    """

    ecosystem: str
    key: str
    filename: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        return self.filename or f"{self.key}=={self.version}"


@dataclass(frozen=True)
class Package:
    """One package of one ecosystem in a channel, as the listings show it."""

    ecosystem: str
    name: str  # as it was uploaded
    key: str  # the ecosystem's handle: a normalized name, the part of page URLs
    versions: tuple[str, ...]  # oldest first, as PEP 700 lists them

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "versions": list(self.versions)}


def listed_packages(
    ecosystem: str,
    store: ChannelStore,
    documents: Iterable[tuple[str, Callable[[], Iterable[tuple[str, str]]]]],
    *,
    key: Callable[[str], Any],
    order: Callable[[str], Any] = str.casefold,
) -> list[Package]:
    """One :class:`Package` a name found in ``documents`` (each the key of an index
    document, and what reads its (name, version) pairs), its versions in ``key``'s order,
    the packages in ``order``.  What each document lists is kept for its ETag
    (:meth:`~.blobs.ChannelStore.derived`): a listing reads only the documents that
    changed since the last."""
    merged: dict[str, tuple[str, ...]] = {}
    for document, read in documents:
        listed = store.derived(document, "listed", partial(_versions, read, key))
        for name, versions in (listed or {}).items():
            known = merged.get(name)
            if known is None or known == versions:
                merged[name] = versions
            else:  # in several documents (R's directories, conda's subdirs)
                merged[name] = tuple(sorted({*known, *versions}, key=key))
    return [
        Package(ecosystem, name, name, versions)
        for name, versions in sorted(merged.items(), key=lambda item: order(item[0]))
    ]


def _versions(
    read: Callable[[], Iterable[tuple[str, str]]], key: Callable[[str], Any]
) -> tuple[dict[str, tuple[str, ...]], int]:
    """Each name's versions in ``key``'s order of what ``read()`` gives, and about the
    bytes that takes."""
    found: dict[str, set[str]] = {}
    for name, version in read():
        found.setdefault(name, set()).add(version)
    versions = {name: tuple(sorted(v, key=key)) for name, v in found.items()}
    return versions, sum(160 + len(name) + 56 * len(v) for name, v in versions.items())


@dataclass(frozen=True)
class ListedFile:
    """One file of a package, as the package pages and the API show it."""

    filename: str
    version: str
    size: int
    sha256: str
    upload_time: float
    url: str | None  # relative to the channel's URL (``P/<CHANNEL>/``); None: no one URL
    yanked: str | None = None  # None: not yanked; "" yanked without a reason
    #: Format facts worth showing, in order: ``("Requires-Python", ">=3.9")``,
    #: ``("Depends", "R (>= 4.1)")``, ``("Directory", "src/contrib")``...
    details: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(
        cls,
        record: StoredFile,
        *,
        version: str,
        url: str | None,
        yanked: str | None,
        details: Iterable[tuple[str, str]] = (),
    ) -> ListedFile:
        """The listing of a stored file, with what its ecosystem knows of it."""
        return cls(record.filename, version, record.size, record.sha256, record.upload_time,
                   url, yanked, tuple(details))  # fmt: skip

    def to_json(self) -> dict[str, object]:
        return {
            "filename": self.filename,
            "version": self.version,
            "size": self.size,
            "sha256": self.sha256,
            "upload_time": self.upload_time,
            "url": self.url,
            "yanked": self.yanked,
            "details": dict(self.details),
        }


@dataclass(frozen=True)
class Description:
    """A package's long description as uploaded: the pages render it by its type
    (``text/markdown``, ``text/x-rst`` or ``text/plain``)."""

    text: str
    content_type: str = "text/plain"


@dataclass(frozen=True)
class PackageDetail:
    """A package with the files of every version and one version's description."""

    package: Package
    files: tuple[ListedFile, ...]  # every version's, newest version first
    version: str  # the version the summary and description are of
    summary: str = ""
    description: Description | None = None
    #: Facts about ``version`` worth showing (license, maintainer, home page...).
    about: tuple[tuple[str, str], ...] = ()


def package_detail(
    ecosystem: str,
    name: str,
    files: Iterable[ListedFile],
    *,
    key: Callable[[str], Any],
    requested: str | None,
    describe: Callable[[str], tuple[str, str, Iterable[tuple[str, str]]]],
) -> PackageDetail:
    """The :class:`PackageDetail` of a package whose name is its handle (R, conda):
    ``files`` newest version first (at least one), its versions in ``key``'s order, the
    version :func:`shown_version` picks, and what ``describe`` says of that version (its
    summary, its description as plain text, its :attr:`~PackageDetail.about`)."""
    files = tuple(files)
    versions = tuple(sorted({f.version for f in files}, key=key))
    version = shown_version(requested, ((f.version, f.yanked) for f in files))
    summary, text, about = describe(version)
    return PackageDetail(
        package=Package(ecosystem, name, name, versions),
        files=files,
        version=version,
        summary=summary,
        description=Description(text) if text else None,
        about=tuple(about),
    )


def shown_version(requested: str | None, files: Iterable[tuple[str, str | None]]) -> str:
    """The version a package page describes: ``requested`` when a file has it, else the
    newest version with a file not yanked, else the newest.  ``files`` are each file's
    (version, yanked reason or ``None``), newest first, at least one."""
    files = list(files)
    if requested is not None and any(version == requested for version, _ in files):
        return requested
    return next((version for version, yanked in files if yanked is None), files[0][0])


@dataclass(frozen=True)
class Snippet:
    """A piece of setup or install instructions the pages show, ready to copy."""

    title: str
    text: str
    note: str = ""


def path_token_url(channel_url: str) -> tuple[str, str]:
    """The channel's URL with the token in its path (``P/t/<TOKEN>/<CHANNEL>``, for
    clients that cannot send a header), cut where the token goes:
    ``("https://host/api/repo/t/", "/team")`` for ``https://host/api/repo/team``."""
    parts = urlsplit(channel_url)
    prefix, _, channel = parts.path.rstrip("/").rpartition("/")
    return f"{parts.scheme}://{parts.netloc}{prefix}/t/", f"/{channel}"


def curl_upload(title: str, filetype: str, filename: str, channel_url: str, note: str) -> Snippet:
    """The curl command that uploads ``filename`` as ``filetype`` to the channel, with
    ``$TOKEN`` for the token."""
    return Snippet(
        title,
        f'curl -F filetype={filetype} -F content=@{filename} -H "X-Auth: $TOKEN" {channel_url}',
        note=note,
    )


@dataclass(frozen=True)
class UploadKind:
    """One choice on the upload page, and the form fields the ecosystem's upload
    handler needs for it (what twine or curl would send beside the file)."""

    id: str  # unique over all ecosystems: the value the page posts
    label: str
    fields: tuple[tuple[str, str], ...]
    accept: str = ""  # file name suffixes for the browser's file chooser
    #: Optional text fields the page shows for it: (form field, label).
    options: tuple[tuple[str, str], ...] = ()


class Ecosystem(Protocol):
    """A package format served by private-channels (Python, R, conda)."""

    @property
    def name(self) -> str:
        """A short lowercase name: ``python``, ``cran``, ``conda``."""
        ...

    @property
    def upload_forms(self) -> tuple[str, ...]:
        """How a client marks an upload form as this ecosystem's, for the sentence that
        answers a form no ecosystem claims."""
        ...

    @property
    def targets(self) -> tuple[str, ...]:
        """What a yank/unyank/delete target of this ecosystem looks like, for the
        sentence that answers a target no ecosystem knows (``"a wheel or sdist
        filename"``)."""
        ...

    def claims(self, form: MultiDict[str, str]) -> bool:
        """Whether this upload form is for this ecosystem (its fields, not its file)."""
        ...

    def upload(self, upload: Upload) -> Response:
        """Check and store the upload, or raise an HTTP error with one sentence."""
        ...

    def middleware(self, app: WSGIApplication) -> WSGIApplication:
        """The read side under a channel: indexes and downloads; the rest goes to ``app``."""
        ...

    def find(self, channel: Channel, text: str) -> Target | None:
        """The target ``text`` names (a filename, or ``NAME==VERSION``) if it is one of
        this ecosystem's; ``None`` if it is not; raise :class:`ValueError` (one
        sentence) if it is this ecosystem's but malformed."""
        ...

    def change(self, channel: Channel, target: Target, action: Action, reason: str) -> list[str]:
        """Yank, unyank or delete what ``target`` names; return the filenames touched.

        Raises :class:`LookupError` when the channel has no such file and
        :class:`ValueError` when the action does not apply (one sentence each).
        """
        ...

    def collect_garbage(self, channel: Channel, grace: float) -> list[str]:
        """Remove blobs that no record names, older than ``grace`` seconds."""
        ...

    @property
    def upload_kinds(self) -> tuple[UploadKind, ...]:
        """The kinds of file the upload page offers for this ecosystem."""
        ...

    def packages(self, channel: Channel) -> list[Package]:
        """Every package of the channel, sorted by key (for the pages and the API)."""
        ...

    def package(
        self, channel: Channel, name: str, version: str | None = None
    ) -> PackageDetail | None:
        """One package by name (any spelling the ecosystem normalizes), with the
        description of ``version`` (the newest when ``None``); ``None`` if absent."""
        ...

    def snippets(self, channel_url: str, package: Package | None) -> list[Snippet]:
        """How to set up and use the channel (and install ``package``) with this
        ecosystem's clients; ``channel_url`` is the channel's absolute URL without a
        trailing slash, and every snippet uses a placeholder, never a token."""
        ...


class Listing(Protocol[S_contra]):
    """An ecosystem's listings as a module of functions over its store
    (``pypi/listing.py``, ``cran/listing.py``)."""

    def packages(self, store: S_contra, channel: Channel, /) -> list[Package]: ...

    def package(
        self, store: S_contra, channel: Channel, name: str, version: str | None = None, /
    ) -> PackageDetail | None: ...

    def snippets(self, channel_url: str, package: Package | None, /) -> list[Snippet]: ...


class StoredEcosystem(Generic[S]):
    """What most ecosystems share: a store of their files in each channel
    (:class:`~private_channels.core.blobs.ChannelStore`), a read middleware
    (:class:`~private_channels.core.reader.ReadMiddleware`) over it, and listings
    read from it (a :class:`Listing`)."""

    store_type: type[S]
    reader_type: type[ReadMiddleware[S]]
    listing: Listing[S]

    def __init__(
        self, storage: Storage, *, redirect_downloads: int = 0, limits: Limits | None = None
    ) -> None:
        self.storage = storage
        self.redirect_downloads = redirect_downloads
        self.limits = limits
        self.store: S = self.store_type(storage, limits=self.limits)

    def middleware(self, app: WSGIApplication) -> WSGIApplication:
        return self.reader_type(
            app, self.storage, redirect_downloads=self.redirect_downloads, limits=self.limits
        )

    def collect_garbage(self, channel: Channel, grace: float) -> list[str]:
        return self.store.collect_garbage(channel, grace=grace)

    def packages(self, channel: Channel) -> list[Package]:
        return self.listing.packages(self.store, channel)

    def package(
        self, channel: Channel, name: str, version: str | None = None
    ) -> PackageDetail | None:
        return self.listing.package(self.store, channel, name, version)

    def snippets(self, channel_url: str, package: Package | None) -> list[Snippet]:
        return self.listing.snippets(channel_url, package)
