"""The one reader of uploaded archives: every member checked, only the metadata read.

::

    from private_channels.core.archive import ArchiveError, Policy, read_archive

    contents = read_archive(
        stream,                      # seekable (a spooled upload); left at position 0
        "tar.gz",                    # or "tar", "tar.bz2", "zip"
        want=lambda m: m.kind == "file" and m.parts[1:] == ("PKG-INFO",),
        policy=Policy(links="inside"),
        limits=limits,
        what="sdist",                # how refusals name the upload: "The sdist ..."
    )
    [(member, data)] = contents.found   # PKG-INFO's bytes, at most limits.max_metadata_size

    contents = read_archive(                # a .conda: a zip of tar.zst archives
        stream, "zip",
        inner=lambda m: "tar.zst" if m.path.endswith(".tar.zst") else None,
        want=lambda m: m.within.startswith("info-") and m.path == "info/index.json",
        policy=Policy(links="inside"), limits=limits, what="conda package",
    )

Uploads come from anyone holding a write token, so an archive is hostile until read:
every member is looked at, in one pass, and nothing is ever extracted to disk.  The
bounds of :class:`~private_channels.core.limits.Limits` hold for every ecosystem:

- paths: no absolute path, drive letter, ``..``, backslash, NUL, empty or ``.`` segment
  (a leading ``./``, which ``tar -C dir .`` writes, is dropped);
- kinds: no device or FIFO; links refused (``Policy(links="refuse")``) or allowed
  only when their target stays inside the archive (``links="inside"``), judged through
  the archive's other links too;
- sizes: the number of members, each member's declared size and their sum, the bytes
  a tar stream actually inflates, and their ratio to the compressed bytes read (a
  compression bomb is refused after ``ratio_floor`` bytes, within milliseconds);
- tarfile's soft spots: pax and GNU long-name headers are bounded before tarfile reads
  them into memory, their records checked so that its parser stays linear, sparse
  members refused, a damaged header refused (tarfile would take it for the end), and
  ``TarFile.members`` emptied as the stream goes;
- zipfile's soft spots: the end record's member count and directory size, and the
  directory's real number of entries, are checked before ``ZipFile`` parses it; a name
  given twice and an encrypted member are refused.

Every refusal is an :class:`ArchiveError` whose message is one sentence the uploader
can act on (it becomes a 400 reason phrase); a damaged stream of any kind is one too.
An ecosystem says only which :class:`Policy` it wants and which members it needs.

Archives inside an archive (the ``info-*.tar.zst`` and ``pkg-*.tar.zst`` of a ``.conda``)
are read as streams straight from their outer member, never spooled or held whole, and
every one of their members is checked as the outer ones are, against the same bounds:
members, unpacked bytes and metadata read count across all of them together.  Their
links are judged together too, since they are unpacked into one directory.

Compressed tar streams are read through a decompressing file object chosen by
``_DECOMPRESSORS``; zstd imports ``zstandard`` (the ``conda`` extra) only when used.
"""

from __future__ import annotations

import bz2
import functools
import gzip
import io
import lzma
import re
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Literal, NoReturn, Protocol

from .limits import Limits

__all__ = [
    "ArchiveError",
    "Contents",
    "Format",
    "Member",
    "Policy",
    "read_archive",
    "sniff",
]

Format = Literal["zip", "tar", "tar.gz", "tar.bz2", "tar.zst"]
Kind = Literal["file", "dir", "symlink", "hardlink"]

# Whatever a damaged or hostile stream makes the standard library raise, besides the
# bounds' own ArchiveError: decompressors (zlib.error, lzma.LZMAError, OSError,
# EOFError), tarfile and zipfile (TarError, BadZipFile, NotImplementedError for a zip
# "version needed" it does not know, RuntimeError for an encrypted member, IndexError
# for an empty zip name), and codecs, struct and int parsing on malformed headers.
_DAMAGE = (
    tarfile.TarError,
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    lzma.LZMAError,
    OSError,
    EOFError,
    ValueError,
    NotImplementedError,
    RuntimeError,
    UnicodeError,
    IndexError,
    struct.error,
)


class ArchiveError(ValueError):
    """The archive is refused; the message is one sentence the uploader can act on."""


@dataclass(frozen=True)
class Policy:
    """What an ecosystem accepts beyond the rules every archive follows."""

    #: ``"refuse"``: no symbolic or hard link at all (R).  ``"inside"``: links whose
    #: target stays inside the archive (sdists, conda packages).
    links: Literal["refuse", "inside"] = "refuse"
    #: Everything beneath exactly one top-level directory (R's ``<pkg>/``).
    one_root: bool = False


@dataclass(frozen=True, slots=True)
class Member:
    """One member that passed every check, as ``want`` sees it."""

    name: str  # as the archive spells it
    parts: tuple[str, ...]  # the path's segments, without a leading "./"
    kind: Kind
    size: int  # declared unpacked bytes of a file; 0 for the other kinds
    target: str = ""  # a link's target, as the archive spells it
    within: str = ""  # the outer member whose archive holds it; "" at the top level

    @property
    def path(self) -> str:
        return "/".join(self.parts)


@dataclass(frozen=True)
class Contents:
    """What reading an archive found."""

    members: int
    #: The one top-level directory, under ``Policy(one_root=True)``; else ``None``.
    root: str | None
    #: The members ``want`` chose, with their bytes, in archive order.
    found: tuple[tuple[Member, bytes], ...]


def sniff(stream: IO[bytes]) -> Format | None:
    """The archive format its first bytes announce, or ``None``; ``stream`` stays at 0."""
    stream.seek(0)
    head = stream.read(512)
    stream.seek(0)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "tar.gz"
    if head.startswith(b"BZh"):
        return "tar.bz2"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "tar.zst"
    if head[257:262] == b"ustar":
        return "tar"
    return None


def read_archive(
    stream: IO[bytes],
    format: Format,
    *,
    want: Callable[[Member], bool] | None = None,
    inner: Callable[[Member], Format | None] | None = None,
    policy: Policy = Policy(),
    limits: Limits | None = None,
    what: str = "archive",
) -> Contents:
    """Check every member of the archive in ``stream`` and read the ones ``want`` picks.

    ``want`` is called once for every member that passed the checks, in archive
    order (so it may also note what it sees); the members it picks are read into
    memory, together at most ``limits.max_metadata_size`` bytes.  ``inner`` names the
    file members that are archives themselves, by the (tar) format to read them in;
    their members are checked and offered to ``want`` in turn, with
    :attr:`Member.within` naming the outer member (an inner archive is not offered to
    ``want`` itself, nor looked into further).  ``what`` names the upload in messages
    ("The sdist member ... links outside the archive.").  Raises
    :class:`ArchiveError`; ``stream`` is left at position 0 either way.
    """
    scan = _Scan(
        policy=policy,
        limits=limits or Limits(),
        want=want or (lambda member: False),
        inner=inner or (lambda member: None),
        what=what,
    )
    stream.seek(0)
    try:
        if format == "zip":
            _read_zip(stream, scan)
        else:
            _read_tar(stream, format, scan)
    finally:
        stream.seek(0)
    return scan.finish()


# -- the checks every format shares -------------------------------------------------

# No format needs more metadata members than this (conda reads the most: index.json,
# about.json, run_exports.json...); archives of thousands of PKG-INFOs stop here.
MAX_FOUND = 16
# Archives inside one archive (a .conda has two).
MAX_INNER = 4


def _quote(name: str) -> str:
    """A member name fit for a one-line message: quoted, escaped and short."""
    return repr(name[:80] + "..." if len(name) > 80 else name)


def _label(name: str) -> str:
    """A file name shown bare when it is plain (``METADATA``), quoted otherwise."""
    plain = name.isascii() and name.isprintable() and 0 < len(name) <= 80
    return name if plain else _quote(name)


def _path_problem(name: str) -> str | None:
    """Why ``name`` may not be a member's path (or a hard link's target), if it may not."""
    if not name:
        return "it is empty"
    if "\x00" in name:
        return "it holds a NUL character"
    # Windows reads a backslash as "/": judge the path as it would land there too.
    segments = name.replace("\\", "/").split("/")
    if not segments[0]:
        return "it is absolute, so it escapes the archive"
    if ":" in segments[0]:
        # "C:" is a drive; "name:x" an NTFS stream of a file outside the directory.
        return "it names a drive, so it escapes the archive on Windows"
    if ".." in segments:
        return "its '..' escapes the archive"
    if "\\" in name:
        return "it holds a backslash, which Windows reads as a separator"
    if any(s in ("", ".") for s in _split(name)):
        return "it has an empty or '.' segment"
    return None


def _split(name: str) -> list[str]:
    if name in (".", "./"):
        return []  # the archive's own root, which `tar -C dir .` lists first
    return name.removeprefix("./").removesuffix("/").split("/")


class _Links:
    """Links under ``Policy(links="inside")``: each alone, then against all the others.

    A target is judged by its text, which is what every extractor writes; but a link
    may climb out of a directory that is itself a link (``a -> .`` and ``b -> a/..``),
    and the text does not show where that lands.  Such a climb, and a member placed
    beneath a link, are refused; a link may still point to or descend through another
    link (``lib64 -> lib`` and ``libz.so -> ../lib64/libz.so.1``).
    """

    def __init__(self) -> None:
        self.symlinks: set[str] = set()
        # (member name, directories a ".." of its target climbs out of)
        self.climbs: list[tuple[str, tuple[str, ...]]] = []

    def beneath(self, parts: tuple[str, ...]) -> str | None:
        """The link a member at ``parts`` would be written through, if any."""
        for end in range(1, len(parts)):
            prefix = "/".join(parts[:end])
            if prefix in self.symlinks:
                return prefix
        return None

    def symlink(self, member: Member) -> bool:
        """Record a symbolic link; ``False`` if its target escapes the archive."""
        target = member.target
        if not target or "\x00" in target or "\\" in target or target.startswith("/"):
            return False
        if ":" in target.split("/", 1)[0]:
            return False
        here = list(member.parts[:-1])
        climbed: list[str] = []
        for segment in target.split("/"):
            if segment == "..":
                if not here:
                    return False
                climbed.append("/".join(here))
                here.pop()
            elif segment not in ("", "."):
                here.append(segment)
        self.symlinks.add(member.path)
        if climbed:
            self.climbs.append((member.name, tuple(climbed)))
        return True

    def hardlink(self, member: Member) -> bool:
        """Record a hard link; ``False`` if its target is no safe member path."""
        if _path_problem(member.target) is not None or not _split(member.target):
            return False
        # The target's directories are resolved by the extractor, links included.
        directory = "/".join(_split(member.target)[:-1])
        if directory:
            self.climbs.append((member.name, (directory,)))
        return True

    def through(self) -> tuple[str, str] | None:
        """A (member, link) whose target runs through that link, once all are known."""
        for name, directories in self.climbs:
            for directory in directories:
                parts = tuple(directory.split("/"))
                for end in range(1, len(parts) + 1):
                    prefix = "/".join(parts[:end])
                    if prefix in self.symlinks:
                        return name, prefix
        return None


@dataclass
class _Totals:
    """What the bounds count across an archive and every archive inside it."""

    members: int = 0
    declared: int = 0  # unpacked bytes the members' headers declare
    inflated: int = 0  # bytes the decompressors of tar streams have produced
    inner: int = 0
    found: list[tuple[Member, bytes]] = field(default_factory=list)
    found_bytes: int = 0


class _Scan:
    """The checks every member of every format goes through, and what they collect.

    An archive inside the archive gets a scan of its own (:meth:`nested`), which counts
    towards the same totals and shares the links of the other inner archives.
    """

    def __init__(
        self,
        *,
        policy: Policy,
        limits: Limits,
        want: Callable[[Member], bool],
        inner: Callable[[Member], Format | None],
        what: str,
        totals: _Totals | None = None,
        within: str = "",
    ) -> None:
        self.policy = policy
        self.limits = limits
        self.want = want
        self.inner = inner
        self.what = what
        self.totals = totals or _Totals()
        self.within = within
        self.root: str | None = None
        self.links = _Links() if policy.links == "inside" else None
        self.inner_links: _Links | None = None

    def nested(self, member: Member) -> tuple[Format, _Scan] | None:
        """The format and the scan of ``member`` if it is an archive to look into."""
        format = self.inner(member) if member.kind == "file" and not self.within else None
        if format is None:
            return None
        if format == "zip":
            raise ValueError("an inner archive is read as a stream: a tar format")
        self.totals.inner += 1
        if self.totals.inner > MAX_INNER:
            self.refuse(f" holds more than {MAX_INNER} archives.")
        scan = _Scan(
            policy=Policy(links=self.policy.links),
            limits=self.limits,
            want=self.want,
            inner=self.inner,
            what=f"{self.what}'s {_label(member.path)}",
            totals=self.totals,
            within=member.path,
        )
        # Unpacked into one directory: a link in one may carry the other's members.
        if self.inner_links is None:
            self.inner_links = scan.links
        scan.links = self.inner_links
        return format, scan

    def refuse(self, sentence: str) -> NoReturn:
        """Raise the refusal "The <what><sentence>"; ``sentence`` starts with " " or "'s"."""
        raise ArchiveError(f"The {self.what}{sentence}")

    def admit(
        self, name: str, kind: Kind | Literal["special"], size: int, target: str = ""
    ) -> Member:
        """Check one member and return it (:meth:`keep` its bytes if ``want`` picks it)."""
        limits = self.limits
        totals = self.totals
        totals.members += 1
        if totals.members > limits.max_members:
            self.refuse(f" has more than {limits.max_members} members.")
        problem = _path_problem(name)
        if problem is None and kind != "dir" and not _split(name):
            problem = "it names the archive's root directory"
        if problem is not None:
            self.refuse(f" member {_quote(name)} has an unsafe path: {problem}.")
        if self.policy.links == "refuse" and kind != "file" and kind != "dir":
            self.refuse(
                f" member {_quote(name)} is a link or a device; "
                "only files and directories are accepted."
            )
        if kind == "special":
            self.refuse(
                f" member {_quote(name)} is a device or FIFO; "
                "only files, directories and links are accepted."
            )
        if kind == "file":
            if size > limits.max_member_size:
                self.refuse(f" member {_quote(name)} unpacks to more than "
                            f"{limits.max_member_size} bytes.")  # fmt: skip
            totals.declared += size
            if totals.declared > limits.max_unpacked:
                self.refuse(f" unpacks to more than {limits.max_unpacked} bytes.")
        else:
            size = 0
        member = Member(name, tuple(_split(name)), kind, size, target, self.within)
        if member.parts:
            self._check_root(member)
            if self.links is not None:
                self._check_links(member)
        return member

    def _check_root(self, member: Member) -> None:
        if not self.policy.one_root:
            return
        top = member.parts[0]
        if self.root is None and (len(member.parts) > 1 or member.kind == "dir"):
            self.root = top
        if top != self.root:
            self.refuse(" must hold exactly one top-level directory and nothing beside it.")

    def _check_links(self, member: Member) -> None:
        assert self.links is not None
        link = self.links.beneath(member.parts)
        if link is not None:
            self.refuse(
                f" member {_quote(member.name)} lies beneath the link {_quote(link)}, "
                "which could carry it outside the archive."
            )
        inside = True
        if member.kind == "symlink":
            inside = self.links.symlink(member)
        elif member.kind == "hardlink":
            inside = self.links.hardlink(member)
        if not inside:
            self.refuse(f" member {_quote(member.name)} links outside the archive.")

    def keep(self, member: Member, read: Callable[[int], bytes]) -> None:
        """Read a member ``want`` picked: ``read(n)`` gives at most ``n`` of its bytes."""
        limit = self.limits.max_metadata_size
        totals = self.totals
        if len(totals.found) >= MAX_FOUND:
            self.refuse(f" has more than {MAX_FOUND} metadata files.")
        if member.size > limit:
            self.refuse(f"'s metadata file is larger than {limit} bytes ({_quote(member.name)}).")
        left = limit - totals.found_bytes
        # Readers allocate what they are asked for: ask for no more than is declared.
        data = read(min(left, member.size) + 1)
        if len(data) > left:
            if len(data) > limit:
                self.refuse(
                    f"'s metadata file is larger than {limit} bytes ({_quote(member.name)})."
                )
            self.refuse(f"'s metadata files are larger than {limit} bytes together.")
        totals.found.append((member, data))
        totals.found_bytes += len(data)

    def finish(self) -> Contents:
        for links in (self.links, self.inner_links):
            through = links.through() if links is not None else None
            if through is not None:
                name, link = through
                self.refuse(
                    f" member {_quote(name)} links through the link {_quote(link)}, "
                    "which could lead outside the archive."
                )
        if self.policy.one_root and self.root is None:
            self.refuse(" must hold exactly one top-level directory and nothing beside it.")
        totals = self.totals
        return Contents(members=totals.members, root=self.root, found=tuple(totals.found))


# -- tar -----------------------------------------------------------------------------


class _Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


class _Consumed:
    """The raw upload, counting the compressed bytes a decompressor has taken."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.count = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self.stream.read(size)
        self.count += len(data)
        return data

    def seekable(self) -> bool:
        return False

    def seek(self, offset: int, /) -> int:
        # The decompressors ask for it, but seek only when they are themselves rewound.
        raise io.UnsupportedOperation("the upload is read forwards")


def _gunzip(raw: _Consumed) -> _Readable:
    return gzip.GzipFile(fileobj=raw, mode="rb")


def _bunzip2(raw: _Consumed) -> _Readable:
    return bz2.BZ2File(raw)


# zstd's own default bound on a frame's window (ZSTD_WINDOWLOG_LIMIT_DEFAULT): enough for
# every compression level without --long, and what a hostile frame may make it allocate.
MAX_ZSTD_WINDOW = 1 << 27


class _Unzstd:
    """zstandard's stream reader, its errors raised as the OSError a damaged stream is."""

    def __init__(self, raw: _Consumed) -> None:
        import zstandard  # the conda extra; ImportError is turned into a refusal

        self.error = zstandard.ZstdError
        decompressor = zstandard.ZstdDecompressor(max_window_size=MAX_ZSTD_WINDOW)
        # Every frame: bytes after the first frame are part of the stream, as zstd reads it.
        self.reader = decompressor.stream_reader(raw, read_across_frames=True, closefd=False)  # type: ignore[arg-type]

    def read(self, size: int = -1, /) -> bytes:
        try:
            data: bytes = self.reader.read(size)
        except self.error as exc:
            raise OSError(str(exc)) from None
        return data


_DECOMPRESSORS: dict[str, tuple[str, Callable[[_Consumed], _Readable]]] = {
    # format: (how messages name it, a file object that inflates the raw stream)
    "tar": ("", lambda raw: raw),
    "tar.gz": ("gzip-compressed ", _gunzip),
    "tar.bz2": ("bzip2-compressed ", _bunzip2),
    "tar.zst": ("zstd-compressed ", _Unzstd),
}

# tarfile reads these headers' data into memory whole, before the member they describe.
_EXTENDED = frozenset(
    {tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
     tarfile.SOLARIS_XHDTYPE}
)  # fmt: skip
_PAX = frozenset({tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE})
# Real archives chain at most a global pax header, a pax header and GNU long name and
# long link headers; tarfile follows a chain by recursion, so a long one is a crash.
MAX_HEADER_CHAIN = 8
# Every member after a global pax header gets a copy of all its fields: many fields
# make each member cost as much as the whole header.  git archive writes one field.
MAX_GLOBAL_FIELDS = 64
# tarfile (before 3.11.10 and 3.12.6: CVE-2024-6232) searches a pax header with a
# regular expression whose cost grows with the square of the longest run of digits.
MAX_DIGIT_RUN = 32
_DIGIT_RUN = re.compile(rb"[0-9]{%d}" % (MAX_DIGIT_RUN + 1))
_PAX_LENGTH = re.compile(rb"([0-9]{1,20}) ")


class _TarStream:
    """The inflated tar stream as tarfile reads it: forward only, counted and bounded.

    Bytes that a check looked at ahead of tarfile (:meth:`peek`) are given back to it;
    every inflated byte counts towards ``max_unpacked`` and the compression ratio.
    """

    def __init__(self, inflated: _Readable, raw: _Consumed, scan: _Scan) -> None:
        self.inflated = inflated
        self.raw = raw
        self.scan = scan
        self.count = 0
        self.ahead = b""

    def read(self, size: int = -1, /) -> bytes:
        if size < 0:
            raise tarfile.ReadError("tarfile never reads a stream to its end")
        given = self.ahead[:size]
        self.ahead = self.ahead[size:]
        if len(given) == size:
            return given
        data = self.inflated.read(size - len(given))
        self.count += len(data)
        self.scan.totals.inflated += len(data)
        self._check()
        return given + data

    def _check(self) -> None:
        limits = self.scan.limits
        if self.scan.totals.inflated > limits.max_unpacked:
            self.scan.refuse(f" unpacks to more than {limits.max_unpacked} bytes.")
        if self.count > limits.ratio_floor and self.count > limits.max_ratio * self.raw.count:
            self.scan.refuse(
                f" unpacks to more than {limits.max_ratio} times its compressed size, "
                "as only a compression bomb does."
            )

    def peek(self, size: int) -> bytes:
        data = self.read(size)
        self.ahead = data + self.ahead
        return data

    def tell(self) -> int:
        return self.count - len(self.ahead)

    def seek(self, position: int, whence: int = io.SEEK_SET, /) -> int:
        if whence != io.SEEK_SET or position < self.tell():
            raise tarfile.ReadError("a tar stream is read forwards")
        while position > self.tell() and self.read(min(position - self.tell(), 1 << 16)):
            pass  # skipping a member's data: read, counted, dropped
        return self.tell()

    def write(self, data: bytes, /) -> int:
        raise io.UnsupportedOperation("read only")

    def close(self) -> None:
        pass  # the upload belongs to the caller


class _TarFile(tarfile.TarFile):
    """A TarFile that carries the scan its headers are checked against."""

    def __init__(self, stream: _TarStream) -> None:
        # Names of their own: TarFile sets attributes of its own (3.13: "stream").
        self.bounded = stream
        self.extended_in_a_row = 0
        # Mode "r" on a forward-only stream, not mode "r|": tarfile's own stream
        # wrapper would hide the bytes that _TarInfo needs to look at first.
        super().__init__(
            fileobj=stream, mode="r", tarinfo=_TarInfo, encoding="utf-8",
            errors="surrogateescape",
        )  # fmt: skip


class _TarInfo(tarfile.TarInfo):
    """Headers checked before tarfile acts on them (the hooks tarfile offers subclasses)."""

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> _TarInfo:
        assert isinstance(tarfile_, _TarFile)
        block = tarfile_.bounded.peek(tarfile.BLOCKSIZE)
        try:
            return super().fromtarfile(tarfile_)
        except tarfile.HeaderError:
            if len(block) == tarfile.BLOCKSIZE and not block.strip(b"\0"):
                raise  # the end-of-archive marker, which tarfile takes as the end
            # tarfile takes a damaged or missing header past the first as the end of the
            # archive, and GNU tar skips it and reads on: members would hide behind it.
            raise tarfile.ReadError("damaged or missing tar header") from None

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        assert isinstance(tarfile_, _TarFile)
        scan = tarfile_.bounded.scan
        if self.type in _EXTENDED:
            limit = scan.limits.max_extended_header
            if not 0 <= self.size <= limit:
                scan.refuse(
                    f" has an oversized extended tar header: a pax or GNU long-name header "
                    f"over {limit} bytes."
                )
            tarfile_.extended_in_a_row += 1
            if tarfile_.extended_in_a_row > MAX_HEADER_CHAIN:
                scan.refuse(f" has more than {MAX_HEADER_CHAIN} extended tar headers in a row.")
            if self.type in _PAX:
                _check_pax(tarfile_.bounded.peek(self.size), scan)
        else:
            tarfile_.extended_in_a_row = 0
            if self.type == tarfile.GNUTYPE_SPARSE:
                _refuse_sparse(scan)
        member: tarfile.TarInfo = super()._proc_member(tarfile_)  # type: ignore[misc]
        if len(tarfile_.pax_headers) > MAX_GLOBAL_FIELDS:
            scan.refuse(f" has a global pax header of more than {MAX_GLOBAL_FIELDS} fields.")
        return member


def _refuse_sparse(scan: _Scan) -> NoReturn:
    # tarfile reads a sparse member's map of holes into memory with no bound, and no
    # package format has sparse files.
    scan.refuse(" holds a sparse file (a GNU tar extension); only plain files are accepted.")


def _check_pax(data: bytes, scan: _Scan) -> None:
    """Refuse a pax header that tarfile would parse in more than linear time.

    Records are ``<length> <keyword>=<value>\\n``.  tarfile matches each with a
    pattern that runs to the next ``=`` anywhere in the header: records with no ``=``
    of their own make that quadratic in time and memory (CVE-2024-6232).
    """
    if _DIGIT_RUN.search(data):
        raise tarfile.ReadError("pax header with a long run of digits")
    position = 0
    while position < len(data):
        match = _PAX_LENGTH.match(data, position)
        if match is None:
            raise tarfile.ReadError("malformed pax record")
        end = position + int(match[1])
        record = data[match.end() : end]
        keyword, equals, _ = record.partition(b"=")
        if end > len(data) or not record.endswith(b"\n") or not equals or not keyword:
            raise tarfile.ReadError("malformed pax record")
        if keyword.startswith(b"GNU.sparse."):
            _refuse_sparse(scan)
        position = end


def _tar_kind(info: tarfile.TarInfo) -> Kind | Literal["special"]:
    if info.isreg():
        return "file"
    if info.isdir():
        return "dir"
    if info.issym():
        return "symlink"
    if info.islnk():
        return "hardlink"
    return "special"


def _read_tar(stream: IO[bytes], format: str, scan: _Scan) -> None:
    label, decompress = _DECOMPRESSORS[format]
    raw = _Consumed(stream)
    try:
        inflated = decompress(raw)
    except ImportError:
        scan.refuse(
            f" is {label}tar, which this server cannot read without zstandard "
            "(the conda extra: pip install 'zstandard>=0.22')."
        )
    try:
        tar = _TarFile(_TarStream(inflated, raw, scan))
        with tar:
            while (info := tar.next()) is not None:
                # Only tarfile's random access needs its list of members; a stream
                # of 100,000 would hold tens of MB.
                tar.members.clear()  # type: ignore[attr-defined]
                if info.size < 0:
                    raise tarfile.ReadError("negative member size")
                kind = _tar_kind(info)
                member = scan.admit(info.name, kind, info.size, info.linkname)
                nested = scan.nested(member)
                if nested is not None:
                    with tar.extractfile(info) or io.BytesIO() as content:
                        _read_tar(content, *nested)
                elif scan.want(member):
                    with tar.extractfile(info) or io.BytesIO() as content:
                        scan.keep(member, content.read)
            # A compressed stream is checked (CRC, length) only at its end, and what
            # follows the end-of-archive marker counts towards the bounds too.
            while tar.bounded.read(1 << 16):
                pass
    except ArchiveError:
        raise
    except _DAMAGE:
        scan.refuse(f" is not a valid {label}tar archive.")


# -- zip -----------------------------------------------------------------------------

_CENTRAL_HEADER = b"PK\x01\x02"
# A symbolic link's target is its content: no longer than a path may be.
MAX_LINK_TARGET = 4096


def _check_zip_directory(stream: IO[bytes], scan: _Scan) -> None:
    """Bound the central directory before ZipFile parses it whole.

    ZipFile turns every entry of the directory into an object of some 500 bytes, as
    many as the directory holds, whatever the end record declares; a 77 MB upload of
    1.5 million empty entries would cost 700 MiB.  The end record is read with
    zipfile's own reader, so that both agree on where the directory is.
    """
    limits = scan.limits
    end = zipfile._EndRecData(stream)  # type: ignore[attr-defined]
    if end is None:
        return  # not a zip at all: ZipFile says so
    if end[zipfile._ECD_ENTRIES_TOTAL] > limits.max_members:  # type: ignore[attr-defined]
        scan.refuse(f" has more than {limits.max_members} members.")
    size: int = end[zipfile._ECD_SIZE]  # type: ignore[attr-defined]
    if size > limits.max_zip_directory:
        scan.refuse(f"'s list of members is larger than {limits.max_zip_directory} bytes.")
    # The end record may understate the count: count the entries' signatures in the
    # directory (and the zip64 records before the end record: 76 bytes at most).
    location: int = end[zipfile._ECD_LOCATION]  # type: ignore[attr-defined]
    start = max(0, location - size - 76)
    stream.seek(start)
    entries, tail, left = 0, b"", location - start
    while left > 0:
        chunk = stream.read(min(left, 1 << 20))
        if not chunk:
            break
        left -= len(chunk)
        window = tail + chunk
        entries += window.count(_CENTRAL_HEADER)
        tail = window[-(len(_CENTRAL_HEADER) - 1) :]  # no signature fits in the tail twice
    if entries > limits.max_members:
        scan.refuse(f" has more than {limits.max_members} members.")


def _zip_kind(info: zipfile.ZipInfo) -> Kind | Literal["special"]:
    # The Unix mode, when the archiver wrote one (0: none, judge by the name).
    mode = stat.S_IFMT(info.external_attr >> 16)
    if info.filename.endswith("/"):
        return "dir" if mode in (0, stat.S_IFDIR) else "special"
    if mode in (0, stat.S_IFREG):
        return "file"
    if mode == stat.S_IFLNK:
        return "symlink"
    return "special"


def _read_zip(stream: IO[bytes], scan: _Scan) -> None:
    limits = scan.limits
    try:
        _check_zip_directory(stream, scan)
        archive = zipfile.ZipFile(stream)
    except ArchiveError:
        raise
    except _DAMAGE:
        scan.refuse(" is not a valid zip archive.")
    with archive:
        infos = archive.infolist()
        if len(infos) > limits.max_members:
            scan.refuse(f" has more than {limits.max_members} members.")
        stream.seek(0, io.SEEK_END)
        compressed = stream.tell()
        seen: set[tuple[str, ...]] = set()
        wanted: list[tuple[Member, zipfile.ZipInfo, tuple[Format, _Scan] | None]] = []
        for info in infos:
            # ZipInfo cuts its filename at a NUL; the original shows what was sent.
            name = info.orig_filename
            if info.flag_bits & 0x1:
                scan.refuse(f" is not a valid zip archive: its member {_quote(name)} is encrypted.")
            kind = _zip_kind(info)
            target = ""
            if kind == "symlink" and scan.links is not None:
                target = _zip_content(archive, info, MAX_LINK_TARGET, scan=scan).decode(
                    "utf-8", "surrogateescape"
                )
            member = scan.admit(name, kind, info.file_size, target)
            # Two entries of one name unpack differently depending on the tool that
            # reads them (which one wins), so, like PyPI, refuse them.
            if member.parts and member.parts in seen:
                scan.refuse(f" has the member {_quote(name)} more than once.")
            seen.add(member.parts)
            nested = scan.nested(member)
            if nested is not None or scan.want(member):
                wanted.append((member, info, nested))
        # Nothing is inflated but what is wanted; the declared sizes are still bounded
        # against the upload's size, because overlapping members (a zip bomb) are
        # what declares gigabytes in a few kilobytes.
        declared = scan.totals.declared
        if declared > limits.ratio_floor and declared > limits.max_ratio * compressed:
            scan.refuse(
                f" unpacks to more than {limits.max_ratio} times its compressed size, "
                "as only a compression bomb does."
            )
        for member, info, nested in wanted:
            if nested is None:
                scan.keep(member, functools.partial(_zip_content, archive, info, scan=scan))
                continue
            # Streamed from the zip as it inflates, never spooled: zipfile stops at the
            # member's declared size, which the bounds above have accepted.
            try:
                content = archive.open(info)
            except _DAMAGE:
                _unreadable(info, scan)
            with content:
                _read_tar(content, *nested)


def _zip_content(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, size: int, *, scan: _Scan
) -> bytes:
    try:
        with archive.open(info) as content:
            return content.read(size)
    except _DAMAGE:
        _unreadable(info, scan)


def _unreadable(info: zipfile.ZipInfo, scan: _Scan) -> NoReturn:
    base = info.filename.rstrip("/").rpartition("/")[2]
    scan.refuse(
        f"'s {_label(base)} cannot be read from the archive: it is damaged or "
        "compressed with a method this server does not read."
    )
