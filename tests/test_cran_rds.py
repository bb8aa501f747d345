"""The pure-Python RDS writer, read back by the real R and compared with R's own files."""

from __future__ import annotations

import contextlib
import gzip
import lzma
import struct
import subprocess
import tarfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from private_channels import ChannelRegistry, MemoryStorage, Scope, TokenStore
from private_channels.cran.rds import (
    RDSError,
    RObject,
    _Writer,
    character_matrix,
    data_frame,
    dump_rds,
    load_rds,
    named_list,
    serialize,
)

from .support import require_client, test_app
from .test_cran_description import source_package


def rscript(code: str) -> str:
    result = subprocess.run(
        [require_client("Rscript"), "-e", code],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_header_and_layout_of_version_3() -> None:
    data = serialize(RObject("character", ("a", None)))
    assert data[:2] == b"X\n"
    version, writer, minimum, native_len = struct.unpack(">iiii", data[2:18])
    assert (version, minimum, native_len) == (3, 0x030500, 5)
    assert writer >= 0x040000
    assert data[18:23] == b"UTF-8"
    flags, length = struct.unpack(">ii", data[23:31])
    assert (flags, length) == (16, 2)  # STRSXP, no attributes
    assert struct.unpack(">ii", data[31:39]) == (9 | (64 << 12), 1)  # ASCII CHARSXP "a"
    assert struct.unpack(">ii", data[40:48]) == (9, -1)  # NA_STRING


def test_version_2_has_no_native_encoding() -> None:
    data = serialize(RObject("integer", (1,)), version=2)
    assert struct.unpack(">iii", data[2:14])[::2] == (2, 0x020300)
    assert struct.unpack(">iii", data[14:26]) == (13, 1, 1)


def test_compression_formats() -> None:
    obj = RObject("logical", (True, None))
    assert lzma.decompress(dump_rds(obj)) == serialize(obj)
    assert gzip.decompress(dump_rds(obj, compress="gzip")) == serialize(obj)
    assert dump_rds(obj, compress="gzip") == dump_rds(obj, compress="gzip")


def test_matrix_shape_is_checked() -> None:
    with pytest.raises(ValueError):
        character_matrix([["a"]], colnames=["A", "B"])
    with pytest.raises(ValueError):
        character_matrix([["a"]], colnames=["A"], rownames=["x", "y"])


@pytest.mark.parametrize("compress", ["xz", "gzip"])
@pytest.mark.parametrize("version", [2, 3])
def test_r_reads_every_shape(tmp_path: Path, compress: str, version: int) -> None:
    matrix = character_matrix(
        [["abc", "1.0", None], ["dé", "2-1", "x\ny"]],
        colnames=["Package", "Version", "X"],
        rownames=["abc", "dé"],
    )
    frame = data_frame(
        {
            "size": RObject("double", (1.0, None)),
            "isdir": RObject("logical", (False, None)),
            "n": RObject("integer", (7, None)),
            "when": RObject(
                "double", (0.0, 86400.0), (("class", RObject("character", ("POSIXct", "POSIXt"))),)
            ),
        },
        row_names=["a/a_1.tar.gz", "a/a_2.tar.gz"],
    )
    (tmp_path / "m.rds").write_bytes(dump_rds(matrix, compress=compress, version=version))  # type: ignore[arg-type]
    (tmp_path / "l.rds").write_bytes(
        dump_rds(named_list({"a": frame, "b": frame}), compress=compress, version=version)  # type: ignore[arg-type]
    )
    out = rscript(
        f"""
        m <- readRDS("{tmp_path / "m.rds"}")
        want <- matrix(c("abc", "d\\u00e9", "1.0", "2-1", NA, "x\\ny"), 2,
                       dimnames = list(c("abc", "d\\u00e9"), c("Package", "Version", "X")))
        stopifnot(identical(m, want), Encoding(m[2, 1]) == "UTF-8")
        l <- readRDS("{tmp_path / "l.rds"}")
        stopifnot(identical(names(l), c("a", "b")), is.data.frame(l$b))
        stopifnot(identical(rownames(l$a), c("a/a_1.tar.gz", "a/a_2.tar.gz")))
        stopifnot(identical(l$a$size, c(1, NA)), identical(l$a$isdir, c(FALSE, NA)))
        stopifnot(identical(l$a$n, c(7L, NA)), inherits(l$a$when, "POSIXct"))
        stopifnot(as.numeric(l$b$when[2]) == 86400)
        cat("ok")
        """
    )
    assert out == "ok"


def _directory(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info


def _channel_app(storage: MemoryStorage):  # type: ignore[no-untyped-def]
    ChannelRegistry(storage).create("team")
    token, _ = TokenStore(storage).create(channels=["team"], scope=Scope.WRITE)
    return test_app(storage), {"X-Auth": token}


# write_PACKAGES lists the files in R's collation: ICU's in a UTF-8 locale, bytes
# (capitals first) in the C locale of a machine without LANG.  The server's order is
# the former, so R's is pinned to it.
PIN_COLLATION = 'icuSetCollate(locale = "root")'


def _index_both(tmp_path: Path, packages: dict[str, bytes]) -> tuple[Path, Path]:
    """The index files of the server and of ``tools::write_PACKAGES`` (still to run in
    the second directory) for the same tarballs."""
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    app, headers = _channel_app(MemoryStorage())
    for filename, data in packages.items():
        (theirs / filename).write_bytes(data)
        app.post(
            "/api/repo/team",
            {"filetype": "cran_source_package"},
            upload_files=[("content", filename, data)],
            headers=headers,
        )
    ours = tmp_path / "ours"
    ours.mkdir()
    for name in ("PACKAGES", "PACKAGES.gz", "PACKAGES.rds"):
        body = app.get(f"/api/repo/team/src/contrib/{name}", headers=headers).body
        (ours / name).write_bytes(body)
    return ours, theirs


def test_packages_rds_is_what_write_packages_writes(tmp_path: Path) -> None:
    """The same tarballs indexed by R and by the server give identical tables."""
    packages = {
        "abc_1.0.tar.gz": source_package("abc", "1.0"),
        "abc_1.10.tar.gz": source_package(
            "abc", "1.10", Imports="utils,\n    stats (>= 3.5)", NeedsCompilation="no"
        ),
        "abc_1.9.tar.gz": source_package("abc", "1.9"),
        "Zeta_0.5-1.tar.gz": source_package(
            "Zeta",
            "0.5-1",
            Depends="R (>= 3.5.0), abc",
            LinkingTo="abc",
            Suggests="testthat",
            # R decides NeedsCompilation from the directory entry Zeta/src/.
            extra=[_directory("Zeta/src"), ("Zeta/src/z.c", b"int z;\n")],
        ),
        "mid_2.0.tar.gz": source_package("mid", "2.0", License="MIT + file LICENSE"),
    }
    ours, theirs = _index_both(tmp_path, packages)
    out = rscript(
        f"""
        {PIN_COLLATION}
        tools::write_PACKAGES("{theirs}", type = "source")
        a <- readRDS("{ours / "PACKAGES.rds"}")
        b <- readRDS("{theirs / "PACKAGES.rds"}")
        print(a); print(b)
        stopifnot(identical(a, b))
        stopifnot(identical(read.dcf("{ours / "PACKAGES"}"), read.dcf("{theirs / "PACKAGES"}")))
        stopifnot(identical(read.dcf("{ours / "PACKAGES.gz"}"),
                            read.dcf("{theirs / "PACKAGES.gz"}")))
        cat("identical", nrow(a), a[, "Version"])
        """
    )
    assert out.splitlines()[-1] == "identical 3 1.10 2.0 0.5-1"  # abc, mid, Zeta


def test_index_rows_are_in_write_packages_order(tmp_path: Path) -> None:
    """Names where ICU's order and a plain case-insensitive one differ ('_' < '.')."""
    names = ["abc2", "abc.d", "Abc.e", "abc", "ab", "Ab", "a1", "a.b", "Zeta", "zeta.b"]
    packages = {f"{name}_1.0.tar.gz": source_package(name, "1.0") for name in names}
    ours, theirs = _index_both(tmp_path, packages)
    out = rscript(
        f"""
        {PIN_COLLATION}
        tools::write_PACKAGES("{theirs}", type = "source")
        a <- readRDS("{ours / "PACKAGES.rds"}")
        b <- readRDS("{theirs / "PACKAGES.rds"}")
        stopifnot(identical(rownames(a), rownames(b)), identical(a, b))
        cat(rownames(a))
        """
    )
    assert out.split() == [
        "a.b",
        "a1",
        "ab",
        "Ab",
        "abc",
        "abc.d",
        "Abc.e",
        "abc2",
        "Zeta",
        "zeta.b",
    ]


@given(st.lists(st.none() | st.text()))
def test_a_character_vector_is_its_strings_one_by_one(values: list[str | None]) -> None:
    fast, slow = _Writer(), _Writer()
    fast.characters(values)
    for value in values:
        slow.charsxp(value)
    assert fast.out == slow.out


# -- reading back (load_rds): what an upstream's Meta/archive.rds is parsed with --------

# No R string holds a NUL (the writer replaces one, see below).
_names = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00"),
    max_size=8,
)
_vectors = st.one_of(
    st.lists(st.none() | _names, max_size=4).map(lambda v: RObject("character", tuple(v))),
    st.lists(st.none() | st.integers(-(2**31) + 1, 2**31 - 1), max_size=4).map(
        lambda v: RObject("integer", tuple(v))
    ),
    st.lists(st.none() | st.sampled_from([0, 1]), max_size=4).map(
        lambda v: RObject("logical", tuple(v))
    ),
    st.lists(st.none() | st.floats(allow_nan=False), max_size=4).map(
        lambda v: RObject("double", tuple(v))
    ),
)
_objects = st.recursive(
    _vectors,
    lambda children: st.dictionaries(_names.filter(bool), children, max_size=4).map(named_list),
    max_leaves=12,
)


@given(_objects, st.sampled_from(["xz", "gzip"]), st.sampled_from([2, 3]))
@settings(max_examples=200)
def test_load_rds_reads_what_dump_rds_writes(obj: RObject, compress: str, version: int) -> None:
    assert load_rds(dump_rds(obj, compress=compress, version=version)) == obj  # type: ignore[arg-type]


@given(st.binary(max_size=400))
@settings(max_examples=500)
def test_load_rds_of_any_bytes_is_an_object_or_an_rds_error(data: bytes) -> None:
    for candidate in (data, b"X\n\x00\x00\x00\x03" + data, gzip.compress(b"X\n" + data)):
        with contextlib.suppress(RDSError):
            load_rds(candidate, max_size=1 << 16)


def test_load_rds_refuses_bombs_lies_and_depth() -> None:
    with pytest.raises(RDSError, match="unpacks to more than"):
        load_rds(gzip.compress(b"X\n" + b"\x00" * (1 << 20)), max_size=1 << 16)
    header = b"X\n" + struct.pack(">iii", 2, 0, 0)
    # A character vector that claims two billion elements in a few bytes.
    with pytest.raises(RDSError, match="longer than"):
        load_rds(header + struct.pack(">ii", 16, 2**31 - 1))
    # A list nested deeper than any index is.
    deep = header + struct.pack(">ii", 19, 1) * 1000 + struct.pack(">i", 254)
    with pytest.raises(RDSError, match="deeper"):
        load_rds(deep)
    # A closure, an environment: not what an index holds.
    with pytest.raises(RDSError, match="type 3"):
        load_rds(header + struct.pack(">i", 3))


def test_load_rds_reads_an_archive_rds_that_r_wrote(tmp_path: Path) -> None:
    out = tmp_path / "archive.rds"
    rscript(
        f"""
        d <- file.info(c("{tmp_path}", "{tmp_path}"))
        rownames(d) <- c("abc/abc_0.9.tar.gz", "abc/abc_1.0.tar.gz")
        saveRDS(list(abc = d), "{out}")
        """
    )
    archive = load_rds(out.read_bytes())
    (frame,) = archive.values
    assert dict(archive.attributes)["names"].values == ("abc",)
    assert dict(frame.attributes)["row.names"].values == (
        "abc/abc_0.9.tar.gz",
        "abc/abc_1.0.tar.gz",
    )  # type: ignore[union-attr]


def test_dump_rds_never_writes_a_nul() -> None:
    # readRDS fails on a whole file that holds one ("embedded nul in string").
    table = named_list({"a\x00": RObject("character", ("x\x00y", None))})
    data = dump_rds(table, compress="gzip")
    assert b"\x00y" not in gzip.decompress(data)
    assert load_rds(data) == named_list({"a\ufffd": RObject("character", ("x\ufffdy", None))})
