"""Reading uploaded distributions: filenames, bounded archives, metadata checks."""

from __future__ import annotations

import io
import re
import tarfile
import zipfile
from pathlib import Path

import pytest

from private_channels.core.limits import Limits
from private_channels.pypi import metadata as metadata_module
from private_channels.pypi.metadata import (
    InvalidDistributionError,
    is_known_metadata_version,
    parse_filename,
    read_distribution,
)

from .packages import make_sdist, make_wheel, metadata_text


@pytest.mark.parametrize(
    ("filename", "kind", "name", "version"),
    [
        ("demo-1.0-py3-none-any.whl", "wheel", "demo", "1.0"),
        (
            "Demo_Pkg-2.0.post1-1-cp311-cp311-manylinux_2_17_x86_64.whl",
            "wheel",
            "demo-pkg",
            "2.0.post1",
        ),
        ("demo_pkg-1.0+local.tar.gz", "sdist", "demo-pkg", "1.0+local"),
        ("Demo-Pkg-1.0.zip", "sdist", "demo-pkg", "1.0"),
    ],
)
def test_parse_filename(filename: str, kind: str, name: str, version: str) -> None:
    parsed = parse_filename(filename)
    assert (parsed.kind, parsed.name, str(parsed.version)) == (kind, name, version)


@pytest.mark.parametrize(
    ("filename", "says"),
    [
        ("demo-1.0.txt", "neither a wheel"),
        ("demo-1.0.tar.bz2", "neither a wheel"),
        ("demo.whl", "not a valid wheel filename"),
        ("demo-notaversion.tar.gz", "not a valid sdist filename"),
        ("../demo-1.0.tar.gz", "only letters"),
        ("a/demo-1.0.tar.gz", "only letters"),
        ("-demo-1.0.tar.gz", "only letters"),
        ("x--1.0.tar.gz", "not a valid sdist filename"),
        ("demo-1.0.tar.gz\n", "only letters"),
        ("d" * 300 + "-1.0.tar.gz", "only letters"),
    ],
)
def test_bad_filenames(filename: str, says: str) -> None:
    with pytest.raises(InvalidDistributionError, match=says):
        parse_filename(filename)


def test_metadata_versions() -> None:
    for known in ("1.0", "1.1", "1.2", "2.1", "2.2", "2.3", "2.4"):
        assert is_known_metadata_version(known)
    for unknown in ("2.0", "3.0", "1.3", "", "two"):
        assert not is_known_metadata_version(unknown)


@pytest.fixture(params=["own reading", "parse_email"])
def reading(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each metadata check twice: by the upload's own reading of the header block, and
    by packaging's ``parse_email``, which reads what the own reading leaves."""
    if request.param == "parse_email":
        monkeypatch.setattr(metadata_module, "_header_fields", lambda data: None)
    return str(request.param)


def read(path: Path, limits: Limits | None = None):  # type: ignore[no-untyped-def]
    with path.open("rb") as stream:
        return read_distribution(path.name, stream, limits=limits)


def test_wheel_and_sdist_metadata(tmp_path: Path, reading: str) -> None:
    wheel = read(make_wheel(tmp_path, "Demo.Pkg", "1.0", requires_python=">=3.8"))
    assert (wheel.kind, wheel.name, wheel.display_name, wheel.version) == (
        "wheel",
        "demo-pkg",
        "Demo.Pkg",
        "1.0",
    )
    assert wheel.requires_python == ">=3.8"
    assert wheel.metadata == metadata_text("Demo.Pkg", "1.0", requires_python=">=3.8").encode()
    sdist = read(make_sdist(tmp_path, "Demo.Pkg", "1.0.0", metadata_version="2.4"))
    assert (sdist.kind, sdist.version, sdist.metadata_version) == ("sdist", "1.0.0", "2.4")
    assert sdist.requires_python is None


def test_filename_version_may_differ_in_spelling_only(tmp_path: Path) -> None:
    path = make_wheel(tmp_path, "demo", "1.0", metadata=metadata_text("demo", "1.0.0"))
    assert read(path).version == "1.0.0"


def _tar(path: Path, members: list[tarfile.TarInfo], data: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for info in members:
            content = data.get(info.name)
            if content is not None:
                info.size = len(content)
            archive.addfile(info, io.BytesIO(content) if content is not None else None)
    return path


def _file(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


PKG_INFO = metadata_text("demo", "1.0").encode()


@pytest.mark.parametrize(
    ("member", "says"),
    [
        (_file("../evil"), "escapes the archive"),
        (_file("/etc/evil"), "escapes the archive"),
        (_file("demo-1.0/../../evil"), "escapes the archive"),
        (_link("demo-1.0/link", "../../etc/passwd"), "links outside"),
        (_link("demo-1.0/link", "/etc/passwd"), "links outside"),
        (_link("demo-1.0/hard", "../x", tarfile.LNKTYPE), "links outside"),
        (_link("demo-1.0/fifo", "", tarfile.FIFOTYPE), "device or FIFO"),
        (_link("demo-1.0/dev", "", tarfile.CHRTYPE), "device or FIFO"),
    ],
)
def test_sdist_members_may_not_escape(tmp_path: Path, member: tarfile.TarInfo, says: str) -> None:
    path = _tar(
        tmp_path / "demo-1.0.tar.gz",
        [_file("demo-1.0/PKG-INFO"), member],
        {"demo-1.0/PKG-INFO": PKG_INFO, member.name: b"x"}
        if member.isfile()
        else {"demo-1.0/PKG-INFO": PKG_INFO},
    )
    with pytest.raises(InvalidDistributionError, match=says):
        read(path)


def test_sdist_links_inside_are_fine(tmp_path: Path) -> None:
    path = _tar(
        tmp_path / "demo-1.0.tar.gz",
        [_file("demo-1.0/PKG-INFO"), _link("demo-1.0/sub/link", "../PKG-INFO")],
        {"demo-1.0/PKG-INFO": PKG_INFO},
    )
    assert read(path).name == "demo"


def test_archive_bounds(tmp_path: Path) -> None:
    sdist = make_sdist(tmp_path, "demo", "1.0")
    with pytest.raises(InvalidDistributionError, match="more than 1 members"):
        read(sdist, Limits(max_members=1))
    with pytest.raises(InvalidDistributionError, match="metadata file is larger"):
        read(sdist, Limits(max_metadata_size=10))
    with pytest.raises(InvalidDistributionError, match="unpacks to more than"):
        read(sdist, Limits(max_unpacked=100))
    wheel = make_wheel(tmp_path, "demo", "1.0")
    with pytest.raises(InvalidDistributionError, match="more than 2 members"):
        read(wheel, Limits(max_members=2))
    with pytest.raises(InvalidDistributionError, match="metadata file is larger"):
        read(wheel, Limits(max_metadata_size=10))
    with pytest.raises(InvalidDistributionError, match="unpacks to more than"):
        read(wheel, Limits(max_unpacked=10))


def test_gzip_bomb_stops_at_the_bound(tmp_path: Path) -> None:
    path = _tar(
        tmp_path / "demo-1.0.tar.gz",
        [_file("demo-1.0/PKG-INFO"), _file("demo-1.0/zeros")],
        {"demo-1.0/PKG-INFO": PKG_INFO, "demo-1.0/zeros": bytes(50 * 1024 * 1024)},
    )
    assert path.stat().st_size < 200 * 1024
    with pytest.raises(InvalidDistributionError, match="unpacks to more than"):
        read(path, Limits(max_unpacked=1024 * 1024))


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize(
    ("members", "says"),
    [
        ({"demo-1.0.dist-info/METADATA": PKG_INFO, "../evil.py": b""}, "escapes the archive"),
        ({"demo-1.0.dist-info/METADATA": PKG_INFO, "/abs.py": b""}, "escapes the archive"),
        ({"demo-1.0.dist-info/METADATA": PKG_INFO, "C:/win.py": b""}, "escapes the archive"),
        ({"demo-1.0.dist-info/METADATA": PKG_INFO, "a\\..\\..\\b": b""}, "escapes the archive"),
        ({"demo/__init__.py": b""}, "no METADATA"),
        ({"demo-1.0.dist-info/sub/METADATA": PKG_INFO}, "no METADATA"),
        (
            {"demo-1.0.dist-info/METADATA": PKG_INFO, "other-1.0.dist-info/METADATA": PKG_INFO},
            "more than one METADATA",
        ),
    ],
)
def test_wheel_structure(tmp_path: Path, members: dict[str, bytes], says: str) -> None:
    with pytest.raises(InvalidDistributionError, match=says):
        read(_zip(tmp_path / "demo-1.0-py3-none-any.whl", members))


def test_zip_member_twice(tmp_path: Path) -> None:
    path = tmp_path / "demo-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("demo-1.0.dist-info/METADATA", PKG_INFO)
        archive.writestr("demo/__init__.py", b"")
        with pytest.warns(UserWarning, match="Duplicate name"):
            archive.writestr("demo/__init__.py", b"import os")
    with pytest.raises(
        InvalidDistributionError, match=re.escape("'demo/__init__.py' more than once")
    ):
        read(path)


def test_dot_slash_member_names(tmp_path: Path) -> None:
    path = _tar(
        tmp_path / "demo-1.0.tar.gz",
        [_file("./demo-1.0/PKG-INFO")],
        {"./demo-1.0/PKG-INFO": PKG_INFO},
    )
    assert read(path).name == "demo"


def test_zip_sdist(tmp_path: Path) -> None:
    path = _zip(tmp_path / "demo-1.0.zip", {"demo-1.0/PKG-INFO": PKG_INFO})
    assert read(path).kind == "sdist"
    with pytest.raises(InvalidDistributionError, match="no PKG-INFO"):
        read(_zip(tmp_path / "demo-2.0.zip", {"demo-2.0/setup.py": b""}))


def test_damaged_archives(tmp_path: Path) -> None:
    (tmp_path / "demo-1.0-py3-none-any.whl").write_bytes(b"not a zip")
    with pytest.raises(InvalidDistributionError, match="not a valid zip"):
        read(tmp_path / "demo-1.0-py3-none-any.whl")
    (tmp_path / "demo-1.0.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(InvalidDistributionError, match="not a valid gzip-compressed tar"):
        read(tmp_path / "demo-1.0.tar.gz")
    (tmp_path / "good").mkdir()
    good = make_sdist(tmp_path / "good", "demo", "1.0")
    truncated = tmp_path / "demo-1.0.tar.gz"
    truncated.write_bytes(good.read_bytes()[:-40])
    with pytest.raises(InvalidDistributionError, match="not a valid gzip-compressed tar"):
        read(truncated)
    with pytest.raises(InvalidDistributionError, match="no PKG-INFO"):
        read(
            _tar(
                tmp_path / "demo-1.0.tar.gz",
                [_file("demo-1.0/setup.py")],
                {"demo-1.0/setup.py": b""},
            )
        )
    with pytest.raises(InvalidDistributionError, match="no PKG-INFO"):
        read(_tar(tmp_path / "demo-1.0.tar.gz", [_file("PKG-INFO")], {"PKG-INFO": PKG_INFO}))


def _damaged(data: bytes, start: int) -> bytes:
    """``data`` with eight bytes of its compressed stream overwritten from ``start``."""
    return data[:start] + b"\xff" * 8 + data[start + 8 :]


# A long METADATA, so that the damage falls inside its compressed stream.
LONG_METADATA = PKG_INFO + b"".join(str(n).encode() for n in range(20000))


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_damaged_compressed_metadata_in_a_wheel(tmp_path: Path, method: int) -> None:
    path = tmp_path / "demo-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", method) as archive:
        archive.writestr("demo-1.0.dist-info/METADATA", LONG_METADATA)
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("demo-1.0.dist-info/METADATA")
    start = info.header_offset + 30 + len(info.filename) + 40
    path.write_bytes(_damaged(path.read_bytes(), start))
    with pytest.raises(InvalidDistributionError, match="METADATA cannot be read"):
        read(path)


def test_damaged_deflate_stream_in_an_sdist(tmp_path: Path) -> None:
    path = _tar(tmp_path / "demo-1.0.tar.gz", [_file("demo-1.0/PKG-INFO")],
                {"demo-1.0/PKG-INFO": LONG_METADATA})  # fmt: skip
    path.write_bytes(_damaged(path.read_bytes(), 8500))  # in the member, past its header
    with pytest.raises(InvalidDistributionError, match="not a valid gzip-compressed tar"):
        read(path)


@pytest.mark.parametrize(
    ("metadata", "says"),
    [
        (metadata_text("other", "1.0"), "names project 'demo' but its METADATA says 'other'"),
        (metadata_text("demo", "2.0"), "has version '1.0' but its METADATA says '2.0'"),
        (metadata_text("demo", "1.0", metadata_version="3.0"), "Metadata-Version '3.0'"),
        (metadata_text("demo", "1.0", metadata_version="2.0"), "Metadata-Version '2.0'"),
        ("Name: demo\nVersion: 1.0\n\n", "no Metadata-Version"),
        ("Metadata-Version: 2.1\nVersion: 1.0\n\n", "no Name"),
        ("Metadata-Version: 2.1\nName: demo\n\n", "no Version"),
        ("Metadata-Version: 2.1\nName: demo\nName: evil\nVersion: 1.0\n\n", "more than one"),
        ("Metadata-Version: 2.1\nName: demo\nVersion: 1.0\nversion: 1.0\n\n", "more than one"),
        (
            "Metadata-Version: 2.1\nMetadata-Version: 2.1\nName: demo\nVersion: 1.0\n\n",
            "more than one .* Metadata-Version field",
        ),
        ("Metadata-Version: 2.1\nName : demo\nVersion: 1.0\n\n", "no Name"),
        ("Metadata-Version: 2.1\nVersion: 1.0\n\nName: demo\n", "no Name"),
        ("Metadata-Version: 2.1\nName:\n demo\nVersion: 1.0\n\n", "invalid project name"),
        ("Metadata-Version: 2.1\nName: demo\nVersion: one\n\n", "invalid version 'one'"),
        ("Metadata-Version: 2.1\nName: -demo-\nVersion: 1.0\n\n", "invalid project name"),
        (
            metadata_text("demo", "1.0", requires_python=">=3.8,,<"),
            "invalid Requires-Python '>=3.8,,<'",
        ),
    ],
)
def test_metadata_must_agree(tmp_path: Path, metadata: str, says: str, reading: str) -> None:
    with pytest.raises(InvalidDistributionError, match=says):
        read(make_wheel(tmp_path, "demo", "1.0", metadata=metadata))
    sdist_says = says.replace("METADATA", "PKG-INFO")
    other = tmp_path / "sdist"
    other.mkdir()
    with pytest.raises(InvalidDistributionError, match=sdist_says):
        read(make_sdist(other, "demo", "1.0", metadata=metadata))


# What build tools write: a long description after the headers, in any language, lines
# that end in CRLF on Windows, a field folded onto a second line.
README = "# Démo\n\nWhat it does, in many words: été, 東京.\n" * 200


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_typical_metadata_is_read_without_the_email_parser(tmp_path: Path, newline: str) -> None:
    text = (
        "Metadata-Version: 2.4\nName: Demo.Pkg\nVersion: 1.0\nSummary: A demo,\n folded\n"
        "Classifier: Programming Language :: Python :: 3\nRequires-Python: >=3.9\n"
        "Description-Content-Type: text/markdown\n\n" + README
    ).replace("\n", newline)
    assert metadata_module._header_fields(text.encode()) == {
        "metadata_version": ["2.4"], "name": ["Demo.Pkg"], "version": ["1.0"],
        "requires_python": [">=3.9"],
    }  # fmt: skip
    wheel = read(make_wheel(tmp_path, "Demo.Pkg", "1.0", metadata=text))
    assert (wheel.name, wheel.version, wheel.requires_python) == ("demo-pkg", "1.0", ">=3.9")
    assert wheel.metadata == text.encode()


@pytest.mark.parametrize(
    "text",
    [
        "Metadata-Version: 2.1\nAuthor: Jürgen\nName: demo\nVersion: 1.0\n\n",  # not ASCII
        "Metadata-Version: 2.1\rName: demo\nVersion: 1.0\n\n",  # a bare CR ends a line
        "From demo\nMetadata-Version: 2.1\nName: demo\nVersion: 1.0\n\n",  # an envelope
        " x\nMetadata-Version: 2.1\nName: demo\nVersion: 1.0\n\n",  # folded onto nothing
        ":x\nMetadata-Version: 2.1\nName: demo\nVersion: 1.0\n\n",  # no name
        "Metadata-Version: 2.1\nContent-Type: multipart/mixed\nName: demo\nVersion: 1.0\n",
    ],
)
def test_what_the_own_reading_leaves_to_the_email_parser(tmp_path: Path, text: str) -> None:
    assert metadata_module._header_fields(text.encode()) is None
    wheel = read(make_wheel(tmp_path, "demo", "1.0", metadata=text))
    assert (wheel.name, wheel.version) == ("demo", "1.0")
