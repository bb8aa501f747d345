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
from typing import IO, Any, Literal

from packaging.metadata import InvalidMetadata, Metadata, parse_email
from packaging.specifiers import SpecifierSet
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
from ..errors import quoted

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
            f"The filename {quoted(filename)} is not a valid distribution filename: use only "
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
            f"The filename {quoted(filename)} is not a valid {kind} filename (see the "
            "packaging specifications for distribution file names)."
        ) from None
    raise InvalidDistributionError(
        f"The file {quoted(filename)} is neither a wheel (.whl) nor an sdist (.tar.gz or .zip)."
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


# The fields an upload checks, by their header names in lower case.
_CHECKED = {
    b"metadata-version": "metadata_version",
    b"name": "name",
    b"version": "version",
    b"requires-python": "requires_python",
}
# The header block as the standard library's email parser reads it (its ``headerRE``):
# lines that start with a name (printable ASCII but the colon) and a colon, or with a
# blank (a field folded onto more lines).  Each alternative is told by its first
# character and takes its line whole: no backtracking.
_BLOCK = re.compile(rb"(?:[\x21-\x39\x3b-\x7e]+:[^\n]*\n|[ \t][^\n]*\n)*")
# A checked field in the block (in lower case, after a line end), and the lines folded
# onto it.  Starting with a literal line end, the search jumps from line to line.
_FIELD = re.compile(
    rb"\n(metadata-version|name|version|requires-python):([^\n]*(?:\n[ \t][^\n]*)*)"
)


def _header_fields(data: bytes) -> dict[str, list[str]] | None:
    """The checked fields' values, each field's list, read from the header block as
    :func:`~packaging.metadata.parse_email` reads them (the email parser's ``compat32``
    policy); ``None`` for a block outside the plain case read here (then
    ``parse_email`` reads it).

    ``parse_email`` parses the whole file, the description too, line by line in
    Python: most of what reading a typical wheel's metadata cost (130 to 280 µs for
    3.5 to 7.5 kB, docs/performance.md) for four fields of its first lines.  The
    plain case: a block of ASCII whose lines end in ``\n`` or ``\r\n``, that neither
    starts with a folded line nor holds an envelope ("From ") line, a line with no
    name before its colon, or a MIME header.  The property tests check that both
    readings agree wherever this one answers.
    """
    if not data.endswith(b"\n"):
        data += b"\n"  # the email parser takes a last line without its line end
    end = _BLOCK.match(data).end()  # type: ignore[union-attr]  # it matches "" at least
    block, after = data[:end], data[end : end + 5]
    if (
        not block.isascii()
        or block.count(b"\r") != block.count(b"\r\n")  # a lone CR ends a line there
        or block[:1] in (b" ", b"\t")
        or after.startswith((b"From ", b":"))
    ):
        return None
    lowered = b"\n" + block.lower()
    if b"\ncontent-type:" in lowered or b"\ncontent-transfer-encoding:" in lowered:
        return None  # MIME headers change how the email parser reads the body
    fields: dict[str, list[str]] = {}
    for found in _FIELD.finditer(lowered):
        start, stop = found.span(2)  # in block, one less: lowered starts with "\n"
        value = block[start - 1 : stop - 1].lstrip(b" \t").rstrip(b"\r\n").decode("ascii")
        fields.setdefault(_CHECKED[found[1]], []).append(value)
    return fields


def _checked_fields(data: bytes, what: str) -> tuple[dict[str, str], set[str]]:
    """The checked fields that have one value, and those that have several (or one
    that cannot be read)."""
    fields = _header_fields(data)
    if fields is not None:
        single = {field: values[0] for field, values in fields.items() if len(values) == 1}
        return single, {field for field, values in fields.items() if len(values) > 1}
    try:
        raw, unparsed = parse_email(data)
    except (ValueError, UnicodeError, LookupError):
        raise InvalidDistributionError(f"The file's {what} cannot be parsed.") from None
    found: dict[str, Any] = dict(raw)
    single = {field: found[field] for field in _CHECKED.values() if field in found}
    # unparsed is keyed by the header's name ("metadata-version"), raw by the field's.
    return single, {field for name, field in _CHECKED.items() if name.decode() in unparsed}


def _check_metadata(parsed: DistributionFilename, data: bytes) -> Distribution:
    what = "METADATA" if parsed.kind == "wheel" else "PKG-INFO"
    raw, unparsed = _checked_fields(data, what)
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
            f"The file's {what} has Metadata-Version {quoted(metadata_version)}, which does not "
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
            f"The file's {what} has the invalid project name {quoted(display_name)}."
        ) from None
    try:
        parsed_version = Version(version)
    except ValueError:  # InvalidVersion, or an int past Python's 4,300-digit limit
        raise InvalidDistributionError(
            f"The file's {what} has the invalid version {quoted(version)} (see PEP 440)."
        ) from None
    if name != parsed.name:
        raise InvalidDistributionError(
            f"The filename {parsed.filename!r} names project {parsed.name!r} but its {what} "
            f"says {quoted(display_name)}."
        )
    if parsed_version != parsed.version:
        raise InvalidDistributionError(
            f"The filename {parsed.filename!r} has version {str(parsed.version)!r} but its "
            f"{what} says {quoted(version)}."
        )
    requires_python = raw.get("requires_python")
    if requires_python is not None:
        try:
            SpecifierSet(requires_python)
        except ValueError:  # InvalidSpecifier, or a number past Python's digit limit
            raise InvalidDistributionError(
                f"The file's {what} has the invalid Requires-Python {quoted(requires_python)}."
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
