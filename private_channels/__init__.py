"""private-channels: private Python and R package channels for any WSGI server.

::

    from private_channels import make_app, open_storage

    app = make_app(open_storage("./private-channels-data"))   # a WSGI app; mount it anywhere
"""

from __future__ import annotations

from .app import make_app
from .auth import TokenAuthMiddleware, authorize
from .channels import Channel, ChannelRegistry
from .routing import ChannelMiddleware
from .storage import FileSystemStorage, MemoryStorage, Storage, open_storage
from .tokens import Scope, Token, TokenStore, mint_signed_token

__all__ = [
    "Channel",
    "ChannelMiddleware",
    "ChannelRegistry",
    "FileSystemStorage",
    "MemoryStorage",
    "Scope",
    "Storage",
    "Token",
    "TokenAuthMiddleware",
    "TokenStore",
    "authorize",
    "make_app",
    "mint_signed_token",
    "open_storage",
]
