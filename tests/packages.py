"""Python distributions for the tests: tiny synthetic ones, and real builds of a project.

``make_wheel`` / ``make_sdist`` write valid archives directly (fast, for webtest);
``build_project`` runs the real ``python -m build`` on a generated project (for the
end-to-end tests, where the clients must see what a user's build makes).
"""

from __future__ import annotations

import base64
import hashlib
import io
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def metadata_text(
    name: str,
    version: str,
    *,
    requires: list[str] = (),  # type: ignore[assignment]
    requires_python: str | None = None,
    metadata_version: str = "2.1",
    summary: str = "A test package.",
) -> str:
    lines = [
        f"Metadata-Version: {metadata_version}",
        f"Name: {name}",
        f"Version: {version}",
        f"Summary: {summary}",
    ]
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    lines += [f"Requires-Dist: {r}" for r in requires]
    return "\n".join(lines) + "\n\n"


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def make_wheel(
    directory: Path,
    name: str,
    version: str,
    *,
    metadata: str | None = None,
    module_source: str | None = None,
    **metadata_options,  # type: ignore[no-untyped-def]
) -> Path:
    """A pure-Python wheel ``name-version-py3-none-any.whl`` that installs a module."""
    dist = canonicalize_name(name).replace("-", "_")
    dist_info = f"{dist}-{version}.dist-info"
    files = {
        f"{dist}/__init__.py": (module_source or f"VERSION = {version!r}\n").encode(),
        f"{dist_info}/METADATA": (
            metadata or metadata_text(name, version, **metadata_options)
        ).encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = [_record_line(path, data) for path, data in files.items()]
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    path = Path(directory) / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, data in files.items():
            archive.writestr(member, data)
    return path


def make_sdist(
    directory: Path,
    name: str,
    version: str,
    *,
    metadata: str | None = None,
    **metadata_options,  # type: ignore[no-untyped-def]
) -> Path:
    """A ``name-version.tar.gz`` sdist with PKG-INFO (not buildable; for the upload API)."""
    dist = canonicalize_name(name).replace("-", "_")
    base = f"{dist}-{version}"
    pkg_info = (metadata or metadata_text(name, version, **metadata_options)).encode()
    path = Path(directory) / f"{base}.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for member, data in {f"{base}/PKG-INFO": pkg_info, f"{base}/setup.py": b""}.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def build_project(
    directory: Path,
    name: str,
    version: str,
    *,
    requires: list[str] = (),  # type: ignore[assignment]
    requires_python: str | None = None,
) -> list[Path]:
    """Generate a real setuptools project and build its sdist and wheel with ``build``.

    The module ``<name>`` it installs has ``VERSION`` and, for each requirement, imports
    it, so that importing it proves the dependencies were installed too.
    """
    module = canonicalize_name(name).replace("-", "_")
    source = Path(directory) / f"src-{module}-{version}"
    (source / module).mkdir(parents=True)
    imports = "".join(
        f"import {canonicalize_name(Requirement(r).name).replace('-', '_')}  # noqa\n"
        for r in requires
    )
    (source / module / "__init__.py").write_text(f"{imports}VERSION = {version!r}\n")
    deps = ", ".join(repr(r) for r in requires)
    python = f'requires-python = "{requires_python}"\n' if requires_python else ""
    (source / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""\
            [build-system]
            requires = ["setuptools>=68"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{name}"
            version = "{version}"
            description = "A test project."
            dependencies = [{deps}]
            """
        )
        + python
    )
    out = Path(directory) / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--no-isolation",
            "--sdist",
            "--wheel",
            "--outdir",
            str(out),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    stem = f"{module}-{version}"
    return sorted(p for p in out.iterdir() if p.name.startswith((stem + "-", stem + ".")))
