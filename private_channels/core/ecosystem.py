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

    app = make_app(storage)   # builds the Python and R ecosystems and wires each in

Each ecosystem knows its formats (filenames, metadata, index rendering) and nothing of
HTTP bodies, archives' hostility, blobs' commit or downloads' ranges: the core does
those once (:mod:`~private_channels.core.upload`, :mod:`~private_channels.core.archive`,
:mod:`~private_channels.core.blobs`, :mod:`~private_channels.core.download`,
:mod:`~private_channels.core.cache`).  The core knows no ecosystem by name: it calls these methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Literal, Protocol, TypeVar

from .blobs import ChannelStore

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication
    from werkzeug.datastructures import FileStorage, MultiDict
    from werkzeug.wrappers import Response

    from ..channels import Channel
    from ..storage import Storage
    from ..tokens import Token
    from .limits import Limits
    from .reader import ReadMiddleware

__all__ = ["Action", "Ecosystem", "StoredEcosystem", "Target", "Upload"]

S = TypeVar("S", bound=ChannelStore)

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


class StoredEcosystem(Generic[S]):
    """What most ecosystems share: a store of their files in each channel
    (:class:`~private_channels.core.blobs.ChannelStore`) and a read middleware
    (:class:`~private_channels.core.reader.ReadMiddleware`) over it."""

    store_type: type[S]
    reader_type: type[ReadMiddleware[S]]

    def __init__(
        self, storage: Storage, *, redirect_downloads: int = 0, limits: Limits | None = None
    ) -> None:
        self.storage = storage
        self.store: S = self.store_type(storage)
        self.redirect_downloads = redirect_downloads
        self.limits = limits

    def middleware(self, app: WSGIApplication) -> WSGIApplication:
        return self.reader_type(
            app, self.storage, redirect_downloads=self.redirect_downloads, limits=self.limits
        )

    def collect_garbage(self, channel: Channel, grace: float) -> list[str]:
        return self.store.collect_garbage(channel, grace=grace)
