"""What every ecosystem's package page shares: the version it describes."""

from __future__ import annotations

import pytest

from private_channels.core.ecosystem import shown_version

NEWEST_FIRST = [("3.0", "broken"), ("2.0", None), ("2.0", None), ("1.0", None)]


@pytest.mark.parametrize(
    ("requested", "files", "shown"),
    [
        (None, NEWEST_FIRST, "2.0"),  # the newest not yanked
        ("1.0", NEWEST_FIRST, "1.0"),  # asked for, and there
        ("3.0", NEWEST_FIRST, "3.0"),  # a yanked version is shown when asked for
        ("9.9", NEWEST_FIRST, "2.0"),  # asked for, not there: as if not asked
        (None, [("2.0", ""), ("1.0", "gone")], "2.0"),  # all yanked: the newest
        (None, [("1.0", None)], "1.0"),
    ],
)
def test_the_version_a_package_page_describes(
    requested: str | None, files: list[tuple[str, str | None]], shown: str
) -> None:
    assert shown_version(requested, iter(files)) == shown
