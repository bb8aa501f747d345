"""The suite's own rules, run on a throwaway test module in a pytest subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .support import REPO

SKIPPING = """
import sys
import pytest

def test_runs():
    pass

@pytest.mark.skipif(sys.platform != "nowhere", reason="only on nowhere")
def test_marked():
    pass

def test_imperative():
    pytest.skip("no client")

@pytest.mark.xfail(reason="known")
def test_expected_failure():
    assert False
"""


def _pytest(folder: Path, ci: str) -> subprocess.CompletedProcess[str]:
    """pytest on the test modules in ``folder`` with this suite's conftest, CI=``ci``."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider",
         "-c", os.devnull, "--rootdir", str(folder), "-rA", str(folder)],
        cwd=REPO, env={**os.environ, "CI": ci}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize(("ci", "passes"), [("true", False), ("", True)])
def test_a_skip_fails_in_ci(tmp_path: Path, ci: str, passes: bool) -> None:
    (tmp_path / "test_skipping.py").write_text(SKIPPING)
    result = _pytest(tmp_path, ci)
    assert (result.returncode == 0) is passes, result.stdout
    if passes:
        assert "1 passed, 2 skipped, 1 xfailed" in result.stdout
    else:
        assert result.stdout.count("skipped in CI, where every test must run") >= 2
        assert "1 xfailed" in result.stdout


@pytest.mark.parametrize(("ci", "passes"), [("true", False), ("", True)])
def test_a_module_skipped_at_collection_fails_in_ci(tmp_path: Path, ci: str, passes: bool) -> None:
    """``pytest.importorskip`` at module level (as tests/test_s3.py has for boto3) skips
    while collecting, not while running: that is a failure in CI too."""
    (tmp_path / "test_without_module.py").write_text(
        'import pytest\npytest.importorskip("no_such_module_here")\n\ndef test_x():\n    pass\n'
    )
    (tmp_path / "test_other.py").write_text("def test_runs():\n    pass\n")
    result = _pytest(tmp_path, ci)
    assert (result.returncode == 0) is passes, result.stdout
    if passes:
        assert "1 passed, 1 skipped" in result.stdout
    else:
        assert "skipped in CI, where every test must run" in result.stdout
