"""Renderers for the index files of a repository directory: pure functions of its records.

::

    directory = CranStore(storage).directory(channel, "src/contrib")
    render(directory, "PACKAGES.rds")   # bytes readRDS() reads as write_PACKAGES' matrix

``PACKAGES`` and ``PACKAGES.gz`` are the DCF text ``tools::write_PACKAGES`` writes (pak
reads the ``.gz``, then the plain file); ``PACKAGES.rds`` is its character matrix with
the package names as row names, xz-compressed, serialization version 3, as R writes it
(and as ``install.packages`` asks for first).  ``Meta/archive.rds`` is the named list of data
frames that ``remotes::install_version`` reads, gzip-compressed as CRAN serves it.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from .dcf import format_dcf
from .rds import Kind, RObject, character_matrix, data_frame, dump_rds, named_list
from .store import Directory, index_fields

__all__ = [
    "INDEX_FILES",
    "IndexRow",
    "gzip_packages",
    "render",
    "render_archive",
    "render_archive_rds",
    "render_packages",
    "render_rows",
]

INDEX_FILES = ("PACKAGES", "PACKAGES.gz", "PACKAGES.rds")


class IndexRow(Protocol):
    """What an index row needs: the channel's own records and upstream rows are both."""

    @property
    def package(self) -> str: ...

    @property
    def fields(self) -> Mapping[str, str | None]: ...


def _rows(records: Sequence[IndexRow], fields: Sequence[str]) -> list[list[str | None]]:
    return [[record.fields.get(name) for name in fields] for record in records]


def render_packages(records: Sequence[IndexRow], fields: Sequence[str]) -> bytes:
    """The PACKAGES text: one folded DCF record per package, NA fields left out."""
    text = format_dcf(
        ({name: record.fields.get(name) for name in fields} for record in records), fold=True
    )
    return text.encode("utf-8")


def render_packages_rds(records: Sequence[IndexRow], fields: Sequence[str]) -> bytes:
    matrix = character_matrix(
        _rows(records, fields),
        colnames=fields,
        # write_PACKAGES names the rows after the packages; an empty table has none.
        rownames=[record.package for record in records] if records else None,
    )
    return dump_rds(matrix, compress="xz", version=3)


def gzip_packages(packages: bytes) -> bytes:
    """``PACKAGES.gz`` from the ``PACKAGES`` text."""
    # mtime=0: the same index always gives the same bytes, so ETags agree.
    return gzip.compress(packages, mtime=0)


def render(directory: Directory, name: str) -> bytes:
    """One of :data:`INDEX_FILES` for ``directory``."""
    return render_rows(directory.latest(), directory.path, name)


def render_rows(latest: Sequence[IndexRow], path: str, name: str) -> bytes:
    """One of :data:`INDEX_FILES` listing ``latest`` (in order) for directory ``path``."""
    fields = index_fields(path)
    if name == "PACKAGES":
        return render_packages(latest, fields)
    if name == "PACKAGES.gz":
        return gzip_packages(render_packages(latest, fields))
    if name == "PACKAGES.rds":
        return render_packages_rds(latest, fields)
    raise ValueError(f"{name!r} is not an index file")


def _classed(kind: Kind, values: Sequence[object], *classes: str) -> RObject:
    return RObject(kind, tuple(values), (("class", RObject("character", classes)),))


def render_archive_rds(directory: Directory) -> bytes:
    """``Meta/archive.rds``: for each package with older versions, a data frame like
    ``file.info()`` of ``Archive/<pkg>/*``, with row names ``<pkg>/<file>``."""
    return render_archive(
        (r.package, r.filename, float(r.size), r.upload_time) for r in directory.archived()
    )


def render_archive(entries: Iterable[tuple[str, str, float, float]]) -> bytes:
    """``Meta/archive.rds`` of ``(package, filename, size, mtime)`` entries, listed per
    package in the order given."""
    by_package: dict[str, list[tuple[str, str, float, float]]] = {}
    for entry in entries:
        by_package.setdefault(entry[0], []).append(entry)
    frames: dict[str, RObject] = {}
    for package, rows in sorted(by_package.items(), key=lambda item: item[0].encode()):
        times = [mtime for _, _, _, mtime in rows]
        count = len(rows)
        frames[package] = data_frame(
            {
                "size": RObject("double", tuple(size for _, _, size, _ in rows)),
                "isdir": RObject("logical", (False,) * count),
                "mode": _classed("integer", [0o644] * count, "octmode"),
                "mtime": _classed("double", times, "POSIXct", "POSIXt"),
                "ctime": _classed("double", times, "POSIXct", "POSIXt"),
                "atime": _classed("double", times, "POSIXct", "POSIXt"),
                "uid": RObject("integer", (None,) * count),
                "gid": RObject("integer", (None,) * count),
                "uname": RObject("character", (None,) * count),
                "grname": RObject("character", (None,) * count),
            },
            row_names=[f"{package}/{filename}" for _, filename, _, _ in rows],
        )
    return dump_rds(named_list(frames), compress="gzip", version=3)
