"""The HTML link reader for upstream pages: what it finds, and that no page costs it more
than linear time (html.parser, on the same inputs, is quadratic)."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from private_channels.pypi.links import MAX_ANCHORS, LinkPageError, parse_links


@pytest.mark.parametrize(
    ("html", "anchors"),
    [
        ('<a href="x.whl">x.whl</a>', [({"href": "x.whl"}, "x.whl")]),
        ("<A HREF=x.whl>x.whl</A>", [({"href": "x.whl"}, "x.whl")]),
        ("<a href='a&amp;b' data-yanked>t &lt; u</a>",
         [({"href": "a&b", "data-yanked": ""}, "t < u")]),
        ('<a href="1" href="2">x</a>', [({"href": "1"}, "x")]),  # the first one wins
        ('<a\nhref = "x"\n/>y', [({"href": "x"}, "y")]),
        ('<!-- <a href="hidden">h</a> --><a href="shown">s</a>', [({"href": "shown"}, "s")]),
        ('<a href="unclosed>never', []),  # an unclosed quote runs to the end
        ("<!-- never closed <a href=x>x</a>", []),
        ('<p><a href="x">x<b>bold</b></a></p>', [({"href": "x"}, "x")]),
        ("< a href=x>not a tag</a>", []),
        ("<abbr href=x>not an anchor</abbr>", []),
    ],
)  # fmt: skip
def test_anchors(html: str, anchors: list[tuple[dict[str, str], str]]) -> None:
    assert [(a.attributes, a.text) for a in parse_links(html).anchors] == anchors


def test_meta_and_base() -> None:
    page = parse_links(
        '<meta name="pypi:tracks" content="https://a/"><meta name="pypi:tracks" content="b">'
        '<base href="/one/"><base href="/two/"><meta charset="utf-8">'
    )
    assert page.meta == [("pypi:tracks", "https://a/"), ("pypi:tracks", "b")]
    assert page.base == "/one/"


def test_too_many_links_are_refused() -> None:
    with pytest.raises(LinkPageError):
        parse_links("<a href=x>x</a>" * (MAX_ANCHORS + 1))


_pieces = st.sampled_from(
    ["<a", "<A", " href=", '"', "'", ">", "</a>", "<!--", "-->", "<!", "<?", "</", "<meta",
     " name=", " content=", "<base", "=", "&amp;", "&#x", "x", " ", "\n", "/", "é", "\x00"]
)  # fmt: skip


@given(st.lists(_pieces, max_size=80).map("".join))
@settings(max_examples=500)
def test_any_text_gives_a_page(text: str) -> None:
    page = parse_links(text)
    for anchor in page.anchors:
        assert all(name == name.lower() for name in anchor.attributes)


@given(st.text(max_size=300))
@settings(max_examples=300)
def test_any_unicode_gives_a_page(text: str) -> None:
    parse_links(text)


def _cost(text: str) -> float:
    """This thread's CPU time, the best of three runs: other processes on a loaded
    machine do not count, and neither does a pause of this one."""
    costs = []
    for _ in range(3):
        started = time.thread_time()
        parse_links(text)
        costs.append(time.thread_time() - started)
    return min(costs)


@pytest.mark.parametrize("unit", ["<a ", '<a href="', "<a x=", "<!--", "</", "<a\n", "<<<", "&#"])
def test_hostile_pages_take_linear_time(unit: str) -> None:
    small, large = _cost(unit * 50_000), _cost(unit * 200_000)
    # Four times the input; a quadratic reader would take sixteen times as long (and
    # html.parser takes minutes for the larger one).
    assert large < 8 * small + 0.2
