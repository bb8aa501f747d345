"""The simple index pages as data, and that data as PEP 503 HTML or PEP 691 JSON.

::

    page = project_page(project)                 # one dict, in PEP 691's own shape
    body = render(page, JSON)                    # or render(page, HTML), same dict

As in warehouse, each page is built once as a PEP 691 dictionary and then serialized
to whichever format the client negotiated, so that the two formats cannot drift apart.
Everything here is a pure function from data to bytes: the middleware caches the bytes.

Every link is relative (``<project>/`` on the root page, ``../../files/...`` on a
project page), so a page is the same under any mount prefix and a client that put its
token in the path (``P/t/<TOKEN>/<CHANNEL>/simple/``) keeps it when it follows a link.
"""

from __future__ import annotations

import datetime as dt
import functools
import html
import json
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from .store import FileRecord, Project

__all__ = [
    "API_VERSION",
    "HTML",
    "JSON",
    "MEDIA_TYPES",
    "TEXT_HTML",
    "file_url",
    "index_page",
    "project_page",
    "render",
    "upload_time",
    "version_key",
    "version_ranks",
]

# PEP 700 defines 1.1: ``versions``, ``size`` and ``upload-time`` in JSON. HTML carries
# the same version number, as PEP 691 asks serializations of one version to stay in sync.
API_VERSION = "1.1"

JSON = "application/vnd.pypi.simple.v1+json"
HTML = "application/vnd.pypi.simple.v1+html"
TEXT_HTML = "text/html"  # PEP 691: an alias of the v1 HTML format for older clients
MEDIA_TYPES = (JSON, HTML, TEXT_HTML)

# The files live at <CHANNEL>/files/<sha256>/<filename>; a project page is
# <CHANNEL>/simple/<project>/, two levels below the channel.
FILES_FROM_PROJECT_PAGE = "../../files/"


def file_url(record: FileRecord) -> str:
    """The file's URL relative to its project page (PEP 691 allows relative URLs)."""
    return f"{FILES_FROM_PROJECT_PAGE}{record.sha256}/{quote(record.filename)}"


def upload_time(timestamp: float) -> str:
    """PEP 700's exact format: ``yyyy-mm-ddThh:mm:ss.ffffffZ``, always UTC."""
    # isoformat, not strftime, which parses its format for every file of every page.
    moment = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    return f"{moment.isoformat(timespec='microseconds')[:-6]}Z"  # less its "+00:00"


@functools.lru_cache(maxsize=4096)
def version_key(version: str) -> tuple[int, Version | str]:
    """Order PEP 440 versions; those it cannot parse (legacy uploads) go last, by text.

    Remembered: the same few version strings recur on every page of a channel, and
    parsing one costs as much as the rest of its file's entry.
    """
    try:
        return (0, Version(version))
    except InvalidVersion:
        return (1, version)


def version_ranks(versions: Iterable[str]) -> dict[str, int]:
    """Each of ``versions`` to its place in :func:`version_key`'s order, versions equal
    by it (``1.0``, ``1.0.0``) in one place: a key that sorts a project's files with
    integer comparisons, not two of :class:`~packaging.version.Version`'s each."""
    ranks: dict[str, int] = {}
    previous: tuple[int, Version | str] | None = None
    place = -1
    for version in sorted(versions, key=version_key):
        key = version_key(version)
        if key != previous:
            place += 1
            previous = key
        ranks[version] = place
    return ranks


def _file(record: FileRecord) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "filename": record.filename,
        "url": file_url(record),
        # Only sha256: a "blake2b" key would promise hashlib.new("blake2b"), a
        # 512-bit digest, and ours is BLAKE2b-256.
        "hashes": {"sha256": record.sha256},
    }
    if record.requires_python:
        entry["requires-python"] = record.requires_python
    # PEP 691: a non-empty reason string, or a boolean.
    entry["yanked"] = record.yanked or (record.yanked is not None)
    # PEP 714: only the new key in JSON. The old "dist-info-metadata" key makes pip
    # 22.3 to 23.1 fail hard, and the PEP asks servers not to emit it in JSON.
    entry["core-metadata"] = (
        {"sha256": record.metadata_sha256} if record.metadata_sha256 is not None else False
    )
    entry["size"] = record.size
    entry["upload-time"] = upload_time(record.upload_time)
    return entry


def project_page(project: Project) -> dict[str, Any]:
    """The PEP 691/700 project detail dictionary, files ordered by version then name."""
    ranks = version_ranks({f.version for f in project.files})
    files = sorted(project.files, key=lambda f: (ranks[f.version], f.filename))
    return {
        "meta": {"api-version": API_VERSION},
        "name": project.name,
        "versions": list(ranks),
        "files": [_file(f) for f in files],
        # Not part of the standard (PEP 700 reserves leading underscores for servers):
        # the title of the HTML page shows the name as it was uploaded.
        "_display-name": project.display_name,
    }


def index_page(projects: Mapping[NormalizedName, str]) -> dict[str, Any]:
    """The PEP 691 project list from normalized name -> display name, sorted."""
    return {
        "meta": {"api-version": API_VERSION},
        "projects": [{"name": projects[key]} for key in sorted(projects)],
    }


def render(page: Mapping[str, Any], media_type: str) -> bytes:
    """Serialize a page dictionary as JSON (for :data:`JSON`) or HTML (anything else)."""
    if media_type == JSON:
        return json.dumps(page, separators=(",", ":"), ensure_ascii=False).encode()
    if "files" in page:
        return _project_html(page)
    return _index_html(page)


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _document(title: str, body: Iterable[str], page: Mapping[str, Any] | None = None) -> bytes:
    meta = [
        ("pypi:repository-version", (page or {}).get("meta", {}).get("api-version", API_VERSION))
    ]
    if page is not None:
        # PEP 708, in HTML: one meta element per URL.
        meta += [("pypi:tracks", url) for url in page["meta"].get("tracks", ())]
        meta += [("pypi:alternate-locations", url) for url in page.get("alternate-locations", ())]
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "  <head>",
        '    <meta charset="utf-8">',
        *(f'    <meta name="{name}" content="{_e(value)}">' for name, value in meta),
        f"    <title>{_e(title)}</title>",
        "  </head>",
        "  <body>",
        *(f"    {line}" for line in body),
        "  </body>",
        "</html>",
        "",
    ]
    return "\n".join(lines).encode()


def _index_html(page: Mapping[str, Any]) -> bytes:
    links = (
        f'<a href="{_e(quote(canonicalize_name(p["name"])))}/">{_e(p["name"])}</a><br>'
        for p in page["projects"]
    )
    return _document("Simple index", links)


def _anchor(entry: Mapping[str, Any]) -> str:
    # One hash in the fragment (PEP 503): sha256 for the channel's own files, the one
    # an upstream file is checked against for the others.
    algorithm, value = next(iter(entry["hashes"].items()))
    href = f"{entry['url']}#{algorithm}={value}"
    attributes = [f'href="{_e(href)}"']
    if "requires-python" in entry:
        # PEP 503: "<" and ">" must be escaped in the attribute, which _e does.
        attributes.append(f'data-requires-python="{_e(entry["requires-python"])}"')
    yanked = entry.get("yanked")
    if yanked:
        # Always with a value: pip reads a bare data-yanked attribute as not yanked.
        reason = yanked if isinstance(yanked, str) else ""
        attributes.append(f'data-yanked="{_e(reason)}"')
    metadata = entry.get("core-metadata")
    if metadata:
        value = "true" if metadata is True else f"sha256={metadata['sha256']}"
        # PEP 714: data-core-metadata is the name; the legacy one may go alongside
        # in HTML only, with the same value, for clients that know only PEP 658.
        attributes.append(f'data-core-metadata="{_e(value)}"')
        attributes.append(f'data-dist-info-metadata="{_e(value)}"')
    return f"<a {' '.join(attributes)}>{_e(entry['filename'])}</a><br>"


def _project_html(page: Mapping[str, Any]) -> bytes:
    title = f"Links for {page.get('_display-name', page['name'])}"
    anchors = (_anchor(f) for f in page["files"])
    return _document(title, [f"<h1>{_e(title)}</h1>", *anchors], page)
