"""What the property tests (``tests/test_fuzz_*.py``) share: profiles, bounds, a whole app.

::

    @fuzz(200)                       # 200 examples in CI, SCALE times as many by hand
    @given(st.text())
    def test_only_value_error_escapes(text): ...

    assert_linear(lambda n: parse("x" * n))   # 64 KiB may cost 64 times 1 KiB, plus 20 ms

The Hypothesis profile is chosen by ``HYPOTHESIS_PROFILE`` (``tests/conftest.py``
registers them): ``ci``, the default, runs each property a bounded number of times so
that the whole suite stays within minutes; ``long`` multiplies every count by
``FUZZ_SCALE`` (default 20) and keeps failing examples in ``.hypothesis/``.  See
``docs/testing.md``.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import webtest
from hypothesis import settings

from private_channels import ChannelRegistry, MemoryStorage, Scope, TokenStore, mint_signed_token
from private_channels.channels import Channel
from private_channels.config import Config
from private_channels.storage import Storage

from .archives import least_cpu

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
SCALE = int(os.environ.get("FUZZ_SCALE", "20")) if PROFILE == "long" else 1

#: The sizes of the timing property: the larger may cost 64 times the smaller, plus this.
SMALL, LARGE = 1024, 64 * 1024
CONSTANT = 0.02


def fuzz(examples: int) -> settings:
    """``examples`` examples under the ``ci`` profile, :data:`SCALE` times as many under
    ``long``; everything else from the profile."""
    return settings(max_examples=examples * SCALE)


def cost(call: Callable[[], object], runs: int = 3) -> float:
    """The least CPU time of ``runs`` runs of ``call``, whatever it raises."""

    def quiet() -> None:
        # The cost of a refusal is what is measured, whatever the refusal is.
        with contextlib.suppress(Exception):
            call()

    return least_cpu(quiet, runs)


def assert_linear(make: Callable[[int], Callable[[], object]], what: str = "") -> None:
    """``make(n)`` returns the call to time on an input of about ``n`` characters.

    The small input is timed three times (its least time is the bound's base); each
    larger one once, and three times only when that once is over the bound, so that
    most checks cost one run.  8 KiB comes before 64 KiB, so that a quadratic cost
    fails in a second instead of running for minutes.
    """
    make_small = make(SMALL)
    small = cost(make_small)
    for size in (8 * SMALL, LARGE):
        bound = size // SMALL * small + CONSTANT
        call = make(size)
        spent = cost(call, runs=1)
        if spent > bound:
            # A disturbed run, or the real cost: the least of three more says which.
            small = min(small, cost(make_small))
            bound = size // SMALL * small + CONSTANT
            spent = min(spent, cost(call))
        assert spent <= bound, (
            f"{what}: {size} characters cost {spent:.4f} s, {SMALL} cost {small:.4f} s"
        )


# -- the whole app -----------------------------------------------------------------------

PREFIX = "/api/repo"
SECRET_KEY = "fuzzing-secret-key-" + "k" * 32


class Lines(logging.Handler):
    """Every log record of the process, formatted as a line (exceptions included)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextmanager
def captured_logs() -> Iterator[Lines]:
    """All log lines of the block, from every logger (the access log does not propagate
    once :func:`~private_channels.accesslog.configure_logging` ran, so it is watched too)."""
    handler = Lines()
    loggers = [logging.getLogger()]
    access = logging.getLogger("private_channels.access")
    if not access.propagate:
        loggers.append(access)
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


@dataclass
class Server:
    """The whole app over one storage, mounted at :data:`PREFIX`, with a private channel
    ``team``, a public channel ``open``, tokens of every scope and a signed token."""

    storage: Storage = field(default_factory=MemoryStorage)
    tokens: dict[str, str] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)
    app: webtest.TestApp = field(init=False)
    wsgi: Any = field(init=False)
    channel: Channel = field(init=False)

    def __post_init__(self) -> None:
        registry = ChannelRegistry(self.storage)
        self.channel = registry.create("team")
        registry.create("open", public=True)
        store = TokenStore(self.storage)
        for scope in Scope:
            self.tokens[str(scope)], token = store.create(channels=["team", "open"], scope=scope)
            self.ids[str(scope)] = token.id
        self.tokens["elsewhere"], token = store.create(channels=["other"], scope=Scope.ADMIN)
        self.ids["elsewhere"] = token.id
        # An operator: admin for every channel, so that the HTTP API's instance-wide
        # routes (create and delete channels, any token) are reached too.
        self.tokens["root"], token = store.create(channels=["*"], scope=Scope.ADMIN)
        self.ids["root"] = token.id
        self.tokens["signed"] = mint_signed_token(SECRET_KEY, channels=["team"], scope=Scope.WRITE)
        # Many channels: itsdangerous compresses the payload, and the token starts ".eJ".
        self.tokens["signed-compressed"] = mint_signed_token(
            SECRET_KEY, channels=[f"channel-{i}" for i in range(40)], scope=Scope.READ
        )
        assert self.tokens["signed-compressed"].startswith(".eJ")
        self.wsgi = standalone(self.storage)
        self.app = webtest.TestApp(self.wsgi)
        # The token hashing key is made by the first request that carries a token: make
        # it now, so that storage changes only by what the requests under test do.
        store.verify(self.tokens["read"])

    @property
    def secrets(self) -> list[str]:
        """What must never appear in a response or a log line."""
        key = self.storage.open("registry/token-key")[0].read()
        return [*self.tokens.values(), SECRET_KEY, key.hex()]

    def snapshot(self) -> dict[str, bytes]:
        return snapshot(self.storage)


def snapshot(storage: Storage) -> dict[str, bytes]:
    """Every key of the storage and its bytes, but when a token was last used: using a
    token notes that (tokens.py), and a refused request may have used one."""
    found = {}
    for key in storage.list(""):
        data = storage.open(key)[0].read()
        if key.startswith("registry/tokens/"):
            doc = json.loads(data)
            doc.pop("last_used", None)
            data = json.dumps(doc, sort_keys=True).encode()
        found[key] = data
    return found


def standalone(storage: Storage) -> Any:
    """The app as the standalone server (and ``private_channels.wsgi``) composes it:
    :meth:`~private_channels.config.Config.build_app` at :data:`PREFIX`, the access log
    on, signed tokens on, no token cache (every request checks its token)."""
    config = Config(prefix=PREFIX, secret_key=SECRET_KEY, log_format="json", token_cache_ttl=0)
    return config.build_app(storage)


def multipart(
    fields: list[tuple[str, str]], files: list[tuple[str, str, bytes]], boundary: str = "fUzZ"
) -> tuple[bytes, str]:
    """A multipart/form-data body as curl and twine write it, and its content type."""
    out = io.BytesIO()
    for name, value in fields:
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode())
        out.write(value.encode() + b"\r\n")
    for name, filename, data in files:
        out.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
        )
        out.write(data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def wheel_bytes(metadata: str | bytes, name: str = "demo", version: str = "1.0") -> bytes:
    """A wheel holding only ``<name>-<version>.dist-info/METADATA``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{name}-{version}.dist-info/METADATA", metadata)
    return buffer.getvalue()


def metadata(name: str = "demo", version: str = "1.0", **fields: str) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"{key.replace('_', '-')}: {value}" for key, value in fields.items()]
    return "\n".join(lines) + "\n\n"
