"""What people and scripts reach besides the indexes: the web pages and the HTTP API.

::

    api = ApiMiddleware(app, admin)                       # P/-/api/...
    app = PagesMiddleware(app, admin, Sessions(tokens), api=api)   # P/, P/-/login...

Both are views of the management API (:class:`~private_channels.admin.Admin`), which the
command line calls too; see ``docs/web.md`` and ``docs/api.md``.
"""

from .api import ApiMiddleware
from .pages import PagesMiddleware
from .session import Sessions

__all__ = ["ApiMiddleware", "PagesMiddleware", "Sessions"]
