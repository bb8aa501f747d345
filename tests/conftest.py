from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

from private_channels.storage import FileSystemStorage, MemoryStorage, Storage

from .s3server import SeaweedFS, seaweedfs  # noqa: F401  (the session fixture)
from .support import IN_CI, LiveServer, live_server

BACKENDS = ["memory", "filesystem", "s3"]

# Hypothesis profiles (docs/testing.md): "ci", the default, keeps every property test to
# a bounded number of examples (tests/fuzz.py scales them); "long" is run by hand, with
# FUZZ_SCALE times as many examples and the failures kept in .hypothesis/ to replay.
# No deadline in either: the timing properties measure cost themselves, in CPU time.
_SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile(
    "ci", deadline=None, database=None, print_blob=True, suppress_health_check=_SLOW
)
settings.register_profile(
    "long",
    deadline=None,
    database=DirectoryBasedExampleDatabase(Path(__file__).parent.parent / ".hypothesis"),
    print_blob=True,
    suppress_health_check=_SLOW,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        action="append",
        default=None,
        help=f"storage backends to run backend-parametrized tests on (default: {BACKENDS})",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        backends = metafunc.config.getoption("--backend") or BACKENDS
        metafunc.parametrize("backend", backends)


def _fail_skip_in_ci(report: pytest.TestReport | pytest.CollectReport) -> None:
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every test must run: {reason}"


# In CI a skip is a failure, whatever skipped (a missing client, boto3, SeaweedFS, a
# platform): CI exists to run every test, so there a skip means a broken CI machine.


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport() -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    _fail_skip_in_ci(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report() -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    _fail_skip_in_ci(report)
    return report


@pytest.fixture
def storage(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Storage:
    """A fresh, empty storage of each backend under test."""
    if backend == "memory":
        return MemoryStorage()
    if backend == "filesystem":
        return FileSystemStorage(tmp_path / "storage")
    if backend == "s3":
        # SeaweedFS starts once per session, and only if some test asks for it.
        s3: SeaweedFS = request.getfixturevalue("seaweedfs")
        s3_storage = s3.storage()
        request.addfinalizer(s3_storage.close)
        return s3_storage  # type: ignore[no-any-return]
    raise pytest.UsageError(f"unknown backend {backend!r}")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    """A running ``private-channels serve`` on a fresh filesystem storage at /api/repo."""
    with live_server(str(tmp_path / "data"), tmp_path) as running:
        yield running
