"""A channel's Python projects as the pages and the HTTP API list them.

::

    packages(store, channel)                 # [Package(name='Demo', versions=('1.0', '2.0')...)]
    package(store, channel, "demo")          # files of every version, 2.0's description
    snippets("https://host/api/repo/team", package)   # pip, uv, Poetry, twine, uv publish

The same project documents the simple index renders (:class:`~.store.PythonStore`), so a
page never disagrees with what pip sees.  A description comes from the newest file of
the version that kept its metadata (a wheel's METADATA, an sdist's PKG-INFO), read
whole but bounded.
"""

from __future__ import annotations

import re
from functools import partial
from urllib.parse import quote, urlsplit

from packaging.metadata import parse_email

from ..channels import Channel
from ..core.ecosystem import (
    Description,
    ListedFile,
    Package,
    PackageDetail,
    Snippet,
    shown_version,
)
from .manage import ECOSYSTEM
from .render import version_key, version_ranks
from .store import FileRecord, Project, PythonStore

__all__ = ["package", "packages", "snippets"]

# METADATA read for a page: the upload bound on a metadata member is 1 MiB; older
# uploads may hold more, which the page then does without.
MAX_METADATA = 4 * 1024 * 1024
_CONTENT_TYPES = ("text/markdown", "text/x-rst", "text/plain")


def _summary(project: Project) -> Package:
    versions = sorted({f.version for f in project.files}, key=version_key)
    return Package(ECOSYSTEM, project.display_name, project.name, tuple(versions))


def packages(store: PythonStore, channel: Channel) -> list[Package]:
    """Every project with at least one file, by normalized name (a stat per project; a
    read only of the documents that changed since this process last listed them)."""
    names, _ = store.projects(channel)
    listed = []
    for key in sorted(names):
        summary = partial(_summarize, store, channel, key)
        package = store.derived(store.project_key(channel, key), "listed", summary)
        if package is not None:
            listed.append(package)
    return listed


def _summarize(store: PythonStore, channel: Channel, key: str) -> tuple[Package | None, int]:
    """The project's listing (``None`` without files), and about the bytes it takes."""
    project = store.project(channel, key)
    if project is None or not project.files:
        return None, 0
    package = _summary(project)
    return package, 256 + sum(48 + len(v) for v in package.versions)


def _listed(record: FileRecord) -> ListedFile:
    details = [("Type", "wheel" if record.filename.endswith(".whl") else "sdist")]
    if record.requires_python:
        details.append(("Requires-Python", record.requires_python))
    url = f"files/{record.sha256}/{quote(record.filename)}"
    return ListedFile.of(
        record, version=record.version, url=url, yanked=record.yanked, details=details
    )


def package(
    store: PythonStore, channel: Channel, name: str, version: str | None = None
) -> PackageDetail | None:
    """The project ``name`` (any spelling), its files newest first, and the summary
    and description of ``version`` (default: the newest that is not yanked)."""
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,200}", name):
        return None
    project = store.project(channel, name)
    if project is None or not project.files:
        return None
    ranks = version_ranks({f.version for f in project.files})
    files = sorted(project.files, key=lambda f: (ranks[f.version], f.filename), reverse=True)
    version = shown_version(version, ((f.version, f.yanked) for f in files))
    chosen = [f for f in files if f.version == version]
    # A wheel's METADATA is complete; an sdist's PKG-INFO may leave fields dynamic.
    chosen.sort(key=lambda f: (f.metadata_sha256 is None, -f.upload_time))
    summary, description = "", None
    about: list[tuple[str, str]] = []
    for record in chosen:
        raw = store.read_metadata(channel, record, limit=MAX_METADATA)
        if raw is None:
            continue
        fields, _ = parse_email(raw)
        summary = fields.get("summary", "")
        text = fields.get("description", "")
        content_type = fields.get("description_content_type", "text/x-rst").split(";")[0]
        if text.strip():
            kind = content_type.strip().lower()
            description = Description(text, kind if kind in _CONTENT_TYPES else "text/plain")
        for label, key in (("License", "license_expression"), ("License", "license"),
                           ("Author", "author"), ("Author", "author_email"),
                           ("Home page", "home_page")):  # fmt: skip
            value = fields.get(key)
            if isinstance(value, str) and value.strip() and label not in dict(about):
                about.append((label, " ".join(value.split())[:300]))
        for entry in fields.get("project_urls", {}).items():
            about.append((entry[0][:100], entry[1][:500]))
        break
    return PackageDetail(
        package=_summary(project),
        files=tuple(_listed(f) for f in files),
        version=version,
        summary=" ".join(summary.split())[:500],
        description=description,
        about=tuple(about),
    )


def snippets(channel_url: str, package: Package | None) -> list[Snippet]:
    """pip, uv, Poetry, twine and ``uv publish`` for the channel at ``channel_url``;
    ``$TOKEN`` stands for the token."""
    parts = urlsplit(channel_url)
    channel = parts.path.rstrip("/").rpartition("/")[2]
    index = f"{channel_url}/simple/"
    # __token__ with the token as password: pip prints its index URL with the password
    # masked, the user name in clear.
    with_token = f"{parts.scheme}://__token__:$TOKEN@{parts.netloc}{parts.path}/simple/"
    name = package.name if package is not None else "PACKAGE"
    env = re.sub(r"[^A-Z0-9]", "_", channel.upper())
    found = [
        Snippet("pip", f'pip install --index-url "{with_token}" {name}'),
        Snippet("uv", f'uv pip install --index-url "{with_token}" {name}'),
        Snippet(
            "uv project (pyproject.toml)",
            f'[[tool.uv.index]]\nname = "{channel}"\nurl = "{index}"\nexplicit = true\n\n'
            f'[tool.uv.sources]\n{name} = {{ index = "{channel}" }}',
            note=f"Then: export UV_INDEX_{env}_USERNAME=__token__ "
            f'UV_INDEX_{env}_PASSWORD="$TOKEN"; uv add {name}',
        ),
        Snippet(
            "Poetry",
            f"poetry source add --priority=explicit {channel} {index}\n"
            f'poetry config http-basic.{channel} "$TOKEN" x-auth-token\n'
            f"poetry add --source {channel} {name}",
        ),
        Snippet(
            "twine (upload)",
            f'twine upload --repository-url {channel_url} -u "$TOKEN" -p x-auth-token dist/*',
            note="Needs a write token.",
        ),
        Snippet(
            "uv publish (upload)",
            f'uv publish --publish-url {channel_url} --token "$TOKEN" dist/*',
            note="Needs a write token.",
        ),
        Snippet(
            "curl (the JSON index)",
            f'curl -H "X-Auth: $TOKEN" -H "Accept: application/vnd.pypi.simple.v1+json" '
            f"{index}{package.key + '/' if package is not None else ''}",
        ),
    ]
    return found
