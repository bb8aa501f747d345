"""The CRAN upstream proxy: PACKAGES merged with local names shadowing upstream ones,
tarballs fetched once and checked against MD5sum, Archive/ and Meta/archive.rds, the
minimum age, outages.  The channel runs in-process under /api/repo; its upstream is a
CRAN-like directory served over HTTP on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import webtest
from hypothesis import given, settings
from hypothesis import strategies as st

from private_channels import ChannelRegistry, MemoryStorage, Scope, TokenStore, make_app
from private_channels.core import proxy as proxy_module
from private_channels.core.proxy import STATE_HEADER
from private_channels.core.upstream import Fetched
from private_channels.cran.dcf import parse_dcf
from private_channels.cran.index import render_archive
from private_channels.cran.rds import RObject, dump_rds, load_rds, named_list
from private_channels.cran.upstream import (
    UpstreamRow,
    file_index,
    first_seen_times,
    merge_rows,
    parse_archive,
    parse_packages,
    upstream_rows,
)

from .support import mounted
from .upstreams import Running, cran_directory, r_package, serve_directory

CHANNEL = "/api/repo/team"


@dataclass
class Cran:
    app: webtest.TestApp
    token: str
    registry: ChannelRegistry
    upstream: Running
    root: Path

    def get(self, path: str, **kwargs: Any) -> webtest.TestResponse:
        return self.app.get(f"{CHANNEL}{path}", headers={"X-Auth": self.token}, **kwargs)

    def upload(self, tarball: bytes, filename: str) -> None:
        self.app.post(
            CHANNEL, {"filetype": "cran_source_package"},
            upload_files=[("content", filename, tarball)], headers={"X-Auth": self.token},
        )  # fmt: skip

    def packages(self) -> dict[str, str]:
        text = self.get("/src/contrib/PACKAGES").text
        return {r["Package"]: r["Version"] for r in parse_dcf(text)}


UPSTREAM_PACKAGES = {
    "publicdep": [("0.9", r_package("publicdep", "0.9")), ("1.0", r_package("publicdep", "1.0"))],
    "private": [("99.0", r_package("private", "99.0"))],  # the confusion attack
    "liar": [("1.0", r_package("liar", "1.0"))],
}


@pytest.fixture
def cran(tmp_path: Path) -> Iterator[Cran]:
    root = cran_directory(tmp_path / "cran", UPSTREAM_PACKAGES, lie_about_md5=frozenset({"liar"}))
    storage = MemoryStorage()
    registry = ChannelRegistry(storage)
    secret, _ = TokenStore(storage).create(channels=["*"], scope=Scope.WRITE)
    app = webtest.TestApp(mounted(make_app(storage), "/api/repo"))
    with serve_directory(root) as upstream:
        registry.create("team", cran_upstream=upstream.url)
        cran = Cran(app, secret, registry, upstream, root)
        cran.upload(r_package("private", "1.0", Imports="publicdep"), "private_1.0.tar.gz")
        yield cran


def test_packages_merges_upstream_without_the_channels_own_names(cran: Cran) -> None:
    first = cran.get("/src/contrib/PACKAGES")
    assert first.headers[STATE_HEADER] == "fetched"
    assert cran.packages() == {"private": "1.0", "publicdep": "1.0", "liar": "1.0"}
    for name in ("PACKAGES.gz", "PACKAGES.rds"):
        assert cran.get(f"/src/contrib/{name}").headers[STATE_HEADER] == "cached"
    rds = load_rds(cran.get("/src/contrib/PACKAGES.rds").body)
    rownames = dict(rds.attributes)["dimnames"].values[0].values  # type: ignore[union-attr]
    assert list(rownames) == ["liar", "private", "publicdep"]
    gz = gzip.decompress(cran.get("/src/contrib/PACKAGES.gz").body).decode()
    assert gz == first.text
    assert "99.0" not in first.text  # not even a row of upstream's "private"


def test_an_upstream_tarball_is_fetched_once_and_checked(cran: Cran) -> None:
    cran.get("/src/contrib/PACKAGES")
    first = cran.get("/src/contrib/publicdep_1.0.tar.gz")
    assert first.body == (cran.root / "src/contrib/publicdep_1.0.tar.gz").read_bytes()
    assert first.headers[STATE_HEADER] == "fetched"
    assert cran.get("/src/contrib/publicdep_1.0.tar.gz").headers[STATE_HEADER] == "cached"
    # The upstream's own copy of a local name is never served, whatever its version.
    assert cran.get("/src/contrib/private_99.0.tar.gz", expect_errors=True).status_int == 404
    # A tarball whose MD5sum upstream lists wrong is refused, and nothing is kept.
    refused = cran.get("/src/contrib/liar_1.0.tar.gz", expect_errors=True)
    assert refused.status_int == 502
    assert "does not match the md5 hash" in refused.text
    # Not listed: not served, even if the upstream has the file.
    assert cran.get("/src/contrib/publicdep_0.9.tar.gz", expect_errors=True).status_int == 404


def test_archive_and_archive_rds_are_proxied(cran: Cran) -> None:
    cran.upload(r_package("private", "1.1"), "private_1.1.tar.gz")  # 1.0 moves to Archive/
    archived = cran.get("/src/contrib/Archive/publicdep/publicdep_0.9.tar.gz")
    assert archived.body == (cran.root / "src/contrib/Archive/publicdep/publicdep_0.9.tar.gz"
                             ).read_bytes()  # fmt: skip
    local = cran.get("/src/contrib/Archive/private/private_1.0.tar.gz")
    assert b"private" in gzip.decompress(local.body)
    archive = load_rds(cran.get("/src/contrib/Meta/archive.rds").body)
    names = dict(archive.attributes)["names"].values
    assert sorted(names) == ["private", "publicdep"]  # type: ignore[type-var]
    guarded = "/src/contrib/Archive/private/private_0.5.tar.gz"
    assert cran.get(guarded, expect_errors=True).status_int == 404


def test_the_allowlist_lets_the_higher_version_through(cran: Cran) -> None:
    cran.registry.update("team", upstream_allow=["private"])
    assert cran.packages()["private"] == "99.0"
    assert cran.get("/src/contrib/private_99.0.tar.gz").status_int == 200
    # Names compare exactly in R: another case is another package.
    cran.registry.update("team", upstream_allow=["Private"])
    assert cran.packages()["private"] == "1.0"


def test_a_name_in_any_directory_of_the_channel_is_guarded(cran: Cran, tmp_path: Path) -> None:
    from .test_cran_description import windows_zip

    cran.app.post(
        CHANNEL, {"filetype": "cran_binary_package"},
        upload_files=[("content", "publicdep_0.1.zip", windows_zip("publicdep", "0.1"))],
        headers={"X-Auth": cran.token},
    )  # fmt: skip
    assert "publicdep" not in cran.packages()  # only a Windows binary, and still guarded


def test_outages_serve_the_last_index_and_every_stored_file(cran: Cran) -> None:
    cran.registry.update("team", upstream_ttl=0)
    cran.get("/src/contrib/PACKAGES")
    tarball = cran.get("/src/contrib/publicdep_1.0.tar.gz").body
    cran.upstream.stop()
    stale = cran.get("/src/contrib/PACKAGES")
    assert stale.headers[STATE_HEADER] == "stale"
    assert "publicdep" in stale.text
    again = cran.get("/src/contrib/publicdep_1.0.tar.gz")
    assert again.body == tarball and again.headers[STATE_HEADER] == "cached"


def test_an_unreachable_upstream_never_fetched_leaves_the_channels_own(tmp_path: Path) -> None:
    storage = MemoryStorage()
    secret, _ = TokenStore(storage).create(channels=["*"], scope=Scope.WRITE)
    app = webtest.TestApp(mounted(make_app(storage), "/api/repo"))
    ChannelRegistry(storage).create("team", cran_upstream="http://127.0.0.1:9/")
    app.post(
        CHANNEL, {"filetype": "cran_source_package"},
        upload_files=[("content", "mine_1.0.tar.gz", r_package("mine", "1.0"))],
        headers={"X-Auth": secret},
    )  # fmt: skip
    index = app.get(f"{CHANNEL}/src/contrib/PACKAGES", headers={"X-Auth": secret})
    assert index.headers[STATE_HEADER] == "unavailable"
    assert [r["Package"] for r in parse_dcf(index.text)] == ["mine"]


def test_the_minimum_age_counts_from_first_sight(
    cran: Cran, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [time.time()]

    class Clock:
        @staticmethod
        def time() -> float:
            return clock[0]

    monkeypatch.setattr(proxy_module, "time", Clock)
    cran.registry.update("team", upstream_ttl=0)
    cran.get("/src/contrib/PACKAGES")  # first sight of publicdep 1.0
    cran.registry.update("team", upstream_min_age=2)
    assert "publicdep" not in cran.packages()
    assert cran.get("/src/contrib/publicdep_1.0.tar.gz", expect_errors=True).status_int == 404
    clock[0] += 3 * 86400
    assert cran.packages()["publicdep"] == "1.0"
    # A newer version upstream waits its turn; the one before stays offered meanwhile.
    contrib = cran.root / "src/contrib"
    (contrib / "publicdep_1.0.tar.gz").rename(contrib / "Archive/publicdep/publicdep_1.0.tar.gz")
    cran_directory(cran.root, {"publicdep": [("1.1", r_package("publicdep", "1.1"))]})
    later = time.time() + 5  # HTTP dates count seconds: a change within one looks unchanged
    os.utime(contrib / "PACKAGES.gz", (later, later))
    assert cran.packages()["publicdep"] == "1.0"
    held = cran.get("/src/contrib/publicdep_1.0.tar.gz")  # found in upstream's Archive/
    assert b"publicdep" in gzip.decompress(held.body)
    clock[0] += 3 * 86400
    assert cran.packages()["publicdep"] == "1.1"


# -- the parsers ----------------------------------------------------------------------


def fetched(body: bytes) -> Fetched:
    return Fetched(200, body, "http://127.0.0.1:9/src/contrib/PACKAGES", "text/plain",
                   None, None, None)  # fmt: skip


ROW = "Package: {p}\nVersion: {v}\nMD5sum: {m}\nImports: x\nPriority: hacked\nEvil: y\n"
MD5 = "a" * 32


def test_parse_packages_keeps_valid_rows_their_fields_and_history() -> None:
    text = "\n".join(
        ROW.format(p=p, v=v, m=m)
        for p, v, m in [("good", "1.0", MD5), ("good", "0.9", MD5), ("bad name", "1", MD5),
                        ("nomd5", "1.0", "x"), ("badver", "one", MD5)]
    )  # fmt: skip
    stored = parse_packages(fetched(gzip.compress(text.encode())), "src/contrib", None, 5.0,
                            max_size=1 << 20)  # fmt: skip
    assert list(stored["packages"]) == ["good"]
    (entry,) = stored["packages"]["good"]
    assert entry["version"] == "1.0" and entry["first-seen"] == 5.0
    assert entry["fields"]["Imports"] == "x" and "Evil" not in entry["fields"]
    newer = ROW.format(p="good", v="1.1", m=MD5)
    again = parse_packages(fetched(newer.encode()), "src/contrib", stored, 9.0, max_size=1 << 20)
    assert [(h["version"], h["first-seen"]) for h in again["packages"]["good"]] == [
        ("1.1", 9.0), ("1.0", 5.0)
    ]  # fmt: skip
    rows = upstream_rows(again, "src/contrib", cutoff=6.0)
    assert [(r.filename, r.current) for r in rows] == [("good_1.0.tar.gz", False)]


def test_parse_packages_refuses_a_gzip_bomb() -> None:
    bomb = gzip.compress(b"Package: x\n" + b" " * (4 << 20))
    with pytest.raises(ValueError, match="unpacks to more than"):
        parse_packages(fetched(bomb), "src/contrib", None, 5.0, max_size=1 << 20)


def test_merge_rows_drops_local_names_unless_allowed() -> None:
    class Local:
        def __init__(self, package: str, version: str) -> None:
            self.package, self.version, self.fields = package, version, {}

    up = [UpstreamRow(p, v, {}, f"{p}_{v}.tar.gz", True) for p, v in
          [("mine", "9.0"), ("theirs", "1.0"), ("other", "0.1")]]  # fmt: skip
    local = [Local("mine", "1.0")]
    merged = merge_rows(local, up, local_names={"mine", "other"}, allowed=())
    assert sorted((r.package, r.version) for r in merged) == [("mine", "1.0"), ("theirs", "1.0")]
    merged = merge_rows(local, up, local_names={"mine", "other"}, allowed=["mine"])
    assert ("mine", "9.0") in [(r.package, r.version) for r in merged]


def test_parse_archive_reads_what_render_archive_writes() -> None:
    body = render_archive([("ab", "ab_1.0.tar.gz", 10.0, 5.0), ("ab", "cd_1.0.tar.gz", 1.0, 1.0),
                           ("x y", "x y_1.tar.gz", 1.0, 1.0)])  # fmt: skip
    expected = {"archive": {"ab": [["ab_1.0.tar.gz", 10.0, 5.0]]}}
    assert parse_archive(body, max_size=1 << 20) == expected


@given(st.binary(max_size=300))
@settings(max_examples=300)
def test_any_bytes_parse_or_are_refused_with_a_value_error(body: bytes) -> None:
    for parse in (
        lambda: parse_archive(body, max_size=1 << 16),
        lambda: parse_archive(gzip.compress(b"X\n" + body), max_size=1 << 16),
        lambda: parse_packages(fetched(body), "src/contrib", None, 1.0, max_size=1 << 16),
    ):
        with contextlib.suppress(ValueError):
            parse()


_strings = st.none() | st.sampled_from(
    ["names", "row.names", "size", "mtime", "ab", "ab/ab_1.0.tar.gz", "x"]
)
_leaves = st.one_of(
    st.lists(_strings, max_size=4).map(lambda v: RObject("character", tuple(v))),
    st.lists(st.none() | st.floats(allow_nan=False), max_size=3).map(
        lambda v: RObject("double", tuple(v))
    ),
)
_shapes = st.recursive(
    _leaves,
    lambda children: st.builds(
        lambda values, attributes: RObject("list", tuple(values), tuple(attributes)),
        st.lists(children, max_size=3),
        st.lists(st.tuples(st.sampled_from(["names", "row.names", "class"]), children),
                 max_size=3),
    ),
    max_leaves=15,
)  # fmt: skip


@given(_shapes)
@settings(max_examples=300)
def test_any_r_object_as_archive_rds_parses_or_is_refused(obj: RObject) -> None:
    try:
        parsed = parse_archive(dump_rds(obj, compress="gzip"), max_size=1 << 20)
    except ValueError:
        return
    for package, files in parsed["archive"].items():
        assert all(f[0].startswith(f"{package}_") for f in files)


def test_an_archive_frame_with_more_names_than_columns() -> None:
    frame = RObject("list", (RObject("double", (1.0,)),), (
        ("names", RObject("character", ("x", "y", "size"))),
        ("row.names", RObject("character", ("ab/ab_1.0.tar.gz",))),
    ))  # fmt: skip
    assert parse_archive(dump_rds(named_list({"ab": frame})), max_size=1 << 20) == {"archive": {}}


@given(
    st.dictionaries(
        st.sampled_from(["ab", "cd", "ef"]),
        st.lists(st.floats(0, 100), min_size=1, max_size=3),
        max_size=3,
    ),
    st.none() | st.floats(0, 100),
)
@settings(max_examples=300)
def test_the_file_index_offers_exactly_what_the_rows_list(
    seen: dict[str, list[float]], cutoff: float | None
) -> None:
    stored = {
        "packages": {
            package: [
                {"version": f"{len(times) - i}.0", "fields": {"MD5sum": MD5}, "first-seen": t}
                for i, t in enumerate(times)  # newest first, first seen at any time
            ]
            for package, times in seen.items()
        }
    }
    listed = {row.filename for row in upstream_rows(stored, "src/contrib", cutoff)}
    files, _ = file_index(stored, "src/contrib")
    assert {name for name, info in files.items() if info.offered(cutoff)} == listed
    times, _ = first_seen_times(stored)
    assert times == sorted(t for ts in seen.values() for t in ts)
