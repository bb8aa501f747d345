"""What a listing of a channel's packages (the channel page, the HTTP API) costs: each
document is read again only once it changed, and the page's rows are built as
``Markup.format`` and the routing map would build them."""

from __future__ import annotations

from pathlib import Path
from typing import IO

from hypothesis import given
from hypothesis import strategies as st
from markupsafe import Markup
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from private_channels.admin import OPERATOR
from private_channels.storage import MemoryStorage, Stat
from private_channels.web.html import fill, h
from private_channels.web.page import Page, routing_map
from private_channels.web.pages import _negotiated, _owned

from .conda_packages import demo_index, raw_conda
from .packages import make_wheel
from .test_cran_description import source_package
from .web import Site


class _CountingStorage(MemoryStorage):
    def __init__(self) -> None:
        super().__init__()
        self.opened: list[str] = []

    def open(self, key: str) -> tuple[IO[bytes], Stat]:
        self.opened.append(key)
        return super().open(key)


def _listed(site: Site) -> dict[str, list[tuple[str, tuple[str, ...]]]]:
    packages = site.admin.packages(OPERATOR, "team")
    return {kind: [(p.name, p.versions) for p in found] for kind, found in packages.items()}


def _conda(site: Site, version: str) -> None:
    data = raw_conda({"info/index.json": demo_index("beta", version)}, stem=f"beta-{version}-0")
    site.upload_r(data, f"beta-{version}-0.conda", filetype="conda_package")


def test_a_listing_reads_again_only_the_documents_that_changed(tmp_path: Path) -> None:
    storage = _CountingStorage()
    site = Site(storage)
    for name, version in (("alpha", "1.0"), ("gamma", "0.1"), ("alpha", "1.1")):
        site.upload_python(make_wheel(tmp_path, name, version))
    site.upload_r(source_package("abc", "1.0"), "abc_1.0.tar.gz")
    _conda(site, "2.0")
    listed = _listed(site)
    assert listed == {
        "python": [("alpha", ("1.0", "1.1")), ("gamma", ("0.1",))],
        "cran": [("abc", ("1.0",))],
        "conda": [("beta", ("2.0",))],
    }
    # Again: a stat of each document, and a read of none but the names of the projects.
    storage.opened.clear()
    assert _listed(site) == listed
    assert storage.opened == ["channels/team/pypi/projects.json"]
    # An upload, a yank and a deletion in each ecosystem: the next listing shows them,
    # and reads only the documents they changed.
    site.upload_python(make_wheel(tmp_path, "gamma", "0.2"))
    site.upload_r(source_package("abc", "1.1"), "abc_1.1.tar.gz")
    _conda(site, "2.1")
    site.admin.change(OPERATOR, "team", "delete", "alpha==1.0")
    storage.opened.clear()
    assert _listed(site) == {
        "python": [("alpha", ("1.1",)), ("gamma", ("0.1", "0.2"))],
        "cran": [("abc", ("1.0", "1.1"))],
        "conda": [("beta", ("2.0", "2.1"))],
    }
    assert sorted(storage.opened) == [
        "channels/team/conda/index/noarch.json",
        "channels/team/cran/index/src/contrib.json",
        "channels/team/pypi/projects.json",
        "channels/team/pypi/projects/alpha.json",
        "channels/team/pypi/projects/gamma.json",
    ]
    # A project whose last file is deleted leaves the listing.
    for version in ("0.1", "0.2"):
        site.admin.change(OPERATOR, "team", "delete", f"gamma=={version}")
    assert [name for name, _ in _listed(site)["python"]] == ["alpha"]


_ROW = (
    "<tr data-name='{name}'><td><a href='{url}'>{name}</a></td><td>{latest}</td>"
    "<td>{count}</td></tr>"
)


@given(st.text(), st.text(), st.text(), st.integers())
def test_fill_escapes_as_markup_format_does(name: str, url: str, latest: str, count: int) -> None:
    values = {"name": name, "url": url, "latest": latest, "count": count}
    filled = fill(_ROW.replace("{", "%(").replace("}", ")s"), **values)
    assert filled == h(_ROW, **values)
    assert isinstance(filled, Markup)
    # Markup passes through as markup, in both.
    assert fill("<p>%(x)s</p>", x=Markup("<b>")) == h("<p>{x}</p>", x=Markup("<b>"))


def _page(script_root: str) -> Page:
    environ = EnvironBuilder(path="/", base_url=f"http://localhost{script_root}").get_environ()
    request = Request(environ)
    urls = routing_map(_owned() + _negotiated()).bind_to_environ(environ)
    return Page(request=request, urls=urls, sessions=None, session=None, actor=None)  # type: ignore[arg-type]


@given(
    st.sampled_from(["", "/api/repo", "/deep/er/mount", "/with%20space"]),
    st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True),
    st.sampled_from(["python", "cran", "conda"]),
    st.text(min_size=1).filter(lambda name: "/" not in name),
)
def test_links_of_a_list_are_the_routing_maps(
    script_root: str, channel: str, ecosystem: str, name: str
) -> None:
    page = _page(script_root)
    url = page.urls_of("package", "name", channel=channel, ecosystem=ecosystem)
    assert url(name) == page.url("package", channel=channel, ecosystem=ecosystem, name=name)
