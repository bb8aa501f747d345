"""A channel's conda packages as the pages and the HTTP API list them.

::

    packages(store, channel)         # [Package(ecosystem='conda', name='beta', versions=...)]
    package(store, channel, "beta")  # every file in every subdir, newest version first
    snippets("https://host/api/repo/team", package)   # pixi, conda, curl

Read from the same subdir documents ``repodata.json`` is rendered from
(:class:`~.store.CondaStore`): one listing of the channel's index folder, one read per
subdir.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from urllib.parse import quote, urlsplit

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
from .package import version_key
from .render import newest_first
from .store import CondaRecord, CondaStore

__all__ = ["ECOSYSTEM", "package", "packages", "snippets"]

ECOSYSTEM = "conda"
# about.json's links, as the package page names them.
_ABOUT = (("home", "Home page"), ("doc_url", "Documentation"), ("dev_url", "Development"),
          ("source_url", "Source"))  # fmt: skip


def _records(store: CondaStore, channel: Channel) -> list[CondaRecord]:
    subdirs = (store.subdir(channel, name) for name in store.subdir_names(channel))
    return [record for subdir in subdirs for record in subdir.records]


def packages(store: CondaStore, channel: Channel) -> list[Package]:
    """Every package name with at least one file in any subdir, by name."""

    def subdir(name: str) -> Iterable[tuple[str, str]]:
        return ((r.name, r.index["version"]) for r in store.subdir(channel, name).records)

    documents = (
        (store.index_key(channel, name), partial(subdir, name))
        for name in store.subdir_names(channel)
    )
    return listed_packages(ECOSYSTEM, store, documents, key=version_key, order=str)


def _listed(record: CondaRecord) -> ListedFile:
    index = record.index
    details = [("Subdir", record.subdir), ("Build", index["build"])]
    for key, label in (("depends", "Depends"), ("constrains", "Constrains")):
        if index.get(key):
            details.append((label, ", ".join(index[key])))
    url = f"{record.subdir}/{quote(record.filename)}"
    return ListedFile.of(
        record, version=index["version"], url=url, yanked=record.yanked, details=details
    )


def package(
    store: CondaStore, channel: Channel, name: str, version: str | None = None
) -> PackageDetail | None:
    """The package ``name``, its files newest version first, and what the about.json of
    ``version`` (default: the newest that is not yanked) says."""
    records = sorted((r for r in _records(store, channel) if r.name == name),
                     key=newest_first, reverse=True)  # fmt: skip
    if not records:
        return None

    def describe(version: str) -> tuple[str, str, list[tuple[str, str]]]:
        chosen = next(r for r in records if r.index["version"] == version)
        about = [("License", v) for v in (chosen.index.get("license"),) if v]
        about += [(label, v) for key, label in _ABOUT if (v := chosen.about.get(key))]
        return chosen.about.get("summary", ""), chosen.about.get("description", ""), about

    return package_detail(ECOSYSTEM, name, map(_listed, records), key=version_key,
                          requested=version, describe=describe)  # fmt: skip


def snippets(channel_url: str, package: Package | None) -> list[Snippet]:
    """pixi, conda and curl for the channel at ``channel_url``, the token as a
    placeholder (or ``$TOKEN`` in the shell)."""
    before, after = path_token_url(channel_url)
    host = urlsplit(channel_url).netloc
    name = package.name if package is not None else "PACKAGE"
    return [
        Snippet(
            "pixi: pixi.toml",
            f'[workspace]\nchannels = ["{channel_url}", "conda-forge"]\n\n'
            f'[dependencies]\n{name} = "*"',
            note=f'Then, once: pixi auth login {host} --token "$TOKEN" '
            "(pixi sends it as a Bearer token).",
        ),
        Snippet(
            "conda, mamba",
            f'conda install -c "{before}$TOKEN{after}" {name}',
            note="conda and mamba take the token in the channel URL, as Anaconda Server "
            "has it; the server never logs it.",
        ),
        curl_upload(
            "curl: upload a conda package",
            "conda_package",
            f"{name}-1.0-0.conda",
            channel_url,
            note="A .conda or .tar.bz2, named as its info/index.json says; it goes to the "
            "subdir index.json names. Needs a write token.",
        ),
    ]
