"""Hostile archives against every ecosystem's readers, with what each refusal costs.

Every archive here is written from raw headers and declares far more than it holds or
than the test allocates: a pax header of 600 MiB, a GNU long name of 300 MiB, a zip end
record of 1.5 million members, a tar member of 2 or 6 GiB of zeros (compressed by
repeating one deflated MiB, or one zstd frame of a MiB).  Each must be refused by
``read_distribution``, by the R ``read_package`` and, inside the ``pkg-*.tar.zst`` of a
``.conda``, by the conda ``read_package``, with the server's Python memory under 20 MB
at its peak (``tracemalloc``) and under 0.2 s of CPU (``time.thread_time``).

Then properties (Hypothesis): random bytes and mutated valid archives make the readers
raise their documented error and nothing else, and the time they take grows linearly
with the input.
"""

from __future__ import annotations

import functools
import gzip
import io
import tarfile
import tempfile
import time
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable
from typing import IO

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from private_channels.conda.package import InvalidPackageError as InvalidCondaPackageError
from private_channels.conda.package import read_package as read_conda
from private_channels.core.limits import GiB, MiB
from private_channels.cran.description import InvalidPackageError, read_package
from private_channels.pypi.metadata import InvalidDistributionError, read_distribution

from .archives import (
    WORST_CASES,
    entry,
    gzip_zeros,
    header,
    least_cpu,
    tar,
    worst_case,
    zip64_end,
    zstd_zeros,
)
from .conda_packages import demo_index, raw_conda
from .test_cran_description import description, source_package, windows_zip

MAX_PEAK = 20 * 1000 * 1000
MAX_CPU = 0.2


# -- building -------------------------------------------------------------------------

METADATA = b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n\n"
# Valid members in front of the hostile one, as in a real upload.
SDIST_FRONT = entry("demo-1.0/PKG-INFO", METADATA)
R_FRONT = entry("abc/DESCRIPTION", description().encode())


def wheel() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("demo-1.0.dist-info/METADATA", METADATA)
    return buffer.getvalue()


def sdist(stream: IO[bytes]) -> object:
    return read_distribution("demo-1.0.tar.gz", stream)


def wheel_file(stream: IO[bytes]) -> object:
    return read_distribution("demo-1.0-py3-none-any.whl", stream)


def r_source(stream: IO[bytes]) -> object:
    return read_package(stream, binary=False)


def r_binary(stream: IO[bytes]) -> object:
    return read_package(stream, binary=True)


def conda(stream: IO[bytes]) -> object:
    return read_conda("demo-1.0-0.conda", stream)


def conda_with(pkg: bytes) -> bytes:
    """A .conda whose payload archive, pkg-demo-1.0-0.tar.zst, is ``pkg`` as it is."""
    return raw_conda({"info/index.json": demo_index()}, pkg_zst=pkg)


# -- the hostile cases ----------------------------------------------------------------

PAX_600_MIB = header("././@PaxHeader", tarfile.XHDTYPE, 600 * MiB)
LONGNAME_300_MIB = header("././@LongLink", tarfile.GNUTYPE_LONGNAME, 300 * MiB)


def bomb(front: bytes, top: str, size: int) -> bytes:
    """One member of ``size`` zeros (its data, the end blocks and padding all zeros)."""
    return gzip_zeros(front + header(f"{top}/zeros", tarfile.REGTYPE, size), size + 20 * 512)


# Each tarball case is read as an sdist and as an R source package, each zip case as a
# wheel and as an R binary: (reader, valid members to put in front, top-level directory).
TARBALL_READERS = {
    "sdist": (sdist, SDIST_FRONT, "demo-1.0"),
    "r-source": (r_source, R_FRONT, "abc"),
}
ZIP_READERS = {"wheel": (wheel_file, wheel), "r-binary": (r_binary, windows_zip)}
TARBALLS: dict[str, tuple[Callable[[bytes, str], bytes], str]] = {
    "pax-header-600-MiB": (lambda front, top: gzip_zeros(front + PAX_600_MIB, 600 * MiB),
                           "oversized extended tar header"),
    "gnu-longname-300-MiB": (lambda front, top: gzip_zeros(front + LONGNAME_300_MIB, 300 * MiB),
                             "oversized extended tar header"),
    # Under the member bound (2 GiB): refused by the compression ratio, after 32 MiB.
    "gzip-bomb-2-GiB": (lambda front, top: bomb(front, top, 2 * GiB - MiB),
                        "times its compressed size"),
    # Over it: refused at the member's header, before anything is inflated.
    "gzip-bomb-6-GiB": (lambda front, top: bomb(front, top, 6 * GiB),
                        "unpacks to more than 2147483648 bytes"),
}  # fmt: skip
ZIPS: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "1.5-million-members": (lambda valid: zip64_end(valid, entries=1_500_000),
                            "more than 100000 members"),
}  # fmt: skip
# Inside a .conda: its pkg-*.tar.zst is read as a stream from the zip, and is hostile.
CONDA_FRONT = entry("lib/ok", b"x")
CONDAS: dict[str, tuple[Callable[[], bytes], str]] = {
    "pax-header-600-MiB": (lambda: conda_with(zstd_zeros(CONDA_FRONT + PAX_600_MIB, 600 * MiB)),
                           "oversized extended tar header"),
    "gnu-longname-300-MiB": (lambda: conda_with(zstd_zeros(CONDA_FRONT + LONGNAME_300_MIB,
                                                           300 * MiB)),
                             "oversized extended tar header"),
    "zstd-bomb-2-GiB": (lambda: conda_with(zstd_zeros(
        CONDA_FRONT + header("lib/zeros", tarfile.REGTYPE, 2 * GiB - MiB), 2 * GiB)),
        "times its compressed size"),
    "zstd-bomb-6-GiB": (lambda: conda_with(zstd_zeros(
        CONDA_FRONT + header("lib/zeros", tarfile.REGTYPE, 6 * GiB), 6 * GiB)),
        "unpacks to more than 2147483648 bytes"),
    "member-escapes": (lambda: conda_with(zstd_zeros(entry("../../etc/x", b"x"), 0)),
                       "member '../../etc/x' has an unsafe path"),
}  # fmt: skip
CASES = (
    [
        pytest.param(functools.partial(build, front, top), read, says, id=f"{kind}-{name}")
        for name, (build, says) in TARBALLS.items()
        for kind, (read, front, top) in TARBALL_READERS.items()
    ]
    + [
        pytest.param(lambda b=build, v=valid: b(v()), read, says, id=f"{kind}-{name}")
        for name, (build, says) in ZIPS.items()
        for kind, (read, valid) in ZIP_READERS.items()
    ]
    + [
        pytest.param(build, conda, says, id=f"conda-{name}")
        for name, (build, says) in CONDAS.items()
    ]
)

ERRORS = (InvalidDistributionError, InvalidPackageError, InvalidCondaPackageError)


def refusal(read: Callable[[IO[bytes]], object], stream: IO[bytes]) -> str:
    with pytest.raises(ERRORS) as info:
        read(stream)
    assert stream.tell() == 0
    return str(info.value)


@pytest.mark.parametrize(("build", "read", "says"), CASES)
def test_hostile_archives_are_refused_cheaply(
    build: Callable[[], bytes], read: Callable[[IO[bytes]], object], says: str
) -> None:
    # Spooled to a temporary file, as the form parser leaves an upload.
    with tempfile.SpooledTemporaryFile(max_size=500 * 1024) as stream:
        stream.write(build())
        stream.seek(0)
        start = time.thread_time()
        message = refusal(read, stream)
        cpu = time.thread_time() - start
        tracemalloc.start()
        try:
            assert refusal(read, stream) == message
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    print(f"{peak / MiB:.2f} MiB at the peak, {cpu:.3f} s of CPU: {message}")
    assert says in message and "\n" not in message
    assert peak < MAX_PEAK
    assert cpu < MAX_CPU


# -- properties -----------------------------------------------------------------------

BOUNDED = settings(max_examples=150, deadline=None, database=None)
# Tarballs uncompressed: they are mutated, then gzipped, so that the damage reaches the
# tar layer instead of stopping at gzip's CRC.
VALID = {
    "sdist": tar(("demo-1.0/PKG-INFO", METADATA), ("demo-1.0/a.py", b"")),
    "wheel": wheel(),
    "r-source": gzip.decompress(source_package()),
    "r-binary": windows_zip(),
    # The payload tar of a .conda, which _compressed puts inside one.
    "conda": tar(("lib/a", b"x"), ("lib/b", b"")),
}
GZIPPED = {"sdist", "r-source"}


def _read(kind: str, data: bytes) -> None:
    """Feed ``data`` to the reader for ``kind``; only its documented error may escape."""
    try:
        if kind == "sdist":
            read_distribution("demo-1.0.tar.gz", io.BytesIO(data))
        elif kind == "wheel":
            read_distribution("demo-1.0-py3-none-any.whl", io.BytesIO(data))
        elif kind == "conda":
            read_conda("demo-1.0-0.conda", io.BytesIO(data))
        else:
            read_package(io.BytesIO(data), binary=kind == "r-binary")
    except ERRORS:
        pass


def _compressed(kind: str, plain: bytes) -> bytes:
    if kind == "conda":
        return raw_conda({"info/index.json": demo_index()}, pkg=plain)
    return zlib.compress(plain, wbits=31) if kind in GZIPPED else plain


@BOUNDED
@given(kind=st.sampled_from(sorted(VALID)), data=st.binary(max_size=4096))
def test_random_bytes_raise_only_the_documented_error(kind: str, data: bytes) -> None:
    _read(kind, data)
    _read(kind, _compressed(kind, data))


@BOUNDED
@given(
    kind=st.sampled_from(sorted(VALID)),
    edits=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=8),
    cut=st.none() | st.integers(0, 1 << 16),
)
def test_mutated_archives_raise_only_the_documented_error(
    kind: str, edits: list[tuple[int, int]], cut: int | None
) -> None:
    plain = bytearray(VALID[kind])
    for position, value in edits:
        plain[position % len(plain)] = value
    mutated = bytes(plain[:cut] if cut is not None else plain)
    _read(kind, _compressed(kind, mutated))


@settings(max_examples=30, deadline=None, database=None)
@given(kind=st.sampled_from(sorted(VALID)), shape=st.sampled_from(WORST_CASES),
       fill=st.integers(0, 255))  # fmt: skip
def test_time_grows_linearly_with_the_input(kind: str, shape: str, fill: int) -> None:
    def cost(size: int) -> float:
        data = _compressed(kind, worst_case(shape, size, fill))
        return least_cpu(lambda: _read(kind, data))

    assert cost(64 * 1024) <= 64 * cost(1024) + 0.02
