"""The HTML of the pages: pure functions from data to markup, everything escaped.

::

    body = h("<p>{}</p>", package.summary)          # the summary is escaped
    html = render_description(detail.description)  # readme_renderer, sanitized

Every template here is a constant; every value put into one goes through
:class:`markupsafe.Markup`'s ``format``, which escapes it unless it is markup built here
(or the sanitized output of readme_renderer, the library PyPI renders descriptions
with).  No page carries inline script or style, so the Content-Security-Policy needs
neither ``'unsafe-inline'`` nor any other origin.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterable, Sequence
from typing import Any

from markupsafe import Markup, escape
from readme_renderer import markdown, rst

from ..core.ecosystem import Description, ListedFile, Snippet

__all__ = [
    "MAX_RENDERED",
    "date",
    "fill",
    "h",
    "join",
    "render_description",
    "size",
    "snippet",
    "table",
]

# Characters of a description rendered as Markdown or reStructuredText; a longer one is
# shown as plain text, which costs nothing to render.
MAX_RENDERED = 256 * 1024


def h(template: str, *args: Any, **kwargs: Any) -> Markup:
    """``template`` (a constant) with its fields filled in, escaped."""
    return Markup(template).format(*args, **kwargs)  # noqa: S704 (a constant template)


def fill(template: str, **values: Any) -> Markup:
    """``template`` (a constant, with ``%(name)s`` fields) filled with ``values``, each
    escaped as :func:`h` escapes it: for the rows of a long list, where ``h``'s
    ``Markup.format`` (a ``string.Formatter`` in Python) takes five times as long."""
    return Markup(template % {name: escape(value) for name, value in values.items()})  # noqa: S704


def join(parts: Iterable[Markup | str], separator: str = "") -> Markup:
    return Markup(separator).join(parts)  # noqa: S704 (a constant separator)


def date(timestamp: float | None, *, never: str = "never") -> str:
    if timestamp is None:
        return never
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def size(count: int) -> str:
    value = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{count} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def table(headers: Sequence[str], rows: Iterable[Markup], *, attrs: Markup | None = None) -> Markup:
    head = join(h("<th scope='col'>{}</th>", header) for header in headers)
    body = join(rows)
    return h(
        "<table{}><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", attrs or "", head, body
    )


def snippet(item: Snippet) -> Markup:
    note = h("<p class='note'>{}</p>", item.note) if item.note else ""
    return h(
        "<section class='snippet'><h3>{}</h3><pre><code>{}</code></pre>{}</section>",
        item.title,
        item.text,
        note,
    )


def render_description(description: Description | None) -> Markup:
    """A package's description as sanitized HTML: Markdown and reStructuredText through
    readme_renderer (as PyPI renders them), anything else, or anything too long or that
    does not parse, as escaped plain text."""
    if description is None or not description.text.strip():
        return h("<p class='none'>No description.</p>")
    text = description.text
    rendered: str | None = None
    if len(text) <= MAX_RENDERED:
        if description.content_type == "text/markdown":
            rendered = markdown.render(text)
        elif description.content_type == "text/x-rst":
            # Its warnings would go to stderr; a description that fails shows as text.
            rendered = rst.render(text, stream=io.StringIO())
    if rendered is None:
        return h("<pre class='description'>{}</pre>", text)
    return h("<div class='description'>{}</div>", Markup(rendered))  # noqa: S704 (sanitized)


def file_details(item: ListedFile) -> Markup:
    return join(h("<div><span class='k'>{}</span> {}</div>", k, v) for k, v in item.details)
