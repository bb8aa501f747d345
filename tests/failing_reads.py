"""A deployment whose storage fails while a package file is being read, for gunicorn.

::

    PRIVATE_CHANNELS_STORAGE=DIR gunicorn [--logger-class ...] tests.failing_reads:app

The failure comes after the response began (the file was opened, its first read
fails, as botocore's ``ResponseStreamingError`` does when S3 drops the connection),
where no middleware of the app can answer it any more: gunicorn logs it as "Error
handling request <METHOD> <URI>", quoting the URI as the client sent it.
With ``REDACT=1`` in the environment the module installs the redacting filter itself,
as ``private_channels.wsgi`` does.
"""

from __future__ import annotations

import os
from typing import IO, Any

from werkzeug.exceptions import NotFound
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from private_channels import make_app
from private_channels.core import download
from private_channels.logs import redact_loggers
from private_channels.storage import FileSystemStorage, Stat


class StreamingError(Exception):
    """What botocore raises when an object's body breaks off: no OSError, which gunicorn
    would log as a socket error without the URI."""


class _FailingStream:
    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream

    def read(self, size: int = -1) -> bytes:
        raise StreamingError("Connection broken: the object store reset the connection")

    def close(self) -> None:
        self.stream.close()


class FailingReads(FileSystemStorage):
    def open(self, key: str) -> tuple[Any, Stat]:
        stream, stat = super().open(key)
        if "/blobs/" in key:
            return _FailingStream(stream), stat
        return stream, stat


# The failure must come once the response began: no file is read ahead into memory
# (small files are, on a file system).
download.SMALL_FILE = 0
if os.environ.get("REDACT") == "1":
    redact_loggers()
app = DispatcherMiddleware(
    NotFound(), {"/api/repo": make_app(FailingReads(os.environ["PRIVATE_CHANNELS_STORAGE"]))}
)
