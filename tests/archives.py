"""Archives for the tests, hostile ones included, written from raw headers.

::

    header("././@PaxHeader", tarfile.XHDTYPE, 600 * MiB)   # declares, holds nothing
    zip64_end(raw_zip([(b"pkg/a", b"x")]), entries=1_500_000)
    gzip_zeros(prefix, 6 * GiB)                             # 6 MB, built in milliseconds

A hostile archive here never allocates what it declares: a TarInfo whose size is set,
an end record written by hand, one deflated MiB of zeros repeated.
"""

from __future__ import annotations

import bz2
import gzip
import io
import struct
import tarfile
import time
import zipfile
import zlib
from collections.abc import Callable

from private_channels.core.limits import MiB


def member(
    name: str,
    kind: bytes = tarfile.REGTYPE,
    *,
    target: str = "",
    pax: dict[str, str] | None = None,
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    info.pax_headers = pax or {}
    return info


def tar(*members: tarfile.TarInfo | tuple[str, bytes]) -> bytes:
    """A plain tar (pax format) of ``TarInfo`` (no data) and ``(name, data)`` members."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for item in members:
            if isinstance(item, tarfile.TarInfo):
                archive.addfile(item)
            else:
                info = tarfile.TarInfo(item[0])
                info.size = len(item[1])
                archive.addfile(info, io.BytesIO(item[1]))
    return buffer.getvalue()


def header(name: str, kind: bytes, size: int) -> bytes:
    """One raw 512-byte header declaring ``size`` bytes of data, which need not follow."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")


def pax_record(keyword: str, value: str) -> bytes:
    body = f" {keyword}={value}\n".encode()
    length = len(body) + len(str(len(body)))
    length = len(body) + len(str(length))
    return str(length).encode() + body


def pax_header(records: bytes, kind: bytes = tarfile.XHDTYPE) -> bytes:
    """A raw pax header holding exactly ``records``, padded to whole blocks."""
    padding = -len(records) % tarfile.BLOCKSIZE
    return header("././@PaxHeader", kind, len(records)) + records + bytes(padding)


END = bytes(2 * tarfile.BLOCKSIZE)


def pack(raw: bytes, fmt: str) -> bytes:
    if fmt == "tar.gz":
        return gzip.compress(raw, mtime=0)
    if fmt == "tar.bz2":
        return bz2.compress(raw)
    if fmt == "tar.zst":
        import zstandard  # the conda extra, in the test extra

        # With a checksum, as the zstd command line writes by default.
        return zstandard.ZstdCompressor(write_checksum=True).compress(raw)
    return raw


def raw_zip(
    entries: list[tuple[bytes, bytes]],
    *,
    attr: int = 0,
    flags: int = 0,
    version: int = 20,
    declared_size: int | None = None,
    declared_count: int | None = None,
) -> bytes:
    """A stored (uncompressed) zip written field by field, names as raw bytes."""
    out = io.BytesIO()
    central = []
    for name, data in entries:
        offset = out.tell()
        crc = zlib.crc32(data)
        size = len(data) if declared_size is None else declared_size
        out.write(
            struct.pack("<4s5H3L2H", b"PK\x03\x04", version, flags, 0, 0, 0, crc,
                        len(data), len(data), len(name), 0) + name + data
        )  # fmt: skip
        central.append(
            struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 0x0314, version, flags, 0, 0, 0, crc,
                        len(data), size, len(name), 0, 0, 0, 0, attr << 16, offset) + name
        )  # fmt: skip
    start = out.tell()
    directory = b"".join(central)
    count = len(entries) if declared_count is None else declared_count
    out.write(directory)
    out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(directory), start, 0))
    return out.getvalue()


def zip64_end(data: bytes, *, entries: int) -> bytes:
    """``data`` (a zip with no comment) whose end records declare ``entries`` members."""
    end = data[-22:]
    _, _, _, _, _, size, offset, _ = struct.unpack("<4s4H2LH", end)
    body = data[:-22]
    record = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, entries, entries, size,
                         offset)  # fmt: skip
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, len(body), 1)
    eocd = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return body + record + locator + eocd


def zipped(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def entry(name: str, data: bytes) -> bytes:
    """One raw regular member, header and padded data, with no end-of-archive marker."""
    return header(name, tarfile.REGTYPE, len(data)) + data + bytes(-len(data) % 512)


def gzip_zeros(prefix: bytes, zeros: int) -> bytes:
    """gzip of ``prefix`` and then ``zeros`` NUL bytes, in a few MB at most.

    After a full flush deflate starts afresh, so every MiB of zeros compresses to the
    same bytes: one is compressed and repeated.  The gzip trailer (CRC, length) then
    describes only what was compressed; the readers refuse long before it.
    """
    deflate = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = deflate.compress(prefix) + deflate.flush(zlib.Z_FULL_FLUSH)
    mib = deflate.compress(bytes(MiB)) + deflate.flush(zlib.Z_FULL_FLUSH)
    assert mib == deflate.compress(bytes(MiB)) + deflate.flush(zlib.Z_FULL_FLUSH)
    count, rest = divmod(zeros, MiB)
    return head + mib * count + deflate.compress(bytes(rest)) + deflate.flush()


def zstd_zeros(prefix: bytes, zeros: int) -> bytes:
    """zstd of ``prefix`` and then ``zeros`` NUL bytes, in a few hundred KB at most.

    A zstd stream may be several frames, read one after the other: one frame of a MiB of
    zeros is compressed once and repeated, as :func:`gzip_zeros` repeats deflate blocks.
    """
    import zstandard

    compress = zstandard.ZstdCompressor().compress
    count, rest = divmod(zeros, MiB)
    return compress(prefix) + compress(bytes(MiB)) * count + compress(bytes(rest))


#: Inputs whose reading cost could grow faster than their size; see :func:`worst_case`.
WORST_CASES = ["pax-without-equals", "pax-digits", "pax-records", "longname", "members",
               "zip-members", "filler"]  # fmt: skip


def worst_case(kind: str, size: int, fill: int = 0) -> bytes:
    """An uncompressed tar (a zip for ``zip-*``) of about ``size`` bytes of one shape."""
    if kind == "pax-without-equals":  # quadratic in tarfile's pax parser (CVE-2024-6232)
        return pax_header(b"2 " * (size // 2) + b"=") + END
    if kind == "pax-digits":  # quadratic in tarfile's hdrcharset search (the same CVE)
        return pax_header(pax_record("comment", "9" * size)) + END
    if kind == "pax-records":
        return pax_header(b"".join(pax_record(f"k{i}", "v") for i in range(size // 12))) + END
    if kind == "longname":
        return header("x", tarfile.GNUTYPE_LONGNAME, size) + bytes([fill or 1]) * size + END
    if kind == "members":
        return header("pkg/a", tarfile.REGTYPE, 0) * (size // 512) + END
    if kind == "zip-members":
        return raw_zip([(b"pkg/%d" % i, b"") for i in range(size // 80)])
    return bytes([fill]) * size


def least_cpu(call: Callable[[], object], runs: int = 3) -> float:
    """The least CPU time of a few runs of ``call`` (the least is the least disturbed)."""
    best = float("inf")
    for _ in range(runs):
        start = time.thread_time()
        call()
        best = min(best, time.thread_time() - start)
    return best
