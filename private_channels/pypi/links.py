"""The links of a PEP 503 HTML page, read in linear time whatever the page holds.

::

    page = parse_links('<a href="../../f/demo-1.0.tar.gz#sha256=ab..." '
                       'data-requires-python="&gt;=3.8">demo-1.0.tar.gz</a>')
    page.anchors[0].attributes["data-requires-python"]      # '>=3.8'

An upstream's HTML is hostile input, and :mod:`html.parser` is no bounded parser: on
Python 3.11 it takes seconds for 30 KB of ``<a `` repeated (it rescans what it has not
consumed after every construct it cannot finish), and minutes for a megabyte.  A simple
index needs only three tags (``<a>``, ``<meta>``, ``<base>``), so this reader tokenizes
just those, left to right, never looking back: each ``<`` either completes a tag, a
comment or a declaration and the scan moves past it, or it cannot be completed, and
then nothing after it can be either (an unclosed quote or comment runs to the end of
the page, as in a browser), so the scan stops.  Attribute values and link texts are
unescaped with :func:`html.unescape`, as a browser would.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

__all__ = ["Anchor", "LinkPage", "LinkPageError", "parse_links"]

#: Links read from one page at most; a page with more is refused.
MAX_ANCHORS = 200_000

_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]*")
_SPACE = re.compile(r"[\t\n\f\r ]*")
_ATTRIBUTE_NAME = re.compile(r"[^\t\n\f\r />][^\t\n\f\r />=]*")
_UNQUOTED = re.compile(r"[^\t\n\f\r >]*")
_WANTED = frozenset({"a", "meta", "base"})


class LinkPageError(ValueError):
    """A page with more links than :data:`MAX_ANCHORS`."""


@dataclass(frozen=True)
class Anchor:
    attributes: dict[str, str]
    text: str


@dataclass
class LinkPage:
    anchors: list[Anchor] = field(default_factory=list)
    #: ``<meta name=... content=...>`` pairs, in page order.
    meta: list[tuple[str, str]] = field(default_factory=list)
    #: The first ``<base href>``, which relative links resolve against.
    base: str | None = None


def _attributes(text: str, position: int) -> tuple[dict[str, str], int] | None:
    """The attributes of a start tag from ``position`` (after its name), and where the
    tag ends; ``None`` if it never ends."""
    attributes: dict[str, str] = {}
    end = len(text)
    while True:
        position = _SPACE.match(text, position).end()  # type: ignore[union-attr]
        if position >= end:
            return None
        char = text[position]
        if char == ">":
            return attributes, position + 1
        if char == "/":
            position += 1
            continue
        name_match = _ATTRIBUTE_NAME.match(text, position)
        assert name_match is not None  # char is none of what the pattern excludes
        name = name_match.group().lower()
        position = _SPACE.match(text, name_match.end()).end()  # type: ignore[union-attr]
        value = ""
        if position < end and text[position] == "=":
            position = _SPACE.match(text, position + 1).end()  # type: ignore[union-attr]
            if position >= end:
                return None
            quote = text[position]
            if quote in "\"'":
                close = text.find(quote, position + 1)
                if close < 0:
                    return None
                value, position = text[position + 1 : close], close + 1
            else:
                unquoted = _UNQUOTED.match(text, position)
                assert unquoted is not None  # the pattern matches the empty string
                value, position = unquoted.group(), unquoted.end()
        # As in HTML, the first of a repeated attribute wins.
        attributes.setdefault(name, html.unescape(value))


def parse_links(text: str) -> LinkPage:
    """The anchors, ``pypi:`` meta elements and base URL of an HTML page.

    Raises :class:`LinkPageError` for a page of more than :data:`MAX_ANCHORS` links;
    any other text gives a page, perhaps an empty one.
    """
    page = LinkPage()
    position = 0
    while True:
        start = text.find("<", position)
        if start < 0:
            return page
        if text.startswith("<!--", start):
            close = text.find("-->", start + 4)
            if close < 0:
                return page
            position = close + 3
            continue
        if text.startswith(("<!", "<?", "</"), start):
            close = text.find(">", start + 2)
            if close < 0:
                return page
            position = close + 1
            continue
        name_match = _TAG_NAME.match(text, start + 1)
        if name_match is None:
            position = start + 1  # a "<" that starts no tag is text
            continue
        parsed = _attributes(text, name_match.end())
        if parsed is None:
            return page
        attributes, position = parsed
        name = name_match.group().lower()
        if name not in _WANTED:
            continue
        if name == "a":
            if len(page.anchors) >= MAX_ANCHORS:
                raise LinkPageError(f"The page has more than {MAX_ANCHORS} links.")
            close = text.find("<", position)
            content = text[position : close if close >= 0 else len(text)]
            page.anchors.append(Anchor(attributes, html.unescape(content).strip()))
        elif name == "meta" and "name" in attributes and "content" in attributes:
            if len(page.meta) < MAX_ANCHORS:
                page.meta.append((attributes["name"], attributes["content"]))
        elif name == "base" and page.base is None and "href" in attributes:
            page.base = attributes["href"]
