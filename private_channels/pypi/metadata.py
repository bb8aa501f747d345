"""Reading an uploaded distribution: its filename, and the metadata inside the archive.

::

    dist = read_distribution("demo-1.0-py3-none-any.whl", stream)
    dist.name, dist.version, dist.requires_python   # from the file's own METADATA
    dist.metadata                                   # the METADATA bytes, verbatim

The upload handler trusts nothing the form says about a file: it reads the name,
version and Requires-Python from the METADATA (wheels) or PKG-INFO (sdists) inside it.
The archive itself is read by :func:`~private_channels.core.archive.read_archive`, the
reader every ecosystem shares, which checks every member (paths, links, devices,
sizes, compression bombs); this module says only which member holds the metadata, that
links are allowed when they stay inside the archive (sdists have them), and what the
metadata must say.

Every problem is an :class:`InvalidDistributionError` whose message is one sentence
the uploader can act on.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import IO, Literal

from packaging.metadata import InvalidMetadata, Metadata, parse_email
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import (
    InvalidName,
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from ..core.archive import ArchiveError, Member, Policy, read_archive
from ..core.limits import Limits

__all__ = [
    "Distribution",
    "DistributionFilename",
    "InvalidDistributionError",
    "is_known_metadata_version",
    "parse_filename",
    "read_distribution",
]

Kind = Literal["wheel", "sdist"]

# Letters, digits and the punctuation distribution filenames use (local versions have
# "+"); nothing that could be a path, and nothing the storage cannot name.
_FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*\Z")
# pip unpacks sdists with their links (symlinks in a source tree are common); wheels
# are read the same way, so that no tool's reading of either can leave the archive.
_POLICY = Policy(links="inside")
# Where the metadata is: (pattern of the member's path, its name, where it belongs).
_METADATA = {
    "wheel": (
        re.compile(r"[^/]+\.dist-info/METADATA"),
        "METADATA",
        "<name>-<version>.dist-info/METADATA",
    ),
    "sdist": (re.compile(r"[^/]+/PKG-INFO"), "PKG-INFO", "<name>-<version>/PKG-INFO"),
}


class InvalidDistributionError(ValueError):
    """The upload is not a distribution this server accepts; the message says why."""


@dataclass(frozen=True)
class DistributionFilename:
    filename: str
    kind: Kind
    name: NormalizedName
    version: Version


@dataclass(frozen=True)
class Distribution:
    """What the archive's own metadata says, checked against its filename."""

    filename: str
    kind: Kind
    name: NormalizedName
    display_name: str  # the Name field as written
    version: str  # the Version field as written
    metadata_version: str
    requires_python: str | None
    metadata: bytes  # METADATA or PKG-INFO, verbatim


def parse_filename(filename: str, *, limits: Limits | None = None) -> DistributionFilename:
    """Parse a wheel or sdist (``.tar.gz``, ``.zip``) filename.

    >>> parse_filename("Demo_Pkg-1.0.tar.gz").name
    'demo-pkg'
    """
    max_length = (limits or Limits()).max_filename
    if len(filename) > max_length or not _FILENAME.match(filename):
        raise InvalidDistributionError(
            f"The filename {filename!r} is not a valid distribution filename: use only "
            "letters, digits, '.', '_', '+' and '-'."
        )
    try:
        if filename.endswith(".whl"):
            name, version, _, _ = parse_wheel_filename(filename)
            return DistributionFilename(filename, "wheel", name, version)
        if filename.endswith((".tar.gz", ".zip")):
            name, version = parse_sdist_filename(filename)
            # packaging splits at the last '-' without checking what precedes it.
            stem = filename.removesuffix(".tar.gz").removesuffix(".zip")
            canonicalize_name(stem.rpartition("-")[0], validate=True)
            return DistributionFilename(filename, "sdist", name, version)
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidName, InvalidVersion):
        kind = "wheel" if filename.endswith(".whl") else "sdist"
        raise InvalidDistributionError(
            f"The filename {filename!r} is not a valid {kind} filename (see the "
            "packaging specifications for distribution file names)."
        ) from None
    raise InvalidDistributionError(
        f"The file {filename!r} is neither a wheel (.whl) nor an sdist (.tar.gz or .zip)."
    )


@functools.lru_cache(maxsize=64)
def is_known_metadata_version(value: str) -> bool:
    """Whether the installed packaging knows this Metadata-Version (1.0 to 2.4, 2.5...)."""
    try:
        Metadata.from_raw({"metadata_version": value, "name": "x", "version": "0"})
    except (InvalidMetadata, ExceptionGroup):
        return False
    return True


def read_distribution(
    filename: str, stream: IO[bytes], *, limits: Limits | None = None
) -> Distribution:
    """Check the archive in ``stream`` (seekable) and return its metadata.

    Raises :class:`InvalidDistributionError` when the filename does not parse, the
    archive is damaged, too large unpacked, has a member escaping it or lacks its
    metadata file, or when that metadata disagrees with the filename.
    """
    parsed = parse_filename(filename, limits=limits)
    pattern, what, where = _METADATA[parsed.kind]

    def is_metadata(member: Member) -> bool:
        return member.kind == "file" and pattern.fullmatch(member.path) is not None

    try:
        contents = read_archive(
            stream,
            "tar.gz" if filename.endswith(".tar.gz") else "zip",
            want=is_metadata,
            policy=_POLICY,
            limits=limits,
            what=parsed.kind,
        )
    except ArchiveError as error:
        raise InvalidDistributionError(str(error)) from None
    if not contents.found:
        raise InvalidDistributionError(f"The {parsed.kind} has no {what} file at {where}.")
    if len(contents.found) > 1:
        raise InvalidDistributionError(
            f"The {parsed.kind} has more than one {what} file at {where}."
        )
    return _check_metadata(parsed, contents.found[0][1])


# -- metadata ----------------------------------------------------------------------


def _check_metadata(parsed: DistributionFilename, data: bytes) -> Distribution:
    what = "METADATA" if parsed.kind == "wheel" else "PKG-INFO"
    try:
        raw, unparsed = parse_email(data)
    except (ValueError, UnicodeError, LookupError):
        raise InvalidDistributionError(f"The file's {what} cannot be parsed.") from None
    for field in ("metadata_version", "name", "version"):
        if field in unparsed:
            label = field.replace("_", "-").title()
            raise InvalidDistributionError(
                f"The file's {what} has more than one (or an unreadable) {label} field."
            )
    metadata_version = raw.get("metadata_version")
    if not metadata_version:
        raise InvalidDistributionError(f"The file's {what} has no Metadata-Version field.")
    if not is_known_metadata_version(metadata_version):
        raise InvalidDistributionError(
            f"The file's {what} has Metadata-Version {metadata_version!r}, which does not "
            "exist (or is newer than this server knows); rebuild with a current build tool."
        )
    display_name = raw.get("name")
    version = raw.get("version")
    if not display_name or not version:
        missing = "Name" if not display_name else "Version"
        raise InvalidDistributionError(f"The file's {what} has no {missing} field.")
    try:
        name = canonicalize_name(display_name, validate=True)
    except InvalidName:
        raise InvalidDistributionError(
            f"The file's {what} has the invalid project name {display_name!r}."
        ) from None
    try:
        parsed_version = Version(version)
    except InvalidVersion:
        raise InvalidDistributionError(
            f"The file's {what} has the invalid version {version!r} (see PEP 440)."
        ) from None
    if name != parsed.name:
        raise InvalidDistributionError(
            f"The filename {parsed.filename!r} names project {parsed.name!r} but its {what} "
            f"says {display_name!r}."
        )
    if parsed_version != parsed.version:
        raise InvalidDistributionError(
            f"The filename {parsed.filename!r} has version {str(parsed.version)!r} but its "
            f"{what} says {version!r}."
        )
    requires_python = raw.get("requires_python")
    if requires_python is not None:
        try:
            SpecifierSet(requires_python)
        except InvalidSpecifier:
            raise InvalidDistributionError(
                f"The file's {what} has the invalid Requires-Python {requires_python!r}."
            ) from None
    return Distribution(
        filename=parsed.filename,
        kind=parsed.kind,
        name=name,
        display_name=display_name,
        version=version,
        metadata_version=metadata_version,
        requires_python=requires_python,
        metadata=data,
    )
