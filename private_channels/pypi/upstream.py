"""Upstream project pages (PEP 691 JSON or PEP 503 HTML) as a channel serves them.

::

    stored = parse_project_page(fetched, "demo", upstream, old=None, now=time.time())
    page = upstream_page(stored, project="demo", upstream=upstream, cutoff=None)
    body = render(page, JSON)        # the same renderer as the channel's own pages

:func:`parse_project_page` turns the upstream's bytes (hostile input: bounded before,
parsed with :func:`json.loads` or :func:`~.links.parse_links`) into the document the
channel stores: one entry per file it may offer, with the absolute upstream URL, the
hash to check it against, its yank state and PEP 658 metadata hash, its size and upload
time when the upstream gives them, and when this channel first saw it.  A file is left
out when its name is not a wheel or sdist of the very project asked for (an upstream
cannot slip another project's files, or a name that storage cannot hold, into a page),
when the upstream gives no hash this server can check it with, or when its URL is
refused by :func:`~..core.upstream.check_link`.

:func:`upstream_page` makes the PEP 691 page dictionary the channel serves: every link
points back under the channel (``../../files/upstream/<algorithm>/<hex>/<filename>``),
files younger than the channel's minimum age are left out, and PEP 708's ``tracks``
says which upstream project this one mirrors.  :func:`merge_pages` puts a project of
the channel's own and its upstream namesake together, for names on the allowlist only.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urldefrag, urljoin

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name

from ..core.proxy import STRONG_HASHES, valid_hash
from ..core.upstream import check_link, display_url
from . import metadata
from .links import parse_links
from .render import HTML, JSON, TEXT_HTML, upload_time, version_key, version_ranks

if TYPE_CHECKING:
    from ..channels import Channel, Upstream
    from ..core.upstream import Fetched

__all__ = [
    "ACCEPT",
    "allows",
    "merge_pages",
    "offered",
    "parse_filename",
    "parse_project_page",
    "project_url",
    "published",
    "upstream_file_url",
    "upstream_page",
]

#: What this server asks an upstream for: JSON first, HTML (as pypiserver answers) else.
ACCEPT = f"{JSON}, {HTML};q=0.2, {TEXT_HTML};q=0.1"
MAX_TEXT = 1000  # characters of a requires-python or a yank reason kept
MAX_URL = 8192
MAX_LOCATIONS = 100
FILES_FROM_PROJECT_PAGE = "../../files/upstream/"


def allows(channel: Channel, project: str) -> bool:
    """Whether the channel's allowlist lets upstream versions of ``project`` merge with
    its own (names compare normalized, as pip compares them)."""
    return any(canonicalize_name(name) == project for name in channel.upstream_allow)


def parse_filename(filename: str) -> tuple[NormalizedName, str]:
    """The project and version of a wheel or sdist filename (the upload's own parser);
    :class:`ValueError` for any other name."""
    parsed = metadata.parse_filename(filename)
    return parsed.name, str(parsed.version)


def _hash_from_fragment(fragment: str) -> tuple[str, str] | None:
    algorithm, _, value = fragment.partition("=")
    algorithm = algorithm.lower()
    return (algorithm, value.lower()) if valid_hash(algorithm, value.lower()) else None


def _best_hash(hashes: Any) -> tuple[str, str] | None:
    if not isinstance(hashes, Mapping):
        return None
    for algorithm in STRONG_HASHES:
        value = hashes.get(algorithm)
        if isinstance(value, str) and valid_hash(algorithm, value.lower()):
            return algorithm, value.lower()
    return None


def _text(value: Any) -> str | None:
    return value[:MAX_TEXT] if isinstance(value, str) else None


def _requires_python(value: Any) -> str | None:
    text = _text(value)
    if not text:
        return None
    try:
        SpecifierSet(text)
    except InvalidSpecifier:
        return None  # pip would refuse the file for it; better not to offer the marker
    return text


def _time(value: Any) -> float | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def _locations(values: Any) -> list[str]:
    if not isinstance(values, list):
        return []
    return [
        v for v in values[:MAX_LOCATIONS]
        if isinstance(v, str) and len(v) <= MAX_URL and v.startswith(("https://", "http://"))
    ]  # fmt: skip


def _api_version(value: Any) -> None:
    if value is None:
        return
    major = str(value).partition(".")[0]
    if major != "1":
        # PEP 691: a client must not read a major version it does not know.
        raise ValueError(f"the page is of repository API version {str(value)[:20]!r}")


def _entry(
    project: str,
    upstream: Upstream,
    *,
    filename: Any,
    href: Any,
    base: str,
    hashes: tuple[str, str] | None,
    requires_python: Any,
    yanked: Any,
    metadata: tuple[str, str] | None,
    size: Any,
    upload_time: Any,
) -> dict[str, Any] | None:
    """One file as the channel stores it, or ``None`` when it may not be offered."""
    if not isinstance(filename, str) or not isinstance(href, str) or len(href) > MAX_URL:
        return None
    try:
        name, version = parse_filename(filename)
        url, fragment = urldefrag(urljoin(base, href.strip()))
        check_link(upstream, url)
    except ValueError:
        return None
    if name != project:
        return None
    hashes = hashes or _hash_from_fragment(fragment)
    if hashes is None:
        return None
    if yanked is True or (isinstance(yanked, str) and yanked):
        yanked_value: str | bool = _text(yanked) or True
    elif isinstance(yanked, str):
        yanked_value = True  # an empty reason still yanks
    else:
        yanked_value = False
    return {
        "filename": filename,
        "version": version,
        "url": url,
        "hash": list(hashes),
        "requires-python": _requires_python(requires_python),
        "yanked": yanked_value,
        "metadata": list(metadata) if metadata else None,
        "size": size
        if isinstance(size, int) and not isinstance(size, bool) and size >= 0
        else None,
        "upload-time": _time(upload_time),
    }


def _from_json(body: bytes, project: str, upstream: Upstream, url: str) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise ValueError("the JSON page does not parse") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), list):
        raise ValueError("the JSON page has no list of files")
    meta: dict[str, Any] = doc["meta"] if isinstance(doc.get("meta"), dict) else {}
    _api_version(meta.get("api-version"))
    files = []
    for raw in doc["files"]:
        if not isinstance(raw, dict):
            continue
        metadata = raw.get("core-metadata", raw.get("dist-info-metadata"))
        entry = _entry(
            project,
            upstream,
            filename=raw.get("filename"),
            href=raw.get("url"),
            base=url,
            hashes=_best_hash(raw.get("hashes")),
            requires_python=raw.get("requires-python"),
            yanked=raw.get("yanked"),
            metadata=_best_hash(metadata),
            size=raw.get("size"),
            upload_time=raw.get("upload-time"),
        )
        if entry is not None:
            files.append(entry)
    name = doc.get("name")
    return {
        "name": name if isinstance(name, str) and canonicalize_name(name) == project else project,
        "files": files,
        "tracks": _locations(meta.get("tracks")),
        "alternate-locations": _locations(doc.get("alternate-locations")),
    }


def _from_html(
    body: bytes, charset: str | None, project: str, upstream: Upstream, url: str
) -> dict[str, Any]:
    try:
        text = body.decode(charset or "utf-8", "replace")
    except LookupError:
        text = body.decode("utf-8", "replace")
    page = parse_links(text)
    meta: dict[str, list[str]] = {}
    for name, content in page.meta:
        meta.setdefault(name.lower(), []).append(content)
    for version in meta.get("pypi:repository-version", [])[:1]:
        _api_version(version)
    base = urljoin(url, page.base) if page.base and len(page.base) <= MAX_URL else url
    files = []
    for anchor in page.anchors:
        attributes = anchor.attributes
        metadata = attributes.get("data-core-metadata", attributes.get("data-dist-info-metadata"))
        entry = _entry(
            project,
            upstream,
            filename=anchor.text,
            href=attributes.get("href"),
            base=base,
            hashes=None,
            requires_python=attributes.get("data-requires-python"),
            yanked=attributes.get("data-yanked"),
            metadata=_hash_from_fragment(metadata) if metadata else None,
            size=None,
            upload_time=None,
        )
        if entry is not None:
            files.append(entry)
    return {
        "name": project,
        "files": files,
        "tracks": _locations(meta.get("pypi:tracks")),
        "alternate-locations": _locations(meta.get("pypi:alternate-locations")),
    }


def parse_project_page(
    fetched: Fetched, project: str, upstream: Upstream, old: Any, now: float
) -> dict[str, Any]:
    """The stored form of an upstream project page (see the module); ``old`` is the
    stored form before, whose first-seen times carry over.  Raises :class:`ValueError`
    for a page that is neither PEP 691 JSON nor HTML, or of another major version."""
    if fetched.content_type == JSON or fetched.content_type == "application/json":
        doc = _from_json(fetched.body, project, upstream, fetched.url)
    elif fetched.content_type in (HTML, TEXT_HTML):
        doc = _from_html(fetched.body, fetched.charset, project, upstream, fetched.url)
    else:
        raise ValueError(f"the page is {fetched.content_type[:60]!r}, not a simple index page")
    seen: dict[str, float] = {}
    if isinstance(old, Mapping):
        seen = {f["filename"]: f["first-seen"] for f in old.get("files", ())}
    unique: dict[str, dict[str, Any]] = {}
    for entry in doc["files"]:
        entry["first-seen"] = seen.get(entry["filename"], now)
        unique.setdefault(entry["filename"], entry)
    doc["files"] = list(unique.values())
    doc["url"] = display_url(fetched.url)
    return doc


def upstream_file_url(entry: Mapping[str, Any]) -> str:
    """The file's URL relative to its project page, under the channel."""
    algorithm, hexdigest = entry["hash"]
    return f"{FILES_FROM_PROJECT_PAGE}{algorithm}/{hexdigest}/{quote(entry['filename'])}"


def published(entry: Mapping[str, Any]) -> float:
    """When a file became public, as far as this channel knows: the upstream's upload
    time (PEP 700), else the moment this channel first saw it."""
    upload_time = entry.get("upload-time")
    return float(upload_time if upload_time is not None else entry["first-seen"])


def offered(entries: Iterable[Mapping[str, Any]], cutoff: float | None) -> list[Mapping[str, Any]]:
    """The files published at or before ``cutoff`` (all of them for ``None``)."""
    return [e for e in entries if cutoff is None or published(e) <= cutoff]


def _served_file(entry: Mapping[str, Any]) -> dict[str, Any]:
    algorithm, hexdigest = entry["hash"]
    served: dict[str, Any] = {
        "filename": entry["filename"],
        "url": upstream_file_url(entry),
        # Only the hash the file is checked against: the served bytes match it.
        "hashes": {algorithm: hexdigest},
    }
    if entry.get("requires-python"):
        served["requires-python"] = entry["requires-python"]
    served["yanked"] = entry["yanked"]
    metadata = entry.get("metadata")
    served["core-metadata"] = {metadata[0]: metadata[1]} if metadata else False
    if entry.get("size") is not None:
        served["size"] = entry["size"]
    if entry.get("upload-time") is not None:
        served["upload-time"] = upload_time(entry["upload-time"])
    return served


def project_url(upstream: Upstream, project: str) -> str:
    """The upstream's page of ``project`` (PEP 708 wants the project's URL)."""
    return urljoin(upstream.url, f"{project}/")


def upstream_page(
    stored: Mapping[str, Any], *, project: str, upstream: Upstream, cutoff: float | None
) -> dict[str, Any]:
    """The page the channel serves for a project found only upstream."""
    entries = offered(stored["files"], cutoff)
    ranks = version_ranks({e["version"] for e in entries})
    entries.sort(key=lambda e: (ranks[e["version"]], e["filename"]))
    page: dict[str, Any] = {
        "meta": {
            # PEP 708's version: this page says which project it tracks.
            "api-version": "1.2",
            # A project mirrored from an upstream that itself tracks another names that
            # one, the namespace's owner (PEP 708: never another tracking repository).
            "tracks": list(stored.get("tracks") or [project_url(upstream, project)]),
        },
        "name": project,
        "versions": list(ranks),
        "files": [_served_file(e) for e in entries],
        "_display-name": stored.get("name") or project,
    }
    if stored.get("alternate-locations"):
        page["alternate-locations"] = list(stored["alternate-locations"])
    return page


def _file_version(entry: Mapping[str, Any]) -> str:
    try:
        return parse_filename(entry["filename"])[1]
    except ValueError:
        return ""


def merge_pages(
    local: Mapping[str, Any], upstream: Mapping[str, Any], *, deleted: Iterable[str] = ()
) -> dict[str, Any]:
    """A project of the channel's own merged with its upstream namesake's page (names on
    the allowlist only): an upstream file only under a filename the channel has never
    used (``deleted`` names the channel's deleted files)."""
    taken = {f["filename"] for f in local["files"]} | set(deleted)
    files = [*local["files"], *(f for f in upstream["files"] if f["filename"] not in taken)]
    versions = set(local["versions"]) | set(upstream["versions"])
    of = {f["filename"]: _file_version(f) for f in files}
    ranks = version_ranks(of.values())
    return {
        **local,
        "meta": {**local["meta"], "api-version": "1.2", "tracks": upstream["meta"]["tracks"]},
        "versions": sorted(versions, key=version_key),
        "files": sorted(files, key=lambda f: (ranks[of[f["filename"]]], f["filename"])),
    }
