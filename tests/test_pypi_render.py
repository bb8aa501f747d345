"""The page renderers: one PEP 691 dict per page, serialized as HTML or JSON."""

from __future__ import annotations

import datetime as dt
import json
from html.parser import HTMLParser

import pytest
from hypothesis import given
from hypothesis import strategies as st
from packaging.utils import canonicalize_name

from private_channels.pypi.render import (
    HTML,
    JSON,
    TEXT_HTML,
    file_url,
    index_page,
    project_page,
    render,
    upload_time,
    version_key,
    version_ranks,
)
from private_channels.pypi.store import FileRecord, Project
from private_channels.storage import Stat

SHA = "a" * 64
META = "b" * 64


class Anchors(HTMLParser):
    """Collect anchors the way pip does: a dict of attributes (None for a bare one)."""

    def __init__(self) -> None:
        super().__init__()
        self.anchors: list[tuple[dict[str, str | None], str]] = []
        self.meta: dict[str, str | None] = {}
        self.title = ""
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.anchors.append((dict(attrs), ""))
        elif tag == "meta":
            values = dict(attrs)
            if values.get("name"):
                self.meta[values["name"] or ""] = values.get("content")
        self._in = tag

    def handle_data(self, data: str) -> None:
        if self._in == "a" and self.anchors:
            attrs, text = self.anchors[-1]
            self.anchors[-1] = (attrs, text + data)
        elif self._in == "title":
            self.title += data

    def handle_endtag(self, tag: str) -> None:
        self._in = None


def parse_html(body: bytes) -> Anchors:
    parser = Anchors()
    parser.feed(body.decode("utf-8"))
    parser.close()
    return parser


def record(filename: str, version: str = "1.0", **fields) -> FileRecord:  # type: ignore[no-untyped-def]
    values = {
        "filename": filename,
        "project": canonicalize_name("Holy_Grail"),
        "version": version,
        "size": 1234,
        "sha256": SHA,
        "blake2b_256": "c" * 64,
        "upload_time": 1700000000.123456,
        **fields,
    }
    return FileRecord(**values)


def project(*files: FileRecord) -> Project:
    return Project(
        name=canonicalize_name("Holy_Grail"),
        display_name="Holy_Grail",
        files=files,
        stat=Stat(size=1, mtime=0.0, etag="x"),
    )


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        (0.0, "1970-01-01T00:00:00.000000Z"),
        (1700000000.5, "2023-11-14T22:13:20.500000Z"),
        (1700000000.123456, "2023-11-14T22:13:20.123456Z"),
    ],
)
def test_upload_time_is_pep_700_format(timestamp: float, expected: str) -> None:
    assert upload_time(timestamp) == expected
    parsed = dt.datetime.fromisoformat(expected)
    assert parsed.tzinfo == dt.UTC


@given(st.floats(min_value=0, max_value=253402300798.0, allow_nan=False))
def test_upload_time_is_what_strftime_gives(timestamp: float) -> None:
    # From 1970 to the end of year 9999: isoformat, less its offset, as strftime wrote it.
    moment = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    assert upload_time(timestamp) == moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# Versions as uploads and upstream pages spell them: PEP 440 ones, equal ones spelled
# apart (1.0, 1.0.0, 1.0.post0 against 1.0-post0), and legacy ones that go last.
_VERSIONS = st.sampled_from(
    ["1.0", "1.0.0", "1!0.5", "0.9", "1.0a1", "1.0.post0", "1.0-post0", "2.0.dev3", "1.0+local",
     "1.0+LOCAL", "10.0", "2", "not a version", "2013b", "", "0.9rc1", "v1.0"]
)  # fmt: skip


@given(st.lists(st.tuples(_VERSIONS, st.sampled_from("abc")), max_size=30))
def test_files_sorted_by_rank_as_by_version_key(files: list[tuple[str, str]]) -> None:
    ranks = version_ranks({version for version, _ in files})
    # The two keys order every pair alike (below), so the stable sorts agree wholly.
    assert sorted(files, key=lambda f: (ranks[f[0]], f[1])) == sorted(
        files, key=lambda f: (version_key(f[0]), f[1])
    )
    assert list(ranks) == sorted(ranks, key=version_key)
    # Equal by the key: one place; apart by it: places in its order.
    for one in ranks:
        for other in ranks:
            assert (ranks[one] == ranks[other]) == (version_key(one) == version_key(other))
            assert (ranks[one] < ranks[other]) == (version_key(one) < version_key(other))


def test_a_project_page_lists_versions_equal_by_pep_440_together() -> None:
    page = project_page(
        project(
            record("holy_grail-1.0.0.tar.gz", version="1.0.0"),
            record("holy_grail-0.9.tar.gz", version="0.9"),
            record("holy_grail-1.0-py3-none-any.whl", version="1.0"),
            record("holy_grail-10.0.tar.gz", version="10.0"),
            record("holy_grail-2.tar.gz", version="2"),
        )
    )
    # 1.0 and 1.0.0 are one version to PEP 440: their files by filename, between 0.9
    # and 2; 10.0 after 2, as numbers, not as text.
    assert [f["filename"] for f in page["files"]] == [
        "holy_grail-0.9.tar.gz",
        "holy_grail-1.0-py3-none-any.whl",
        "holy_grail-1.0.0.tar.gz",
        "holy_grail-2.tar.gz",
        "holy_grail-10.0.tar.gz",
    ]
    assert page["versions"][0] == "0.9"
    assert set(page["versions"][1:3]) == {"1.0", "1.0.0"}
    assert page["versions"][3:] == ["2", "10.0"]


@pytest.mark.parametrize(
    ("filename", "url"),
    [
        ("holy_grail-1.0-py3-none-any.whl", f"../../files/{SHA}/holy_grail-1.0-py3-none-any.whl"),
        ("holy_grail-1.0+local.tar.gz", f"../../files/{SHA}/holy_grail-1.0%2Blocal.tar.gz"),
    ],
)
def test_file_url_is_relative_to_the_project_page(filename: str, url: str) -> None:
    assert file_url(record(filename)) == url


def test_project_page_dict_has_every_pep_691_and_700_field() -> None:
    wheel = record(
        "holy_grail-1.0-py3-none-any.whl",
        requires_python=">=3.8,<4",
        metadata_sha256=META,
    )
    sdist = record("holy_grail-0.9.tar.gz", version="0.9", yanked="Broken build")
    bare_yank = record("holy_grail-1.0.tar.gz", yanked="")
    page = project_page(project(wheel, sdist, bare_yank))
    assert page["meta"] == {"api-version": "1.1"}
    assert page["name"] == "holy-grail"
    assert page["versions"] == ["0.9", "1.0"]
    files = {f["filename"]: f for f in page["files"]}
    # Ordered by version, then filename.
    assert [f["filename"] for f in page["files"]] == [
        "holy_grail-0.9.tar.gz",
        "holy_grail-1.0-py3-none-any.whl",
        "holy_grail-1.0.tar.gz",
    ]
    assert files["holy_grail-1.0-py3-none-any.whl"] == {
        "filename": "holy_grail-1.0-py3-none-any.whl",
        "url": f"../../files/{SHA}/holy_grail-1.0-py3-none-any.whl",
        "hashes": {"sha256": SHA},
        "requires-python": ">=3.8,<4",
        "yanked": False,
        "core-metadata": {"sha256": META},
        "size": 1234,
        "upload-time": "2023-11-14T22:13:20.123456Z",
    }
    assert files["holy_grail-0.9.tar.gz"]["yanked"] == "Broken build"
    assert files["holy_grail-0.9.tar.gz"]["core-metadata"] is False
    assert "requires-python" not in files["holy_grail-0.9.tar.gz"]
    assert files["holy_grail-1.0.tar.gz"]["yanked"] is True
    # PEP 714: the legacy key breaks pip 22.3-23.1 in JSON, so it is never emitted there.
    assert all("dist-info-metadata" not in f for f in page["files"])


def test_project_json_is_the_dict() -> None:
    page = project_page(project(record("holy_grail-1.0-py3-none-any.whl")))
    assert json.loads(render(page, JSON)) == page


def test_project_html_carries_the_same_data_as_attributes() -> None:
    wheel = record(
        "holy_grail-1.0-py3-none-any.whl",
        requires_python=">=3.8,<4",
        metadata_sha256=META,
        yanked='Use 1.1 "now" & <soon>',
    )
    sdist = record("holy_grail-1.0.tar.gz", yanked="")
    plain = record("holy_grail-0.9.tar.gz", version="0.9")
    body = render(project_page(project(wheel, sdist, plain)), HTML)
    text = body.decode()
    assert text.startswith("<!DOCTYPE html>")
    assert 'data-requires-python="&gt;=3.8,&lt;4"' in text  # PEP 503: < and > escaped
    parsed = parse_html(body)
    assert parsed.meta["pypi:repository-version"] == "1.1"
    assert parsed.title == "Links for Holy_Grail"
    anchors = {name: attrs for attrs, name in parsed.anchors}
    assert set(anchors) == {wheel.filename, sdist.filename, plain.filename}
    assert anchors[wheel.filename] == {
        "href": f"../../files/{SHA}/{wheel.filename}#sha256={SHA}",
        "data-requires-python": ">=3.8,<4",
        "data-yanked": 'Use 1.1 "now" & <soon>',
        "data-core-metadata": f"sha256={META}",
        "data-dist-info-metadata": f"sha256={META}",
    }
    # A reasonless yank still has a value: pip reads a bare attribute as not yanked.
    assert anchors[sdist.filename]["data-yanked"] == ""
    assert anchors[plain.filename] == {"href": f"../../files/{SHA}/{plain.filename}#sha256={SHA}"}


def test_html_is_the_same_for_both_html_media_types() -> None:
    page = project_page(project(record("holy_grail-1.0.tar.gz")))
    assert render(page, HTML) == render(page, TEXT_HTML)


def test_index_page_sorted_with_display_names_and_normalized_links() -> None:
    page = index_page({"zope-x": "Zope.X", "abc": "ABC"})  # type: ignore[dict-item]
    assert page == {
        "meta": {"api-version": "1.1"},
        "projects": [{"name": "ABC"}, {"name": "Zope.X"}],
    }
    assert json.loads(render(page, JSON)) == page
    parsed = parse_html(render(page, HTML))
    assert parsed.anchors == [({"href": "abc/"}, "ABC"), ({"href": "zope-x/"}, "Zope.X")]
    assert parsed.meta["pypi:repository-version"] == "1.1"


def test_html_escapes_names() -> None:
    page = index_page({"a": "<script>"})  # type: ignore[dict-item]
    assert b"<script>" not in render(page, HTML)
