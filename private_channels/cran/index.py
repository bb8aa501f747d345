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
from collections.abc import Sequence

from .dcf import format_dcf
from .rds import Kind, RObject, character_matrix, data_frame, dump_rds, named_list
from .store import CranRecord, Directory, index_fields

__all__ = ["INDEX_FILES", "gzip_packages", "render", "render_archive_rds", "render_packages"]

INDEX_FILES = ("PACKAGES", "PACKAGES.gz", "PACKAGES.rds")


def _rows(records: Sequence[CranRecord], fields: Sequence[str]) -> list[list[str | None]]:
    return [[record.fields.get(name) for name in fields] for record in records]


def render_packages(records: Sequence[CranRecord], fields: Sequence[str]) -> bytes:
    """The PACKAGES text: one folded DCF record per package, NA fields left out."""
    text = format_dcf(
        ({name: record.fields.get(name) for name in fields} for record in records), fold=True
    )
    return text.encode("utf-8")


def render_packages_rds(records: Sequence[CranRecord], fields: Sequence[str]) -> bytes:
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
    fields = index_fields(directory.path)
    latest = directory.latest()
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
    by_package: dict[str, list[CranRecord]] = {}
    for record in directory.archived():
        by_package.setdefault(record.package, []).append(record)
    frames: dict[str, RObject] = {}
    for package, records in sorted(by_package.items(), key=lambda item: item[0].encode()):
        times = [r.upload_time for r in records]
        count = len(records)
        frames[package] = data_frame(
            {
                "size": RObject("double", tuple(float(r.size) for r in records)),
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
            row_names=[f"{package}/{r.filename}" for r in records],
        )
    return dump_rds(named_list(frames), compress="gzip", version=3)
