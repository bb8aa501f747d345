"""What every ecosystem's package page shares: the version it describes."""

from __future__ import annotations

import pytest

from private_channels.core.ecosystem import ListedFile, package_detail, shown_version

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


def test_a_package_detail_describes_the_version_shown() -> None:
    files = [
        ListedFile(f"p-{v}", v, 1, "0" * 64, 0.0, None, yanked)
        for v, yanked in (("10.0", "broken"), ("9.0", None), ("9.0", None), ("1.0", None))
    ]
    described: list[str] = []

    def describe(version: str) -> tuple[str, str, list[tuple[str, str]]]:
        described.append(version)
        return f"summary of {version}", "" if version == "1.0" else "text", [("License", "MIT")]

    detail = package_detail("conda", "p", iter(files), key=lambda v: tuple(map(int, v.split("."))),
                            requested=None, describe=describe)  # fmt: skip
    assert detail.package.versions == ("1.0", "9.0", "10.0")  # in the key's order
    assert (detail.version, described) == ("9.0", ["9.0"])  # the newest not yanked
    assert detail.files == tuple(files) and detail.summary == "summary of 9.0"
    assert detail.description is not None and detail.description.text == "text"
    assert detail.about == (("License", "MIT"),)
    older = package_detail("conda", "p", files, key=str, requested="1.0", describe=describe)
    assert older.version == "1.0" and older.description is None
