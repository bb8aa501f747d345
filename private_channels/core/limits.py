"""Every bound the server puts on what a client sends, named once.

::

    from private_channels.core.limits import Limits

    app = make_app(storage, limits=Limits(max_upload_size=200 * MiB))

One frozen :class:`Limits` travels from :func:`~private_channels.make_app` to the
upload owner, the hostile-archive reader and every ecosystem, so that a bound added
or tightened here protects Python, R and conda uploads alike.  Where two ecosystems
used to differ, the stricter bound won.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GiB", "KiB", "Limits", "MiB"]

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


@dataclass(frozen=True)
class Limits:
    """Bounds on what one request may make the server read, hold or unpack."""

    # -- the upload form (multipart/form-data) ------------------------------------
    #: Bytes of the uploaded file; past it, 413.
    max_upload_size: int = 1 * GiB
    #: Bytes of all text fields together (twine sends the long description as one).
    max_form_text: int = 8 * MiB
    #: Parts of the form, files and text fields together.
    max_form_parts: int = 1000
    #: Bytes of one part's headers (name, filename, content type).
    max_part_header: int = 16 * KiB

    # -- archives (wheels, sdists, R packages, conda packages) --------------------
    #: Members of one archive (for a zip, as its end record declares them).
    max_members: int = 100_000
    #: Bytes one member unpacks to.
    max_member_size: int = 2 * GiB
    #: Bytes all members unpack to together.
    max_unpacked: int = 4 * GiB
    #: Bytes of the one metadata member read into memory (METADATA, PKG-INFO,
    #: DESCRIPTION, info/index.json).
    max_metadata_size: int = 1 * MiB
    #: Bytes of a pax or GNU long-name header, which tarfile reads into memory whole.
    max_extended_header: int = 1 * MiB
    #: Bytes of a zip's central directory, which zipfile parses whole.
    max_zip_directory: int = 16 * MiB
    #: Unpacked bytes per compressed byte read, once past :attr:`ratio_floor`: real
    #: archives stay far below it, a compression bomb (zlib reaches 1,000:1, bzip2 and
    #: zstd far more) crosses it within milliseconds instead of after gigabytes.
    max_ratio: int = 200
    ratio_floor: int = 32 * MiB

    # -- upstreams (what another index answers is hostile input too) ---------------
    #: Bytes of one upstream index page, ``PACKAGES`` file or ``archive.rds``, unpacked.
    max_upstream_page: int = 64 * MiB
    #: Bytes of one package file fetched from an upstream.
    max_upstream_file: int = 1 * GiB
    #: Seconds to connect to an upstream, and to wait for each read from it.
    upstream_timeout: float = 10.0
    #: Seconds for a whole upstream index page; past it the cached copy is served.
    upstream_page_deadline: float = 30.0
    #: Seconds for a whole upstream package file.
    upstream_file_deadline: float = 900.0

    # -- everything else ----------------------------------------------------------
    #: Bytes of a form or JSON body sent to the management endpoints.
    max_admin_body: int = 64 * KiB
    #: Characters of an uploaded file's name.
    max_filename: int = 255
