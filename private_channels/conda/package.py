"""A conda package file: its filename, its ``info/index.json``, read with bounds and checked.

::

    with open("demo-1.0-py_0.conda", "rb") as f:
        package = read_package("demo-1.0-py_0.conda", f, limits=Limits())
    package.subdir, package.name, package.index["depends"]   # "noarch", "demo", [...]

A package is ``<name>-<version>-<build>.conda`` or ``.tar.bz2``.  A ``.tar.bz2`` is a
bzip2-compressed tar holding ``info/`` and the files; a ``.conda`` is a zip holding
``metadata.json`` and two zstd-compressed tars, ``info-<stem>.tar.zst`` and
``pkg-<stem>.tar.zst``.  Both are read by the core's hostile-archive reader
(:func:`~private_channels.core.archive.read_archive`): every member of the file and of
each archive inside it is checked, nothing is extracted, and only ``info/index.json``
(what the channel's ``repodata.json`` lists) and ``info/about.json`` (what
``channeldata.json`` shows) are read.  Links are allowed when they stay inside the
package, as conda packages have them (``lib/libz.so -> libz.so.1``).

``index.json`` must agree with the filename (name, version, build) and name a conda
subdir; only the fields conda clients read are kept, each checked for its type and
bounded, so that nothing a client cannot parse reaches ``repodata.json``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any, Literal

from ..core.archive import ArchiveError, Format, Member, Policy, read_archive, sniff
from ..core.limits import Limits

__all__ = [
    "EXTENSIONS",
    "SUBDIRS",
    "CondaFilename",
    "CondaPackage",
    "InvalidPackageError",
    "VersionKey",
    "parse_filename",
    "read_package",
    "version_key",
]

Extension = Literal[".conda", ".tar.bz2"]
EXTENSIONS: tuple[Extension, ...] = (".conda", ".tar.bz2")

# The platforms conda, mamba and rattler know (rattler's Platform, conda's
# KNOWN_SUBDIRS); "noarch" holds the packages for all of them.
SUBDIRS = frozenset(
    {
        "noarch",
        "linux-32", "linux-64", "linux-aarch64", "linux-armv6l", "linux-armv7l",
        "linux-loongarch64", "linux-ppc", "linux-ppc64", "linux-ppc64le", "linux-riscv32",
        "linux-riscv64", "linux-s390x",
        "osx-64", "osx-arm64",
        "win-32", "win-64", "win-arm64",
        "freebsd-32", "freebsd-64", "freebsd-arm64",
        "android-32", "android-64", "android-aarch64", "android-armv7a",
        "ios-arm64", "iossimulator-64", "iossimulator-arm64",
        "emscripten-wasm32", "emscripten-wasm64", "wasi-wasm32", "zos-z",
    }
)  # fmt: skip

# conda-build's rules: lowercase names (a leading "_" for mutex packages such as
# _openmp_mutex); versions and builds without "-", which separates the filename's parts.
NAME = r"[a-z0-9_][a-z0-9_.-]{0,127}"
VERSION = r"[A-Za-z0-9][A-Za-z0-9_.+!]{0,63}"
BUILD = r"[A-Za-z0-9_][A-Za-z0-9_.+]{0,127}"
_FILENAME = re.compile(rf"(?P<name>{NAME})-(?P<version>{VERSION})-(?P<build>{BUILD})")

MAX_LIST = 2048  # entries of depends, constrains, track_features, purls
MAX_TEXT = 4096  # characters of a string field
MAX_DESCRIPTION = 64 * 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class InvalidPackageError(ValueError):
    """A file that is not a valid conda package; the message is one sentence for the user."""


@dataclass(frozen=True)
class CondaFilename:
    name: str
    version: str
    build: str
    extension: Extension

    def __str__(self) -> str:
        return f"{self.name}-{self.version}-{self.build}{self.extension}"


def parse_filename(filename: str) -> CondaFilename:
    """``<name>-<version>-<build>.conda`` or ``.tar.bz2``, or :class:`InvalidPackageError`."""
    extension = next((e for e in EXTENSIONS if filename.endswith(e)), None)
    match = _FILENAME.fullmatch(filename[: -len(extension)]) if extension else None
    if extension is None or match is None:
        raise InvalidPackageError(
            f"{filename[:100]!r} is not a conda package filename "
            "(<name>-<version>-<build>.conda or .tar.bz2)."
        )
    return CondaFilename(match["name"], match["version"], match["build"], extension)


_VERSION_PART = re.compile(r"[0-9]+|[A-Za-z]+")
_ZERO = (1, 0)


@functools.total_ordering
class VersionKey:
    """A sort key giving conda's order of versions in their common forms.

    An epoch (``1!2.0``) first; then numbers and letter runs in turn, letters before
    numbers (``1.0rc1 < 1.0``), and missing parts as zeros (``1.0 == 1.0.0 < 1.0.1``).
    """

    __slots__ = ("epoch", "parts")

    def __init__(self, version: str) -> None:
        epoch, _, rest = version.rpartition("!")
        self.epoch = int(epoch) if epoch.isdigit() else 0
        self.parts: list[tuple[int, int | str]] = [
            (1, int(p)) if p.isdigit() else (0, p.lower()) for p in _VERSION_PART.findall(rest)
        ]
        while self.parts and self.parts[-1] == _ZERO:
            self.parts.pop()  # so that equal versions are equal, and hash alike

    def _padded(self, other: VersionKey) -> tuple[list[tuple[int, int | str]], ...]:
        size = max(len(self.parts), len(other.parts))
        return tuple(k.parts + [_ZERO] * (size - len(k.parts)) for k in (self, other))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VersionKey):
            return NotImplemented
        return self.epoch == other.epoch and self.parts == other.parts

    def __lt__(self, other: VersionKey) -> bool:
        if self.epoch != other.epoch:
            return self.epoch < other.epoch
        mine, theirs = self._padded(other)
        return mine < theirs

    def __hash__(self) -> int:
        return hash((self.epoch, tuple(self.parts)))


def version_key(version: str) -> VersionKey:
    return VersionKey(version)


@dataclass(frozen=True)
class CondaPackage:
    """What a package says about itself: where it goes and what repodata lists of it."""

    filename: CondaFilename
    subdir: str
    #: The repodata fields of ``info/index.json``, checked (see :data:`_FIELDS`).
    index: dict[str, Any] = field(repr=False)
    #: The channeldata fields of ``info/about.json`` (summary, home, ...), if it has one.
    about: dict[str, str] = field(repr=False, default_factory=dict)

    @property
    def name(self) -> str:
        return self.filename.name


# -- index.json and about.json ---------------------------------------------------------


def _text(limit: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, str) and len(v) <= limit and not _CONTROL.search(v)


def _texts(v: Any) -> bool:
    return isinstance(v, list) and len(v) <= MAX_LIST and all(map(_text(MAX_TEXT), v))


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63


def _optional_text(v: Any) -> bool:
    return v is None or _text(MAX_TEXT)(v)


# What repodata.json lists of a package, as conda-index copies it from index.json, with
# the type every client expects ("what": the sentence's description of it).
_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "name": (_text(MAX_TEXT), "a string"),
    "version": (_text(MAX_TEXT), "a string"),
    "build": (_text(MAX_TEXT), "a string"),
    "build_number": (_count, "a non-negative integer"),
    "subdir": (_text(MAX_TEXT), "a string"),
    "depends": (_texts, f"a list of at most {MAX_LIST} strings"),
    "constrains": (_texts, f"a list of at most {MAX_LIST} strings"),
    "license": (_optional_text, "a string"),
    "license_family": (_optional_text, "a string"),
    "arch": (_optional_text, "a string"),
    "platform": (_optional_text, "a string"),
    "noarch": (lambda v: v in ("python", "generic", True, False), "'python' or 'generic'"),
    "timestamp": (_count, "milliseconds since the epoch"),
    "features": (_optional_text, "a string"),
    "track_features": (lambda v: _optional_text(v) or _texts(v), "a string"),
    "python_site_packages_path": (_optional_text, "a string"),
    "purls": (_texts, f"a list of at most {MAX_LIST} strings"),
}
_REQUIRED = ("name", "version", "build", "build_number", "subdir")
# channeldata.json's description of a package, from about.json.
_ABOUT = {"summary": MAX_TEXT, "description": MAX_DESCRIPTION, "home": MAX_TEXT,
          "license": MAX_TEXT, "doc_url": MAX_TEXT, "dev_url": MAX_TEXT,
          "source_url": MAX_TEXT}  # fmt: skip


def _json_object(data: bytes, name: str) -> dict[str, Any]:
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidPackageError(f"The package's {name} is not valid UTF-8 JSON.") from None
    if not isinstance(doc, dict):
        raise InvalidPackageError(f"The package's {name} is not a JSON object.")
    return doc


def check_index(doc: dict[str, Any], filename: CondaFilename) -> tuple[str, dict[str, Any]]:
    """The subdir and the repodata fields of an ``index.json`` that agrees with ``filename``."""
    for key in _REQUIRED:
        if key not in doc:
            raise InvalidPackageError(f"The package's info/index.json has no {key!r}.")
    index: dict[str, Any] = {}
    for key, (valid, what) in _FIELDS.items():
        if key in doc:
            if not valid(doc[key]):
                raise InvalidPackageError(
                    f"The package's info/index.json field {key!r} must be {what}."
                )
            index[key] = doc[key]
    for key in ("name", "version", "build"):
        if index[key] != getattr(filename, key):
            raise InvalidPackageError(
                f"The file is named {str(filename)!r} but its info/index.json says {key} "
                f"{index[key][:100]!r}; rename the file or rebuild the package."
            )
    subdir = index["subdir"]
    if subdir not in SUBDIRS:
        raise InvalidPackageError(
            f"The package's subdir {subdir[:100]!r} is not a conda subdir "
            "(noarch, linux-64, osx-arm64, win-64, ...)."
        )
    if index.get("noarch") and subdir != "noarch":
        raise InvalidPackageError(
            f"The package is noarch but its info/index.json puts it in {subdir}; "
            "a noarch package belongs in the subdir noarch."
        )
    index.setdefault("depends", [])
    index.setdefault("constrains", [])
    return subdir, index


def _about(doc: dict[str, Any]) -> dict[str, str]:
    return {key: doc[key] for key, limit in _ABOUT.items() if _text(limit)(doc.get(key))}


# -- the archives ----------------------------------------------------------------------

_INDEX = ("info", "index.json")
_ABOUT_JSON = ("info", "about.json")


class _Conda:
    """The layout of a ``.conda``: ``metadata.json`` and two tar.zst archives, no more."""

    def __init__(self) -> None:
        self.top: set[str] = set()  # every top-level member, each seen by one of the two

    def inner(self, member: Member) -> Format | None:
        self.top.add(member.path)
        return "tar.zst" if member.path.endswith(".tar.zst") else None

    def want(self, member: Member) -> bool:
        if not member.within:
            self.top.add(member.path)
            return member.path == "metadata.json"
        return member.within.startswith("info-") and member.parts in (_INDEX, _ABOUT_JSON)

    def check(self, filename: CondaFilename, found: dict[tuple[str, ...], bytes]) -> None:
        names = sorted(self.top - {"metadata.json"})
        infos = [n for n in names if n.startswith("info-") and n.endswith(".tar.zst")]
        pkgs = [n for n in names if n.startswith("pkg-") and n.endswith(".tar.zst")]
        if len(infos) != 1 or len(pkgs) != 1 or len(names) != 2:
            raise InvalidPackageError(
                "A .conda package must hold metadata.json, one info-*.tar.zst and one "
                "pkg-*.tar.zst, and nothing else; build it with conda-build, rattler-build "
                "or conda-package-handling."
            )
        if ("metadata.json",) not in found:
            raise InvalidPackageError("The .conda package has no metadata.json.")
        metadata = _json_object(found[("metadata.json",)], "metadata.json")
        if metadata.get("conda_pkg_format_version") != 2:
            raise InvalidPackageError(
                "The .conda package's metadata.json does not say conda_pkg_format_version 2."
            )


def read_package(filename: str, stream: IO[bytes], *, limits: Limits | None = None) -> CondaPackage:
    """Read and check the package in ``stream`` (seekable; left at 0) named ``filename``.

    Raises :class:`InvalidPackageError` with one sentence for the uploader.
    """
    parsed = parse_filename(filename)
    expected: Format = "zip" if parsed.extension == ".conda" else "tar.bz2"
    if sniff(stream) != expected:
        kind = "a zip archive" if expected == "zip" else "bzip2-compressed"
        raise InvalidPackageError(f"The file is named {filename!r} but is not {kind}.")
    conda = _Conda() if expected == "zip" else None
    try:
        contents = read_archive(
            stream,
            expected,
            inner=conda.inner if conda else None,
            want=conda.want if conda else (lambda m: m.parts in (_INDEX, _ABOUT_JSON)),
            policy=Policy(links="inside"),
            limits=limits,
            what="conda package",
        )
    except ArchiveError as exc:
        raise InvalidPackageError(str(exc)) from None
    found = {member.parts: data for member, data in contents.found if member.kind == "file"}
    if conda is not None:
        conda.check(parsed, found)
    if _INDEX not in found:
        raise InvalidPackageError("The package has no info/index.json.")
    subdir, index = check_index(_json_object(found[_INDEX], "info/index.json"), parsed)
    about = (
        _about(_json_object(found[_ABOUT_JSON], "info/about.json"))
        if (_ABOUT_JSON in found)
        else {}
    )
    return CondaPackage(parsed, subdir, index, about)
