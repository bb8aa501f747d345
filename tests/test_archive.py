"""The hostile-archive reader every ecosystem shares: tables of archives and refusals.

Hostile archives are written from raw headers (``tests/archives.py``), never by
allocating what they declare.
"""

from __future__ import annotations

import gzip
import io
import random
import stat
import tarfile
import tracemalloc
import zipfile
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from private_channels.core.archive import (
    ArchiveError,
    Contents,
    Format,
    Member,
    Policy,
    read_archive,
    sniff,
)
from private_channels.core.limits import GiB, Limits, MiB

from .archives import (
    END,
    WORST_CASES,
    header,
    least_cpu,
    member,
    pack,
    pax_header,
    pax_record,
    raw_zip,
    tar,
    worst_case,
    zip64_end,
    zipped,
)

INSIDE = Policy(links="inside")
R_LIKE = Policy(links="refuse", one_root=True)
PLAIN = Policy()
TAR_FORMATS: list[Format] = ["tar", "tar.gz", "tar.bz2", "tar.zst"]


# -- reading --------------------------------------------------------------------------


def wants_pkg_info(m: Member) -> bool:
    return m.kind == "file" and m.parts[1:] == ("PKG-INFO",)


def read(
    data: bytes,
    fmt: Format,
    *,
    policy: Policy = PLAIN,
    limits: Limits | None = None,
    want: Callable[[Member], bool] = wants_pkg_info,
    inner: Callable[[Member], Format | None] | None = None,
) -> Contents:
    stream = io.BytesIO(data)
    try:
        return read_archive(
            stream, fmt, want=want, inner=inner, policy=policy, limits=limits, what="sdist"
        )
    finally:
        assert stream.tell() == 0


def refused(data: bytes, fmt: Format, match: str, **kwargs: Any) -> str:
    with pytest.raises(ArchiveError, match=match) as info:
        read(data, fmt, **kwargs)
    message = str(info.value)
    assert message.startswith("The sdist") and message.endswith(".")
    assert "\n" not in message and len(message) < 300
    return message


PKG_INFO = ("pkg-1.0/PKG-INFO", b"Metadata-Version: 2.1\nName: pkg\nVersion: 1.0\n\n")


# -- what passes ----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", TAR_FORMATS)
def test_reads_the_wanted_member_of_a_tar(fmt: Format) -> None:
    data = pack(tar(member("pkg-1.0", tarfile.DIRTYPE), PKG_INFO, ("pkg-1.0/x.py", b"x")), fmt)
    contents = read(data, fmt)
    assert contents.members == 3
    [(found, content)] = contents.found
    assert (found.path, found.kind, found.size, content) == (
        PKG_INFO[0], "file", len(PKG_INFO[1]), PKG_INFO[1],
    )  # fmt: skip


def test_reads_the_wanted_member_of_a_zip() -> None:
    contents = read(zipped(dict([PKG_INFO, ("pkg-1.0/x.py", b"x")])), "zip")
    assert [(m.path, data) for m, data in contents.found] == [PKG_INFO]


def test_want_sees_every_member_in_order() -> None:
    seen: list[tuple[str, str]] = []

    def note(m: Member) -> bool:
        seen.append((m.path, m.kind))
        return False

    data = tar(member("./", tarfile.DIRTYPE), member("./pkg", tarfile.DIRTYPE), ("./pkg/a", b""))
    assert read(data, "tar", want=note).found == ()
    assert seen == [("", "dir"), ("pkg", "dir"), ("pkg/a", "file")]


@pytest.mark.parametrize(
    "links",
    [
        [member("pkg/l", tarfile.SYMTYPE, target="x")],
        [member("pkg/sub/l", tarfile.SYMTYPE, target="../x")],
        [member("pkg/h", tarfile.LNKTYPE, target="pkg/x")],
        # A link may point to, or descend through, another link (conda's lib64 -> lib).
        [member("lib64", tarfile.SYMTYPE, target="lib"),
         member("lib/libz.so", tarfile.SYMTYPE, target="../lib64/libz.so.1")],
    ],
)  # fmt: skip
def test_links_inside_the_archive_pass_when_the_policy_allows(links: list[Any]) -> None:
    assert read(tar(("pkg/x", b"x"), *links), "tar", policy=INSIDE).members == 1 + len(links)


def test_a_tar_may_repeat_a_member() -> None:
    # tar's own rule: the later one wins, and every extractor agrees.
    assert read(tar(("pkg/a", b"1"), ("pkg/a", b"2")), "tar").members == 2


def test_one_root_names_the_root() -> None:
    contents = read(tar(member("pkg", tarfile.DIRTYPE), ("pkg/a", b"")), "tar", policy=R_LIKE)
    assert contents.root == "pkg"


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        (zipped({"a": b""}), "zip"),
        (raw_zip([]), "zip"),
        (pack(tar(("a", b"")), "tar.gz"), "tar.gz"),
        (pack(tar(("a", b"")), "tar.bz2"), "tar.bz2"),
        (pack(tar(("a", b"")), "tar.zst"), "tar.zst"),
        (tar(("a", b"")), "tar"),
        (b"plain text", None),
        (b"", None),
    ],
)
def test_sniff(data: bytes, fmt: Format | None) -> None:
    stream = io.BytesIO(data)
    assert sniff(stream) == fmt
    assert stream.tell() == 0


# -- tar: what is refused -------------------------------------------------------------


def _bomb(size: int) -> bytes:
    return tar(("pkg/zeros", bytes(size)))


TAR_CASES: list[tuple[str, Callable[[], bytes], str, dict[str, Any]]] = [
    ("traversal", lambda: tar(("pkg/../../evil", b"")), r"'\.\.' escapes the archive", {}),
    ("absolute", lambda: tar(("/etc/evil", b"")), "absolute, so it escapes the archive", {}),
    ("backslash", lambda: tar(("pkg\\evil", b"")), "backslash", {}),
    ("backslash-traversal", lambda: tar(("pkg\\..\\..\\x", b"")), "escapes the archive", {}),
    ("nul", lambda: tar(member("pkg/a", pax={"path": "pkg/a\x00/../../x"})), "NUL", {}),
    ("drive", lambda: tar(("C:/evil", b"")), "drive", {}),
    ("stream", lambda: tar(("pkg:x/a", b"")), "drive", {}),
    ("empty-name", lambda: header("", tarfile.REGTYPE, 0) + END, "is empty", {}),
    ("dot-segment", lambda: tar(("pkg/./a", b"")), r"empty or '\.' segment", {}),
    ("empty-segment", lambda: tar(("pkg//a", b"")), r"empty or '\.' segment", {}),
    ("file-as-root", lambda: tar((".", b"")), "root directory", {}),
    ("symlink-refused", lambda: tar(member("pkg/l", tarfile.SYMTYPE, target="a")),
     "is a link or a device", {}),
    ("hardlink-refused", lambda: tar(("pkg/a", b""), member("pkg/h", tarfile.LNKTYPE,
     target="pkg/a")), "is a link or a device", {}),
    ("symlink-out", lambda: tar(member("pkg/l", tarfile.SYMTYPE, target="../../etc")),
     "links outside the archive", {"policy": INSIDE}),
    ("symlink-absolute", lambda: tar(member("pkg/l", tarfile.SYMTYPE, target="/etc/passwd")),
     "links outside the archive", {"policy": INSIDE}),
    ("symlink-drive", lambda: tar(member("pkg/l", tarfile.SYMTYPE, target="C:\\x")),
     "links outside the archive", {"policy": INSIDE}),
    ("symlink-empty", lambda: tar(member("pkg/l", tarfile.SYMTYPE, target="")),
     "links outside the archive", {"policy": INSIDE}),
    ("hardlink-out", lambda: tar(member("pkg/h", tarfile.LNKTYPE, target="../x")),
     "links outside the archive", {"policy": INSIDE}),
    ("climb-through-a-link", lambda: tar(member("a", tarfile.SYMTYPE, target="."),
     member("b", tarfile.SYMTYPE, target="a/../x")), "links through the link 'a'",
     {"policy": INSIDE}),
    ("climb-through-a-later-link", lambda: tar(member("p/b", tarfile.SYMTYPE,
     target="a/../../x/.."), member("p/a", tarfile.SYMTYPE, target=".")),
     "links through the link 'p/a'", {"policy": INSIDE}),
    ("hardlink-through-a-link", lambda: tar(member("a", tarfile.SYMTYPE, target="."),
     member("h", tarfile.LNKTYPE, target="a/x")), "links through the link 'a'",
     {"policy": INSIDE}),
    ("beneath-a-link", lambda: tar(member("pkg/d", tarfile.SYMTYPE, target="sub"),
     ("pkg/d/x", b"")), "lies beneath the link 'pkg/d'", {"policy": INSIDE}),
    ("char-device", lambda: tar(member("pkg/dev", tarfile.CHRTYPE)), "link or a device", {}),
    ("block-device", lambda: tar(member("pkg/dev", tarfile.BLKTYPE)), "device or FIFO",
     {"policy": INSIDE}),
    ("fifo", lambda: tar(member("pkg/fifo", tarfile.FIFOTYPE)), "device or FIFO",
     {"policy": INSIDE}),
    ("too-many-members", lambda: tar(*[(f"pkg/{i}", b"") for i in range(5)]),
     "more than 3 members", {"limits": Limits(max_members=3)}),
    ("member-too-large", lambda: header("pkg/big", tarfile.REGTYPE, 3 * GiB),
     r"member 'pkg/big' unpacks to more than 2147483648 bytes", {}),
    ("total-too-large", lambda: tar(("pkg/a", bytes(600)), ("pkg/b", bytes(600))),
     "sdist unpacks to more than 1000 bytes", {"limits": Limits(max_unpacked=1000)}),
    ("headers-count-as-unpacked", lambda: tar(*[(f"pkg/{i}", b"") for i in range(30)]),
     "unpacks to more than 10000 bytes", {"limits": Limits(max_unpacked=10_000)}),
    ("pax-header-of-600-MiB", lambda: header("x", tarfile.XHDTYPE, 600 * MiB),
     "oversized extended tar header", {}),
    ("global-pax-header-of-600-MiB", lambda: header("x", tarfile.XGLTYPE, 600 * MiB),
     "oversized extended tar header", {}),
    ("gnu-longname-of-300-MiB", lambda: header("x", tarfile.GNUTYPE_LONGNAME, 300 * MiB),
     "oversized extended tar header", {}),
    ("gnu-longlink-of-300-MiB", lambda: header("x", tarfile.GNUTYPE_LONGLINK, 300 * MiB),
     "oversized extended tar header", {}),
    ("extended-header-chain", lambda: b"".join(
        header("x", tarfile.GNUTYPE_LONGNAME, 512) + b"n" * 512 for _ in range(20)
    ) + header("pkg/a", tarfile.REGTYPE, 0) + END, "extended tar headers in a row", {}),
    ("global-pax-fields", lambda: pax_header(b"".join(
        pax_record(f"k{i}", "v") for i in range(100)), tarfile.XGLTYPE)
     + header("pkg/a", tarfile.REGTYPE, 0) + END, "global pax header of more than", {}),
    ("bad-sparse-map", lambda: tar(member("pkg/a", pax={"GNU.sparse.map": "x"})),
     "sparse file", {}),
    ("bad-sparse-size", lambda: tar(member("pkg/a", pax={"GNU.sparse.size": "x"})),
     "sparse file", {}),
    ("sparse-1.0", lambda: tar(member("pkg/a", pax={"GNU.sparse.major": "1",
     "GNU.sparse.minor": "0"})), "sparse file", {}),
    ("gnu-sparse", lambda: header("pkg/a", tarfile.GNUTYPE_SPARSE, 0) + END, "sparse file", {}),
    # CVE-2024-6232: records with no '=' of their own, and long runs of digits, made
    # tarfile's pax parser quadratic; such headers are refused before it parses them.
    ("pax-without-equals", lambda: pax_header(b"2 " * 4000 + b"=")
     + header("pkg/a", tarfile.REGTYPE, 0) + END, "not a valid", {}),
    ("pax-digit-run", lambda: pax_header(pax_record("comment", "1" * 4000))
     + header("pkg/a", tarfile.REGTYPE, 0) + END, "not a valid", {}),
    ("pax-record-overruns", lambda: pax_header(b"99 path=x\n")
     + header("pkg/a", tarfile.REGTYPE, 0) + END, "not a valid", {}),
    ("negative-size", lambda: header("pkg/a", tarfile.REGTYPE, -1) + END, "not a valid", {}),
    # tarfile would end the archive at a damaged header; GNU tar reads on past it.
    ("damaged-header-mid-archive", lambda: header("pkg/a", tarfile.REGTYPE, 0)
     + b"\x01" * 512 + tar(("../../evil", b"")), "not a valid", {}),
    ("no-end-marker", lambda: tar(("pkg/a", b"x"))[:1024], "not a valid", {}),
    ("truncated-member", lambda: tar(("pkg/a", bytes(5000)))[:2048], "not a valid", {}),
    ("not-a-tar", lambda: b"hello" * 200, "not a valid", {}),
    ("empty-file", lambda: b"", "not a valid", {}),
    ("two-roots", lambda: tar(("a/x", b""), ("b/x", b"")), "exactly one top-level directory",
     {"policy": R_LIKE}),
    ("file-beside-root", lambda: tar(("a/x", b""), ("README", b"")),
     "exactly one top-level directory", {"policy": R_LIKE}),
    ("no-root", lambda: END, "exactly one top-level directory", {"policy": R_LIKE}),
    ("metadata-too-large", lambda: tar(("pkg-1.0/PKG-INFO", bytes(2000))),
     "metadata file is larger than 1000 bytes", {"limits": Limits(max_metadata_size=1000)}),
    ("metadata-too-large-together", lambda: tar(*[("pkg-1.0/PKG-INFO", bytes(600))] * 2),
     "metadata files are larger than 1000 bytes together",
     {"limits": Limits(max_metadata_size=1000)}),
    ("too-many-metadata-files", lambda: tar(*[("pkg-1.0/PKG-INFO", b"")] * 17),
     "more than 16 metadata files", {}),
]  # fmt: skip


@pytest.mark.parametrize("fmt", TAR_FORMATS)
@pytest.mark.parametrize(
    ("build", "match", "kwargs"),
    [case[1:] for case in TAR_CASES],
    ids=[case[0] for case in TAR_CASES],
)
def test_tar_refusals(
    fmt: Format, build: Callable[[], bytes], match: str, kwargs: dict[str, Any]
) -> None:
    refused(pack(build(), fmt), fmt, match, **kwargs)


@pytest.mark.parametrize(
    ("fmt", "label"), [("tar.gz", "gzip-"), ("tar.bz2", "bzip2-"), ("tar.zst", "zstd-")]
)
def test_compression_bombs_stop_at_the_ratio(fmt: Format, label: str) -> None:
    data = pack(_bomb(8 * MiB), fmt)
    limits = Limits(ratio_floor=1 * MiB, max_ratio=50)
    refused(data, fmt, "unpacks to more than 50 times its compressed size", limits=limits)
    # The same archive passes where its ratio is allowed.
    read(data, fmt, limits=Limits(ratio_floor=1 * MiB, max_ratio=100_000))


@pytest.mark.parametrize("fmt", ["tar.gz", "tar.bz2", "tar.zst"])
def test_truncated_and_damaged_compressed_streams(fmt: Format) -> None:
    data = pack(tar(PKG_INFO, ("pkg-1.0/x", bytes(range(256)) * 40)), fmt)
    label = {"tar.gz": "gzip", "tar.bz2": "bzip2", "tar.zst": "zstd"}[fmt]
    for cut in (len(data) - 4, len(data) // 2, 10):
        refused(data[:cut], fmt, f"not a valid {label}-compressed tar archive")
    damaged = data[: len(data) // 2] + b"\xff" * 16 + data[len(data) // 2 + 16 :]
    refused(damaged, fmt, f"not a valid {label}-compressed tar archive")
    if fmt == "tar.gz":  # bz2 ignores what follows its last stream, by design
        refused(data + b"trailing junk", fmt, "not a valid gzip-compressed tar archive")


def test_long_names_of_reasonable_size_pass() -> None:
    name = "pkg/" + "d" * 200 + "/" + "f" * 200
    data = tar((name, b""), member("pkg/l", tarfile.SYMTYPE, target="x" * 300))
    assert read(pack(data, "tar.gz"), "tar.gz", policy=INSIDE).members == 2


def test_a_stream_of_many_members_stays_flat_in_memory() -> None:
    # tarfile keeps every TarInfo it reads in TarFile.members: 10,000 members held
    # 5 MB (measured) before the reader emptied that list as it goes; now 0.1 MB.
    block = header("pkg/a", tarfile.REGTYPE, 0)
    data = gzip.compress(block * 10_000 + END, compresslevel=1)
    tracemalloc.start()
    try:
        assert read(data, "tar.gz").members == 10_000
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * MiB


# -- zip: what is refused -------------------------------------------------------------


def _entries(*names: bytes) -> list[tuple[bytes, bytes]]:
    return [(name, b"x") for name in names]


def _lzma_damaged() -> bytes:
    data = zipped({PKG_INFO[0]: PKG_INFO[1] * 50}, zipfile.ZIP_LZMA)
    start = data.index(b"PKG-INFO") + len(b"PKG-INFO")
    # The LZMA properties follow a 4-byte header: make them impossible (lc+lp+pb > 224).
    return data[: start + 4] + b"\xff" + data[start + 5 :]


def _deflate_damaged() -> bytes:
    data = zipped({PKG_INFO[0]: bytes(range(256)) * 100})
    start = data.index(b"PKG-INFO") + len(b"PKG-INFO") + 20
    return data[:start] + b"\xff" * 16 + data[start + 16 :]


ZIP_CASES: list[tuple[str, Callable[[], bytes], str, dict[str, Any]]] = [
    ("traversal", lambda: raw_zip(_entries(b"pkg/../../evil")), "escapes the archive", {}),
    ("absolute", lambda: raw_zip(_entries(b"/etc/evil")), "absolute", {}),
    ("backslash", lambda: raw_zip(_entries(b"pkg\\..\\..\\evil")), "escapes the archive", {}),
    ("nul", lambda: raw_zip(_entries(b"pkg/a\x00/../../x")), "NUL", {}),
    ("drive", lambda: raw_zip(_entries(b"C:/evil")), "drive", {}),
    ("empty-name", lambda: raw_zip(_entries(b"")), "is empty", {}),
    ("dot-segment", lambda: raw_zip(_entries(b"pkg/./a")), r"empty or '\.' segment", {}),
    ("symlink-refused", lambda: raw_zip(_entries(b"pkg/l"), attr=stat.S_IFLNK | 0o777),
     "is a link or a device", {}),
    ("symlink-out", lambda: raw_zip([(b"pkg/l", b"../../etc/passwd")],
     attr=stat.S_IFLNK | 0o777), "links outside the archive", {"policy": INSIDE}),
    ("char-device", lambda: raw_zip(_entries(b"pkg/dev"), attr=stat.S_IFCHR),
     "device or FIFO", {"policy": INSIDE}),
    ("directory-with-a-file-mode", lambda: raw_zip(_entries(b"pkg/d/"), attr=stat.S_IFREG),
     "link or a device", {}),
    ("duplicate", lambda: raw_zip(_entries(b"pkg/a", b"pkg/b", b"pkg/a")),
     "has the member 'pkg/a' more than once", {}),
    ("duplicate-spelled-otherwise", lambda: raw_zip(_entries(b"pkg/a", b"./pkg/a")),
     "more than once", {}),
    ("too-many-members", lambda: raw_zip(_entries(*[b"pkg/%d" % i for i in range(5)])),
     "more than 3 members", {"limits": Limits(max_members=3)}),
    ("end-record-declares-1.5-million", lambda: zip64_end(raw_zip(_entries(b"pkg/a")),
     entries=1_500_000), "more than 100000 members", {}),
    ("end-record-understates", lambda: raw_zip(_entries(*[b"pkg/%d" % i for i in range(300)]),
     declared_count=1), "more than 100 members", {"limits": Limits(max_members=100)}),
    ("directory-too-large", lambda: raw_zip(_entries(*[b"pkg/%d" % i for i in range(300)])),
     "list of members is larger than 4096 bytes", {"limits": Limits(max_zip_directory=4096)}),
    ("member-too-large", lambda: raw_zip(_entries(b"pkg/a"), declared_size=3 * GiB),
     r"member 'pkg/a' unpacks to more than 2147483648 bytes", {}),
    ("total-too-large", lambda: raw_zip(_entries(b"pkg/a", b"pkg/b"), declared_size=600),
     "sdist unpacks to more than 1000 bytes", {"limits": Limits(max_unpacked=1000)}),
    ("ratio", lambda: zipped({"pkg/zeros": bytes(4 * MiB)}),
     "more than 200 times its compressed size", {"limits": Limits(ratio_floor=MiB)}),
    ("overlapping-members", lambda: raw_zip(_entries(*[b"pkg/%d" % i for i in range(4)]),
     declared_size=MiB), "times its compressed size", {"limits": Limits(ratio_floor=2 * MiB)}),
    ("version-needed-6.4", lambda: raw_zip(_entries(b"pkg/a"), version=64),
     "not a valid zip archive", {}),
    ("encrypted", lambda: raw_zip(_entries(b"pkg/a"), flags=1), "is encrypted", {}),
    ("damaged-lzma-member", _lzma_damaged, "PKG-INFO cannot be read", {}),
    ("damaged-deflate-member", _deflate_damaged, "PKG-INFO cannot be read", {}),
    ("truncated", lambda: zipped({"pkg/a": b"x" * 100})[:-30], "not a valid zip archive", {}),
    ("not-a-zip", lambda: b"hello" * 100, "not a valid zip archive", {}),
    ("empty-file", lambda: b"", "not a valid zip archive", {}),
    ("two-roots", lambda: raw_zip(_entries(b"a/x", b"b/x")), "exactly one top-level",
     {"policy": R_LIKE}),
    ("metadata-too-large", lambda: raw_zip([(PKG_INFO[0].encode(), bytes(2000))]),
     "metadata file is larger than 1000 bytes", {"limits": Limits(max_metadata_size=1000)}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("build", "match", "kwargs"),
    [case[1:] for case in ZIP_CASES],
    ids=[case[0] for case in ZIP_CASES],
)
def test_zip_refusals(build: Callable[[], bytes], match: str, kwargs: dict[str, Any]) -> None:
    refused(build(), "zip", match, **kwargs)


def test_zip_symlink_inside_passes_when_the_policy_allows() -> None:
    data = raw_zip([(b"pkg/sub/l", b"../a")], attr=stat.S_IFLNK | 0o777)
    seen: list[Member] = []
    read(data, "zip", policy=INSIDE, want=lambda m: seen.append(m) or False)
    assert [(m.kind, m.target) for m in seen] == [("symlink", "../a")]


def test_zip_directory_is_bounded_before_zipfile_parses_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parsed: list[int] = []
    monkeypatch.setattr(zipfile.ZipFile, "_RealGetContents", lambda self: parsed.append(1))
    data = zip64_end(raw_zip(_entries(b"pkg/a")), entries=1_500_000)
    refused(data, "zip", "more than 100000 members")
    assert parsed == []


def test_messages_quote_long_names_briefly() -> None:
    message = refused(tar(("x/" * 2000 + "../evil", b"")), "tar", "escapes")
    assert len(message) < 200 and "..." in message


def test_a_control_character_in_a_name_stays_escaped() -> None:
    message = refused(tar(("pkg/a\nb/../../x", b"")), "tar", "escapes")
    assert "\\n" in message


# -- properties -----------------------------------------------------------------------

FORMATS: list[Format] = ["zip", *TAR_FORMATS]
VALID = {
    "zip": zipped(dict([PKG_INFO, ("pkg-1.0/a.py", b"x" * 300)])),
    "tar": tar(member("pkg-1.0", tarfile.DIRTYPE), PKG_INFO,
               member("pkg-1.0/l", tarfile.SYMTYPE, target="PKG-INFO"),
               member("pkg-1.0/x", pax={"path": "pkg-1.0/\u00e9" * 30}), ("pkg-1.0/a", b"x")),
}  # fmt: skip


def _read_any(data: bytes, fmt: Format) -> None:
    try:
        read(data, fmt, policy=INSIDE)
    except ArchiveError as error:
        message = str(error)
        assert "\n" not in message and len(message) < 400


@settings(max_examples=200, deadline=None, database=None)
@given(fmt=st.sampled_from(FORMATS), data=st.binary(max_size=4096))
def test_random_bytes_raise_only_archive_errors(fmt: Format, data: bytes) -> None:
    _read_any(data, fmt)
    _read_any(pack(data, fmt), fmt)


@settings(max_examples=200, deadline=None, database=None)
@given(
    fmt=st.sampled_from(FORMATS),
    edits=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=8),
    cut=st.none() | st.integers(0, 1 << 16),
)
def test_mutated_archives_raise_only_archive_errors(
    fmt: Format, edits: list[tuple[int, int]], cut: int | None
) -> None:
    # A tar is mutated before it is compressed, so that the damage reaches the tar layer.
    plain = bytearray(VALID["zip" if fmt == "zip" else "tar"])
    for position, value in edits:
        plain[position % len(plain)] = value
    _read_any(pack(bytes(plain[:cut] if cut is not None else plain), fmt), fmt)


@settings(max_examples=30, deadline=None, database=None)
@given(shape=st.sampled_from(WORST_CASES), fmt=st.sampled_from(TAR_FORMATS),
       fill=st.integers(0, 255))  # fmt: skip
def test_time_grows_linearly_with_the_input(shape: str, fmt: Format, fill: int) -> None:
    archive_format: Format = "zip" if shape.startswith("zip") else fmt

    def cost(size: int) -> float:
        data = pack(worst_case(shape, size, fill), archive_format)
        return least_cpu(lambda: _read_any(data, archive_format))

    assert cost(64 * 1024) <= 64 * cost(1024) + 0.02


# -- archives inside an archive (a .conda's tar.zst members) ----------------------------


def inner_tars(m: Member) -> Format | None:
    return "tar.zst" if m.path.endswith(".tar.zst") else None


def conda_like(info: bytes, pkg: bytes, **extra: bytes) -> bytes:
    return zipped({"metadata.json": b"{}", "info-x.tar.zst": pack(info, "tar.zst"),
                   "pkg-x.tar.zst": pack(pkg, "tar.zst"), **extra}, zipfile.ZIP_STORED)  # fmt: skip


def test_inner_archives_are_read_and_their_members_offered() -> None:
    seen: list[tuple[str, str]] = []

    def want(m: Member) -> bool:
        seen.append((m.within, m.path))
        return m.path in ("metadata.json", "info/index.json")

    data = conda_like(tar(("info/index.json", b"{1}")), tar(("lib/a", b"x"), ("lib/b", b"")))
    contents = read(data, "zip", want=want, inner=inner_tars, policy=INSIDE)
    # The inner archives themselves are read, not offered; their members are.
    assert seen == [("", "metadata.json"), ("info-x.tar.zst", "info/index.json"),
                    ("pkg-x.tar.zst", "lib/a"), ("pkg-x.tar.zst", "lib/b")]  # fmt: skip
    assert [(m.within, m.path, data) for m, data in contents.found] == [
        ("", "metadata.json", b"{}"), ("info-x.tar.zst", "info/index.json", b"{1}")
    ]  # fmt: skip
    assert contents.members == 3 + 3


def test_inner_archives_count_towards_the_same_bounds() -> None:
    data = conda_like(tar(("info/a", b"")), tar(*((f"lib/{i}", b"") for i in range(5))))
    refused(data, "zip", "has more than 6 members", inner=inner_tars,
            limits=Limits(max_members=6))  # fmt: skip
    big = conda_like(tar(("info/a", bytes(600))), tar(("lib/b", bytes(600))))
    refused(big, "zip", "unpacks to more than 1000 bytes", inner=inner_tars,
            limits=Limits(max_unpacked=1000))  # fmt: skip
    many = zipped({f"{i}.tar.zst": pack(tar(), "tar.zst") for i in range(5)})
    refused(many, "zip", "holds more than 4 archives", inner=inner_tars)


@pytest.mark.parametrize(
    ("info", "pkg", "match"),
    [
        (tar(), tar(("../x", b"")), "The sdist's pkg-x.tar.zst member '../x' has an unsafe"),
        (tar(), tar(member("lib/l", tarfile.SYMTYPE, target="../../x")),
         "member 'lib/l' links outside the archive"),
        # One directory for both: a link in the payload may not carry info/ away.
        (tar(("info/index.json", b"")), tar(member("info", tarfile.SYMTYPE, target="/etc")),
         "links outside the archive"),
        (tar(member("lib", tarfile.SYMTYPE, target=".")), tar(("lib/x", b"")),
         "member 'lib/x' lies beneath the link 'lib'"),
        (tar(), b"not a tar", "pkg-x.tar.zst is not a valid zstd-compressed tar archive"),
    ],
)  # fmt: skip
def test_every_member_of_every_inner_archive_is_checked(
    info: bytes, pkg: bytes, match: str
) -> None:
    refused(conda_like(info, pkg), "zip", match, inner=inner_tars, policy=INSIDE)


def test_an_inner_archive_inside_a_tar() -> None:
    outer = tar(("a.tar.gz", pack(tar(("x/y", b"1")), "tar.gz")), ("b", b""))
    contents = read(outer, "tar", inner=lambda m: "tar.gz" if m.path == "a.tar.gz" else None,
                    want=lambda m: m.path == "x/y")  # fmt: skip
    assert [(m.within, data) for m, data in contents.found] == [("a.tar.gz", b"1")]


def test_inner_archives_are_streamed_not_held() -> None:
    """A 24 MiB payload (incompressible) costs far less than its size in memory."""
    payload = tar(("lib/big", random.Random(1).randbytes(24 * MiB)))
    data = conda_like(tar(("info/index.json", b"{}")), payload)
    tracemalloc.start()
    try:
        read(data, "zip", inner=inner_tars, want=lambda m: m.path == "info/index.json")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * MiB


def test_without_zstandard_the_refusal_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    data = pack(tar(("a", b"")), "tar.zst")
    monkeypatch.setitem(__import__("sys").modules, "zstandard", None)
    refused(data, "tar.zst", r"the conda extra: pip install 'zstandard>=0.22'")
