"""A Pyramid app that keeps its own routes and serves private channels at ``/api/repo``.

::

    pip install pyramid waitress -e .        # in a checkout of private-channels
    PRIVATE_CHANNELS_STORAGE=./private-channels-data waitress-serve examples.pyramid_app:app

The Pyramid way to mount a WSGI app: a route whose ``*subpath`` is everything below
``/api/repo/``, and a view made with ``wsgiapp2``, which moves the matched part of the
path into ``SCRIPT_NAME`` and the subpath into ``PATH_INFO`` before calling the app, so
every link the channels emit includes ``/api/repo``.  waitress logs the path of a
request that failed, a token in the path included: ``redact_loggers()`` redacts it.
"""

from __future__ import annotations

import os

from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response
from pyramid.wsgi import wsgiapp2

from private_channels import make_app, open_storage
from private_channels.logs import redact_loggers


def home(request: Request) -> Response:
    return Response("The team's own app. Packages are under /api/repo/.\n")


def status(request: Request) -> dict[str, str]:
    return {"app": "pyramid", "channels": "/api/repo"}


redact_loggers()  # waitress's "Exception while serving <path>" and the other servers'
storage = open_storage(os.environ.get("PRIVATE_CHANNELS_STORAGE", "./private-channels-data"))
channels = make_app(storage, secret_key=os.environ.get("PRIVATE_CHANNELS_SECRET_KEY"))

with Configurator() as config:
    config.add_route("home", "/")
    config.add_view(home, route_name="home")
    config.add_route("status", "/status")
    config.add_view(status, route_name="status", renderer="json")
    config.add_route("channels", "/api/repo/*subpath")
    config.add_view(wsgiapp2(channels), route_name="channels")
    app = config.make_wsgi_app()
