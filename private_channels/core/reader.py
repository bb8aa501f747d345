"""The skeleton of an ecosystem's read side: serve what it routes, pass on the rest.

::

    class CondaChannelMiddleware(ReadMiddleware[CondaStore]):
        store_type = CondaStore

        def route(self, environ, path):          # PATH_INFO below the channel
            if not path.startswith("/noarch/"):
                return None                       # not ours: the next middleware's
            ...
            return file_response(environ, self.storage, key, ...)

    app = CondaChannelMiddleware(app, storage, redirect_downloads=600)

A read middleware sits below :class:`~private_channels.routing.ChannelMiddleware`, so
``current_channel(environ)`` is the channel and ``PATH_INFO`` what follows it.  It keeps
what it renders in one :class:`~private_channels.core.cache.DocumentCache` and answers
downloads through :func:`~private_channels.core.download.file_response`; an HTTP error
raised while routing is the answer, and a name from the URL that no storage key can hold
(:class:`~private_channels.storage.InvalidKeyError`) is a 404.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar

from werkzeug.exceptions import HTTPException

from ..auth import authorize
from ..errors import http_error
from ..routing import current_channel
from ..storage import InvalidKeyError
from ..tokens import Scope
from .blobs import ChannelStore
from .cache import DocumentCache
from .download import redirects
from .limits import Limits
from .proxy import UpstreamProxy
from .upstream import UpstreamClient

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from ..channels import Channel
    from ..storage import Storage

__all__ = ["ReadMiddleware"]

S = TypeVar("S", bound=ChannelStore)


class ReadMiddleware(Generic[S]):
    """``cache_bytes`` bounds what this process keeps of rendered pages and parsed
    documents; every entry is checked against its document's storage ETag (one
    ``stat``) on every request that uses it.  ``redirect_downloads`` (seconds, 0 = off):
    on a storage that presigns URLs (S3), answer a download with a 302 to a URL of the
    store valid that long, so that large files never pass through this process.
    ``limits`` bounds what is read from a channel's upstreams (:attr:`proxy`)."""

    #: The ecosystem's store of the files it serves, made for the storage given.
    store_type: type[S]

    def __init__(
        self,
        app: WSGIApplication,
        storage: Storage,
        *,
        cache_bytes: int = 64 * 1024 * 1024,
        redirect_downloads: int = 0,
        limits: Limits | None = None,
    ) -> None:
        self.app = app
        self.storage = storage
        self.cache_bytes = cache_bytes
        self.cache = DocumentCache(cache_bytes)
        self.redirect_downloads = redirects(storage, redirect_downloads)
        self.limits = limits or Limits()
        self.store: S = self.store_type(storage, limits=self.limits)
        self.proxy = UpstreamProxy(storage, self.cache, UpstreamClient(self.limits))

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            try:
                response = self.route(environ, environ.get("PATH_INFO", ""))
            except InvalidKeyError:
                # A name from the URL that no storage key can hold (too long, say): no
                # upload can have stored it, whichever ecosystem's reader routed it.
                raise http_error(404, "Nothing is stored under a name like this one.") from None
        except HTTPException as error:
            return error(environ, start_response)
        if response is None:
            return self.app(environ, start_response)
        return response(environ, start_response)

    def route(self, environ: WSGIEnvironment, path: str) -> WSGIApplication | None:
        """The response (a WSGI app: a werkzeug ``Response``, a
        :class:`~.document.DocumentResponse`) for a path this middleware owns, ``None``
        for any other."""
        raise NotImplementedError

    def readable(self, environ: WSGIEnvironment) -> Channel:
        """The channel of a request to read one of the URLs this middleware owns:
        405 for a method other than ``GET`` and ``HEAD``, 401/403 without read access."""
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            raise http_error(
                405, "This URL is read-only; upload with POST to the channel URL itself.",
                headers=[("Allow", "GET, HEAD")],
            )  # fmt: skip
        channel = current_channel(environ)
        authorize(environ, channel, Scope.READ)
        return channel

    # -- what the upstream proxy of every ecosystem needs -----------------------------

    def upstream_key(self, channel: Channel, kind: str, name: str = "") -> str:
        """The store's :meth:`~.blobs.ChannelStore.upstream_key`."""
        return self.store.upstream_key(channel, kind, name)

    def cutoff(self, channel: Channel) -> float | None:
        """Upstream releases published after this moment are not offered (the channel's
        minimum age); ``None`` when it has none."""
        if not channel.upstream_min_age:
            return None
        return self.proxy.now() - channel.upstream_min_age * 86400
