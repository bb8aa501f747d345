"""conda/package.py: filenames, index.json, and reading .conda and .tar.bz2 files."""

from __future__ import annotations

import bz2
import contextlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from private_channels.conda.package import (
    CondaFilename,
    InvalidPackageError,
    check_index,
    parse_filename,
    read_package,
)

from .archives import least_cpu, member, tar
from .conda_packages import build_conda, demo_index, index_json, raw_conda, zst


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("demo-1.0-0.conda", ("demo", "1.0", "0", ".conda")),
        ("demo-1.0-0.tar.bz2", ("demo", "1.0", "0", ".tar.bz2")),
        ("python-dateutil-2.9.0-pyhd8ed1ab_0.conda",
         ("python-dateutil", "2.9.0", "pyhd8ed1ab_0", ".conda")),
        ("_openmp_mutex-4.5-2_gnu.tar.bz2", ("_openmp_mutex", "4.5", "2_gnu", ".tar.bz2")),
        ("numpy-1!2.0.0rc1-py312h1_0.conda", ("numpy", "1!2.0.0rc1", "py312h1_0", ".conda")),
    ],
)  # fmt: skip
def test_filenames_parse(filename: str, expected: tuple[str, ...]) -> None:
    parsed = parse_filename(filename)
    assert (parsed.name, parsed.version, parsed.build, parsed.extension) == expected
    assert str(parsed) == filename


@pytest.mark.parametrize(
    "filename",
    ["demo-1.0.conda", "demo-1.0-0.zip", "Demo-1.0-0.conda", "demo-1.0-0.tar.gz",
     "demo--0.conda", "-1.0-0.conda", "demo-1.0-.conda", "demo-1.0-0.conda/x",
     "demo-1.0-0 .conda", "demo-1.0-0.Conda", "demo-1.0-0.tar.bz2.conda.x", ""],
)  # fmt: skip
def test_filenames_that_are_not_conda_packages(filename: str) -> None:
    with pytest.raises(InvalidPackageError, match="is not a conda package filename"):
        parse_filename(filename)


# -- real packages, built by conda-package-handling -------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("conda")
    return {
        ".conda": build_conda(tmp, "beta", "2.1", "py_0", depends=["alpha >=1"],
                              constrains=["gamma <2"], about={"summary": "Beta.", "home": "h"}),
        ".tar.bz2": build_conda(tmp, "alpha", "1.0", "h1_3", extension=".tar.bz2",
                                subdir="linux-64", arch="x86_64", platform="linux"),
    }  # fmt: skip


def test_a_conda_package_is_read(built: dict[str, Path]) -> None:
    with built[".conda"].open("rb") as stream:
        package = read_package("beta-2.1-py_0.conda", stream)
        assert stream.tell() == 0
    assert package.filename == CondaFilename("beta", "2.1", "py_0", ".conda")
    assert package.subdir == "noarch"
    assert package.index["depends"] == ["alpha >=1"]
    assert package.index["constrains"] == ["gamma <2"]
    assert package.index["noarch"] == "generic"
    assert package.about == {"summary": "Beta.", "home": "h"}


def test_a_tar_bz2_package_is_read(built: dict[str, Path]) -> None:
    with built[".tar.bz2"].open("rb") as stream:
        package = read_package("alpha-1.0-h1_3.tar.bz2", stream)
    assert package.subdir == "linux-64"
    assert package.index["build_number"] == 3
    assert package.index["constrains"] == []  # added when index.json has none
    assert (package.index["arch"], package.index["platform"]) == ("x86_64", "linux")


def test_the_extension_must_match_the_content(built: dict[str, Path]) -> None:
    data = built[".conda"].read_bytes()
    with pytest.raises(InvalidPackageError, match="is not bzip2-compressed"):
        read_package("beta-2.1-py_0.tar.bz2", io.BytesIO(data))
    with pytest.raises(InvalidPackageError, match="is not a zip archive"):
        read_package("alpha-1.0-h1_3.conda", io.BytesIO(built[".tar.bz2"].read_bytes()))


# -- what index.json must say -----------------------------------------------------------


def _index(**changes: Any) -> dict[str, Any]:
    doc = index_json("demo", "1.0", "0")
    for key, value in changes.items():
        if value is None:
            del doc[key]
        else:
            doc[key] = value
    return doc


DEMO = parse_filename("demo-1.0-0.conda")


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"name": "other"}, "its info/index.json says name 'other'"),
        ({"version": "2.0"}, "says version '2.0'"),
        ({"build": "1"}, "says build '1'"),
        ({"subdir": "linux-65"}, "subdir 'linux-65' is not a conda subdir"),
        ({"subdir": "linux-64"}, "is noarch but its info/index.json puts it in linux-64"),
        ({"build_number": -1}, "'build_number' must be a non-negative integer"),
        ({"build_number": True}, "'build_number' must be a non-negative integer"),
        ({"depends": "alpha"}, "'depends' must be a list of at most 2048 strings"),
        ({"depends": ["a"] * 3000}, "'depends' must be a list"),
        ({"depends": ["a\nb"]}, "'depends' must be a list"),
        ({"constrains": [1]}, "'constrains' must be a list"),
        ({"noarch": "native"}, "'noarch' must be 'python' or 'generic'"),
        ({"license": ["MIT"]}, "'license' must be a string"),
        ({"timestamp": 1.5}, "'timestamp' must be milliseconds since the epoch"),
        ({"name": None}, "has no 'name'"),
        ({"build_number": None}, "has no 'build_number'"),
        ({"subdir": None}, "has no 'subdir'"),
    ],
)  # fmt: skip
def test_index_json_is_checked(changes: dict[str, Any], says: str) -> None:
    with pytest.raises(InvalidPackageError, match=says.replace("(", r"\(")) as info:
        check_index(_index(**changes), DEMO)
    assert "\n" not in str(info.value)


def test_only_the_fields_clients_read_are_kept() -> None:
    subdir, index = check_index(_index(extra={"a": 1}, track_features="x", purls=["pkg:x"]), DEMO)
    assert subdir == "noarch"
    assert "extra" not in index
    assert index["track_features"] == "x" and index["purls"] == ["pkg:x"]


# -- what a file must hold ---------------------------------------------------------------


def _read(data: bytes, filename: str = "demo-1.0-0.conda") -> object:
    return read_package(filename, io.BytesIO(data))


def tar_bz2(*members: tarfile.TarInfo | tuple[str, bytes]) -> bytes:
    return bz2.compress(tar(*members))


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (lambda: raw_conda({"info/index.json": b"{"}), "info/index.json is not valid UTF-8 JSON"),
        (lambda: raw_conda({"info/index.json": b"[" * 100_000}), "is not valid UTF-8 JSON"),
        (lambda: raw_conda({"info/index.json": b"[]"}), "info/index.json is not a JSON object"),
        (lambda: raw_conda({"info/about.json": b"{}"}), "has no info/index.json"),
        (lambda: raw_conda({"info/index.json": demo_index()}, metadata=b"{}"),
         "does not say conda_pkg_format_version 2"),
        (lambda: raw_conda({"info/index.json": demo_index()}, extra={"x.txt": b""}),
         "must hold metadata.json, one info-\\*.tar.zst and one pkg-\\*.tar.zst"),
        (lambda: raw_conda({"info/index.json": demo_index()},
                           extra={"info-other.tar.zst": zst(tar())}), "must hold metadata.json"),
        # Every member of every inner archive is checked, the payload's too.
        (lambda: raw_conda({"info/index.json": demo_index()}, pkg=tar(("../etc/x", b""))),
         "The conda package's pkg-demo-1.0-0.tar.zst member '../etc/x' has an unsafe path"),
        (lambda: raw_conda({"info/index.json": demo_index()},
                           pkg=tar(member("lib/x", tarfile.SYMTYPE, target="../../x"))),
         "member 'lib/x' links outside the archive"),
        (lambda: raw_conda({"info/index.json": demo_index(), "/abs": b""}),
         "info-demo-1.0-0.tar.zst member '/abs' has an unsafe path"),
        # The two inner archives are unpacked into one directory: a link in one may not
        # carry the other's members away.
        (lambda: raw_conda({"info/index.json": demo_index()},
                           pkg=tar(member("info", tarfile.SYMTYPE, target="lib"))),
         "lies beneath the link 'info'|links through the link"),
        (lambda: tar_bz2(("info/index.json", demo_index()), ("../x", b"")),
         "member '../x' has an unsafe path"),
        (lambda: tar_bz2(("info/files", b"")), "has no info/index.json"),
    ],
)  # fmt: skip
def test_bad_packages_are_refused(data: Any, says: str) -> None:
    built = data()
    filename = "demo-1.0-0.tar.bz2" if built.startswith(b"BZh") else "demo-1.0-0.conda"
    with pytest.raises(InvalidPackageError, match=says) as info:
        _read(built, filename)
    assert "\n" not in str(info.value)


def test_a_raw_conda_is_read_like_a_built_one() -> None:
    about = json.dumps({"summary": "s", "description": 5}).encode()
    package = read_package(
        "demo-1.0-0.conda",
        io.BytesIO(raw_conda({"info/index.json": demo_index(), "info/about.json": about})),
    )
    assert package.about == {"summary": "s"}  # a field of the wrong type is left out


def test_without_zstandard_a_conda_is_refused_with_the_extra_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = raw_conda({"info/index.json": demo_index()})
    monkeypatch.setitem(__import__("sys").modules, "zstandard", None)
    with pytest.raises(InvalidPackageError, match=r"the conda extra: pip install 'zstandard"):
        _read(data)


# -- properties -----------------------------------------------------------------------


@settings(max_examples=300, deadline=None, database=None)
@given(st.text(max_size=300))
def test_parse_filename_raises_only_its_error(text: str) -> None:
    try:
        parsed = parse_filename(text)
    except InvalidPackageError:
        return
    assert str(parsed) == text


def test_parse_filename_is_linear() -> None:
    def cost(size: int) -> float:
        texts = ["a-" * size + ".conda", "a" * size + "-1-0.tar.bz2x", "a-1-" + "_" * size]
        return least_cpu(lambda: [_try(parse_filename, t) for t in texts])

    assert cost(64 * 1024) <= 64 * cost(1024) + 0.02


def _try(call: Any, *args: Any) -> None:
    with contextlib.suppress(InvalidPackageError):
        call(*args)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10),
                                                                     children, max_size=4),
    max_leaves=20,
)  # fmt: skip


@settings(max_examples=300, deadline=None, database=None)
@given(st.dictionaries(st.sampled_from(["name", "version", "build", "build_number", "subdir",
                                        "depends", "constrains", "noarch", "timestamp",
                                        "license", "track_features", "x"]), JSON))  # fmt: skip
def test_check_index_raises_only_its_error(changes: dict[str, Any]) -> None:
    _try(check_index, {**index_json("demo", "1.0", "0"), **changes}, DEMO)


VALID = raw_conda({"info/index.json": demo_index()}, pkg=tar(("lib/a", b"x")))


@settings(max_examples=150, deadline=None, database=None)
@given(
    edits=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=8),
    cut=st.none() | st.integers(0, 1 << 16),
)
def test_mutated_conda_packages_raise_only_the_documented_error(
    edits: list[tuple[int, int]], cut: int | None
) -> None:
    data = bytearray(VALID)
    for position, value in edits:
        data[position % len(data)] = value
    _try(read_package, "demo-1.0-0.conda", io.BytesIO(bytes(data[:cut] if cut else data)))
