"""The documents of a conda channel, rendered from snapshots of its subdirs: pure functions.

::

    body = repodata_json(subdir)                 # <subdir>/repodata.json
    zstd(body)                                   # <subdir>/repodata.json.zst
    index, shards = sharded(subdir)              # CEP-16: the index, and {sha256: shard}
    channeldata_json([noarch, linux_64])         # channeldata.json

``repodata.json`` lists ``.tar.bz2`` files under ``packages`` and ``.conda`` files under
``packages.conda``, each with its ``info/index.json`` fields and the stored file's
``sha256``, ``md5`` and ``size``; yanked files are listed under ``removed``.  No
document carries a URL: clients resolve package files against the subdir's own URL
(``repodata_version`` 1; CEP-16's ``base_url`` is relative), so a token in that URL
never lands in a document, a cache or a proxy's copy.

CEP-16 sharded repodata: ``repodata_shards.msgpack.zst`` maps each package name to the
sha256 of its shard, ``shards/<sha256>.msgpack.zst``, which holds that name's entries
(digests as bytes) and is named after the hash of its bytes.  Rendering is
deterministic (sorted keys, one zstd level, no timestamps), so every process renders a
given snapshot to the same bytes and the same hashes.

``zstandard`` and ``msgpack`` are the ``conda`` extra: without them,
:class:`MissingExtraError` says so, and the channel serves ``repodata.json`` and
``.bz2`` alone (clients fall back to those on a 404).
"""

from __future__ import annotations

import bz2
import hashlib
import json
from collections.abc import Iterable
from typing import Any

from .package import version_key
from .store import CondaRecord, Subdir

__all__ = [
    "MissingExtraError",
    "channeldata_json",
    "compress_bz2",
    "newest_first",
    "repodata",
    "repodata_json",
    "sharded",
    "zstd",
]

# A balance for documents rendered once per upload: repodata of a thousand files
# compresses in milliseconds at 12, to within a few percent of level 19's size.
ZSTD_LEVEL = 12
# The conda extra's two packages: private-channels itself is installed from a checkout.
EXTRA = "the conda extra: pip install 'zstandard>=0.22' 'msgpack>=1.0'"


class MissingExtraError(RuntimeError):
    """``zstandard`` or ``msgpack`` is not installed."""


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _packages(records: Iterable[CondaRecord]) -> dict[str, dict[str, Any]]:
    """``packages`` (``.tar.bz2``) and ``packages.conda`` (``.conda``) of ``records``."""
    packages: dict[str, dict[str, Any]] = {"packages": {}, "packages.conda": {}}
    for record in records:
        key = "packages.conda" if record.filename.endswith(".conda") else "packages"
        packages[key][record.filename] = record.entry()
    return packages


def repodata(subdir: Subdir) -> dict[str, Any]:
    """The ``repodata.json`` document of a subdir (a valid, empty one for no files)."""
    return {
        "info": {"subdir": subdir.name},
        **_packages(subdir.listed()),
        "removed": subdir.removed(),
        "repodata_version": 1,
    }


def repodata_json(subdir: Subdir) -> bytes:
    return _dumps(repodata(subdir))


def compress_bz2(body: bytes) -> bytes:
    return bz2.compress(body, 9)


def zstd(body: bytes) -> bytes:
    try:
        import zstandard
    except ImportError:
        raise MissingExtraError(f"zstandard is not installed: {EXTRA}") from None
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(body)


def _msgpack(doc: Any) -> bytes:
    try:
        import msgpack
    except ImportError:
        raise MissingExtraError(f"msgpack is not installed: {EXTRA}") from None
    data: bytes = msgpack.packb(doc, use_bin_type=True)
    return data


def _binary_digests(entry: dict[str, Any]) -> dict[str, Any]:
    # CEP-16: shards carry sha256 and md5 as bytes, not hex.
    return {**entry, "md5": bytes.fromhex(entry["md5"]), "sha256": bytes.fromhex(entry["sha256"])}


def sharded(subdir: Subdir) -> tuple[bytes, dict[str, bytes]]:
    """The shard index of a subdir and its shards by hex sha256, all zstd-compressed msgpack."""
    by_name: dict[str, list[CondaRecord]] = {}
    for record in subdir.records:
        by_name.setdefault(record.name, []).append(record)
    hashes: dict[str, bytes] = {}
    shards: dict[str, bytes] = {}
    for name in sorted(by_name):
        records = sorted(by_name[name], key=lambda r: r.filename)
        packages = _packages(r for r in records if r.yanked is None)
        shard = {
            key: {f: _binary_digests(e) for f, e in entries.items()}
            for key, entries in packages.items()
        }
        shard["removed"] = [r.filename for r in records if r.yanked is not None]  # type: ignore[assignment]
        body = zstd(_msgpack(shard))
        digest = hashlib.sha256(body).digest()
        hashes[name] = digest
        shards[digest.hex()] = body
    index = {
        "version": 1,
        # rattler requires the subdir and both URLs; relative, so no token is in them.
        "info": {"subdir": subdir.name, "base_url": "./", "shards_base_url": "./shards/"},
        "shards": hashes,
    }
    return zstd(_msgpack(index)), shards


def newest_first(record: CondaRecord) -> tuple[Any, ...]:
    """Newest version first, then the highest build number, then the latest build."""
    key = version_key(record.index["version"])
    return key, record.index["build_number"], record.entry()["timestamp"]


def channeldata(subdirs: Iterable[Subdir]) -> dict[str, Any]:
    """``channeldata.json``: every package name, the subdirs that offer it, and what the
    about.json of its newest build says."""
    newest: dict[str, CondaRecord] = {}
    offered: dict[str, set[str]] = {}
    for subdir in subdirs:
        for record in subdir.listed():
            offered.setdefault(record.name, set()).add(subdir.name)
            old = newest.get(record.name)
            if old is None or newest_first(record) > newest_first(old):
                newest[record.name] = record
    packages = {
        name: {
            **record.about,
            "subdirs": sorted(offered[name]),
            "timestamp": record.entry()["timestamp"],
            "version": record.index["version"],
        }
        for name, record in sorted(newest.items())
    }
    all_subdirs = sorted({s for names in offered.values() for s in names})
    return {"channeldata_version": 1, "packages": packages, "subdirs": all_subdirs}


def channeldata_json(subdirs: Iterable[Subdir]) -> bytes:
    return _dumps(channeldata(subdirs))
