"""Hypothesis strategies for what clients send: texts, metadata, DESCRIPTIONs, archives.

::

    @given(data=wheels())           # a wheel's bytes, mostly valid, with random damage
    @given(text=descriptions())     # DESCRIPTION text: real fields, hostile values

Each strategy is biased towards what the parsers accept, so that examples get past
the first check, and mixes in the characters and shapes that broke parsers before:
control characters, NULs, line ends of every kind, long runs of digits, names that
escape, compression methods and zip fields no tool writes.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import json
import struct
import tarfile
import warnings
import zipfile

from hypothesis import strategies as st

# -- texts -------------------------------------------------------------------------------

#: Characters that separate, end or escape things somewhere: line ends of every kind,
#: NUL and other controls, quotes, path and URL punctuation, a BOM, a non-breaking space.
SPECIAL = "\x00\t\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\ufeff\xa0 \"'\\/%:;,.=-_+?#&@<>()[]"

#: Any text, biased to the special characters and digits.
texts = st.text(
    st.one_of(
        st.sampled_from(SPECIAL), st.characters(codec="utf-8"), st.sampled_from("0123456789")
    ),
    max_size=60,
)
#: Short runs of one unit, repeated: what makes a backtracking pattern slow.
runs = st.builds(
    lambda unit, n: unit * n, st.text(SPECIAL + "aZ09", min_size=1, max_size=4), st.integers(1, 200)
)
hostile_texts = st.one_of(texts, runs, st.builds(str.__add__, runs, texts))


def digits(max_size: int = 5000) -> st.SearchStrategy[str]:
    """Digits, sometimes past Python's 4,300-digit limit for int()."""
    return st.one_of(
        st.text("0123456789", min_size=1, max_size=8),
        st.integers(4290, max_size).map(lambda n: "1" * n),
    )


# -- Python metadata ------------------------------------------------------------------------

METADATA_VERSIONS = ["1.0", "1.1", "1.2", "2.0", "2.1", "2.2", "2.3", "2.4", "2.5", "3.0", ""]
METADATA_FIELDS = [
    "Summary",
    "Requires-Python",
    "Requires-Dist",
    "Description",
    "Keywords",
    "Dynamic",
    "License-Expression",
    "Description-Content-Type",
    "Name",
    "Version",
    "Metadata-Version",
    "Provides-Extra",
]


#: Header names as METADATA spells them and as it should not: other cases, a space
#: before the colon, none, one the email parser takes for an envelope, MIME headers.
HEADER_NAMES = [
    *METADATA_FIELDS, "NAME", "name", "version", "METADATA-VERSION", "requires-python",
    "Name ", " Name", "Na me", "N\u00e4me", "", "From", "From ", "Content-Type",
    "content-transfer-encoding", "X-Other",
]  # fmt: skip
#: Line ends, the bare carriage return among them (a line end to the email parser).
LINE_ENDS = ["\n", "\n", "\r\n", "\r", ""]
#: Values made of what a header's reading turns on: blanks, line ends, colons, controls.
header_values = st.text(st.sampled_from(" \t\r\n:\x0b\x0c\x1c\x85\u00e9az19.=<>,-"), max_size=8)


@st.composite
def header_blocks(draw: st.DrawFn) -> bytes:
    """METADATA's header block as the email parser may read it: fields, continuations,
    blank and stray lines, a body; in UTF-8 or Latin-1."""
    line = st.one_of(
        st.builds("{}{}{}{}".format, st.sampled_from(HEADER_NAMES),
                  st.sampled_from([":", ": ", ":\t", " :", ""]), header_values,
                  st.sampled_from(LINE_ENDS)),
        st.builds("{}{}{}".format, st.sampled_from([" ", "\t", "  "]), header_values,
                  st.sampled_from(LINE_ENDS)),
        st.sampled_from(["\n", "\r\n", "\r", "From x\n", ":x\n"]),
    )  # fmt: skip
    text = "".join(draw(st.lists(line, max_size=12))) + draw(header_values)
    return text.encode(draw(st.sampled_from(["utf-8", "latin-1"])), "replace")


@st.composite
def metadata_texts(draw: st.DrawFn, name: str = "demo", version: str = "1.0") -> bytes:
    """METADATA or PKG-INFO bytes: mostly the right name and version, hostile values."""
    if draw(st.booleans()):  # what a build tool writes, with any summary
        text = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: "
        return (text + draw(texts).replace("\n", " ").replace("\r", " ") + "\n\n").encode()
    versions = st.sampled_from([version, version + ".0", "0" + version])
    fields = [
        ("Metadata-Version", draw(st.sampled_from(METADATA_VERSIONS) | texts)),
        ("Name", draw(st.sampled_from([name, name.upper(), name + "-x"]) | texts)),
        ("Version", draw(versions | texts | digits().map(lambda d: d + ".1"))),
    ]
    fields += draw(
        st.lists(st.tuples(st.sampled_from(METADATA_FIELDS) | texts, hostile_texts), max_size=5)
    )
    fields = draw(st.permutations(fields)) if draw(st.booleans()) else fields
    text = "".join(f"{key}: {value}\n" for key, value in fields) + "\n" + draw(texts)
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "latin-1", "utf-16"]))
    return text.encode(encoding, "replace")


# -- R DESCRIPTION --------------------------------------------------------------------------

WINDOWS_BUILT = "R 4.2.2; x86_64-w64-mingw32; 2022-11-10 12:00:00 UTC; windows"
MAC_BUILT = "R 4.3.1; aarch64-apple-darwin20; 2023-07-01 12:00:00 UTC; unix"
LINUX_BUILT = "R 4.3.1; x86_64-pc-linux-gnu; 2023-07-01 12:00:00 UTC; unix"
DESCRIPTION_FIELDS = [
    "Title",
    "License",
    "Description",
    "Depends",
    "Imports",
    "Suggests",
    "LinkingTo",
    "Enhances",
    "NeedsCompilation",
    "Priority",
    "Encoding",
    "Built",
    "Author",
    "Maintainer",
    "OS_type",
    "Archs",
]


def built_values() -> st.SearchStrategy[str]:
    parts = st.tuples(
        st.sampled_from(["R ", "R  ", "r ", ""]),
        st.one_of(
            st.sampled_from(["4.2.2", "4.3.1", "3.6", "4.1.0-devel"]),
            st.builds(lambda a, b: f"{a}.{b}", digits(), digits()),
        ),
        st.sampled_from(
            ["x86_64-w64-mingw32", "aarch64-apple-darwin20", "x86_64-pc-linux-gnu", "", "i386 w64"]
        )
        | texts,
        st.sampled_from(["windows", "unix", ""]) | texts,
        st.sampled_from([";", "; ", ";;", ""]),
    )
    return st.one_of(
        st.sampled_from([WINDOWS_BUILT, MAC_BUILT, LINUX_BUILT]),
        parts.map(lambda p: f"{p[0]}{p[1]}{p[4]} {p[2]}; 2024-01-01 UTC; {p[3]}"),
        hostile_texts,
    )


def field_values() -> st.SearchStrategy[str]:
    """A DESCRIPTION value: continuation lines, ' .' paragraphs, controls, NULs."""
    line = hostile_texts.map(lambda t: t.replace("\n", " ").replace("\r", " "))
    return st.lists(line, min_size=1, max_size=4).map(
        lambda lines: "\n ".join(lines[:1] + [line or "." for line in lines[1:]])
    )


@st.composite
def descriptions(
    draw: st.DrawFn, name: str = "abc", version: str = "1.0", built: str | None = None
) -> bytes:
    """DESCRIPTION bytes: mostly the right Package and Version, hostile other fields."""
    clean = draw(st.booleans())  # the right Package, Version and Built; any other value
    versions = st.sampled_from([version, version + "-1"]) | texts
    fields = [
        ("Package", name if clean else draw(st.sampled_from([name, name + "x"]) | texts)),
        ("Version", version if clean else draw(versions | digits().map(lambda d: d + ".1"))),
    ]
    if built is not None:
        fields.append(("Built", built if clean else draw(st.just(built) | built_values())))
    fields += draw(
        st.lists(st.tuples(st.sampled_from(DESCRIPTION_FIELDS) | texts, field_values()), max_size=5)
    )
    text = "".join(f"{key}: {value}\n" for key, value in fields)
    text = draw(st.sampled_from(["", "\ufeff"])) + text
    text = text.replace("\n", draw(st.sampled_from(["\n", "\r\n", "\r"])))
    return text.encode(draw(st.sampled_from(["utf-8", "utf-8", "latin-1"])), "replace")


# -- archives ------------------------------------------------------------------------------

_SEGMENTS = [
    "",
    ".",
    "..",
    "a",
    "src",
    "R",
    "DESCRIPTION",
    "METADATA",
    "PKG-INFO",
    "C:",
    "a\\b",
    "x\x00y",
    "\u00e9",
    "-",
]
TAR_TYPES = [
    tarfile.REGTYPE,
    tarfile.AREGTYPE,
    tarfile.DIRTYPE,
    tarfile.SYMTYPE,
    tarfile.LNKTYPE,
    tarfile.CHRTYPE,
    tarfile.BLKTYPE,
    tarfile.FIFOTYPE,
    tarfile.CONTTYPE,
    tarfile.GNUTYPE_SPARSE,
    b"x",
]
#: Members of a plain package, beside its metadata.
CLEAN_PATHS = ["R/a.R", "src/a.c", "man/a.Rd", "a.py", "data/x.csv", "inst/doc/a.html"]
TAR_FORMATS = [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT]
PAX_KEYS = [
    "path",
    "linkpath",
    "size",
    "uid",
    "mtime",
    "hdrcharset",
    "comment",
    "GNU.sparse.map",
    "GNU.sparse.size",
    "GNU.sparse.major",
    "SCHILY.xattr.a",
]


def member_paths(root: str) -> st.SearchStrategy[str]:
    segment = st.sampled_from(_SEGMENTS) | texts
    relative = st.lists(segment, min_size=1, max_size=4).map("/".join)
    return st.one_of(
        st.sampled_from([f"{root}/a", f"{root}/R/a.R", f"{root}/src/a.c", root + "/"]),
        relative.map(lambda r: f"{root}/{r}"),
        relative,
        st.builds(lambda r: "./" + r, relative),
        st.integers(100, 300).map(lambda n: f"{root}/" + "x" * n),
    )


@st.composite
def tar_members(draw: st.DrawFn, root: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(draw(member_paths(root)))
    info.type = draw(st.sampled_from(TAR_TYPES))
    info.linkname = draw(member_paths(root) | st.sampled_from(["", "/etc/passwd", "../x"]))
    info.mode = draw(st.sampled_from([0o644, 0o755, 0o4755, 0]))
    if draw(st.booleans()):
        pax = draw(st.dictionaries(st.sampled_from(PAX_KEYS) | texts, hostile_texts, max_size=3))
        info.pax_headers = {k: v for k, v in pax.items() if k and "=" not in k}
    data = draw(st.binary(max_size=64)) if info.type in (tarfile.REGTYPE, tarfile.AREGTYPE) else b""
    info.size = len(data)
    return info, data


@st.composite
def tarballs(
    draw: st.DrawFn, root: str, metadata_member: str, metadata: st.SearchStrategy[bytes]
) -> bytes:
    """A gzipped tar with the metadata member (usually) and other members: half the
    time plain files only (a package as a build tool makes it), else anything, damaged."""
    clean = draw(st.booleans())
    members: list[tuple[tarfile.TarInfo, bytes]] = []
    if clean or draw(st.integers(0, 9)):
        directory = tarfile.TarInfo(root)
        directory.type = tarfile.DIRTYPE
        members.append((directory, b""))
        members.append(_tar_file(f"{root}/{metadata_member}", draw(metadata)))
    if clean:
        paths = draw(st.lists(st.sampled_from(CLEAN_PATHS), max_size=3, unique=True))
        members += [_tar_file(f"{root}/{p}", draw(st.binary(max_size=64))) for p in paths]
    else:
        members += draw(st.lists(tar_members(root), max_size=4))
    members = draw(st.permutations(members))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=draw(st.sampled_from(TAR_FORMATS))) as tar:
        for info, data in members:
            # A name or field this tar format cannot hold is left out.
            with contextlib.suppress(ValueError, UnicodeError):
                tar.addfile(info, io.BytesIO(data))
    raw = buffer.getvalue() if clean else _damaged(draw, buffer.getvalue())
    return gzip.compress(raw, mtime=0)


def _tar_file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


ZIP_METHODS = [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]
#: Unix modes in a zip's external attributes: file, directory, link, FIFO, device, none.
ZIP_MODES = [0, 0o100644, 0o040755, 0o120777, 0o010644, 0o020644, 0o060644]


@st.composite
def zips(
    draw: st.DrawFn, metadata_member: str, metadata: st.SearchStrategy[bytes], root: str
) -> bytes:
    """A zip with the metadata member (usually) and other members: half the time plain
    files only, as zipfile writes them, else anything, with header fields no tool writes."""
    clean = draw(st.booleans())
    entries: list[tuple[str, bytes]] = []
    if clean or draw(st.integers(0, 9)):
        entries.append((metadata_member, draw(metadata)))
    others = st.sampled_from([f"{root}/{p}" for p in CLEAN_PATHS]) if clean else member_paths(root)
    entries += draw(st.lists(st.tuples(others, st.binary(max_size=64)), max_size=4))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in draw(st.permutations(entries)):
            info = zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0))
            info.compress_type = draw(st.sampled_from(ZIP_METHODS))
            if not clean:
                info.external_attr = draw(st.sampled_from(ZIP_MODES)) << 16
                info.create_system = draw(st.sampled_from([0, 3]))
            # A name zipfile will not write (twice, say) is left out.
            with (
                warnings.catch_warnings(),
                contextlib.suppress(ValueError, IndexError, UserWarning),
            ):
                warnings.simplefilter("error")
                archive.writestr(info, data)
    if clean:
        return buffer.getvalue()
    return _zip_fields(draw, _damaged(draw, buffer.getvalue()))


def _zip_fields(draw: st.DrawFn, data: bytes) -> bytes:
    """Rewrite header fields no tool writes: version needed, flags, method."""
    out = bytearray(data)
    for signature, offsets in ((b"PK\x03\x04", (4, 6, 8)), (b"PK\x01\x02", (6, 8, 10))):
        position = out.find(signature)
        while 0 <= position <= len(out) - 12 and draw(st.integers(0, 3)) == 0:
            field = draw(st.sampled_from(offsets))
            value = draw(st.sampled_from([0, 1, 8, 12, 14, 20, 45, 51, 63, 64, 99, 0xFFFF]))
            struct.pack_into("<H", out, position + field, value)
            position = out.find(signature, position + 4)
    return bytes(out)


def _damaged(draw: st.DrawFn, data: bytes) -> bytes:
    """``data``, sometimes with a few bytes changed or cut short."""
    if not data or draw(st.integers(0, 3)):
        return data
    out = bytearray(data)
    for position, value in draw(
        st.lists(st.tuples(st.integers(0, len(out) - 1), st.integers(0, 255)), max_size=4)
    ):
        out[position] = value
    return bytes(out[: draw(st.integers(0, len(out)))]) if draw(st.booleans()) else bytes(out)


def wheels(name: str = "demo", version: str = "1.0") -> st.SearchStrategy[bytes]:
    return zips(
        f"{name}-{version}.dist-info/METADATA",
        metadata_texts(name, version),
        f"{name}-{version}.dist-info",
    )


def sdists(name: str = "demo", version: str = "1.0") -> st.SearchStrategy[bytes]:
    return tarballs(f"{name}-{version}", "PKG-INFO", metadata_texts(name, version))


def r_sources(name: str = "abc", version: str = "1.0") -> st.SearchStrategy[bytes]:
    return tarballs(name, "DESCRIPTION", descriptions(name, version))


def r_binaries(
    name: str = "abc", version: str = "1.0", built: str = WINDOWS_BUILT
) -> st.SearchStrategy[bytes]:
    """A Windows ``.zip``; with another ``built``, a macOS or Linux ``.tgz``."""
    if built == WINDOWS_BUILT:
        return zips(f"{name}/DESCRIPTION", descriptions(name, version, built), name)
    return tarballs(name, "DESCRIPTION", descriptions(name, version, built))


# -- conda ---------------------------------------------------------------------------------

SUBDIR_NAMES = ["noarch", "linux-64", "osx-arm64", "win-64"]
INDEX_KEYS = ["name", "version", "build", "build_number", "subdir", "depends", "constrains",
              "license", "noarch", "timestamp", "track_features", "purls", "arch"]  # fmt: skip
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | hostile_texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=6,
)


@st.composite
def conda_index(draw: st.DrawFn, name: str = "demo", version: str = "1.0",
                build: str = "0") -> dict[str, object]:  # fmt: skip
    """An ``info/index.json``: half the time what conda-build writes, else with any
    field of any JSON type, or missing."""
    subdir = draw(st.sampled_from(SUBDIR_NAMES))
    doc: dict[str, object] = {"name": name, "version": version, "build": build,
                              "build_number": 0, "subdir": subdir, "depends": [],
                              "license": "MIT", "timestamp": 1_700_000_000_000}  # fmt: skip
    if subdir == "noarch":
        doc["noarch"] = "generic"
    if draw(st.booleans()):
        return doc
    for key in draw(st.lists(st.sampled_from(INDEX_KEYS) | texts, max_size=4)):
        if draw(st.integers(0, 4)) == 0:
            doc.pop(key, None)
        else:
            doc[key] = draw(json_values | st.sampled_from(SUBDIR_NAMES))
    return doc


@st.composite
def conda_packages(draw: st.DrawFn, extension: str = ".conda") -> bytes:
    """A ``.conda`` (a zip of metadata.json and two tar.zst) or a ``.tar.bz2``, made
    half the time as conda-package-handling makes them, else damaged or odd inside."""
    import zstandard

    clean = draw(st.booleans())
    index = json.dumps(draw(conda_index())).encode()
    info = [_tar_file("info/index.json", index)]
    if draw(st.booleans()):
        info.append(_tar_file("info/about.json", json.dumps(draw(json_values)).encode()))
    payload = [] if clean else draw(st.lists(tar_members("lib"), max_size=3))
    payload.append(_tar_file("share/demo/demo.txt", b"demo 1.0\n"))

    def tar_of(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for info_, data in members:
                with contextlib.suppress(ValueError, UnicodeError):
                    tar.addfile(info_, io.BytesIO(data))
        return buffer.getvalue()

    if extension == ".tar.bz2":
        raw = tar_of(info + payload)
        return bz2.compress(raw if clean else _damaged(draw, raw))
    zstd = zstandard.ZstdCompressor()
    members = {
        "metadata.json": b'{"conda_pkg_format_version": 2}',
        "pkg-demo-1.0-0.tar.zst": zstd.compress(tar_of(payload)),
        "info-demo-1.0-0.tar.zst": zstd.compress(tar_of(info)),
    }
    if not clean:
        for key in draw(st.lists(st.sampled_from(sorted(members)), max_size=2)):
            members[key] = _damaged(draw, members[key]) if draw(st.booleans()) else b""
        if draw(st.integers(0, 3)) == 0:
            members[draw(member_paths("info"))] = draw(st.binary(max_size=32))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            with (
                warnings.catch_warnings(),
                contextlib.suppress(ValueError, IndexError, UserWarning),
            ):
                warnings.simplefilter("error")
                archive.writestr(name, data)
    return buffer.getvalue() if clean else _damaged(draw, buffer.getvalue())
