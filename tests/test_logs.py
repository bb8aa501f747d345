"""The redacting filter for the loggers of the servers that host the channels."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from private_channels.logs import SERVER_LOGGERS, RedactTokens, redact_loggers

TOKEN = "46e98d3dbf2378bb26e2107867652ee734eb098ea5b96f35"


@pytest.fixture
def logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    logger = logging.getLogger(f"test.logs.{id(object())}")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    yield logger, stream
    logger.removeHandler(handler)


def test_records_are_redacted_in_message_arguments_and_traceback(
    logger: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = logger
    log.addFilter(RedactTokens())
    # werkzeug's request line, gunicorn's error line, an exception that quotes a URI
    log.info('%s - - [%s] "%s" %s -', "127.0.0.1", "now", f"GET /t/{TOKEN}/x HTTP/1.1", 200)
    try:
        raise ValueError(f"cannot route /api/repo/x%2F{TOKEN}/simple/")
    except ValueError:
        log.exception("Error handling request %s %s", "GET", f"/api/repo/t/{TOKEN}/team/")
    # gunicorn's access log formats with a mapping
    log.info("%(h)s %(u)s %(r)s", {"h": "127.0.0.1", "u": TOKEN, "r": "GET / HTTP/1.1"})
    text = stream.getvalue()
    assert TOKEN not in text
    assert '"GET /t/<redacted>/x HTTP/1.1" 200 -' in text
    assert "Error handling request GET /api/repo/t/<redacted>/team/" in text
    assert "ValueError: cannot route /api/repo/x%2F<redacted>/simple/" in text
    assert "127.0.0.1 <redacted> GET / HTTP/1.1" in text


def test_a_broken_format_is_still_logged_and_redacted(
    logger: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = logger
    log.addFilter(RedactTokens())
    log.info("%s %s", f"/t/{TOKEN}/")  # one argument short
    assert "/t/<redacted>/" in stream.getvalue() and TOKEN not in stream.getvalue()


def test_redact_loggers_installs_one_filter_per_logger() -> None:
    name = f"test.logs.installed.{id(object())}"
    redact_loggers(name)
    redact_loggers(name)
    assert [type(f) for f in logging.getLogger(name).filters] == [RedactTokens]


def test_importing_the_deployment_module_redacts_the_servers_loggers(tmp_path: Path) -> None:
    """``gunicorn private_channels.wsgi:app`` and ``waitress-serve`` need no flag."""
    script = (
        "import logging, private_channels.wsgi; "
        f"print(sorted(n for n in {SERVER_LOGGERS!r} "
        "if any(type(f).__name__ == 'RedactTokens' for f in logging.getLogger(n).filters)))"
    )
    env = {**os.environ, "PRIVATE_CHANNELS_STORAGE": str(tmp_path / "data")}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    assert result.stdout.strip() == repr(sorted(SERVER_LOGGERS))


def test_gunicorn_logger_class_redacts_its_error_and_access_logs() -> None:
    from gunicorn.config import Config

    from private_channels.logs import GunicornLogger

    config = Config()
    config.set("logger_class", "private_channels.logs.GunicornLogger")
    assert config.logger_class is GunicornLogger
    logger = GunicornLogger(config)
    for log in (logger.error_log, logger.access_log):
        assert any(isinstance(f, RedactTokens) for f in log.filters)
    assert GunicornLogger.__module__ == "private_channels.logs"
