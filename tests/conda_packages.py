"""Conda packages for the tests: real builds with conda-package-handling, and raw ones.

::

    path = build_conda(tmp, "beta", "1.0", depends=["alpha >=1"])        # .conda
    path = build_conda(tmp, "alpha", "1.0", extension=".tar.bz2")
    data = raw_conda({"info/index.json": b"..."}, pkg=tar(...))          # any bytes inside

``build_conda`` writes what conda-build would put in ``info/`` (index.json, files,
paths.json, about.json) and one file per package, ``share/<name>/<name>.txt``, so an
installed environment shows what was installed; conda-package-handling packs it, as
it packs real builds.  ``raw_conda`` writes the zip itself, for what no builder makes.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import zstandard

from .archives import tar

TIMESTAMP = 1_700_000_000_000


def index_json(name: str, version: str, build: str = "0", **fields: Any) -> dict[str, Any]:
    subdir = fields.pop("subdir", "noarch")
    doc = {
        "name": name,
        "version": version,
        "build": build,
        "build_number": int(build.rpartition("_")[2]) if build[-1:].isdigit() else 0,
        "subdir": subdir,
        "depends": [],
        "license": "MIT",
        "timestamp": TIMESTAMP,
    }
    if subdir == "noarch":
        doc["noarch"] = "generic"
    doc.update(fields)
    return doc


def build_conda(
    directory: Path,
    name: str,
    version: str,
    build: str = "0",
    *,
    extension: str = ".conda",
    about: dict[str, str] | None = None,
    **fields: Any,
) -> Path:
    """A real package ``<name>-<version>-<build><extension>`` made by conda-package-handling."""
    import conda_package_handling.api

    stem = f"{name}-{version}-{build}"
    root = Path(directory) / f"src-{stem}{extension}"
    payload = f"share/{name}/{name}.txt"
    content = f"{name} {version}\n".encode()
    (root / "info").mkdir(parents=True)
    (root / payload).parent.mkdir(parents=True)
    (root / payload).write_bytes(content)
    paths = [{"_path": payload, "path_type": "hardlink", "size_in_bytes": len(content),
              "sha256": hashlib.sha256(content).hexdigest()}]  # fmt: skip
    info = {
        "index.json": index_json(name, version, build, **fields),
        "paths.json": {"paths": paths, "paths_version": 1},
        "about.json": about or {"summary": f"The {name} test package.", "license": "MIT"},
    }
    for filename, doc in info.items():
        (root / "info" / filename).write_text(json.dumps(doc))
    (root / "info" / "files").write_text(payload + "\n")
    out = Path(directory) / "pkgs"
    out.mkdir(exist_ok=True)
    files = [payload, "info/files", *(f"info/{f}" for f in info)]
    conda_package_handling.api.create(str(root), files, stem + extension, out_folder=str(out))
    return out / (stem + extension)


def zst(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


def raw_conda(
    info: dict[str, bytes],
    *,
    pkg: bytes | None = None,
    pkg_zst: bytes | None = None,
    stem: str = "demo-1.0-0",
    extra: dict[str, bytes] | None = None,
    metadata: bytes = b'{"conda_pkg_format_version": 2}',
) -> bytes:
    """A ``.conda`` zip written directly: ``info`` (member name to bytes) as the info
    archive, ``pkg`` (a plain tar, compressed here; or ``pkg_zst``, as it is) as the
    payload, ``extra`` members."""
    info_tar = tar(*info.items())
    members = {
        "metadata.json": metadata,
        f"pkg-{stem}.tar.zst": pkg_zst or zst(pkg if pkg is not None else tar()),
        f"info-{stem}.tar.zst": zst(info_tar),
        **(extra or {}),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for member, data in members.items():
            archive.writestr(member, data)
    return buffer.getvalue()


def demo_index(name: str = "demo", version: str = "1.0", **fields: Any) -> bytes:
    """``index.json`` of ``demo-1.0-0`` (by default), as bytes."""
    return json.dumps(index_json(name, version, "0", **fields)).encode()
