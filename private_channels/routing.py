"""The channel layer: ``P/<CHANNEL>/...`` to a channel, the way a mount works.

::

    app = ChannelMiddleware(inner, ChannelRegistry(storage))

Like werkzeug's ``DispatcherMiddleware``, it moves the channel segment from
``PATH_INFO`` to ``SCRIPT_NAME``, so the wrapped apps see ``/simple/...`` or
``/src/contrib/...`` and build links from ``SCRIPT_NAME`` that include the channel.
The channel itself goes to ``environ["private_channels.channel"]``.  A channel that
does not exist is 404 only to callers allowed to know (see :func:`~.auth.require_known`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from werkzeug.exceptions import HTTPException

from .auth import require_known
from .channels import Channel, ChannelRegistry
from .core.answers import depends
from .errors import http_error

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["CHANNEL_KEY", "ChannelMiddleware", "current_channel"]

CHANNEL_KEY = "private_channels.channel"


def current_channel(environ: WSGIEnvironment) -> Channel:
    channel: Channel = environ[CHANNEL_KEY]
    return channel


class ChannelMiddleware:
    def __init__(self, app: WSGIApplication, registry: ChannelRegistry) -> None:
        self.app = app
        self.registry = registry

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        name, slash, rest = path.lstrip("/").partition("/")
        try:
            if not name:
                raise http_error(404, "Name a channel in the URL: <prefix>/<channel>/simple/.")
            found = self.registry.find(name)
            if found is None:
                require_known(environ, name)
        except HTTPException as error:
            return error(environ, start_response)
        assert found is not None
        channel, key, etag = found
        depends(environ, key, etag)  # an answer kept is decided by the channel's record
        environ[CHANNEL_KEY] = channel
        environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "").rstrip("/") + "/" + name
        environ["PATH_INFO"] = slash + rest
        return self.app(environ, start_response)
