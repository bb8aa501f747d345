"""A channel's R packages as the pages and the HTTP API list them.

::

    packages(store, channel)        # [Package(ecosystem='cran', name='abc', versions=...)]
    package(store, channel, "abc")  # every file in every directory, newest version first
    snippets("https://host/api/repo/team", package)   # .Rprofile, install.packages, curl

Read from the same index documents ``PACKAGES`` is rendered from (:class:`~.store.CranStore`),
one listing of the channel's index folder and one read per directory.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from urllib.parse import quote

from ..channels import Channel
from ..core.ecosystem import (
    ListedFile,
    Package,
    PackageDetail,
    Snippet,
    curl_upload,
    listed_packages,
    package_detail,
    path_token_url,
)
from .description import r_version_key, valid_package_name
from .manage import ECOSYSTEM
from .store import CranRecord, CranStore, Directory

__all__ = ["package", "packages", "snippets"]

_SHOWN_FIELDS = ("Depends", "Imports", "LinkingTo", "Built", "NeedsCompilation")


def _directories(store: CranStore, channel: Channel) -> list[Directory]:
    return [store.directory(channel, path) for path in store.directory_paths(channel)]


def _version_order(version: str) -> tuple[int, ...]:
    try:
        return r_version_key(version)
    except ValueError:  # a version past Python's integer digit limit: last
        return ()


def packages(store: CranStore, channel: Channel) -> list[Package]:
    """Every package with at least one file in any directory, by name."""

    def directory(path: str) -> Iterable[tuple[str, str]]:
        return ((r.package, r.version) for r in store.directory(channel, path).records)

    documents = (
        (store.index_key(channel, path), partial(directory, path))
        for path in store.directory_paths(channel)
    )
    return listed_packages(ECOSYSTEM, store, documents, key=_version_order)


def _url(directory: Directory, record: CranRecord) -> str | None:
    """Where the repository serves the file, relative to the channel."""
    name = quote(record.filename)
    if directory.path.startswith("linux/"):
        return None  # chosen per request by R's User-Agent, in place of the source
    if directory.path == "src/contrib" and not (
        directory.is_latest(record) or record.yanked is not None
    ):
        return f"src/contrib/Archive/{quote(record.package)}/{name}"
    return f"{directory.path}/{name}"


def _where(path: str) -> str:
    if path.startswith("linux/"):
        _, distribution, r_version = path.split("/")
        return f"Linux binary for {distribution}, R {r_version}"
    return path


def package(
    store: CranStore, channel: Channel, name: str, version: str | None = None
) -> PackageDetail | None:
    """The package ``name``, its files newest version first, and the title and
    description of ``version`` (default: the newest that is not yanked)."""
    if not valid_package_name(name):
        return None
    files: dict[tuple[str, str], tuple[CranRecord, str | None, list[str]]] = {}
    for directory in _directories(store, channel):
        for record in directory.records:
            if record.package != name:
                continue
            key = (record.filename, record.sha256)
            _, url, where = files.get(key, (record, None, []))
            files[key] = (record, url or _url(directory, record), [*where, _where(directory.path)])
    if not files:
        return None
    ordered = sorted(
        files.values(), key=lambda e: (_version_order(e[0].version), e[0].upload_time), reverse=True
    )
    listed = []
    for record, url, where in ordered:
        details = [("Directory", ", ".join(where))]
        details += [(k, v) for k in _SHOWN_FIELDS if (v := record.fields.get(k))]
        listed.append(
            ListedFile.of(
                record, version=record.version, url=url, yanked=record.yanked, details=details
            )
        )

    def describe(version: str) -> tuple[str, str, list[tuple[str, str]]]:
        chosen = next(e[0] for e in ordered if e[0].version == version)
        about = [(k, v) for k in ("License",) if (v := chosen.fields.get(k))]
        about += [(k, v) for k in ("Maintainer", "URL", "BugReports") if (v := chosen.about.get(k))]
        return chosen.about.get("Title", ""), chosen.about.get("Description", ""), about

    return package_detail(ECOSYSTEM, name, listed, key=_version_order, requested=version,
                          describe=describe)  # fmt: skip


def snippets(channel_url: str, package: Package | None) -> list[Snippet]:
    """``~/.Rprofile``, ``install.packages`` and curl uploads for the channel at
    ``channel_url``; R reads the token from ``PRIVATE_CHANNELS_TOKEN``, the shell from
    ``$TOKEN``."""
    before, after = path_token_url(channel_url)
    channel = after.lstrip("/")
    repo = f'{channel} = paste0("{before}", Sys.getenv("PRIVATE_CHANNELS_TOKEN"), "{after}")'
    name = package.name if package is not None else "PACKAGE"
    return [
        Snippet(
            "R: install.packages",
            f'install.packages("{name}", repos = c(getOption("repos"),\n  {repo}))',
            note="R cannot send a header, so the token goes in the URL, read from the "
            "environment variable PRIVATE_CHANNELS_TOKEN. With the ~/.Rprofile below: "
            f'install.packages("{name}").',
        ),
        Snippet(
            "R: ~/.Rprofile",
            f'local({{\n  options(repos = c(getOption("repos"),\n    {repo}))\n}})',
            note="Adds the channel to the repositories R already uses, in every session "
            "(CRAN stays).",
        ),
        curl_upload(
            "curl: upload an R source package",
            "cran_source_package",
            f"{name}_1.0.tar.gz",
            channel_url,
            note="Needs a write token.",
        ),
        curl_upload(
            "curl: upload an R binary package",
            "cran_binary_package",
            f"{name}_1.0.zip",
            channel_url,
            note="A .zip (Windows) or .tgz (macOS) goes where R looks for it; for a Linux "
            "binary (.tar.gz) add -F distribution=bookworm (the system it was built on).",
        ),
    ]
