"""The ready composition of the middlewares, mountable under any path.

::

    from werkzeug.middleware.dispatcher import DispatcherMiddleware
    from private_channels import make_app, open_storage

    host.wsgi_app = DispatcherMiddleware(host.wsgi_app, {
        "/api/repo": make_app(open_storage("./private-channels-data")),
    })

From the outside in: token authentication (which also cuts the ``/t/<TOKEN>`` path
form), channel routing, then the Python upload, simple index, R upload and CRAN
repository middlewares, each serving what it owns and passing on the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from werkzeug.exceptions import HTTPException

from .accesslog import AccessLogMiddleware
from .auth import TokenAuthMiddleware, authorize
from .channels import ChannelRegistry
from .cran.repository import CranRepositoryMiddleware
from .cran.upload import CranUploadMiddleware
from .errors import http_error
from .forms import DEFAULT_MAX_UPLOAD_SIZE, is_upload
from .health import HealthMiddleware
from .pypi.simple import SimpleIndexMiddleware
from .pypi.upload import PythonUploadMiddleware
from .routing import ChannelMiddleware, current_channel
from .tokens import Scope, TokenStore

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from .storage import Storage

__all__ = ["make_app"]


def _not_found(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """What is left when no middleware claimed the request."""
    try:
        if is_upload(environ):
            # Only those who may upload learn what an upload should look like.
            authorize(environ, current_channel(environ), Scope.WRITE)
            raise http_error(
                400,
                "The upload form has neither ':action=file_upload' (twine, uv publish) nor "
                "'filetype=cran_source_package' or 'cran_binary_package' (R).",
            )
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
    max_upload_size: int = DEFAULT_MAX_UPLOAD_SIZE,
    token_cache_ttl: float = 5.0,
    health: bool = True,
    access_log: str | None = None,
    redirect_downloads: int = 0,
) -> WSGIApplication:
    """Compose every middleware over one storage into a WSGI app.

    ``secret_key`` enables stateless signed tokens minted with
    :func:`~private_channels.tokens.mint_signed_token`; ``max_upload_size`` bounds each
    upload (413 past it); ``token_cache_ttl`` bounds how long a revoked token may still
    be accepted by a process that verified it recently.  ``health`` serves
    ``P/-/health`` (see :mod:`~private_channels.health`); ``access_log`` (``"text"`` or
    ``"json"``) logs every request with a request id (see :mod:`~private_channels.accesslog`).
    ``redirect_downloads`` (seconds; 0, the default, is off) answers downloads of package
    files with a 302 to a presigned URL of the store, valid that long, on a storage that
    makes them (S3); other storages serve the files themselves.
    """
    app: WSGIApplication = _not_found
    app = CranRepositoryMiddleware(app, storage, redirect_downloads=redirect_downloads)
    app = CranUploadMiddleware(app, storage, max_upload_size=max_upload_size)
    app = SimpleIndexMiddleware(app, storage, redirect_downloads=redirect_downloads)
    app = PythonUploadMiddleware(app, storage, max_upload_size=max_upload_size)
    app = ChannelMiddleware(app, ChannelRegistry(storage))
    store = TokenStore(storage, secret_key=secret_key, cache_ttl=token_cache_ttl)
    app = TokenAuthMiddleware(app, store)
    if health:
        app = HealthMiddleware(app, storage)
    if access_log is not None:
        app = AccessLogMiddleware(app, format=access_log)
    return app
