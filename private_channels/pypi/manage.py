"""Yank, unyank and delete targets of Python files: a filename, or ``PROJECT==VERSION``.

::

    target = parse_target("demo==1.0")                       # or a filename
    yank(store, channel, target, reason="Broken on Windows")  # -> ["demo-1.0.tar.gz", ...]

A target is one file (by its filename) or every file of one release (``PROJECT==VERSION``,
compared as PEP 440 versions).  The HTTP API and the command line reach these through
the core (:mod:`~..core.manage`); each operation is one compare-and-swap of the project
document, so the index shows it on the next request of every server process.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import replace

from packaging.utils import InvalidName, NormalizedName, canonicalize_name

from ..channels import Channel
from ..core.ecosystem import Target
from ..core.manage import MAX_REASON_LENGTH, clean_reason
from .metadata import InvalidDistributionError, parse_filename
from .store import MAX_PROJECT_NAME, FileRecord, PythonStore, same_version

__all__ = [
    "ECOSYSTEM",
    "MAX_REASON_LENGTH",
    "InvalidTargetError",
    "NoSuchFileError",
    "delete",
    "matches",
    "parse_target",
    "project_of",
    "unyank",
    "yank",
]

ECOSYSTEM = "python"


class InvalidTargetError(ValueError):
    """Neither a distribution filename nor ``PROJECT==VERSION``."""


class NoSuchFileError(LookupError):
    """The target names no file of the channel."""


def matches(target: Target, record: FileRecord) -> bool:
    if target.filename is not None:
        return record.filename == target.filename
    assert target.version is not None
    return same_version(record.version, target.version)


# Pure, and every download asks it for a filename it has likely seen before.
@functools.lru_cache(maxsize=4096)
def project_of(filename: str) -> NormalizedName:
    """The normalized project name a wheel or sdist filename carries.

    Checked as uploads check filenames, so that only names an upload could have
    stored reach the storage (``_x-1.0.tar.gz`` parses, but as no valid project).
    """
    try:
        return parse_filename(filename).name
    except InvalidDistributionError:
        raise InvalidTargetError(
            f"{filename!r} is neither a wheel or sdist filename nor PROJECT==VERSION."
        ) from None


def parse_target(text: str) -> Target:
    """``FILENAME`` or ``PROJECT==VERSION``, as the command line and the API take them."""
    project, sep, version = text.partition("==")
    if not sep:
        filename = text.strip()
        if "/" in filename or "\\" in filename:
            raise InvalidTargetError(f"{filename!r} is a path; give the file's name alone.")
        return Target(ECOSYSTEM, project_of(filename), filename=filename)
    if not project.strip() or not version.strip():
        raise InvalidTargetError(f"{text!r} needs both a project and a version: PROJECT==VERSION.")
    if len(project.strip()) > MAX_PROJECT_NAME:
        raise InvalidTargetError(
            f"The project name is longer than {MAX_PROJECT_NAME} characters, so no file has it."
        )
    try:
        name = canonicalize_name(project.strip(), validate=True)
    except InvalidName:
        raise InvalidTargetError(f"{project!r} is not a valid project name.") from None
    return Target(ECOSYSTEM, name, version=version.strip())


def _change(
    store: PythonStore,
    channel: Channel,
    target: Target,
    update: Callable[[FileRecord], FileRecord | None],
) -> list[str]:
    current = store.project(channel, target.key)
    if current is None or not any(matches(target, f) for f in current.files):
        raise NoSuchFileError(f"Channel {channel.name!r} has no file {str(target)!r}.")
    touched: set[str] = set()

    def change(record: FileRecord) -> FileRecord | None:
        if not matches(target, record):
            return record
        touched.add(record.filename)
        return update(record)

    store.update_files(channel, target.key, change)
    return sorted(touched)


def yank(store: PythonStore, channel: Channel, target: Target, reason: str = "") -> list[str]:
    """Mark the target's files yanked (PEP 592) with ``reason``; returns their names."""
    try:
        reason = clean_reason(reason)
    except ValueError as exc:
        raise InvalidTargetError(str(exc)) from None
    return _change(store, channel, target, lambda r: replace(r, yanked=reason))


def unyank(store: PythonStore, channel: Channel, target: Target) -> list[str]:
    """Make the target's files installable again; returns their names."""
    return _change(store, channel, target, lambda r: replace(r, yanked=None))


def delete(store: PythonStore, channel: Channel, target: Target) -> list[str]:
    """Remove the target's files and their bytes; their names stay unusable for uploads."""
    return _change(store, channel, target, lambda r: None)
