"""The ready composition of the middlewares, mountable under any path.

::

    from werkzeug.middleware.dispatcher import DispatcherMiddleware
    from private_channels import make_app, open_storage

    host.wsgi_app = DispatcherMiddleware(host.wsgi_app, {
        "/api/repo": make_app(open_storage("./private-channels-data")),
    })

From the outside in: the access log, the answer to failures (a damaged document, a
read-only storage: one sentence, never a bare 500), the health endpoint, the web pages
for browsers, the HTTP JSON API, token authentication (which also cuts the
``/t/<TOKEN>`` path form), channel routing, then the core's one owner of the upload
URL, the management endpoints (yank, unyank, delete), and each ecosystem's read side
(the Python simple index, the CRAN repository, the conda channel), each serving what it
owns and passing on the rest.  The pages, the HTTP API and the command line share one
management API (:class:`~private_channels.admin.Admin`).  See ``docs/architecture.md``.

Most requests are reads of an index or a file, which the health endpoint, the pages,
uploads and the management endpoints all pass on: :class:`ReadPath` sends them past
those layers, straight to the token and channel layers and the read sides.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from werkzeug.exceptions import HTTPException

from .accesslog import AccessLogMiddleware
from .admin import Admin
from .auth import TokenAuthMiddleware, authorize
from .channels import ChannelRegistry
from .conda.ecosystem import CondaEcosystem
from .core.answers import Answers
from .core.limits import Limits
from .core.manage import ManageMiddleware
from .core.upload import UploadMiddleware
from .cran.ecosystem import CranEcosystem
from .errors import http_error
from .failures import FailureMiddleware
from .health import HealthMiddleware
from .pypi.ecosystem import PythonEcosystem
from .routing import ChannelMiddleware, current_channel
from .tokens import Scope, TokenStore
from .web import ApiMiddleware, PagesMiddleware, Sessions

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from .core.ecosystem import Ecosystem
    from .storage import Storage

__all__ = ["ReadPath", "ecosystems", "make_app"]


def ecosystems(
    storage: Storage, *, redirect_downloads: int = 0, limits: Limits | None = None
) -> list[Ecosystem]:
    """Every ecosystem this server serves, in the order they are asked to claim a form
    or a target."""
    return [
        PythonEcosystem(storage, redirect_downloads=redirect_downloads, limits=limits),
        CranEcosystem(storage, redirect_downloads=redirect_downloads, limits=limits),
        CondaEcosystem(storage, redirect_downloads=redirect_downloads, limits=limits),
    ]


def _not_found(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """What is left when no middleware claimed the request."""
    try:
        # A 404 here would tell outsiders the channel exists (SPEC.md: unknown channels
        # are 401/403 to them), so they get the same answer as for a channel that does not.
        authorize(environ, current_channel(environ), Scope.READ)
        raise http_error(404, "Nothing is at this URL; see <prefix>/<channel>/simple/.")
    except HTTPException as error:
        return error(environ, start_response)


def make_app(
    storage: Storage,
    *,
    secret_key: str | bytes | None = None,
    max_upload_size: int | None = None,
    limits: Limits | None = None,
    token_cache_ttl: float = 5.0,
    health: bool = True,
    access_log: str | None = None,
    redirect_downloads: int = 0,
    web: bool = True,
) -> WSGIApplication:
    """Compose every middleware over one storage into a WSGI app.

    ``secret_key`` enables stateless signed tokens minted with
    :func:`~private_channels.tokens.mint_signed_token`; ``limits`` bounds what a request
    may make the server read and unpack (:class:`~private_channels.core.limits.Limits`;
    ``max_upload_size`` is a shortcut for its file bound: 413 past it; its upstream
    bounds limit what is read from the channels' upstreams, see ``docs/upstreams.md``);
    ``token_cache_ttl`` bounds how long a revoked token may still be accepted by a
    process that verified it recently.  ``health`` serves ``P/-/health`` (see
    :mod:`~private_channels.health`); ``access_log`` (``"text"`` or ``"json"``) logs
    every request with a request id (see :mod:`~private_channels.accesslog`).
    ``redirect_downloads`` (seconds; 0, the default, is off) answers downloads of
    package files with a 302 to a presigned URL of the store, valid that long, on a
    storage that makes them (S3); other storages serve the files themselves.
    ``web`` serves the web pages and the HTTP API (``P/``, ``P/<CHANNEL>/`` for
    browsers, ``P/-/login``, ``P/-/api/...``; see :mod:`~private_channels.web`); their
    sessions are signed with ``secret_key`` when given, else with a key kept in storage.
    """
    limits = limits or Limits()
    if max_upload_size is not None:
        limits = replace(limits, max_upload_size=max_upload_size)
    served = ecosystems(storage, redirect_downloads=redirect_downloads, limits=limits)
    app: WSGIApplication = _not_found
    for ecosystem in reversed(served):
        app = ecosystem.middleware(app)
    readers = app
    app = ManageMiddleware(app, served, limits=limits)
    app = UploadMiddleware(app, served, limits=limits)
    registry = ChannelRegistry(storage)
    app = ChannelMiddleware(app, registry)
    # One store for the middleware, the pages and the API: a revocation through any of
    # them is refused at once by all of them in this process.
    store = TokenStore(storage, secret_key=secret_key, cache_ttl=token_cache_ttl)
    admin = Admin(storage, served, tokens=store, registry=registry)
    app = TokenAuthMiddleware(app, store)
    if web:
        api = ApiMiddleware(app, admin, limits=limits)
        sessions = Sessions(store, key=secret_key)
        app = PagesMiddleware(app, admin, sessions, limits=limits, api=api)
    if health:
        app = HealthMiddleware(app, storage)
    read = TokenAuthMiddleware(ChannelMiddleware(readers, registry), store)
    # Kept while nothing is written, and no longer than the token store trusts what it
    # read of a token before a write.
    app = ReadPath(app, read, answers=Answers.of(storage, ttl=token_cache_ttl, tokens=store))
    app = FailureMiddleware(app)
    if access_log is not None:
        app = AccessLogMiddleware(app, format=access_log)
    return app


class ReadPath:
    """Send ``GET`` and ``HEAD`` of a path at least two segments deep with no ``/-/``
    segment and no cookie to ``read`` (the token and channel layers over the
    ecosystems' read sides), every other request to ``app`` (the whole composition).

    Every layer that ``read`` leaves out passes such a request on untouched: the
    health endpoint answers ``/-/health`` only, the HTTP API and the pages' own URLs
    have a ``/-/`` segment, the pages negotiated with browsers are one segment deep
    (``/``, ``/<channel>/``), a signed-in session is read from a cookie, uploads are
    ``POST`` and the management endpoints ``/-/<action>``.  Each of those layers costs
    little, but a request on a busy small machine starts with cold CPU caches, where
    every layer walked costs several times its warm time (docs/performance.md), and
    these reads are most of what a package server answers.

    With ``answers`` (:class:`~.core.answers.Answers`), such a read asked again gets the
    answer kept for it, while nothing it was decided by has changed, and ``read`` is not
    walked at all.
    """

    def __init__(
        self, app: WSGIApplication, read: WSGIApplication, *, answers: Answers | None = None
    ) -> None:
        self.app = app
        self.read = read
        self.answers = answers

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if self.takes(environ):
            if self.answers is not None:
                return self.answers(environ, start_response, self.read)
            return self.read(environ, start_response)
        return self.app(environ, start_response)

    @staticmethod
    def takes(environ: WSGIEnvironment) -> bool:
        """Whether the request is a read that every layer left out passes on."""
        path: str = environ.get("PATH_INFO", "")
        return (
            environ.get("REQUEST_METHOD") in ("GET", "HEAD")
            and "/-/" not in path
            and "HTTP_COOKIE" not in environ
            and "/" in path.strip("/")
        )
