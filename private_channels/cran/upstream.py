"""An upstream CRAN-like repository as a channel serves it.

::

    stored = parse_packages(fetched, "src/contrib", old=None, now=time.time())
    rows = upstream_rows(stored, "src/contrib", cutoff=None)   # what PACKAGES may list
    merged = merge_rows(directory.latest(), rows, local={"mypkg"}, allowed=())
    archive = parse_archive(archive_rds_bytes, max_size=64 * MiB)   # Meta/archive.rds

:func:`parse_packages` turns an upstream ``PACKAGES`` (or ``PACKAGES.gz``, unpacked
within bounds) into what the channel stores: per package the version upstream offers,
with its index fields, and the versions it offered before, each with the time this
channel first saw it.  Those times are what the minimum age counts from: ``PACKAGES``
carries no publication date, so an R release is as old as the moment this channel first
saw it upstream (:func:`upstream_rows` offers the newest version old enough, which
may be one that upstream has since moved to ``Archive/``).  A row without a valid
``Package``, ``Version`` or ``MD5sum`` (the hash its tarball is checked against) is
left out.

:func:`merge_rows` is the guard against dependency confusion: R's
``available.packages`` keeps the highest version of a name across repositories and
rows, so an upstream row of a name the channel has (in any of its directories) is
dropped, whatever its version, unless the channel's allowlist names it; then the higher
version of the two is listed.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.upstream import display_url
from .dcf import parse_dcf
from .description import r_version_key, valid_package_name, valid_version
from .rds import RDSError, RObject, load_rds
from .store import index_fields

if TYPE_CHECKING:
    from ..core.upstream import Fetched

__all__ = [
    "FileInfo",
    "UpstreamRow",
    "archive_entries",
    "extension",
    "file_index",
    "first_seen_times",
    "merge_rows",
    "parse_archive",
    "parse_packages",
    "upstream_rows",
]

#: Versions kept per package: the current one and those before it, for the minimum age.
HISTORY = 3
MAX_VALUE = 20_000  # characters of one index field kept from upstream
MAX_NAME = 100
_MD5 = re.compile(r"[0-9a-f]{32}\Z")
_ARCHIVE_FILE = re.compile(r"(?P<package>[A-Za-z][A-Za-z0-9.]*[A-Za-z0-9])_[0-9][0-9.-]*\.tar\.gz")


@dataclass(frozen=True)
class UpstreamRow:
    """One package row from upstream, as ``PACKAGES`` lists it."""

    package: str
    version: str
    fields: Mapping[str, str | None]
    filename: str
    #: Whether it is upstream's current version (else it is in upstream's Archive/).
    current: bool

    @property
    def md5(self) -> str:
        return self.fields.get("MD5sum") or ""


def extension(directory: str) -> str:
    """The package file extension of a repository directory."""
    if directory.startswith("bin/windows/"):
        return ".zip"
    if directory.startswith("bin/macosx/"):
        return ".tgz"
    return ".tar.gz"


def _row_fields(record: Mapping[str, str], names: Sequence[str]) -> dict[str, str | None] | None:
    package, version = record.get("Package", ""), record.get("Version", "")
    md5 = record.get("MD5sum", "").lower()
    if len(package) > MAX_NAME or not valid_package_name(package) or not valid_version(version):
        return None
    if not _MD5.match(md5):
        return None
    fields: dict[str, str | None] = {}
    for name in names:
        value = record.get(name)
        fields[name] = value[:MAX_VALUE] if value else None
    fields["MD5sum"] = md5
    return fields


def parse_packages(
    fetched: Fetched, directory: str, old: Any, now: float, *, max_size: int
) -> dict[str, Any]:
    """The stored form of an upstream ``PACKAGES`` (see the module); ``old`` is the
    stored form before.  Raises :class:`ValueError` for what is not DCF."""
    body = fetched.body
    if body.startswith(b"\x1f\x8b"):
        try:
            body = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16).decompress(body, max_size + 1)
        except zlib.error as exc:
            raise ValueError(f"the gzip index is damaged: {exc}") from None
        if len(body) > max_size:
            raise ValueError(f"the index unpacks to more than {max_size} bytes")
    names = index_fields(directory)
    newest: dict[str, dict[str, str | None]] = {}
    for record in parse_dcf(body.decode("utf-8", "replace")):
        fields = _row_fields(record, names)
        if fields is None:
            continue
        package, version = str(fields["Package"]), str(fields["Version"])
        kept = newest.get(package)
        if kept is None or r_version_key(version) > r_version_key(str(kept["Version"])):
            newest[package] = fields
    before: Mapping[str, Any] = old.get("packages", {}) if isinstance(old, Mapping) else {}
    packages: dict[str, list[dict[str, Any]]] = {}
    for package, fields in newest.items():
        version = str(fields["Version"])
        history = [h for h in before.get(package, ()) if h["version"] != version]
        seen = next(
            (h["first-seen"] for h in before.get(package, ()) if h["version"] == version), now
        )
        # Versions above upstream's current one were withdrawn upstream: not kept.
        older = [h for h in history if r_version_key(h["version"]) < r_version_key(version)]
        entry = {"version": version, "fields": fields, "first-seen": seen}
        packages[package] = [entry, *older][:HISTORY]
    return {"packages": packages, "url": display_url(fetched.url)}


def _row(package: str, entry: Mapping[str, Any], directory: str, current: bool) -> UpstreamRow:
    version = entry["version"]
    return UpstreamRow(
        package=package,
        version=version,
        fields=entry["fields"],
        filename=f"{package}_{version}{extension(directory)}",
        current=current,
    )


def upstream_rows(
    stored: Mapping[str, Any], directory: str, cutoff: float | None
) -> list[UpstreamRow]:
    """One row per upstream package: its newest version first seen at or before
    ``cutoff`` (the current one for ``None``), if any."""
    rows = []
    for package, history in stored.get("packages", {}).items():
        for index, entry in enumerate(history):
            if cutoff is None or entry["first-seen"] <= cutoff:
                rows.append(_row(package, entry, directory, index == 0))
                break
    return rows


@dataclass(frozen=True)
class FileInfo:
    """What a download needs of one upstream file, without the whole index."""

    md5: str
    first_seen: float
    #: When this channel first saw the version after it (``inf`` for the current one).
    newer_seen: float

    def offered(self, cutoff: float | None) -> bool:
        """Whether :func:`upstream_rows` lists this very file for ``cutoff``."""
        if cutoff is None:
            return self.newer_seen == math.inf
        return self.first_seen <= cutoff < self.newer_seen


def file_index(stored: Mapping[str, Any] | None, directory: str) -> tuple[dict[str, FileInfo], int]:
    """Every version this channel has seen upstream, by filename, and its weight."""
    files: dict[str, FileInfo] = {}
    for package, history in (stored or {}).get("packages", {}).items():
        newer = math.inf
        for entry in history:
            filename = f"{package}_{entry['version']}{extension(directory)}"
            files[filename] = FileInfo(
                entry["fields"].get("MD5sum") or "", entry["first-seen"], newer
            )
            newer = min(newer, entry["first-seen"])
    return files, 200 * len(files)


def first_seen_times(stored: Mapping[str, Any] | None) -> tuple[list[float], int]:
    """Every first-seen time, sorted: where the minimum age's cutoff falls among them
    says which rows :func:`upstream_rows` offers, without reading the index again."""
    times = sorted(
        entry["first-seen"]
        for history in (stored or {}).get("packages", {}).values()
        for entry in history
    )
    return times, 32 * len(times)


def merge_rows(
    local: Iterable[Any], upstream: Iterable[UpstreamRow], *, local_names: AbstractSet[str],
    allowed: Iterable[str],
) -> list[Any]:  # fmt: skip
    """The channel's rows with upstream's, local names shadowing upstream entirely
    unless ``allowed`` (then the higher version of the two)."""
    allow = set(allowed)
    merged: dict[str, Any] = {row.package: row for row in local}
    for row in upstream:
        mine = merged.get(row.package)
        if row.package in local_names and row.package not in allow:
            continue  # the guard: not even a lower version appears
        if mine is None or r_version_key(row.version) > r_version_key(mine.version):
            merged[row.package] = row
    return list(merged.values())


# -- Meta/archive.rds ------------------------------------------------------------------


def _column(frame: RObject, name: str) -> RObject | None:
    names = dict(frame.attributes).get("names")
    if names is None or name not in names.values:
        return None
    index = list(names.values).index(name)
    value = frame.values[index] if index < len(frame.values) else None
    return value if isinstance(value, RObject) else None


def parse_archive(body: bytes, *, max_size: int) -> dict[str, Any]:
    """The stored form of an upstream ``Meta/archive.rds``: per package, its archived
    files as ``[filename, size, mtime]``.  Raises :class:`ValueError` for anything
    that is not a named list of data frames."""
    try:
        archive = load_rds(body, max_size=max_size)
    except RDSError as exc:
        raise ValueError(str(exc)) from None
    names = dict(archive.attributes).get("names")
    if archive.kind != "list" or names is None or len(names.values) != len(archive.values):
        raise ValueError("archive.rds is not a named list")
    packages: dict[str, list[list[Any]]] = {}
    for package, frame in zip(names.values, archive.values, strict=True):
        if not isinstance(package, str) or not isinstance(frame, RObject):
            continue
        if len(package) > MAX_NAME or not valid_package_name(package):
            continue
        rows = dict(frame.attributes).get("row.names")
        sizes, mtimes = _column(frame, "size"), _column(frame, "mtime")
        if rows is None or rows.kind != "character" or sizes is None or mtimes is None:
            continue
        files = []
        for row, size, mtime in zip(rows.values, sizes.values, mtimes.values, strict=False):
            if not isinstance(row, str):
                continue
            owner, _, filename = row.partition("/")
            match = _ARCHIVE_FILE.fullmatch(filename)
            if owner != package or match is None or match["package"] != package:
                continue
            files.append([filename, _number(size), _number(mtime)])
        if files:
            packages[package] = files
    return {"archive": packages}


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) and value == value else 0.0


def archive_entries(
    stored: Mapping[str, Any], *, local_names: AbstractSet[str], allowed: Iterable[str]
) -> list[tuple[str, str, float, float]]:
    """Upstream's archived files as ``(package, filename, size, mtime)``, without the
    names the channel has (unless allowed)."""
    allow = set(allowed)
    return [
        (package, filename, size, mtime)
        for package, files in stored.get("archive", {}).items()
        if package not in local_names or package in allow
        for filename, size, mtime in files
    ]
