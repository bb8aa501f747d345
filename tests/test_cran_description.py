"""DESCRIPTION read from .tar.gz / .zip / .tgz in memory; hostile archives refused.

The archive builders here are shared by the other CRAN test modules.
"""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
from collections.abc import Iterable

import pytest

from private_channels.core.limits import Limits
from private_channels.cran.description import (
    InvalidPackageError,
    parse_built,
    r_version_key,
    read_package,
    valid_package_name,
    valid_version,
)

from .archives import tar

WINDOWS_BUILT = "R 4.2.2; x86_64-w64-mingw32; 2022-11-10 12:00:00 UTC; windows"
MAC_ARM_BUILT = "R 4.3.1; aarch64-apple-darwin20; 2023-07-01 12:00:00 UTC; unix"


def description(name: str = "abc", version: str = "1.0", **fields: str) -> str:
    values = {"Package": name, "Version": version, "Title": "A Test", "License": "GPL-2"}
    values.update(fields)
    return "".join(f"{key}: {value}\n" for key, value in values.items())


Member = tuple[str, bytes | None, bytes]  # name, type (None: regular file), content / link


def tarball(members: Iterable[tarfile.TarInfo | tuple[str, bytes]]) -> bytes:
    # mtime=0: the same members always give the same bytes (stable test ids, xdist).
    return gzip.compress(tar(*members), mtime=0)


def source_package(
    name: str = "abc",
    version: str = "1.0",
    *,
    text: str | bytes | None = None,
    extra: Iterable[tarfile.TarInfo | tuple[str, bytes]] = (),
    **fields: str,
) -> bytes:
    """A minimal source tarball like R CMD build makes: <name>/DESCRIPTION and R code."""
    body = text if text is not None else description(name, version, **fields)
    raw = body.encode() if isinstance(body, str) else body
    directory = tarfile.TarInfo(name)
    directory.type = tarfile.DIRTYPE
    directory.mode = 0o755
    return tarball(
        [directory, (f"{name}/DESCRIPTION", raw), (f"{name}/R/{name}.R", b"f <- 1\n"), *extra]
    )


def windows_zip(
    name: str = "abc",
    version: str = "1.0",
    *,
    built: str = WINDOWS_BUILT,
    extra: Iterable[tuple[zipfile.ZipInfo | str, bytes]] = (),
) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        fixed = (2024, 1, 1, 0, 0, 0)
        archive.writestr(
            zipfile.ZipInfo(f"{name}/DESCRIPTION", fixed), description(name, version, Built=built)
        )
        archive.writestr(zipfile.ZipInfo(f"{name}/R/{name}", fixed), b"lazy-load")
        for info, data in extra:
            archive.writestr(info, data)
    return buffer.getvalue()


def mac_tgz(name: str = "abc", version: str = "1.0", *, built: str = MAC_ARM_BUILT) -> bytes:
    return source_package(name, version, Built=built)


def _link(name: str, kind: bytes, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def read(data: bytes, *, binary: bool = False, linux: bool = False, limits: Limits | None = None):  # type: ignore[no-untyped-def]
    return read_package(io.BytesIO(data), binary=binary, linux=linux, limits=limits)


def refused(data: bytes, match: str, **kwargs) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidPackageError, match=match) as info:
        read(data, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.endswith(".")


# -- names, versions, fields -------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("abc", True),
        ("data.table", True),
        ("R6", True),
        ("a1", True),
        ("a", False),
        ("1abc", False),
        ("abc.", False),
        ("ab_c", False),
        ("ab-c", False),
        ("äbc", False),
        ("ab c", False),
        (".abc", False),
    ],
)
def test_package_names_follow_r(name: str, ok: bool) -> None:
    assert valid_package_name(name) is ok


@pytest.mark.parametrize(
    ("version", "ok"),
    [
        ("1.0", True),
        ("1-0", True),
        ("0.1.2.3", True),
        ("1.0-10", True),
        ("1", False),
        ("1.", False),
        ("1.0a", False),
        ("v1.0", False),
        ("1..0", False),
        ("1.0 ", False),
    ],
)
def test_versions_follow_r(version: str, ok: bool) -> None:
    assert valid_version(version) is ok


def test_versions_order_as_r_does() -> None:
    versions = ["1.10", "1.9", "1.9-1", "2.0", "1.9.0"]
    assert sorted(versions, key=r_version_key) == ["1.9", "1.9.0", "1.9-1", "1.10", "2.0"]


def test_reads_a_source_package() -> None:
    package = read(source_package("abc", "1.0-2", Imports="utils,\n    stats (>= 3.5)"))
    assert (package.kind, package.name, package.version) == ("source", "abc", "1.0-2")
    assert package.filename == "abc_1.0-2.tar.gz"
    assert package.fields["Imports"] == "utils,\nstats (>= 3.5)"
    assert package.has_src is False


def test_notices_compiled_code() -> None:
    package = read(source_package(extra=[("abc/src/abc.c", b"int x;\n")]))
    assert package.has_src is True


def test_reads_binaries() -> None:
    windows = read(windows_zip(), binary=True)
    assert windows.kind == "win.binary" and windows.filename == "abc_1.0.zip"
    assert windows.built is not None and windows.built.r_version == "4.2"
    mac = read(mac_tgz(), binary=True)
    assert mac.kind == "mac.binary" and mac.filename == "abc_1.0.tgz"
    assert mac.built is not None and mac.built.platform == "aarch64-apple-darwin20"


def test_parse_built() -> None:
    built = parse_built("R 4.3.1; ; 2023-07-01 12:00:00 UTC; unix")
    assert (built.r_version, built.platform, built.os) == ("4.3", "", "unix")
    with pytest.raises(InvalidPackageError):
        parse_built("R 4.3.1; x86_64")


def test_accepts_latin1_crlf_and_bom() -> None:
    text = description(Encoding="latin1", Author="Jos\xe9 M\xfcller").replace("\n", "\r\n")
    package = read(source_package(text=b"\xef\xbb\xbf" + text.encode("latin-1")))
    assert package.fields["Author"] == "José Müller"
    assert package.fields["Package"] == "abc"


def test_accepts_utf8() -> None:
    package = read(source_package(Author="José Müller"))
    assert package.fields["Author"] == "José Müller"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (description(Author="x").encode("utf-8") + b"Note: \xe9\n", "not valid UTF-8"),
        (description(Encoding="EBCDIC").encode(), "Encoding"),
        (b"Version: 1.0\n", "Package"),
        (description(name="1abc").encode(), "Package"),
        (description(version="1.0.x").encode(), "Version"),
        (description(version="1").encode(), "Version"),
        (description(Imports="rlang; system('x')").encode(), "Imports"),
        (description(Depends="R (>= 3.5.0), utils (~ 1)").encode(), "Depends"),
        (description(NeedsCompilation="maybe").encode(), "NeedsCompilation"),
        (description(Priority="base").encode(), "Priority"),
        (description().encode() + b"\nPackage: evil\nVersion: 6.6\n", "one record"),
        (b" Package: abc\n", "malformed"),
        (description().encode() + b"Version: 2.0\n", "malformed"),
        (description(Built=WINDOWS_BUILT).encode(), "binary"),
    ],
    ids=lambda value: value if isinstance(value, str) else "data",
)
def test_refuses_bad_descriptions(text: bytes, match: str) -> None:
    refused(source_package(text=text), match)


@pytest.mark.parametrize("name", ["stats", "utils", "base", "tools", "grDevices", "Stats"])
def test_refuses_base_package_names(name: str) -> None:
    refused(source_package(name), "ships with R")


# -- hostile archives --------------------------------------------------------------


def test_refuses_symlinked_description() -> None:
    directory = tarfile.TarInfo("abc")
    directory.type = tarfile.DIRTYPE
    data = tarball([directory, _link("abc/DESCRIPTION", tarfile.SYMTYPE, "/etc/passwd")])
    refused(data, "link")


@pytest.mark.parametrize(
    "member",
    [
        _link("abc/inst/x", tarfile.SYMTYPE, "../../etc"),
        _link("abc/inst/y", tarfile.LNKTYPE, "abc/DESCRIPTION"),
        _link("abc/dev", tarfile.CHRTYPE),
        _link("abc/blk", tarfile.BLKTYPE),
        _link("abc/fifo", tarfile.FIFOTYPE),
    ],
)
def test_refuses_links_and_devices_anywhere(member: tarfile.TarInfo) -> None:
    refused(source_package(extra=[member]), "link or a device")


@pytest.mark.parametrize(
    "path",
    ["/abc/R/x.R", "abc/../../etc/x", "../abc/x", "abc/./x", "abc//x", "abc\\..\\x", "C:/abc/x"],
)
def test_refuses_unsafe_paths(path: str) -> None:
    refused(source_package(extra=[(path, b"x")]), "unsafe path")


def test_refuses_two_top_level_directories() -> None:
    refused(source_package(extra=[("other/DESCRIPTION", b"x")]), "one top-level directory")
    refused(source_package(extra=[("README", b"x")]), "one top-level directory")


def test_refuses_a_directory_not_named_after_the_package() -> None:
    refused(tarball([("xyz/DESCRIPTION", description("abc").encode())]), "not named after")


def test_refuses_missing_or_doubled_description() -> None:
    refused(tarball([("abc/R/abc.R", b"x")]), "no abc/DESCRIPTION")
    refused(source_package(extra=[("abc/DESCRIPTION", b"Package: abc\n")]), "twice")


def test_bounds_description_size() -> None:
    big = description(Note="x" * 2000)
    refused(source_package(text=big), "larger than", limits=Limits(max_metadata_size=1000))
    huge = description() + "Note: " + "y" * (1024 * 1024 + 1) + "\n"
    refused(source_package(text=huge), "larger than")


def test_bounds_member_count_and_unpacked_size() -> None:
    many = [(f"abc/inst/{i}", b"") for i in range(20)]
    refused(source_package(extra=many), "more than 10 members", limits=Limits(max_members=10))
    bomb = [("abc/inst/zeros", b"\0" * (4 * 1024 * 1024))]
    data = source_package(extra=bomb)
    assert len(data) < 64 * 1024
    refused(data, "unpacks to more", limits=Limits(max_unpacked=1024 * 1024))


def test_bounds_a_zip_directory_before_parsing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    many = windows_zip(extra=[(f"abc/inst/{i}", b"") for i in range(200)])
    parsed: list[int] = []
    # ZipFile's constructor parses the whole directory; it must not be reached.
    monkeypatch.setattr(zipfile.ZipFile, "_RealGetContents", lambda self: parsed.append(1))
    refused(many, "more than 100 members", binary=True, limits=Limits(max_members=100))
    refused(many, "list of members is larger than 4096 bytes", binary=True,
            limits=Limits(max_zip_directory=4096))  # fmt: skip
    assert parsed == []


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"not an archive at all", "neither"),
        (gzip.compress(b"not a tar"), "not a valid gzip-compressed tar"),
        (source_package()[:-40], "not a valid gzip-compressed tar"),
        (b"\x1f\x8b\x08\x00garbage", "not a valid gzip-compressed tar"),
        (windows_zip(), "Windows binary"),
    ],
    ids=lambda value: value if isinstance(value, str) else "data",
)
def test_refuses_broken_files(data: bytes, match: str) -> None:
    refused(data, match)


def test_zip_refuses_symlinks_and_escapes() -> None:
    link = zipfile.ZipInfo("abc/DESCRIPTION.lnk")
    link.external_attr = 0o120777 << 16
    refused(windows_zip(extra=[(link, b"/etc/passwd")]), "link or a device", binary=True)
    refused(windows_zip(extra=[("../evil", b"x")]), "unsafe path", binary=True)
    refused(windows_zip(extra=[("other/x", b"x")]), "one top-level", binary=True)


def test_zip_refuses_a_symlinked_description() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        link = zipfile.ZipInfo("abc/DESCRIPTION")
        link.external_attr = 0o120777 << 16
        archive.writestr(link, "/etc/passwd")
    refused(buffer.getvalue(), "link or a device", binary=True)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (source_package(), "Built field"),
        (windows_zip(built="R 4.2.2; x86_64-pc-linux-gnu; 2022-11-10; unix"), "built for"),
        (mac_tgz(built=WINDOWS_BUILT), "built for"),
        (mac_tgz(built="R 4.2.2; x86_64-pc-linux-gnu; 2022-11-10; unix"), "built for"),
        (mac_tgz(built="R 4.2.2 x86_64"), "Built"),
    ],
    ids=lambda value: value if isinstance(value, str) else "data",
)
def test_binaries_must_say_where_they_run(data: bytes, match: str) -> None:
    refused(data, match, binary=True)


def test_refuses_oversized_extended_headers() -> None:
    member = tarfile.TarInfo("abc/inst/x")
    member.pax_headers = {"comment": "x" * (2 * 1024 * 1024)}
    refused(source_package(extra=[member]), "oversized extended tar header")


def test_zip_refuses_encrypted_members() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("abc/DESCRIPTION", description(Built=WINDOWS_BUILT))
    data = bytearray(buffer.getvalue())
    # Set the "encrypted" flag bit in the local and the central directory headers.
    data[6] |= 0x1
    central = data.index(b"PK\x01\x02")
    data[central + 8] |= 0x1
    refused(bytes(data), "not a valid zip archive", binary=True)


LINUX_BUILT = "R 4.2.2; x86_64-pc-linux-gnu; 2022-11-10 12:00:00 UTC; unix"


def test_reads_linux_binaries() -> None:
    package = read(source_package(Built=LINUX_BUILT), binary=True, linux=True)
    assert package.kind == "linux.binary" and package.filename == "abc_1.0.tar.gz"
    assert package.named_by("abc_1.0_R_x86_64-pc-linux-gnu.tar.gz")
    assert package.named_by("abc_1.0.tar.gz")
    assert not package.named_by("abc_1.0_R_x86_64/../x.tar.gz")
    assert not package.named_by("abc_1.1_R_x86_64-pc-linux-gnu.tar.gz")
    pure_r = read(source_package(Built="R 4.2.2; ; 2022-11-10; unix"), binary=True, linux=True)
    assert pure_r.built is not None and pure_r.built.platform == ""


@pytest.mark.parametrize(
    ("data", "linux", "match"),
    [
        (source_package(Built=MAC_ARM_BUILT), True, "built for"),
        (source_package(Built=LINUX_BUILT), False, "distribution"),
        (windows_zip(), True, "without a distribution"),
    ],
    ids=["mac-as-linux", "linux-without-distribution", "zip-as-linux"],
)
def test_linux_binaries_must_be_linux(data: bytes, linux: bool, match: str) -> None:
    refused(data, match, binary=True, linux=linux)
