"""The DESCRIPTION of an R package archive, read in memory with bounds, and checked.

::

    with open("abc_1.0.tar.gz", "rb") as f:
        package = read_package(f, binary=False)
    package.name, package.version, package.fields["Imports"]

The archive is read by :func:`~private_channels.core.archive.read_archive`, the reader
every ecosystem shares: nothing is extracted, and every member is checked (so that a
hostile archive is refused as a whole, not only the DESCRIPTION it points at).  R's
policy is the strictest: no link of any kind (R's own ``tools::write_PACKAGES``
follows a symlinked DESCRIPTION and would copy a server file into the public index)
and everything beneath the one top-level directory named after the package.

Package names and versions follow R's own rules (``tools:::.check_package_description``);
a DESCRIPTION may be UTF-8 or declare ``Encoding: latin1``, with CRLF line ends or a BOM.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, Literal

from ..core.archive import ArchiveError, Member, Policy, read_archive, sniff
from ..core.limits import Limits
from .dcf import DCFError, parse_dcf

__all__ = [
    "BASE_PACKAGES",
    "Built",
    "InvalidPackageError",
    "PackageFile",
    "check_dependencies",
    "parse_built",
    "r_version_key",
    "read_package",
    "valid_package_name",
    "valid_version",
]

# R's valid_package_name_regexp and valid_package_version_regexp (tools/R/utils.R),
# with [[:alpha:]] and [[:alnum:]] taken as ASCII, as CRAN requires.
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9.]*[A-Za-z0-9]\Z")
_VERSION = re.compile(r"[0-9]+[-.][0-9]+([-.][0-9]+)*\Z")
_DEPENDENCY = re.compile(
    r"(?P<name>[A-Za-z][A-Za-z0-9.]*[A-Za-z0-9]|R)"
    r"\s*(\(\s*(?:>=|<=|==|!=|>|<)\s*[0-9]+(?:[-.][0-9]+)*\s*\))?\Z"
)
DEPENDENCY_FIELDS = ("Depends", "Imports", "LinkingTo", "Suggests", "Enhances")
# rownames(installed.packages(priority = "base")) in R 4.x: they ship with R, and a
# repository that offered one would shadow R itself.
BASE_PACKAGES = frozenset(
    {
        "base", "compiler", "datasets", "graphics", "grDevices", "grid", "methods",
        "parallel", "splines", "stats", "stats4", "tcltk", "tools", "utils",
    }
)  # fmt: skip
_BASE_LOWER = frozenset(name.lower() for name in BASE_PACKAGES)
_ENCODINGS = {
    "utf-8": "utf-8",
    "utf8": "utf-8",
    "latin1": "latin-1",
    "latin-1": "latin-1",
    "iso-8859-1": "latin-1",
    "iso8859-1": "latin-1",
    "latin9": "iso-8859-15",
    "iso-8859-15": "iso-8859-15",
    "cp1252": "cp1252",
}
# "R 4.3.1; aarch64-apple-darwin20; 2023-07-01 12:00:00 UTC; unix": four parts split at
# ";", the first "R x.y" and anything (".z", " patched"), x and y of a few digits.
_BUILT_R = re.compile(r"R (?P<r>[0-9]{1,4}\.[0-9]{1,4})(?![0-9])")
# R writes some 60 characters; the field is bounded before anything parses it.
MAX_BUILT = 512
_VERSION_SEPARATOR = re.compile(r"[-.]")
_PLATFORM = re.compile(r"[A-Za-z0-9_.+-]*\Z")

Kind = Literal["source", "win.binary", "mac.binary", "linux.binary"]


class InvalidPackageError(ValueError):
    """An archive that is not a valid R package; the message is one sentence for the user."""


@dataclass(frozen=True)
class Built:
    """The ``Built:`` field of a binary: ``R 4.3.1; aarch64-apple-darwin20; <date>; unix``."""

    r_version: str  # major.minor, the contrib/<x.y> directory
    platform: str  # empty for packages without compiled code
    os: str  # "unix" or "windows"


@dataclass(frozen=True)
class PackageFile:
    """What an archive says about itself."""

    kind: Kind
    name: str
    version: str
    fields: Mapping[str, str] = field(repr=False)
    built: Built | None = None
    has_src: bool = False  # a src/ directory: compiled code, when NeedsCompilation is absent

    @property
    def extension(self) -> str:
        return {
            "source": ".tar.gz",
            "win.binary": ".zip",
            "mac.binary": ".tgz",
            "linux.binary": ".tar.gz",
        }[self.kind]

    @property
    def filename(self) -> str:
        """The name R asks for: ``<Package>_<Version>`` and the type's extension."""
        return f"{self.name}_{self.version}{self.extension}"

    def named_by(self, client_name: str) -> bool:
        """Whether an uploaded file's own name agrees with its DESCRIPTION.

        A Linux binary may keep the name ``R CMD INSTALL --build`` gives it,
        ``<Package>_<Version>_R_<platform>.tar.gz``.
        """
        if client_name == self.filename:
            return True
        stem = f"{self.name}_{self.version}_R_"
        return (
            self.kind == "linux.binary"
            and client_name.startswith(stem)
            and client_name.endswith(".tar.gz")
            and bool(_PLATFORM.match(client_name[len(stem) : -len(".tar.gz")]))
        )


def valid_package_name(name: str) -> bool:
    return bool(_NAME.match(name))


def valid_version(version: str) -> bool:
    return len(version) <= 64 and bool(_VERSION.match(version))


@functools.lru_cache(maxsize=8192)  # pure; an index orders tens of thousands of versions
def r_version_key(version: str) -> tuple[int, ...]:
    """Order versions as R's ``package_version`` does: numbers split at ``.`` and ``-``.

    Only for versions already checked (:func:`valid_version`, :func:`parse_built`),
    whose numbers are short enough for ``int``.
    """
    return tuple(int(part) for part in _VERSION_SEPARATOR.split(version))


def check_dependencies(name: str, value: str) -> None:
    """A dependency field must be a comma-separated list of ``pkg`` or ``pkg (op ver)``."""
    for entry in value.split(","):
        entry = " ".join(entry.split())
        if entry and not _DEPENDENCY.match(entry):
            raise InvalidPackageError(
                f"The DESCRIPTION field {name} has an invalid entry {entry[:60]!r}."
            )


def parse_built(value: str) -> Built:
    parts = " ".join(value.split()).split(";") if len(value) <= MAX_BUILT else []
    match = _BUILT_R.match(parts[0]) if len(parts) == 4 else None
    if match is None or not parts[3].strip() or not _PLATFORM.match(parts[1].strip()):
        raise InvalidPackageError(
            "The DESCRIPTION field Built is not 'R x.y.z; <platform>; <date>; <os>'."
        )
    return Built(r_version=match["r"], platform=parts[1].strip(), os=parts[3].strip())


# -- reading archives --------------------------------------------------------------

_POLICY = Policy(links="refuse", one_root=True)


class _Description:
    """Picks ``<pkg>/DESCRIPTION`` out of the members, and notices compiled code."""

    def __init__(self) -> None:
        self.has_src = False

    def __call__(self, member: Member) -> bool:
        if member.parts[1:2] == ("src",):
            self.has_src = True
        return member.kind == "file" and member.parts[1:] == ("DESCRIPTION",)


# -- DESCRIPTION ---------------------------------------------------------------------


def _decode(raw: bytes) -> str:
    raw = raw.removeprefix(b"\xef\xbb\xbf")
    # Find Encoding: first; latin-1 decodes any bytes, and field names are ASCII.
    try:
        records = parse_dcf(raw.decode("latin-1"))
    except DCFError as exc:
        raise InvalidPackageError(f"The DESCRIPTION file is malformed: {exc}") from None
    declared = records[0].get("Encoding") if len(records) == 1 else None
    codec = "utf-8"
    if declared is not None:
        codec = _ENCODINGS.get(declared.strip().lower(), "")
        if not codec:
            raise InvalidPackageError(
                f"The DESCRIPTION declares Encoding {declared[:40]!r}; use UTF-8 or latin1."
            )
    try:
        return raw.decode(codec)
    except UnicodeDecodeError:
        raise InvalidPackageError(
            "The DESCRIPTION file is not valid UTF-8; fix it or declare 'Encoding: latin1'."
        ) from None


def parse_description(raw: bytes) -> dict[str, str]:
    """Decode and parse DESCRIPTION bytes; check the fields a repository relies on."""
    text = _decode(raw)
    if "\x00" in text:
        # R reads a DCF line only up to a NUL, and no R string holds one ("embedded nul
        # in string"): one such value in PACKAGES would break the index for every client.
        raise InvalidPackageError(
            "The DESCRIPTION holds a NUL character, which R cannot read; remove it."
        )
    try:
        records = parse_dcf(text)
    except DCFError as exc:
        raise InvalidPackageError(f"The DESCRIPTION file is malformed: {exc}") from None
    if len(records) != 1:
        raise InvalidPackageError("The DESCRIPTION file must hold exactly one record.")
    fields = records[0]
    name = fields.get("Package", "")
    version = fields.get("Version", "")
    if not valid_package_name(name):
        raise InvalidPackageError(
            f"The DESCRIPTION's Package {name[:60]!r} is not a valid R package name "
            "(letters, digits and '.', starting with a letter, at least two characters)."
        )
    if name.lower() in _BASE_LOWER:
        raise InvalidPackageError(f"{name!r} is the name of a package that ships with R.")
    if not valid_version(version):
        raise InvalidPackageError(
            f"The DESCRIPTION's Version {version[:60]!r} is not a valid R package version "
            "(at least two numbers separated by '.' or '-')."
        )
    for dependency_field in DEPENDENCY_FIELDS:
        if dependency_field in fields:
            check_dependencies(dependency_field, fields[dependency_field])
    if fields.get("Priority", "").strip() == "base":
        # R will not install over its own base packages; no upload may claim to be one.
        raise InvalidPackageError("Only the packages that ship with R have Priority: base.")
    needs = fields.get("NeedsCompilation")
    if needs is not None and needs not in ("yes", "no"):
        raise InvalidPackageError("The DESCRIPTION field NeedsCompilation must be yes or no.")
    return fields


def _check_platform(kind: Kind, built: Built) -> None:
    """A binary must be for the platform its archive type serves (an empty platform:
    no compiled code, good on any machine of that OS)."""
    expected_os = "windows" if kind == "win.binary" else "unix"
    marker = {"mac.binary": "apple-darwin", "linux.binary": "linux"}.get(kind, "")
    if built.os == expected_os and (not built.platform or marker in built.platform):
        return
    if "linux" in built.platform:
        raise InvalidPackageError(
            f"This binary was built for {built.platform!r}; upload a Linux binary with "
            "-F distribution=<name> (e.g. bookworm, jammy)."
        )
    raise InvalidPackageError(
        "Only Windows (.zip), macOS (.tgz) and Linux (.tar.gz with a distribution) binaries "
        f"are served; this one was built for {built.platform or built.os!r}."
    )


def read_package(
    stream: IO[bytes], *, binary: bool, linux: bool = False, limits: Limits | None = None
) -> PackageFile:
    """Read and check the package in ``stream`` (seekable; left at its start).

    ``binary`` says what the uploader declared: a source ``.tar.gz``, or a Windows
    ``.zip`` / macOS ``.tgz`` binary whose ``Built:`` field must say so; with ``linux``,
    a Linux binary ``.tar.gz`` (the uploader names its distribution, which ``Built:``
    does not say).
    """
    archive = sniff(stream)
    if archive == "zip":
        if not binary or linux:
            raise InvalidPackageError(
                "A zip file is a Windows binary; upload it as filetype=cran_binary_package "
                "without a distribution."
            )
        kind: Kind = "win.binary"
    elif archive == "tar.gz":
        kind = ("linux.binary" if linux else "mac.binary") if binary else "source"
    else:
        raise InvalidPackageError(
            "The file is neither a gzip-compressed tar archive nor a zip archive."
        )
    description = _Description()
    try:
        contents = read_archive(
            stream, archive, want=description, policy=_POLICY, limits=limits, what="package"
        )
    except ArchiveError as error:
        raise InvalidPackageError(str(error)) from None
    top = contents.root or ""
    if not contents.found:
        shown = top if valid_package_name(top) else repr(top[:80])
        raise InvalidPackageError(f"The archive has no {shown}/DESCRIPTION file.")
    if len(contents.found) > 1:
        raise InvalidPackageError("The archive holds its DESCRIPTION twice.")
    raw = contents.found[0][1]
    fields = parse_description(raw)
    name, version = fields["Package"], fields["Version"]
    if top != name:
        raise InvalidPackageError(
            f"The archive's top-level directory {top[:80]!r} is not named after its package "
            f"{name!r}."
        )
    built = None
    if binary:
        if "Built" not in fields:
            raise InvalidPackageError(
                "A binary package needs a Built field; build it with R CMD INSTALL --build."
            )
        built = parse_built(fields["Built"])
        _check_platform(kind, built)
    elif "Built" in fields:
        raise InvalidPackageError(
            "This archive is an installed (binary) package; upload it as cran_binary_package."
        )
    return PackageFile(
        kind=kind,
        name=name,
        version=version,
        fields=fields,
        built=built,
        has_src=description.has_src,
    )
