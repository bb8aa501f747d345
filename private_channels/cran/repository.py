"""Serves src/contrib and bin/ as a CRAN-like repository.

Not built yet: every request passes on to the wrapped app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from ..storage import Storage

__all__ = ["CranRepositoryMiddleware"]


class CranRepositoryMiddleware:
    def __init__(self, app: WSGIApplication, storage: Storage, **options: Any) -> None:
        self.app = app
        self.storage = storage

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        return self.app(environ, start_response)
