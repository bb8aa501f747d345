"""The index writers read back by R itself: what we write is what R reads, whole.

``PACKAGES`` (and ``.gz``) through ``read.dcf``, ``PACKAGES.rds`` through ``readRDS``, in
one R session for all the examples (``tests/rsession.py``).  Values come from uploaded
DESCRIPTIONs that the upload checks accept (what a channel can hold), and from any text
at all (what a record stored by an older version could hold).  Every record and field
we write must come back, no more and no fewer: R must agree with our own reader
(:func:`~private_channels.cran.dcf.parse_dcf`) on every value of ``PACKAGES``, and give
back every value of ``PACKAGES.rds`` exactly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from private_channels.cran.dcf import parse_dcf
from private_channels.cran.description import InvalidPackageError, PackageFile, parse_description
from private_channels.cran.index import INDEX_FILES, render
from private_channels.cran.store import SOURCE_FIELDS, CranRecord, Directory, fields_for

from . import strategies as s
from .fuzz import fuzz
from .rsession import RSession


@pytest.fixture(scope="module")
def r() -> Iterator[RSession]:
    with RSession() as session:
        yield session


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("indexes")


def _record(index: int, fields: dict[str, str | None]) -> CranRecord:
    name = f"pkg{index}"
    return CranRecord(
        filename=f"{name}_1.0.tar.gz",
        size=1,
        sha256=hashlib.sha256(name.encode()).hexdigest(),
        upload_time=float(index),
        package=name,
        version="1.0",
        md5=hashlib.md5(name.encode(), usedforsecurity=False).hexdigest(),
        fields={**fields, "Package": name, "Version": "1.0"},
    )


def _check(r: RSession, workdir: Path, records: list[CranRecord]) -> None:
    directory = Directory(path="src/contrib", records=tuple(records), stat=None)
    for name in INDEX_FILES:
        (workdir / name).write_bytes(render(directory, name))
    written = [
        {k: v for k in SOURCE_FIELDS if (v := record.fields.get(k)) and v.strip()}
        for record in directory.latest()
    ]
    ours = parse_dcf((workdir / "PACKAGES").read_text("utf-8"))
    for rows in (r.read_dcf(workdir / "PACKAGES"), r.read_dcf(workdir / "PACKAGES.gz", gz=True)):
        # The same records, the same fields, and what our reader reads, R reads.
        assert [set(row) for row in rows] == [set(record) for record in written]
        assert rows == ours
    names, matrix = r.read_rds(workdir / "PACKAGES.rds")
    assert names == [record["Package"] for record in written]
    for row, record in zip(matrix, directory.latest(), strict=True):
        expected = {k: record.fields.get(k) for k in SOURCE_FIELDS}
        # Stored values go out whole, a NUL (which no R string holds) as U+FFFD.
        assert row == {k: v.replace("\x00", "\ufffd") if v else v for k, v in expected.items()}


@fuzz(60)
@given(st.lists(s.descriptions(), min_size=1, max_size=4))
@example([b"Package: abc\nVersion: 1.0\nLicense: MIT\n .\n \xc3\xa9 \xe2\x80\xa8 word\n"])
def test_what_uploads_can_store_r_reads(r: RSession, workdir: Path, texts: list[bytes]) -> None:
    records = []
    for text in texts:
        try:
            fields = parse_description(text)
        except InvalidPackageError:
            continue
        package = PackageFile("source", fields["Package"], fields["Version"], fields)
        records.append(_record(len(records), fields_for(package, "0" * 32)))
    if records:
        _check(r, workdir, records)


VALUES = st.one_of(s.hostile_texts, s.field_values(), st.text(max_size=200))


@fuzz(60)
@given(st.lists(st.dictionaries(st.sampled_from(SOURCE_FIELDS[2:-2]), VALUES, max_size=5),
                min_size=1, max_size=4))  # fmt: skip
@example([{"License": "MIT\n\n\x00 word"}])
@example([{"License": "a\n.\nb", "Depends": " \u3000\n\x0b"}])
def test_whatever_a_record_holds_r_reads(
    r: RSession, workdir: Path, values: list[dict[str, str]]
) -> None:
    _check(
        r, workdir, [_record(i, {**fields, "MD5sum": "0" * 32}) for i, fields in enumerate(values)]
    )
