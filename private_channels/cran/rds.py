"""R's serialization format (what ``saveRDS`` writes), in pure Python, for the few
shapes a CRAN-like repository serves.

::

    matrix = character_matrix([["abc", "1.0"]], colnames=["Package", "Version"],
                              rownames=["abc"])
    data = dump_rds(matrix, compress="xz")       # readRDS() gives the same matrix back

``PACKAGES.rds`` is a character matrix with dimnames (``install.packages`` needs a
matrix: a data frame breaks it); ``Meta/archive.rds`` is a named list of data frames.
The encoding is R's XDR format (big-endian), serialization version 3 by default
(version 2 on request), compressed with xz as R itself does, or gzip.

:func:`load_rds` reads the same shapes back, as an upstream's ``Meta/archive.rds`` holds
them.  Those are hostile bytes, so it is bounded in what it unpacks (``max_size``), in
every length it is told (never more elements than bytes are left), in nesting depth,
and it knows only vectors, ``NULL``, symbols and attribute pairlists: anything else is
an :class:`RDSError`::

    archive = load_rds(upstream_bytes, max_size=64 * 1024 * 1024)
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "NA_INTEGER",
    "RDSError",
    "RObject",
    "character_matrix",
    "data_frame",
    "dump_rds",
    "load_rds",
    "named_list",
    "serialize",
    "unserialize",
]

# SEXP types and pseudo-types from R's Rinternals.h / serialize.c.
NILSXP, SYMSXP, LISTSXP, CHARSXP = 0, 1, 2, 9
LGLSXP, INTSXP, REALSXP, STRSXP, VECSXP = 10, 13, 14, 16, 19
REFSXP, NILVALUE_SXP = 255, 254
IS_OBJECT, HAS_ATTR, HAS_TAG = 1 << 8, 1 << 9, 1 << 10
UTF8_MASK, ASCII_MASK = 1 << 3, 1 << 6
NA_INTEGER = -(2**31)
# The version of R this writer claims to be, and the oldest R that can read each format.
WRITER_VERSION = (4 << 16) | (2 << 8) | 2
MIN_READER = {2: (2 << 16) | (3 << 8), 3: (3 << 16) | (5 << 8)}

Kind = Literal["character", "integer", "double", "logical", "list", "null"]
_SEXP = {
    "character": STRSXP,
    "integer": INTSXP,
    "double": REALSXP,
    "logical": LGLSXP,
    "list": VECSXP,
}


@dataclass(frozen=True)
class RObject:
    """An R vector (or ``NULL``) with attributes, in the order R keeps them.

    Values: ``str | None`` for character (``None`` is ``NA``), ``int | None`` for
    integer and logical (``bool`` is fine), ``float | None`` for double, ``RObject``
    for list.
    """

    kind: Kind
    values: Sequence[object] = ()
    attributes: tuple[tuple[str, RObject], ...] = field(default=())

    @property
    def is_object(self) -> bool:
        return any(name == "class" for name, _ in self.attributes)


NULL = RObject("null")


def _character(values: Sequence[str | None]) -> RObject:
    return RObject("character", tuple(values))


def character_matrix(
    rows: Sequence[Sequence[str | None]],
    *,
    colnames: Sequence[str],
    rownames: Sequence[str] | None = None,
) -> RObject:
    """A character matrix (filled by column, as R stores it) with dimnames."""
    ncol = len(colnames)
    if any(len(row) != ncol for row in rows):
        raise ValueError("every row needs one value per column")
    if rownames is not None and len(rownames) != len(rows):
        raise ValueError("rownames must name every row")
    by_column = tuple(row[j] for j in range(ncol) for row in rows)
    dimnames = RObject(
        "list",
        (NULL if rownames is None else _character(rownames), _character(colnames)),
    )
    dim = RObject("integer", (len(rows), ncol))
    return RObject("character", by_column, (("dim", dim), ("dimnames", dimnames)))


def named_list(items: Mapping[str, RObject]) -> RObject:
    return RObject("list", tuple(items.values()), (("names", _character(list(items))),))


def data_frame(columns: Mapping[str, RObject], *, row_names: Sequence[str]) -> RObject:
    """A data frame: a list of equal-length columns with names, class and row.names."""
    return RObject(
        "list",
        tuple(columns.values()),
        (
            ("names", _character(list(columns))),
            ("class", _character(["data.frame"])),
            ("row.names", _character(row_names)),
        ),
    )


_CHARSXP_HEADER = struct.Struct(">ii")


class _Writer:
    def __init__(self) -> None:
        self.out = bytearray()
        self.symbols: dict[str, int] = {}

    def integer(self, value: int) -> None:
        self.out += struct.pack(">i", value)

    def flags(self, sexp: int, *, levels: int = 0, obj: bool = False, attr: bool = False,
              tag: bool = False) -> None:  # fmt: skip
        self.integer(sexp | (IS_OBJECT if obj else 0) | (HAS_ATTR if attr else 0)
                 | (HAS_TAG if tag else 0) | (levels << 12))  # fmt: skip

    def charsxp(self, value: str | None) -> None:
        if value is None:
            self.flags(CHARSXP)
            self.integer(-1)
            return
        # No R string holds a NUL: readRDS fails on the whole file ("embedded nul").
        value = value.replace("\x00", "\ufffd")
        encoded = value.encode("utf-8")
        self.flags(CHARSXP, levels=ASCII_MASK if value.isascii() else UTF8_MASK)
        self.integer(len(encoded))
        self.out += encoded

    def characters(self, values: Sequence[object]) -> None:
        """The elements of a character vector: :meth:`charsxp` of each, in one pass (an
        index's table holds a hundred thousand strings)."""
        header = _CHARSXP_HEADER.pack
        ascii_flags = CHARSXP | (ASCII_MASK << 12)
        utf8_flags = CHARSXP | (UTF8_MASK << 12)
        na = header(CHARSXP, -1)
        parts: list[bytes] = []
        for value in values:
            if value is None:
                parts.append(na)
            elif isinstance(value, str):
                if "\x00" in value:  # as charsxp does: R strings hold no NUL
                    value = value.replace("\x00", "\ufffd")
                encoded = value.encode("utf-8")
                parts.append(header(ascii_flags if value.isascii() else utf8_flags, len(encoded)))
                parts.append(encoded)
            else:
                raise TypeError(f"character vector holds {value!r}")
        self.out += b"".join(parts)

    def symbol(self, name: str) -> None:
        # R writes each symbol once and refers back to it by its index afterwards.
        index = self.symbols.get(name)
        if index is not None:
            self.integer((index << 8) | REFSXP)
            return
        self.symbols[name] = len(self.symbols) + 1
        self.flags(SYMSXP)
        self.charsxp(name)

    def item(self, obj: RObject) -> None:
        if obj.kind == "null":
            self.integer(NILVALUE_SXP)
            return
        sexp = _SEXP[obj.kind]
        self.flags(sexp, obj=obj.is_object, attr=bool(obj.attributes))
        self.integer(len(obj.values))
        if obj.kind == "character":
            self.characters(obj.values)
        else:
            for value in obj.values:
                self.element(obj.kind, value)
        if obj.attributes:
            for name, attribute in obj.attributes:
                self.flags(LISTSXP, tag=True)
                self.symbol(name)
                self.item(attribute)
            self.integer(NILVALUE_SXP)

    def element(self, kind: Kind, value: object) -> None:
        if kind == "character":
            if value is not None and not isinstance(value, str):
                raise TypeError(f"character vector holds {value!r}")
            self.charsxp(value)
        elif kind in ("integer", "logical"):
            if value is not None and not isinstance(value, int):
                raise TypeError(f"{kind} vector holds {value!r}")
            self.integer(NA_INTEGER if value is None else int(value))
        elif kind == "double":
            if value is None:
                # R's NA_real_: a NaN whose low word is 1954.
                self.out += struct.pack(">II", 0x7FF00000, 1954)
            elif isinstance(value, (int, float)):
                self.out += struct.pack(">d", float(value))
            else:
                raise TypeError(f"double vector holds {value!r}")
        elif isinstance(value, RObject):
            self.item(value)
        else:
            raise TypeError(f"list holds {value!r}")


def serialize(obj: RObject, *, version: Literal[2, 3] = 3) -> bytes:
    """The bytes ``serialize(obj, NULL, xdr = TRUE, version = version)`` gives in R."""
    writer = _Writer()
    writer.out += b"X\n"
    writer.integer(version)
    writer.integer(WRITER_VERSION)
    writer.integer(MIN_READER[version])
    if version == 3:
        native = b"UTF-8"
        writer.integer(len(native))
        writer.out += native
    writer.item(obj)
    return bytes(writer.out)


def dump_rds(
    obj: RObject,
    *,
    compress: Literal["xz", "gzip"] = "xz",
    version: Literal[2, 3] = 3,
) -> bytes:
    """What ``saveRDS(obj, compress = compress)`` writes: serialized and compressed."""
    data = serialize(obj, version=version)
    if compress == "gzip":
        # mtime=0: the same table always gives the same bytes (and the same ETag).
        return gzip.compress(data, compresslevel=6, mtime=0)
    # R reads xz through liblzma, which checks CRC32 as R's own writer does.  Preset 1:
    # for the PACKAGES.rds of 10,000 packages a quarter of preset 6's time (under 0.1 s,
    # rendered again after every upload) for 15% more bytes.
    return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32, preset=1)


# -- reading ---------------------------------------------------------------------------

_KINDS: dict[int, Kind] = {sexp: kind for kind, sexp in _SEXP.items()}  # type: ignore[misc]
MAX_DEPTH = 64


class RDSError(ValueError):
    """Bytes that are not an R serialization of the shapes this module knows."""


def _decompress(data: bytes, max_size: int) -> bytes:
    """``data`` unpacked (gzip, xz, bzip2 or none, as ``readRDS`` accepts), at most
    ``max_size`` bytes."""
    try:
        if data.startswith(b"\x1f\x8b"):
            out = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16).decompress(data, max_size + 1)
        elif data.startswith(b"\xfd7zXZ\x00"):
            out = lzma.LZMADecompressor().decompress(data, max_length=max_size + 1)
        elif data.startswith(b"BZh"):
            out = bz2.BZ2Decompressor().decompress(data, max_length=max_size + 1)
        else:
            out = data
    except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as exc:
        raise RDSError(f"The compressed serialization is damaged: {exc}.") from None
    if len(out) > max_size:
        raise RDSError(f"The serialization unpacks to more than {max_size} bytes.")
    return out


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.position = 0
        self.references: list[str] = []

    def take(self, size: int) -> bytes:
        end = self.position + size
        if size < 0 or end > len(self.data):
            raise RDSError("The serialization ends early.")
        chunk = self.data[self.position : end]
        self.position = end
        return chunk

    def integer(self) -> int:
        value: int = struct.unpack(">i", self.take(4))[0]
        return value

    def length(self, element_size: int) -> int:
        length = self.integer()
        if length == -1:  # a long vector: two more words
            high, low = self.integer(), self.integer()
            length = (high << 32) + (low & 0xFFFFFFFF)
        if length < 0 or length * element_size > len(self.data) - self.position:
            raise RDSError("A vector is longer than what is left of the serialization.")
        return length

    def string(self) -> str | None:
        flags = self.integer()
        if flags & 0xFF != CHARSXP:
            raise RDSError("A string is not a CHARSXP.")
        size = self.integer()
        if size == -1:
            return None
        return self.take(size).decode("utf-8", "replace")

    def symbol(self, flags: int) -> str:
        if flags & 0xFF == REFSXP:
            index = flags >> 8 or self.integer()
            if not 1 <= index <= len(self.references):
                raise RDSError("A reference names nothing read before.")
            return self.references[index - 1]
        if flags & 0xFF != SYMSXP:
            raise RDSError("An attribute name is not a symbol.")
        name = self.string() or ""
        self.references.append(name)
        return name

    def attributes(self, depth: int) -> tuple[tuple[str, RObject], ...]:
        pairs: list[tuple[str, RObject]] = []
        flags = self.integer()
        while flags != NILVALUE_SXP:
            if flags & 0xFF != LISTSXP or not flags & HAS_TAG or flags & HAS_ATTR:
                raise RDSError("Attributes are not a tagged pairlist.")
            name = self.symbol(self.integer())
            pairs.append((name, self.item(depth + 1)))
            flags = self.integer()
        return tuple(pairs)

    def item(self, depth: int = 0) -> RObject:
        if depth > MAX_DEPTH:
            raise RDSError(f"The serialization nests deeper than {MAX_DEPTH} levels.")
        flags = self.integer()
        sexp = flags & 0xFF
        if sexp == NILVALUE_SXP:
            return NULL
        kind = _KINDS.get(sexp)
        if kind is None:
            raise RDSError(f"The serialization holds an R object of type {sexp}, not a vector.")
        values: list[object] = []
        if kind == "character":
            for _ in range(self.length(8)):
                values.append(self.string())
        elif kind in ("integer", "logical"):
            count = self.length(4)
            for (value,) in struct.iter_unpack(">i", self.take(4 * count)):
                values.append(None if value == NA_INTEGER else value)
        elif kind == "double":
            count = self.length(8)
            raw = self.take(8 * count)
            for index, (value,) in enumerate(struct.iter_unpack(">d", raw)):
                na = value != value and raw[8 * index + 4 : 8 * index + 8] == b"\x00\x00\x07\xa2"
                values.append(None if na else value)
        else:
            for _ in range(self.length(4)):
                values.append(self.item(depth + 1))
        attributes = self.attributes(depth) if flags & HAS_ATTR else ()
        return RObject(kind, tuple(values), attributes)


def unserialize(data: bytes) -> RObject:
    """The object of an uncompressed XDR serialization (version 2 or 3)."""
    reader = _Reader(data)
    if reader.take(2) != b"X\n":
        raise RDSError("The serialization is not in R's XDR format.")
    version = reader.integer()
    if version not in (2, 3):
        raise RDSError(f"The serialization is of version {version}, not 2 or 3.")
    reader.integer(), reader.integer()  # the writer's and the oldest reader's R versions
    if version == 3:
        reader.take(reader.length(1))  # the native encoding
    obj = reader.item()
    if reader.position != len(data):
        raise RDSError("The serialization has bytes after its object.")
    return obj


def load_rds(data: bytes, *, max_size: int = 64 * 1024 * 1024) -> RObject:
    """What ``readRDS`` reads from ``data``, for the shapes this module writes."""
    return unserialize(_decompress(data, max_size))
