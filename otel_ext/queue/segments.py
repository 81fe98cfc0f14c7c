"""Payload bytes of large queue entries, outside SQLite: append-only segment files beside the queue.

Why: in SQLite's WAL mode every byte of an entry is written twice, once into the WAL and again when
the checkpoint copies the page into the database file, and a deleted entry's pages are written once
more. For the entries the exporter appends (whole OTLP batches, ~150 KB for 512 records) that copying
was most of the queue's cost. A segment file is written once, sequentially, and deleted as a whole
when no entry refers to it any more; SQLite keeps what it is good at (entry metadata, cursors, dead
letters, the atomic commit that makes an entry exist).

Layout: ``<queue>.db.seg/`` (0700, ours, never a symlink) holding ``00000001``, ``00000002``, …
(0600). Each payload is one frame ``[magic][length u32][checksum u32][bytes]``: magic ``OXS1`` with
the CRC-32 of zlib, or ``OXS2`` with CRC-32C (Castagnoli), which ``google-crc32c`` (``pip install
'otel-ext[crc32c]'``) computes in hardware at ~8x the speed; the writer uses ``OXS2`` when that library
is there with its compiled extension, else ``OXS1``. Readers verify both kinds whatever is installed
(CRC-32C in pure Python without the library: slow, but nothing queued becomes unreadable). The frame is
written (and with ``fsync="always"`` fsynced) *before* the SQLite transaction that references it
commits: a crash in between leaves bytes nobody refers to, never a row without its bytes. A writer
never appends to a segment it did not create (a new one is started at every open), so a torn tail
left by a crash is never followed by new frames.

A frame that fails its checks (missing file, short read, wrong magic, length or CRC, a file that is
a symlink or not ours) raises :class:`SegmentDamaged` with the reason; the queue turns the entry into
a dead letter with that reason (counted), it never drops it silently and never lets it stop a lane.
What says nothing about the bytes is not damage: running out of descriptors or memory, and a
*directory* that is a symlink or another user's (:class:`SegmentDirRefused`: the entries stay queued
and the read is retried, loudly, until the operator puts it right; no new segment is written there).

Every file operation goes through a descriptor of the directory opened without following a symlink
(``openat``/``unlinkat``), so a directory swapped for a symlink while we run is never followed.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import stat
import struct
import threading
import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

MAGIC = b"OXS1"  # checksum: zlib's CRC-32
MAGIC_C = b"OXS2"  # checksum: CRC-32C (Castagnoli)
FRAME = struct.Struct(">4sII")  # magic, payload length, checksum of the payload
SEGMENT_SUFFIX = ".seg"
# a segment is closed for writing once it holds this much (or a sixteenth of the queue's bound if
# that is smaller, at least MIN_SEGMENT_BYTES); the next frame starts a new one
SEGMENT_BYTES = 16 * 1024 * 1024
MIN_SEGMENT_BYTES = 64 * 1024
# payloads of this size or smaller stay inline in SQLite: a row of a couple of pages costs little to
# write twice, and a frame would cost a separate write() and a file read on the way out. The
# exporter's batches (hundreds of records, ~100+ KB) all go to segments; single records stay inline.
INLINE_MAX = 8 * 1024
_NAME_DIGITS = 8
_IOV_MAX = 512  # buffers per writev() (Linux allows 1024)


class SegmentDamaged(Exception):
    """A payload frame cannot be read back intact; the message says why."""


class SegmentDirRefused(OSError):
    """The segment directory is a symlink, not a directory, or another user's: not used, not damage."""


# errors that say nothing about the bytes on disk (out of descriptors or memory, interrupted): they
# are raised as OSError (try again later), never taken for damage
_TRANSIENT = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EAGAIN, errno.EINTR, errno.ENOBUFS}


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C_TABLE = _crc32c_table()


def crc32c_soft(data: bytes) -> int:
    """CRC-32C in pure Python (~10 MB/s): reads frames written with ``google-crc32c`` where it is
    not installed."""
    table = _CRC32C_TABLE
    crc = 0xFFFFFFFF
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _optional(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:  # pragma: no cover - the library is in the test environment
        return None


_google_crc32c = _optional("google_crc32c")

crc32c: Callable[[bytes], int] = crc32c_soft if _google_crc32c is None else _google_crc32c.value
"""CRC-32C of ``data``: ``google-crc32c`` when installed (hardware or C), else :func:`crc32c_soft`."""

HAVE_FAST_CRC32C = _google_crc32c is not None and getattr(_google_crc32c, "implementation", "") == "c"
WRITE_MAGIC = MAGIC_C if HAVE_FAST_CRC32C else MAGIC
"""The frame kind new segments are written with (``OXS2`` only with the compiled ``google-crc32c``)."""

CHECKSUMS: dict[bytes, Callable[[bytes], int]] = {MAGIC: zlib.crc32, MAGIC_C: crc32c}
"""Frame magic -> its checksum: every reader accepts both kinds."""


def frame_header(payload: bytes, magic: bytes = WRITE_MAGIC) -> bytes:
    """The 12-byte header of ``payload``'s frame of kind ``magic``."""
    return FRAME.pack(magic, len(payload), CHECKSUMS[magic](payload))


def segment_dir(db: Path | str) -> Path:
    return Path(f"{db}{SEGMENT_SUFFIX}")


def segment_bytes_for(max_bytes: int) -> int:
    return max(MIN_SEGMENT_BYTES, min(SEGMENT_BYTES, max_bytes // 16))


def _name(number: int) -> str:
    return f"{number:0{_NAME_DIGITS}d}"


def _numbers(names: Iterable[str]) -> list[int]:
    return sorted(int(n) for n in names if len(n) == _NAME_DIGITS and n.isdigit())


def dir_problem(folder: Path, info: os.stat_result | None = None) -> str | None:
    """Why ``folder`` must not hold our files — the queue directory, its segment directories, the file
    backend's directory (like OpenSSH StrictModes): a symlink, not a directory, another user's, or
    writable by group or others. None: absent, or a directory of ours only we can write to. Read by
    lstat: a symlink is reported, never followed."""
    if info is None:
        try:
            info = os.lstat(folder)
        except FileNotFoundError:
            return None
    if stat.S_ISLNK(info.st_mode):
        return "is a symlink"
    if not stat.S_ISDIR(info.st_mode):
        return "is not a directory"
    if info.st_uid != os.geteuid():
        return f"belongs to uid {info.st_uid}, not to us (uid {os.geteuid()})"
    if info.st_mode & 0o022:
        who = " and ".join(w for bit, w in ((0o020, "group"), (0o002, "others")) if info.st_mode & bit)
        return f"is writable by {who} (mode {stat.S_IMODE(info.st_mode):04o})"
    return None


def open_dir(folder: Path, create: bool = False, durable: bool = False) -> int | None:
    """A descriptor of ``folder`` opened without following a symlink and checked to be ours; None
    if it does not exist (and ``create`` is false). With ``durable``, a directory created here is
    fsynced into its parent (its name survives a power cut). Raises :class:`SegmentDirRefused`, or
    OSError."""
    if create:
        old = os.umask(0o077)
        made = False
        try:
            os.mkdir(folder, 0o700)
            made = True
        except FileExistsError:
            pass
        finally:
            os.umask(old)
        if made and durable:
            parent = os.open(folder.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(parent)
            finally:
                os.close(parent)
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise SegmentDirRefused(exc.errno, f"{folder} is a symlink or not a directory; not used") from None
        raise
    try:
        info = os.fstat(fd)
    except OSError:
        os.close(fd)
        raise
    if info.st_uid != os.geteuid():
        os.close(fd)
        raise SegmentDirRefused(errno.EPERM, f"{folder} belongs to uid {info.st_uid}; not used")
    return fd


def _own_size(dir_fd: int, number: int) -> int | None:
    """Size of segment ``number`` if it is a regular file of ours (None: absent, or not ours)."""
    try:
        info = os.stat(_name(number), dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
        return None
    return info.st_size


def numbers(folder: Path) -> list[int]:
    """Segment numbers present in ``folder`` (other names are ignored), ascending (never follows a
    symlinked ``folder``)."""
    try:
        fd = open_dir(folder)
    except OSError:
        return []
    if fd is None:
        return []
    try:
        return _numbers(os.listdir(fd))
    finally:
        os.close(fd)


def foreign_segment(db: Path) -> tuple[Path, str] | None:
    """A planted or foreign piece of ``db``'s segment directory: (path, why), or None."""
    folder = segment_dir(db)
    why = dir_problem(folder)
    if why:
        return folder, why
    for number in numbers(folder):
        path = folder / _name(number)
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(info.st_mode):
            return path, "is a symlink"
        if not stat.S_ISREG(info.st_mode):
            return path, "is not a regular file"
        if info.st_uid != os.geteuid():
            return path, f"belongs to uid {info.st_uid}"
    return None


def total_bytes(db: Path) -> int:
    """Bytes of ``db``'s segments that are regular files of ours (0 for a refused directory)."""
    try:
        fd = open_dir(segment_dir(db))
    except OSError:
        return 0
    if fd is None:
        return 0
    try:
        return sum(_own_size(fd, n) or 0 for n in _numbers(os.listdir(fd)))
    finally:
        os.close(fd)


def remove_all(db: Path) -> None:
    """Delete ``db``'s segment directory and our segments in it (a symlink in its place is removed,
    never followed; a directory of another user, and files in it that are not ours, are left)."""
    folder = segment_dir(db)
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        with contextlib.suppress(OSError):
            os.unlink(folder)
        return
    try:
        fd = open_dir(folder)
    except OSError:
        return
    if fd is None:
        return
    try:
        for number in _numbers(os.listdir(fd)):
            if _own_size(fd, number) is not None:
                with contextlib.suppress(OSError):
                    os.unlink(_name(number), dir_fd=fd)
    except OSError:
        pass
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        os.rmdir(folder)  # only if empty


def open_segment(dir_fd: int, number: int) -> int:
    """A read descriptor on segment ``number``; refuses symlinks and files not ours (as damage)."""
    try:
        fd = os.open(_name(number), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in _TRANSIENT:
            raise
        raise SegmentDamaged(f"segment {_name(number)}: cannot open ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
    except OSError:
        os.close(fd)
        raise
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
        os.close(fd)
        raise SegmentDamaged(f"segment {_name(number)}: not a regular file of ours; refused")
    return fd


def read_frame(fd: int, number: int, offset: int, size: int) -> bytes:
    """The payload of the frame at ``offset`` of segment ``number`` (open as ``fd``), checked.
    Raises SegmentDamaged, or OSError for what is not damage."""
    where = f"segment {_name(number)} at byte {offset}"
    if size < 0 or offset < 0:
        raise SegmentDamaged(f"{where}: impossible place (size {size}): the row is damaged")
    try:
        end = os.fstat(fd).st_size
        if offset + FRAME.size + size > end:  # checked before reading: a rotten size never allocates
            raise SegmentDamaged(f"{where}: truncated (the frame needs {FRAME.size + size} bytes, "
                                 f"the file ends {max(0, end - offset)} bytes after its start)")
        # header and payload in two reads: the payload comes back as its own bytes object, not
        # sliced (copied) out of one buffer
        header = os.pread(fd, FRAME.size, offset)
        payload = os.pread(fd, size, offset + FRAME.size) if len(header) == FRAME.size else b""
    except OSError as exc:
        if exc.errno in _TRANSIENT:
            raise
        raise SegmentDamaged(f"{where}: cannot read ({exc.strerror or exc})") from None
    if len(header) + len(payload) < FRAME.size + size:
        raise SegmentDamaged(f"{where}: truncated ({len(header) + len(payload)} of {FRAME.size + size} bytes)")
    magic, length, crc = FRAME.unpack(header)
    checksum = CHECKSUMS.get(magic)
    if checksum is None:
        raise SegmentDamaged(f"{where}: no frame starts here (bad magic)")
    if length != size:
        raise SegmentDamaged(f"{where}: frame holds {length} bytes, the entry expects {size}")
    if checksum(payload) != crc:
        raise SegmentDamaged(f"{where}: CRC mismatch (the bytes changed on disk)")
    return payload


class Segments:
    """The segments of one queue file: written, read and deleted through one descriptor of their
    directory (callers serialise writes and deletions: the queue's lock)."""

    def __init__(self, db: Path, fsync: bool, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.folder = segment_dir(db)
        self.fsync = fsync
        self.segment_bytes = segment_bytes
        self._dir_fd: int | None = None
        self._dir_lock = threading.Lock()  # the lane (reading) and the writer may open it first
        self._fd: int | None = None
        self.current = 0  # segment being written (0: none yet)
        self._offset = 0
        self.sizes: dict[int, int] = {}  # our segments on disk -> bytes
        self.gone = ""  # why the directory opened first is no longer the one at its path
        self.magic = WRITE_MAGIC  # the frame kind written

    # --- the directory -------------------------------------------------------------------------

    def dir_fd(self, create: bool = False) -> int | None:
        """The directory's descriptor (None: it does not exist). Raises SegmentDirRefused / OSError."""
        if self._dir_fd is None:
            with self._dir_lock:
                if self._dir_fd is None:
                    fd = open_dir(self.folder, create, durable=self.fsync)
                    if fd is None:
                        return None
                    self.sizes = {n: size for n in _numbers(os.listdir(fd))
                                  if (size := _own_size(fd, n)) is not None}
                    self._dir_fd = fd
        return self._dir_fd

    def write_problem(self) -> str | None:
        """Why no frame may be written now (None: fine): the directory is refused, or others may
        write to it (payloads then stay inline in SQLite)."""
        if self.gone:
            return self.gone
        try:
            fd = self.dir_fd(create=True)
            if fd is None:  # pragma: no cover - just created
                return f"{self.folder} cannot be created"
            info = os.fstat(fd)
            mode = info.st_mode
            try:
                at_path = os.lstat(self.folder)
            except FileNotFoundError:
                at_path = None
        except OSError as exc:
            return str(exc)
        if at_path is None or (at_path.st_dev, at_path.st_ino) != (info.st_dev, info.st_ino):
            # deleted, moved or replaced while we run: frames written through our descriptor would be
            # found by nobody after a restart. New payloads stay inline for the life of this queue.
            self.gone = f"{self.folder} was deleted, moved or replaced while in use"
            self.roll()
            return self.gone
        if mode & 0o022:
            return f"{self.folder} is writable by group or others (mode {stat.S_IMODE(mode):o})"
        return None

    # --- writing -------------------------------------------------------------------------------

    def _start(self) -> None:
        self.roll()
        dir_fd = self.dir_fd(create=True)
        if dir_fd is None:  # pragma: no cover - just created
            raise OSError(errno.ENOENT, f"{self.folder} cannot be created")
        number = max([self.current, *self.sizes, *_numbers(os.listdir(dir_fd))]) + 1
        fd = os.open(_name(number), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=dir_fd)
        if self.fsync:  # the new name itself must survive a power cut
            os.fsync(dir_fd)
        self._fd, self.current, self._offset = fd, number, 0
        self.sizes[number] = 0

    def write(self, payloads: Sequence[bytes]) -> list[tuple[int, int]]:
        """Append one frame per payload (one writev); returns (segment, offset) of each. Raises
        OSError (ENOSPC and friends): nothing written then is referenced by anyone."""
        if self._fd is not None and os.fstat(self._fd).st_nlink == 0:
            self.roll()  # the current segment was deleted under us: never write into an unlinked file
        if self._fd is None or self._offset >= self.segment_bytes:
            self._start()
        assert self._fd is not None
        places: list[tuple[int, int]] = []
        parts: list[bytes] = []
        offset = self._offset
        for payload in payloads:
            places.append((self.current, offset))
            parts.append(frame_header(payload, self.magic))
            parts.append(payload)
            offset += FRAME.size + len(payload)
        try:
            self._write_all(parts, offset - self._offset)
            if self.fsync:
                os.fsync(self._fd)
        except OSError:
            self._resync()
            raise
        self._offset = offset
        self.sizes[self.current] = offset
        return places

    def _write_all(self, parts: list[bytes], total: int) -> None:
        """writev() the parts (no joined copy of the payloads); a short write finishes the rest."""
        assert self._fd is not None
        written = 0
        for start in range(0, len(parts), _IOV_MAX):
            chunk = parts[start:start + _IOV_MAX]
            size = sum(len(p) for p in chunk)
            done = os.writev(self._fd, chunk)
            if done < size:
                view = memoryview(b"".join(chunk))[done:]
                while view:
                    view = view[os.write(self._fd, view):]
            written += size
        assert written == total

    def _resync(self) -> None:
        """After a failed write: continue after whatever part of it reached the file."""
        try:
            assert self._fd is not None
            self._offset = os.fstat(self._fd).st_size
            self.sizes[self.current] = self._offset
        except (OSError, AssertionError):
            self.roll()

    def roll(self) -> None:
        """Start a new segment at the next write (the current one becomes collectable)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    @property
    def current_bytes(self) -> int:
        return self._offset if self._fd is not None else 0

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes.values())

    # --- reading and deleting ------------------------------------------------------------------

    def open_for_read(self, number: int) -> int:
        """Raises SegmentDamaged (the file or the whole directory is missing), SegmentDirRefused."""
        dir_fd = self.dir_fd()
        if dir_fd is None:
            raise SegmentDamaged(f"segment {_name(number)}: cannot open (the segment directory is missing)")
        return open_segment(dir_fd, number)

    def remove_except(self, keep: Iterable[int]) -> int:
        """Delete every segment of ours not in ``keep`` and not being written; returns how many."""
        dir_fd = self.dir_fd()
        if dir_fd is None:
            self.sizes.clear()
            return 0
        kept = set(keep)
        if self._fd is not None:
            kept.add(self.current)
        removed = 0
        for number in sorted(set(self.sizes) - kept):
            if _own_size(dir_fd, number) is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(_name(number), dir_fd=dir_fd)
                    removed += 1
            self.sizes.pop(number, None)
        return removed

    def close(self) -> None:
        self.roll()
        if self._dir_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._dir_fd)
            self._dir_fd = None
