"""The embedded default backend: one file per key under a root directory.

::

    storage = FileSystemStorage("./private-channels-data")

Writes go to a file without a name (``O_TMPFILE``) or a hidden temp file in the key's
own directory, are flushed to disk, and then appear at once by a rename (overwrite) or
a link (create-if-absent, which the kernel makes atomic), so a reader or a crash never
sees half a file.
Compare-and-swap on mutable records takes an ``flock`` on a hidden lock file beside
the key: this backend is for one host, where such locks are sound.
On a local file system a process keeps the stats it took until the next write through
any storage of the same root on the host (see :class:`_KeptStats`).
"""

from __future__ import annotations

import builtins
import contextlib
import ctypes
import errno
import fcntl
import functools
import hashlib
import io
import mmap
import os
import platform
import random
import sys
import tempfile
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from stat import S_ISLNK, S_ISREG
from typing import IO

from .base import (
    CHUNK_SIZE,
    MAX_SEGMENT_LENGTH,
    InvalidKeyError,
    StaleWriteError,
    Stat,
    read_stream,
    validate_key,
    validate_prefix,
)

__all__ = ["FileSystemStorage"]


def _etag(st: os.stat_result) -> str:
    return _etag_of(st.st_ino, st.st_mtime_ns, st.st_size)


def _etag_of(ino: int, mtime_ns: int, size: int) -> str:
    # Every write is a new inode (rename or link of a fresh temp file), so inode plus
    # mtime plus size changes on every write without hashing the content.
    return f"{ino:x}-{mtime_ns:x}-{size:x}"


def _stat(st: os.stat_result) -> Stat:
    return Stat(size=st.st_size, mtime=st.st_mtime, etag=_etag(st))


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_OPEN_HOW_SIZE = ctypes.sizeof(_OpenHow)


# openat2(2) (Linux 5.6): its number is the same on these machines (the shared table).
_OPENAT2 = 437
_OPENAT2_MACHINES = ("x86_64", "aarch64", "arm64", "riscv64", "ppc64le", "s390x")
_RESOLVE_BENEATH = 0x08  # no path component may resolve outside the directory: ".." nor links
_O_PATH = getattr(os, "O_PATH", 0)
# A FIFO planted in the root must not block the open; on a regular file it does nothing.
_O_READ = os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
_O_DIRECTORY = _O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
# A file with no name in the directory opened (O_TMPFILE, Linux 3.11): named by a link.
_O_UNNAMED = getattr(os, "O_TMPFILE", 0) | os.O_WRONLY | os.O_CLOEXEC


def _beneath(root: str, *, hold: bool) -> tuple[Callable[[str, int], int], int] | None:
    """``(openat2, root_fd)``: ``openat2(relative, flags)`` opens a path below ``root``
    in one system call in which the kernel follows no symlink out of it, returning the
    descriptor or minus the errno; ``None`` where there is no such call.  With ``hold``
    the call keeps the GIL (see :class:`_HeldCalls`)."""
    if sys.platform != "linux" or not _O_PATH or platform.machine() not in _OPENAT2_MACHINES:
        return None
    try:
        syscall = (ctypes.PyDLL if hold else ctypes.CDLL)(None, use_errno=True).syscall
    except (OSError, AttributeError):
        return None
    syscall.restype = ctypes.c_long
    root_fd = os.open(root, _O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    hows = {
        flags: _OpenHow(flags, 0, _RESOLVE_BENEATH)
        for flags in (_O_PATH | os.O_CLOEXEC, _O_READ, _O_DIRECTORY)
    }
    size = _OPEN_HOW_SIZE

    def openat2(relative: str, flags: int) -> int:
        fd: int = syscall(_OPENAT2, root_fd, relative.encode(), ctypes.byref(hows[flags]), size)
        return fd if fd >= 0 else -ctypes.get_errno()

    return openat2, root_fd


class _StatxTimestamp(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_int64), ("nsec", ctypes.c_uint32), ("reserved", ctypes.c_int32)]


class _Statx(ctypes.Structure):
    """``struct statx`` (linux/stat.h): one layout on every architecture."""

    _fields_ = [
        ("mask", ctypes.c_uint32),
        ("blksize", ctypes.c_uint32),
        ("attributes", ctypes.c_uint64),
        ("nlink", ctypes.c_uint32),
        ("uid", ctypes.c_uint32),
        ("gid", ctypes.c_uint32),
        ("mode", ctypes.c_uint16),
        ("spare0", ctypes.c_uint16),
        ("ino", ctypes.c_uint64),
        ("size", ctypes.c_uint64),
        ("blocks", ctypes.c_uint64),
        ("attributes_mask", ctypes.c_uint64),
        ("atime", _StatxTimestamp),
        ("btime", _StatxTimestamp),
        ("ctime", _StatxTimestamp),
        ("mtime", _StatxTimestamp),
        ("rdev_major", ctypes.c_uint32),
        ("rdev_minor", ctypes.c_uint32),
        ("dev_major", ctypes.c_uint32),
        ("dev_minor", ctypes.c_uint32),
        ("spare", ctypes.c_uint64 * 14),  # the mount id and more: 256 bytes in all
    ]


_AT_EMPTY_PATH = 0x1000
_STATX_BASIC_STATS = 0x7FF


class _Calls:
    """The system calls of the storage's reads and writes, as ``os`` makes them: each
    lets go of the GIL while the kernel works."""

    open = staticmethod(os.open)
    close = staticmethod(os.close)
    fstat = staticmethod(os.fstat)
    stat = staticmethod(os.stat)
    mkdir = staticmethod(os.mkdir)
    link = staticmethod(os.link)
    utime = staticmethod(os.utime)
    write = staticmethod(os.write)
    read = staticmethod(os.read)

    @staticmethod
    def lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)


# Reads of at most this much keep the GIL too (a page-cache copy of microseconds);
# larger ones let go of it.
_HELD_IO = 64 * 1024
# An open with either makes a file: it changes the file system (see _HeldCalls).
_O_TMPFILE = getattr(os, "O_TMPFILE", 0)


class _HeldCalls(_Calls):
    """The same calls, with the same signatures and errors, through ``ctypes.PyDLL``:
    they keep the GIL.  Each takes a microsecond or two on a local file system, but a
    call that lets go of the GIL hands it to another thread of a threaded server
    (waitress, werkzeug) and must wait to get it back: two context switches a call,
    which cost more than the call.  They were most of what a page cost on waitress
    (three calls a stat: :meth:`stat_beneath`), and the better part of an upload's
    server CPU (some forty calls, against the limit's eleven; docs/performance.md,
    third and seventh rounds).  Only on a local file system, where no such call waits
    on a network.

    Only the calls that look keep it: opens that make nothing, ``statx``, ``close``,
    small reads, a lock taken without waiting.  A call that changes the file system
    (an open that makes a file, ``mkdir``, ``link``, ``write``, ``futimens``, and
    ``fsync``, ``rename`` and ``unlink``) may wait for the journal: while another
    thread's ``fsync`` commits it, ext4 makes every change wait its turn, and a call
    that kept the GIL then would stop every thread of the server.  Those let go of it
    (``os``'s calls); on uploads that is what let waitress and gunicorn go faster
    (docs/performance.md, twenty-eighth round).
    """

    def __init__(self) -> None:
        libc = ctypes.PyDLL(None, use_errno=True)
        self._openat, self._close, self._statx = libc.openat, libc.close, libc.statx
        self._read, self._flock = libc.read, libc.flock
        self._openat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint]
        self._read.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
        self._read.restype = ctypes.c_ssize_t
        self._syscall = libc.syscall
        self._syscall.restype = ctypes.c_long
        self._how = _OpenHow(_O_PATH | os.O_CLOEXEC, 0, _RESOLVE_BENEATH)

    def stat_beneath(self, root_fd: int, relative: str) -> Stat | int:
        """The :class:`Stat` of a regular file beneath the root, or an errno (``ENOENT``
        too for what is not a regular file): ``openat2`` with ``RESOLVE_BENEATH``,
        ``statx`` and ``close``, the stat every page view and download checks its cache
        with."""
        how = self._how
        fd = self._syscall(_OPENAT2, root_fd, relative.encode(), ctypes.byref(how), _OPEN_HOW_SIZE)
        if fd < 0:
            return ctypes.get_errno()
        found = _Statx()
        try:
            if self._statx(fd, b"", _AT_EMPTY_PATH, _STATX_BASIC_STATS, ctypes.byref(found)):
                return ctypes.get_errno()
        finally:
            self._close(fd)
        if not S_ISREG(found.mode):
            return errno.ENOENT
        mtime = found.mtime
        return Stat(
            size=found.size,
            mtime=mtime.sec + mtime.nsec * 1e-9,  # as os.stat computes st_mtime
            etag=_etag_of(found.ino, mtime.sec * 1_000_000_000 + mtime.nsec, found.size),
        )

    @staticmethod
    def _error(*filenames: object) -> OSError:
        code = ctypes.get_errno()
        return OSError(code, os.strerror(code), *filenames)

    def open(  # type: ignore[override]
        self, path: str, flags: int, mode: int = 0o777, *, dir_fd: int
    ) -> int:
        if flags & os.O_CREAT or (_O_TMPFILE and flags & _O_TMPFILE == _O_TMPFILE):
            return os.open(path, flags, mode, dir_fd=dir_fd)
        while (fd := self._openat(dir_fd, os.fsencode(path), flags, mode)) < 0:
            if ctypes.get_errno() != errno.EINTR:
                raise self._error(path)
        return int(fd)

    def close(self, fd: int) -> None:
        if self._close(fd) != 0 and ctypes.get_errno() != errno.EINTR:
            raise self._error()  # EINTR: closed all the same on Linux, never retried

    def _statx_result(self, dir_fd: int, path: bytes, flags: int, name: object) -> os.stat_result:
        found = _Statx()
        while self._statx(dir_fd, path, flags, _STATX_BASIC_STATS, ctypes.byref(found)) != 0:
            if ctypes.get_errno() != errno.EINTR:
                raise self._error(name) if name is not None else self._error()
        a, m, c = found.atime, found.mtime, found.ctime
        return os.stat_result(
            (found.mode, found.ino, os.makedev(found.dev_major, found.dev_minor), found.nlink,
             found.uid, found.gid, found.size, a.sec, m.sec, c.sec),
            {"st_atime": a.sec + a.nsec * 1e-9, "st_mtime": m.sec + m.nsec * 1e-9,
             "st_ctime": c.sec + c.nsec * 1e-9, "st_atime_ns": a.sec * 10**9 + a.nsec,
             "st_mtime_ns": m.sec * 10**9 + m.nsec, "st_ctime_ns": c.sec * 10**9 + c.nsec,
             "st_blksize": found.blksize, "st_blocks": found.blocks,
             "st_rdev": os.makedev(found.rdev_major, found.rdev_minor)},
        )  # fmt: skip

    def fstat(self, fd: int) -> os.stat_result:
        return self._statx_result(fd, b"", _AT_EMPTY_PATH, None)

    def stat(self, path: str, *, dir_fd: int) -> os.stat_result:  # type: ignore[override]
        return self._statx_result(dir_fd, os.fsencode(path), 0, path)

    def read(self, fd: int, size: int) -> bytes:
        if size > _HELD_IO:
            return os.read(fd, size)
        buffer = ctypes.create_string_buffer(size)
        while (got := self._read(fd, buffer, size)) < 0:
            if ctypes.get_errno() != errno.EINTR:
                raise self._error()
        return buffer.raw[:got]

    def lock(self, fd: int) -> None:  # type: ignore[override]
        # Without waiting, keeping the GIL; when another holds the lock, waiting for it
        # as os does, letting go.
        if self._flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB) != 0:
            super().lock(fd)


def _calls(local: bool) -> _Calls:
    """Held calls on a local file system where libc has them all, else ``os``'s.  Only
    on the 64-bit machines of :data:`_OPENAT2_MACHINES`, whose system call numbers and
    structures (``openat2``'s, ``statx``'s) these calls are written for."""
    if local and sys.platform == "linux" and platform.machine() in _OPENAT2_MACHINES:
        with contextlib.suppress(OSError, AttributeError):
            return _HeldCalls()
    return _Calls()


# Stats kept between requests (_KeptStats): the shared word every write changes, in a
# hidden file of the root (no key starts with a dot), and how long a kept stat is
# trusted at most, for a file changed behind the storage's back (by hand).
_GENERATION_NAME = ".generation"
_KEPT_FOR = 10.0
_MAX_KEPT = 32_768
# statfs(2) f_type of the file systems where every process that can reach the root
# shares one page cache, so one process's write to a shared mapping is seen by every
# other at once: local disks and memory.  Not NFS, SMB, Ceph or FUSE (another host may
# write there, and this host's mapping would not know).
_LOCAL_FILE_SYSTEMS = frozenset(
    {
        0xEF53,  # ext2, ext3, ext4
        0x58465342,  # xfs
        0x9123683E,  # btrfs
        0x01021994,  # tmpfs
        0x858458F6,  # ramfs
        0x794C7630,  # overlayfs
        0x2FC12FC1,  # zfs
        0xF2F52010,  # f2fs
    }
)


def _file_system_type(path: str) -> int | None:
    """``statfs(path).f_type``, or ``None`` where it cannot be had (Linux's layout)."""
    if sys.platform != "linux":
        return None
    try:
        statfs = ctypes.CDLL(None, use_errno=True).statfs
    except (OSError, AttributeError):
        return None
    found = ctypes.create_string_buffer(512)  # struct statfs: 120 bytes on 64-bit Linux
    if statfs(os.fsencode(path), found) != 0:
        return None
    return ctypes.c_ulong.from_buffer(found).value & 0xFFFFFFFF  # f_type comes first


class _KeptStats:
    """Stats of keys kept between requests, each valid while no write through a
    :class:`FileSystemStorage` of this root, in any process of this host, came after it.

    Every page, index and small download checks its cache with a ``stat`` of its
    document (and of the channel record): three system calls, a quarter of what a
    page costs in process.  Every write (``put``, ``create``, ``delete``) stores a new
    random word in a file of the root mapped into every process that opened it
    (``MAP_SHARED``, one page cache), after the write is done; a stat is kept with the
    word read before it was taken, and used while the word is the same.  So a write
    seen as done by its client (its answer is sent after the word changed) is seen by
    every later request of every process, as with a ``stat`` each time.  A change made
    behind the storage's back is seen within :data:`_KEPT_FOR` seconds.

    Only on a local file system (:data:`_LOCAL_FILE_SYSTEMS`): on a network one another
    host's writes would not reach this host's mapping.  Words are random, not counted:
    two writers counting at once could store the same next count for two changes.
    """

    def __init__(self, root: str) -> None:
        fd = os.open(
            f"{root}/{_GENERATION_NAME}",
            os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK,
            0o600,
        )
        try:
            st = os.fstat(fd)
            if not S_ISREG(st.st_mode):
                raise OSError(errno.EINVAL, f"{_GENERATION_NAME} is not a regular file")
            if st.st_size < 8:
                os.ftruncate(fd, 8)  # another process doing the same at once does no harm
            mapping = mmap.mmap(fd, 8, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        self._word = memoryview(mapping).cast("Q")
        self._stats: dict[str, tuple[Stat, int, float]] = {}

    @classmethod
    def of(cls, root: str, *, local: bool) -> _KeptStats | None:
        """Kept stats for ``root``, or ``None`` where they would not be sound (not on a
        ``local`` file system)."""
        if not local:
            return None
        try:
            return cls(root)
        except (OSError, ValueError):  # a link or a FIFO planted there; no mmap here
            return None

    @property
    def words(self) -> memoryview:
        """The shared word, as a one-item view (what :meth:`word` reads)."""
        return self._word

    def word(self) -> int:
        """Read before the stat it is kept with: a write after it changes it."""
        return self._word[0]

    def get(self, key: str, word: int) -> Stat | None:
        """The stat kept for ``key`` if no write came since (``word`` is unchanged)."""
        kept = self._stats.get(key)
        if kept is None or kept[1] != word or time.monotonic() - kept[2] > _KEPT_FOR:
            return None
        return kept[0]

    def keep(self, key: str, st: Stat, word: int) -> None:
        stats = self._stats
        if len(stats) >= _MAX_KEPT:
            stats.clear()
        stats[key] = (st, word, time.monotonic())

    def changed(self) -> None:
        """After every write (and every write that failed: one word too many costs
        only a stat of each key once more)."""
        self._word[0] = random.getrandbits(64)


class _NoUnnamedFiles(Exception):
    """The file system has no ``O_TMPFILE``: write through a named temp file instead."""


def _write_synced(fd: int, data: IO[bytes], calls: _Calls) -> os.stat_result:
    """Write ``data`` to ``fd``, stamp it with the fine clock, sync it; its stat."""
    # A write call, not a file object: that would fstat, ioctl and seek first.
    while block := data.read(CHUNK_SIZE):
        view = memoryview(block)
        while view:
            view = view[calls.write(fd, view) :]
    # The kernel stamps files from a coarse clock (a tick of milliseconds), and a freed
    # inode number is soon reused: two same-sized versions written in one tick could
    # share an ETag and fool a compare-and-swap.  A nanosecond timestamp from the fine
    # clock makes that practically impossible.
    now = time.time_ns()
    calls.utime(fd, ns=(now, now))
    os.fsync(fd)
    return calls.fstat(fd)


def _read_up_to(fd: int, size: int, calls: _Calls) -> bytes:
    """``size`` bytes from ``fd``, fewer at its end."""
    chunks = []
    while size > 0 and (chunk := calls.read(fd, size)):
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _link_temp(fd: int, dir_fd: int, calls: _Calls) -> str:
    """Give the unnamed file ``fd`` a fresh hidden temp name in ``dir_fd``, to rename."""
    while True:
        # Unguessable names buy nothing here (a taken name fails the link, which follows
        # no link at the new name), and secrets would make a system call for each.
        tmp = f".tmp-{random.getrandbits(64):016x}"
        try:
            calls.link(f"/proc/self/fd/{fd}", tmp, dst_dir_fd=dir_fd, follow_symlinks=True)
        except FileExistsError:
            continue
        return tmp


def _lock_name(name: str) -> str:
    if len(name) > MAX_SEGMENT_LENGTH - len(".lock-"):
        # The lock's name must fit where the key's own name just fits.
        name = hashlib.sha256(name.encode()).hexdigest()
    return f".lock-{name}"


@contextlib.contextmanager
def _locked_at(dir_fd: int, name: str, calls: _Calls) -> Iterator[None]:
    lock = _lock_name(name)
    try:  # there since the key's first write: an open that makes nothing keeps the GIL
        fd = calls.open(lock, os.O_RDWR | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        fd = calls.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    try:
        calls.lock(fd)
        yield
    finally:
        calls.close(fd)


def _current_etag_at(dir_fd: int, name: str, calls: _Calls) -> str | None:
    try:
        return _etag(calls.stat(name, dir_fd=dir_fd))
    except FileNotFoundError:
        return None


def _appended(fd: int, key: str, data: bytes, if_match: str, calls: _Calls) -> Stat:
    """:meth:`FileSystemStorage.append` to ``fd`` (opened ``O_APPEND``), which it closes.
    No fine clock (:func:`_write_synced`): an append only ever makes the file larger,
    so its ETag (which holds the size) is never one it had with other bytes (one taken
    back leaves the file's bytes, and perhaps its ETag, as they were)."""
    try:
        st = calls.fstat(fd)
        if not S_ISREG(st.st_mode):
            raise FileNotFoundError(key)
        if _etag(st) != if_match:
            raise StaleWriteError(key)
        try:
            view = memoryview(data)
            while view:
                view = view[calls.write(fd, view) :]
            os.fdatasync(fd)  # the size with the bytes: all a later read needs
        except BaseException:
            # Bytes written and not synced (a full disk, an I/O error) are a change
            # reported failed: taken back, as a put's file that is never renamed.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, st.st_size)
            raise
        return _stat(calls.fstat(fd))
    finally:
        calls.close(fd)


class FileSystemStorage:
    """``create=False`` opens only a directory that exists (FileNotFoundError otherwise),
    for commands that must not make an empty storage where the user meant another."""

    def __init__(self, root: str | os.PathLike[str], *, create: bool = True) -> None:
        self.root = Path(root).resolve()
        self._root = str(self.root).rstrip("/")
        if not create and not self.root.is_dir():
            raise FileNotFoundError(f"there is no storage directory {self.root}")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OSError(f"cannot create storage directory {self.root}: {exc.strerror}") from exc
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise PermissionError(f"storage directory {self.root} is not writable")
        # Reads resolve keys with openat2 beneath the root where the kernel has it (one
        # system call instead of an lstat per component, and no window between the
        # check and the open); else, and for what it refuses, by the walk of _checked.
        # On a local file system the short calls keep the GIL (_HeldCalls).
        local = _file_system_type(self._root) in _LOCAL_FILE_SYSTEMS
        self._calls = calls = _calls(local)
        beneath = _beneath(self._root, hold=isinstance(calls, _HeldCalls))
        self._openat2 = beneath[0] if beneath else None
        self._held_stat: Callable[[str], Stat | int] | None = None
        if beneath and isinstance(calls, _HeldCalls):
            self._held_stat = functools.partial(calls.stat_beneath, beneath[1])
        # Writes into unnamed files, named by linking /proc's name of their descriptor.
        self._unnamed = bool(getattr(os, "O_TMPFILE", 0)) and os.path.isdir("/proc/self/fd")
        if beneath:
            weakref.finalize(self, os.close, beneath[1])
        self._kept = _KeptStats.of(self._root, local=local)

    def __repr__(self) -> str:
        return f"FileSystemStorage({str(self.root)!r})"

    def writes(self) -> Callable[[], int] | None:  # TellsWrites
        """The word every write of every process changes (:class:`_KeptStats`), read by a
        call into C alone; ``None`` off a local file system."""
        kept = self._kept
        return None if kept is None else functools.partial(kept.words.__getitem__, 0)

    def _path(self, key: str) -> Path:
        return Path(self._checked(key)[0])

    def _write_path(self, key: str) -> Path:
        """The path to write ``key`` at: its directory resolved beneath the root by one
        openat2 (the walk of :meth:`_checked` looks at every component), or by the walk
        where there is no openat2, the directory does not exist yet, or the kernel would
        not follow a link on the way.  A link at the key itself is replaced by a write,
        never followed."""
        openat2 = self._openat2
        directory, _, _ = validate_key(key).rpartition("/")
        if openat2 is not None and directory:
            fd = openat2(directory, _O_PATH | os.O_CLOEXEC)
            if fd >= 0:
                self._calls.close(fd)
                return Path(f"{self._root}/{key}")
        return self._path(key)

    def _checked(self, key: str) -> tuple[str, os.stat_result | None]:
        """The path of ``key`` and its ``lstat`` (``None`` when it does not exist).

        Segments are already restricted; this guards against a symlink planted inside
        the root by someone with shell access.  Every request stats a key or two, so
        rather than resolving the whole path (a Python loop over every component from
        ``/``), it looks at the components below the root only, one ``lstat`` each,
        and resolves the path only when one of them is a link.
        """
        path = f"{self._root}/{validate_key(key)}"
        end = len(self._root)
        st: os.stat_result | None = None
        while end >= 0:
            end = path.find("/", end + 1)
            try:
                st = os.lstat(path if end < 0 else path[:end])
            except (FileNotFoundError, NotADirectoryError):
                return path, None  # nothing below can exist, nor be followed
            if S_ISLNK(st.st_mode):
                if not Path(path).resolve().is_relative_to(self.root):
                    raise InvalidKeyError(f"storage key {key!r} escapes the storage root")
                try:
                    return path, os.stat(path)
                except (FileNotFoundError, NotADirectoryError):
                    return path, None
        return path, st

    def _opened(self, key: str, flags: int) -> tuple[int, os.stat_result] | bool:
        """``key`` opened beneath the root and its ``fstat``; ``False`` when it does not
        exist, ``True`` when the walk of :meth:`_checked` must decide (no ``openat2``
        here, or a link the kernel refused to follow: it may lead out of the root, or
        stay inside by an absolute path)."""
        openat2 = self._openat2
        if openat2 is None:
            return True
        fd = openat2(validate_key(key), flags)
        if fd < 0:
            if -fd in (errno.ENOENT, errno.ENOTDIR):
                return False
            if -fd in (errno.ENOSYS, errno.EPERM):
                self._openat2 = None  # an older kernel, or a sandbox that forbids the call
            return True
        try:
            return fd, self._calls.fstat(fd)
        except BaseException:
            self._calls.close(fd)
            raise

    def open(self, key: str) -> tuple[IO[bytes], Stat]:
        opened = self._opened(key, _O_READ)
        if opened is False:
            raise FileNotFoundError(key)
        if opened is True:
            path, st = self._checked(key)
            if st is None or not S_ISREG(st.st_mode):
                raise FileNotFoundError(key)
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            st = os.fstat(fd)
        else:
            fd, st = opened
            if not S_ISREG(st.st_mode):
                self._calls.close(fd)
                raise FileNotFoundError(key)
        # The buffer open() would choose, given: no isatty() (one system call less).
        buffering = st.st_blksize if st.st_blksize > 1 else io.DEFAULT_BUFFER_SIZE
        return open(fd, "rb", buffering=buffering), _stat(st)  # the caller closes it

    def read_whole(self, key: str, limit: int) -> tuple[bytes, Stat]:
        """As :func:`~.base.read_bytes` reads through :meth:`open`, in fewer system
        calls (no file object: its ``fstat``, ``lseek`` and buffer), which on a local
        file system keep the GIL: every upload reads its project document so."""
        opened = self._opened(key, _O_READ)
        if opened is True:
            return read_stream(*self.open(key), key, limit)
        if opened is False:
            raise FileNotFoundError(key)
        fd, st = opened
        calls = self._calls
        try:
            if not S_ISREG(st.st_mode):
                raise FileNotFoundError(key)
            # Its size and one byte more, as read_stream asks, then up to the limit if
            # the file grew since its stat.
            data = _read_up_to(fd, min(st.st_size, limit) + 1, calls)
            if st.st_size < len(data) <= limit:
                data += _read_up_to(fd, limit + 1 - len(data), calls)
        finally:
            calls.close(fd)
        if len(data) > limit:
            raise ValueError(f"storage key {key!r} is larger than {limit} bytes")
        return data, _stat(st)

    def stat(self, key: str) -> Stat:
        kept = self._kept
        if kept is None:
            return self._stat_now(key)
        word = kept.word()
        found = kept.get(key, word)
        if found is None:
            found = self._stat_now(key)
            kept.keep(key, found, word)
        return found

    def _stat_now(self, key: str) -> Stat:
        # Every page view and download validates a cache with a stat: openat2, statx
        # and close with the GIL held (_HeldCalls.stat_beneath), else openat2 and fstat,
        # or the walk's last lstat.
        held_stat = self._held_stat
        if held_stat is not None and self._openat2 is not None:
            found = held_stat(validate_key(key))
            if isinstance(found, Stat):
                return found
            if found in (errno.ENOENT, errno.ENOTDIR):
                raise FileNotFoundError(key)
            # A link the kernel would not follow, or no openat2 after all: as below.
        opened = self._opened(key, _O_PATH | os.O_CLOEXEC)
        if opened is True:
            st = self._checked(key)[1]
        elif opened is False:
            st = None
        else:
            self._calls.close(opened[0])
            st = opened[1]
        if st is None or not S_ISREG(st.st_mode):
            raise FileNotFoundError(key)
        return _stat(st)

    def _write_temp(self, path: Path, data: IO[bytes]) -> tuple[str, os.stat_result]:
        """A hidden temporary file beside ``path`` holding ``data``, synced, and its
        stat (the key's, once renamed or linked: the same inode and times)."""
        try:
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        except FileNotFoundError:  # the first file of its directory
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        try:
            st = _write_synced(fd, data, self._calls)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        return tmp, st

    @contextlib.contextmanager
    def _locked(self, path: Path) -> Iterator[None]:
        lock = path.parent / _lock_name(path.name)
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _current_etag(self, path: Path) -> str | None:
        try:
            return _etag(path.stat())
        except FileNotFoundError:
            return None

    def put(self, key: str, data: IO[bytes], *, if_match: str | None = None) -> Stat:
        try:
            return self._put(key, data, if_match=if_match)
        finally:
            if self._kept is not None:
                self._kept.changed()

    def _put(self, key: str, data: IO[bytes], *, if_match: str | None = None) -> Stat:
        at = self._directory(key)
        if at is not None:
            with contextlib.suppress(_NoUnnamedFiles):
                return self._put_at(key, *at, data, if_match=if_match)
        path = self._write_path(key)
        tmp, st = self._write_temp(path, data)
        try:
            if if_match is None:
                os.replace(tmp, path)
            else:
                with self._locked(path):
                    if self._current_etag(path) != if_match:
                        raise StaleWriteError(key)
                    os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return _stat(st)

    def create(self, key: str, data: IO[bytes]) -> Stat:
        try:
            return self._create(key, data)
        finally:
            if self._kept is not None:
                self._kept.changed()

    def _create(self, key: str, data: IO[bytes]) -> Stat:
        at = self._directory(key)
        if at is not None:
            with contextlib.suppress(_NoUnnamedFiles):
                return self._create_at(*at, data)
        path = self._write_path(key)
        tmp, st = self._write_temp(path, data)
        try:
            os.link(tmp, path)
        finally:
            os.unlink(tmp)
        return _stat(st)

    def append(self, key: str, data: bytes, *, if_match: str) -> Stat:  # Appends
        """Add ``data`` at the end of ``key``'s file and sync it, under the key's lock,
        which every write that replaces the file after a compare takes too: no new
        inode, no rename, and the file's last block most often the one it had (a third
        to a half of what a put's new file costs the kernel: docs/performance.md,
        thirty-first round).  A write or sync that fails is taken back; one killed
        halfway leaves the bytes it wrote, which a reader of documents drops
        (:func:`~.base.appended_sets`)."""
        try:
            return self._append(key, data, if_match=if_match)
        finally:
            if self._kept is not None:
                self._kept.changed()

    def _append(self, key: str, data: bytes, *, if_match: str) -> Stat:
        flags = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
        at = self._directory(key)
        if at is None:
            path = self._write_path(key)
            with self._locked(path):
                try:
                    fd = os.open(path, flags)
                except OSError as exc:
                    if exc.errno == errno.ELOOP:  # a link at the key: never followed
                        raise FileNotFoundError(key) from None
                    raise
                return _appended(fd, key, data, if_match, _Calls())
        dir_fd, name = at
        calls = self._calls
        try:
            with _locked_at(dir_fd, name, calls):
                try:
                    fd = calls.open(name, flags, dir_fd=dir_fd)
                except OSError as exc:
                    if exc.errno == errno.ELOOP:
                        raise FileNotFoundError(key) from None
                    raise
                return _appended(fd, key, data, if_match, calls)
        finally:
            calls.close(dir_fd)

    # Writes through the key's directory opened beneath the root, into a file that has
    # no name until it is complete and synced (O_TMPFILE): no temp name to make up nor
    # to remove, and the sync has no directory entry to record.  Where the kernel, the
    # file system or /proc lacks what this takes, put and create use a named temp file.

    def _directory(self, key: str) -> tuple[int, str] | None:
        """The key's directory opened (``O_PATH``) beneath the root, made if missing,
        and the key's name in it; ``None`` where unnamed writes are not to be had, or
        the kernel would not resolve the directory (the walk then decides)."""
        openat2, calls = self._openat2, self._calls
        if openat2 is None or not self._unnamed:
            return None
        directory, _, name = validate_key(key).rpartition("/")
        if not directory:
            return None
        fd = openat2(directory, _O_DIRECTORY)
        if fd == -errno.ENOENT:
            # The first file of its directory: made in its parent when that exists
            # (opened beneath the root the same way), else past the walk's check.
            parent, _, last = directory.rpartition("/")
            parent_fd = openat2(parent, _O_DIRECTORY) if parent else -errno.ENOENT
            if parent_fd >= 0:
                try:
                    with contextlib.suppress(OSError):  # as below: the walk decides
                        calls.mkdir(last, dir_fd=parent_fd)
                finally:
                    calls.close(parent_fd)
            else:
                with contextlib.suppress(OSError):
                    self._path(key).parent.mkdir(parents=True, exist_ok=True)
            fd = openat2(directory, _O_DIRECTORY)
        return (fd, name) if fd >= 0 else None

    def _unnamed_file(self, dir_fd: int, data: IO[bytes]) -> tuple[int, os.stat_result]:
        """A file without a name in ``dir_fd`` holding ``data``, synced, and its stat.

        Raises :class:`_NoUnnamedFiles`, before reading ``data``, where the file system
        (or an old kernel) has no ``O_TMPFILE``."""
        calls = self._calls
        try:
            fd = calls.open(".", _O_UNNAMED, 0o600, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise
            self._unnamed = False
            raise _NoUnnamedFiles from None
        try:
            return fd, _write_synced(fd, data, calls)
        except BaseException:
            calls.close(fd)  # nothing to remove: the file never had a name
            raise

    def _create_at(self, dir_fd: int, name: str, data: IO[bytes]) -> Stat:
        calls = self._calls
        try:
            fd, st = self._unnamed_file(dir_fd, data)
            try:
                # Linking /proc's name of the descriptor names the file; the kernel
                # refuses (EEXIST) when the name is taken, as with any link.
                calls.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=dir_fd, follow_symlinks=True)
            finally:
                calls.close(fd)
        finally:
            calls.close(dir_fd)
        return _stat(st)

    def _put_at(
        self, key: str, dir_fd: int, name: str, data: IO[bytes], *, if_match: str | None
    ) -> Stat:
        calls = self._calls
        try:
            fd, st = self._unnamed_file(dir_fd, data)
            try:
                tmp = _link_temp(fd, dir_fd, calls)
            finally:
                calls.close(fd)
            try:
                if if_match is None:
                    os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                else:
                    with _locked_at(dir_fd, name, calls):
                        if _current_etag_at(dir_fd, name, calls) != if_match:
                            raise StaleWriteError(key)
                        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp, dir_fd=dir_fd)
                raise
        finally:
            calls.close(dir_fd)
        return _stat(st)

    def list(self, prefix: str) -> Iterator[str]:
        validate_prefix(prefix)
        head, _, _ = prefix.rpartition("/")
        start = self.root.joinpath(*head.split("/")) if head else self.root
        for key in self._walk(start, f"{head}/" if head else ""):
            if key.startswith(prefix):
                yield key

    def _walk(self, directory: Path, base: str) -> Iterator[str]:
        try:
            # A directory's keys all start with "name/", so sorting it under that
            # string keeps the whole walk in plain string order, as object stores list.
            entries = sorted(
                os.scandir(directory),
                key=lambda e: e.name + "/" if e.is_dir(follow_symlinks=False) else e.name,
            )
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk(Path(entry.path), f"{base}{entry.name}/")
            elif entry.is_file(follow_symlinks=False):
                yield f"{base}{entry.name}"

    def clean_incomplete_writes(self, prefix: str, *, older_than: float) -> builtins.list[str]:
        """Remove the hidden ``.tmp-*`` files of writes killed before their rename.

        They are never listed nor served, but they hold disk until removed.  A write in
        progress renews nothing, so ``older_than`` must leave it time to finish.
        """
        validate_prefix(prefix)
        head, _, _ = prefix.rpartition("/")
        start = self.root.joinpath(*head.split("/")) if head else self.root
        removed: builtins.list[str] = []
        for directory, _, names in os.walk(start):
            for name in names:
                if not name.startswith(".tmp-"):
                    continue
                path = Path(directory, name)
                key = path.relative_to(self.root).as_posix()
                with contextlib.suppress(FileNotFoundError):
                    if key.startswith(prefix) and path.lstat().st_mtime < older_than:
                        path.unlink()
                        removed.append(key)
        return sorted(removed)

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        try:
            self._delete(key, if_match=if_match)
        finally:
            if self._kept is not None:
                self._kept.changed()

    def _delete(self, key: str, *, if_match: str | None = None) -> None:
        path = self._path(key)
        if if_match is None:
            if path.is_dir():
                raise FileNotFoundError(key)
            path.unlink()
            return
        with self._locked(path):
            current = self._current_etag(path)
            if current is None:
                raise FileNotFoundError(key)
            if current != if_match:
                raise StaleWriteError(key)
            path.unlink()
