"""Reading an uploaded distribution: its filename, and the metadata inside the archive.

::

    dist = read_distribution("demo-1.0-py3-none-any.whl", stream)
    dist.name, dist.version, dist.requires_python   # from the file's own METADATA
    dist.metadata                                   # the METADATA bytes, verbatim

The upload handler trusts nothing the form says about a file: it reads the name,
version and Requires-Python from the METADATA (wheels) or PKG-INFO (sdists) inside it.
Archives come from anyone holding a write token, so they are read with bounds: a
limited number of members, a limited declared (and, for tarballs, actually unpacked)
size, a metadata file of bounded size, and no member whose path or link escapes the
archive (pip would refuse to unpack it, or worse, unpack it).

Every problem is an :class:`InvalidDistributionError` whose message is one sentence
the uploader can act on.
"""

from __future__ import annotations

import functools
import gzip
import lzma
import posixpath
import re
import tarfile
import zipfile
import zlib
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

# What a damaged compressed stream raises besides OSError (bz2 raises OSError): these
# are not OSError subclasses, and would otherwise escape as a 500 that twine retries.
_DECOMPRESSION_ERRORS = (zlib.error, lzma.LZMAError)

__all__ = [
    "Distribution",
    "DistributionFilename",
    "InvalidDistributionError",
    "Limits",
    "is_known_metadata_version",
    "parse_filename",
    "read_distribution",
]

Kind = Literal["wheel", "sdist"]

# Letters, digits and the punctuation distribution filenames use (local versions have
# "+"); nothing that could be a path, and nothing the storage cannot name.
_FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*\Z")
MAX_FILENAME = 255


class InvalidDistributionError(ValueError):
    """The upload is not a distribution this server accepts; the message says why."""


@dataclass(frozen=True)
class Limits:
    """How much of an archive the server is willing to look at."""

    max_members: int = 200_000
    max_metadata_size: int = 16 * 1024 * 1024
    # Declared sizes for zips, sizes actually inflated for tarballs (which must be read
    # to the end to be checked), so a compression bomb costs at most this much work.
    max_unpacked_size: int = 8 * 1024 * 1024 * 1024


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


def parse_filename(filename: str) -> DistributionFilename:
    """Parse a wheel or sdist (``.tar.gz``, ``.zip``) filename.

    >>> parse_filename("Demo_Pkg-1.0.tar.gz").name
    'demo-pkg'
    """
    if len(filename) > MAX_FILENAME or not _FILENAME.match(filename):
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
    limits = limits or Limits()
    parsed = parse_filename(filename)
    stream.seek(0)
    if parsed.kind == "wheel":
        raw = _zip_metadata(stream, limits, wheel=True)
    elif filename.endswith(".zip"):
        raw = _zip_metadata(stream, limits, wheel=False)
    else:
        raw = _tar_metadata(stream, limits)
    stream.seek(0)
    return _check_metadata(parsed, raw)


# -- archives ----------------------------------------------------------------------


def _escapes(path: str) -> bool:
    if path.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", path) or "\\" in path:
        return True
    normal = posixpath.normpath(path)
    return normal == ".." or normal.startswith("../")


def _metadata_member(names: list[str], wheel: bool) -> str:
    """The one METADATA (``*.dist-info/METADATA``) or PKG-INFO (``*/PKG-INFO``) member."""
    # Some archivers write "./" in front of every name.
    if wheel:
        pattern = r"[^/]+\.dist-info/METADATA"
        what, where = "METADATA", "<name>-<version>.dist-info/METADATA"
    else:
        pattern = r"[^/]+/PKG-INFO"
        what, where = "PKG-INFO", "<name>-<version>/PKG-INFO"
    found = [n for n in names if re.fullmatch(pattern, posixpath.normpath(n))]
    kind = "wheel" if wheel else "sdist"
    if not found:
        raise InvalidDistributionError(f"The {kind} has no {what} file at {where}.")
    if len(found) > 1:
        raise InvalidDistributionError(f"The {kind} has more than one {what} file at {where}.")
    return found[0]


def _zip_metadata(stream: IO[bytes], limits: Limits, *, wheel: bool) -> bytes:
    kind = "wheel" if wheel else "sdist"
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise InvalidDistributionError(f"The {kind} is not a valid zip archive.") from None
    with archive:
        members = archive.infolist()
        if len(members) > limits.max_members:
            raise InvalidDistributionError(
                f"The {kind} has more than {limits.max_members} members."
            )
        total = 0
        seen: set[str] = set()
        for member in members:
            if _escapes(member.filename):
                raise InvalidDistributionError(
                    f"The {kind} member {member.filename!r} escapes the archive."
                )
            # Two entries of one name unpack differently depending on the tool that
            # reads them (which one wins), so, like PyPI, refuse them.
            if member.filename in seen:
                raise InvalidDistributionError(
                    f"The {kind} has the member {member.filename!r} more than once."
                )
            seen.add(member.filename)
            total += member.file_size
        if total > limits.max_unpacked_size:
            raise InvalidDistributionError(
                f"The {kind} unpacks to more than {limits.max_unpacked_size} bytes."
            )
        name = _metadata_member([m.filename for m in members], wheel)
        info = archive.getinfo(name)
        if info.file_size > limits.max_metadata_size:
            raise _metadata_too_large(kind, limits)
        try:
            with archive.open(info) as member_stream:
                data = member_stream.read(limits.max_metadata_size + 1)
        except (
            zipfile.BadZipFile,
            OSError,
            RuntimeError,
            NotImplementedError,
            EOFError,
            *_DECOMPRESSION_ERRORS,
        ):
            raise InvalidDistributionError(
                f"The {kind}'s {posixpath.basename(name)} cannot be read from the archive."
            ) from None
        if len(data) > limits.max_metadata_size:
            raise _metadata_too_large(kind, limits)
        return data


def _metadata_too_large(kind: str, limits: Limits) -> InvalidDistributionError:
    return InvalidDistributionError(
        f"The {kind}'s metadata file is larger than {limits.max_metadata_size} bytes."
    )


def _tar_member_problem(member: tarfile.TarInfo) -> str | None:
    if _escapes(member.name):
        return "escapes the archive"
    if member.issym():
        target = posixpath.join(posixpath.dirname(member.name), member.linkname)
        if member.linkname.startswith("/") or _escapes(target):
            return "links outside the archive"
    elif member.islnk():
        if _escapes(member.linkname):
            return "links outside the archive"
    elif not (member.isfile() or member.isdir()):
        return "is a device or FIFO, which an sdist may not hold"
    return None


class _BoundedReader:
    """Inflated bytes, counted: past the limit, reading is refused (gzip bombs)."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self.stream = stream
        self.limit = limit
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            size = self.limit + 1 - self.count
        data = self.stream.read(min(size, self.limit + 1 - self.count))
        self.count += len(data)
        if self.count > self.limit:
            raise InvalidDistributionError(f"The sdist unpacks to more than {self.limit} bytes.")
        return data


def _tar_metadata(stream: IO[bytes], limits: Limits) -> bytes:
    found: list[tuple[str, bytes]] = []
    count = total = 0
    try:
        # Stream mode reads members in order and never seeks or builds a member index
        # beyond the current one; every member must be checked, so it reads to the end.
        inflated = _BoundedReader(
            gzip.GzipFile(fileobj=stream, mode="rb"),  # type: ignore[arg-type]
            limits.max_unpacked_size,
        )
        with tarfile.open(fileobj=inflated, mode="r|") as archive:  # type: ignore[call-overload]
            for member in archive:
                count += 1
                total += max(member.size, 0)
                if count > limits.max_members:
                    raise InvalidDistributionError(
                        f"The sdist has more than {limits.max_members} members."
                    )
                if total > limits.max_unpacked_size:
                    raise InvalidDistributionError(
                        f"The sdist unpacks to more than {limits.max_unpacked_size} bytes."
                    )
                problem = _tar_member_problem(member)
                if problem:
                    raise InvalidDistributionError(f"The sdist member {member.name!r} {problem}.")
                if member.isfile() and re.fullmatch(
                    r"[^/]+/PKG-INFO", posixpath.normpath(member.name)
                ):
                    if member.size > limits.max_metadata_size:
                        raise _metadata_too_large("sdist", limits)
                    extracted = archive.extractfile(member)
                    assert extracted is not None  # a regular file always has content
                    found.append((member.name, extracted.read(limits.max_metadata_size + 1)))
    except (tarfile.TarError, OSError, EOFError, ValueError, *_DECOMPRESSION_ERRORS) as error:
        if isinstance(error, InvalidDistributionError):
            raise
        raise InvalidDistributionError(
            "The sdist is not a valid gzip-compressed tar archive."
        ) from None
    name = _metadata_member([n for n, _ in found], wheel=False)
    return dict(found)[name]


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
