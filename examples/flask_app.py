"""A Flask app that keeps its own routes and serves private channels at ``/api/repo``.

::

    pip install flask -e .        # in a checkout of private-channels (not on PyPI yet)
    PRIVATE_CHANNELS_STORAGE=./private-channels-data flask --app examples/flask_app.py run

Then ``http://127.0.0.1:5000/`` is Flask's, and ``http://127.0.0.1:5000/api/repo/<CHANNEL>/``
takes uploads from twine and curl and serves pip, uv and R.  The mount is werkzeug's
``DispatcherMiddleware`` around ``app.wsgi_app``, the way Flask's documentation mounts
other WSGI apps, so Flask's ``app`` object stays what ``flask run``, gunicorn and tests see.
``flask run`` logs every request line as the client sent it, with a token in the path
(``/t/<TOKEN>/``, for R) in clear: ``redact_loggers()`` redacts it in werkzeug's log.
"""

from __future__ import annotations

import os

from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from private_channels import make_app, open_storage
from private_channels.logs import redact_loggers

app = Flask(__name__)


@app.get("/")
def home() -> str:
    return "The team's own app. Packages are under /api/repo/.\n"


@app.get("/status")
def status() -> dict[str, str]:
    return {"app": "flask", "channels": "/api/repo"}


redact_loggers()  # werkzeug's request log (flask run) and gunicorn's, waitress's errors
storage = open_storage(os.environ.get("PRIVATE_CHANNELS_STORAGE", "./private-channels-data"))
channels = make_app(storage, secret_key=os.environ.get("PRIVATE_CHANNELS_SECRET_KEY"))
app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/api/repo": channels})  # type: ignore[method-assign]
