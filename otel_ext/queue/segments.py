"""Payload bytes of large queue entries, outside SQLite: append-only segment files beside the queue.

Why: in SQLite's WAL mode every byte of an entry is written twice, once into the WAL and again when
the checkpoint copies the page into the database file, and a deleted entry's pages are written once
more. For the entries the exporter appends (whole OTLP batches, ~150 KB for 512 records) that copying
was most of the queue's cost. A segment file is written once, sequentially, and deleted as a whole
when no entry refers to it any more; SQLite keeps what it is good at (entry metadata, cursors, dead
letters, the atomic commit that makes an entry exist).

Layout: ``<queue>.db.seg/`` (0700, ours, never a symlink) holding ``00000001``, ``00000002``, …
(0600). Each payload is one frame ``[magic "OXS1"][length u32][crc32 u32][bytes]``. The frame is
written (and with ``fsync="always"`` fsynced) *before* the SQLite transaction that references it
commits: a crash in between leaves bytes nobody refers to, never a row without its bytes. A writer
never appends to a segment it did not create (a new one is started at every open), so a torn tail
left by a crash is never followed by new frames.

A frame that fails its checks (missing file, short read, wrong magic, length or CRC) raises
:class:`SegmentDamaged` with the reason; the queue turns the entry into a dead letter with that
reason (counted), it never drops it silently and never lets it stop a lane.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import struct
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

MAGIC = b"OXS1"
FRAME = struct.Struct(">4sII")  # magic, payload length, crc32 of the payload
SEGMENT_SUFFIX = ".seg"
# a segment is closed for writing once it holds this much; the next frame starts a new one
SEGMENT_BYTES = 16 * 1024 * 1024
# payloads of this size or smaller stay inline in SQLite: a row of a couple of pages costs little to
# write twice, and a frame would cost a separate write() and a file read on the way out. The
# exporter's batches (hundreds of records, ~100+ KB) all go to segments; single records stay inline.
INLINE_MAX = 8 * 1024
_NAME_DIGITS = 8
_IOV_MAX = 512  # buffers per writev() (Linux allows 1024)


class SegmentDamaged(Exception):
    """A payload frame cannot be read back intact; the message says why."""


# errors that say nothing about the bytes on disk (out of descriptors or memory, interrupted): they
# are raised as OSError (try again later), never taken for damage
_TRANSIENT = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EAGAIN, errno.EINTR, errno.ENOBUFS}


def segment_dir(db: Path | str) -> Path:
    return Path(f"{db}{SEGMENT_SUFFIX}")


def _name(number: int) -> str:
    return f"{number:0{_NAME_DIGITS}d}"


def dir_problem(folder: Path) -> str | None:
    """Why ``folder`` must not hold our segments (None: it is absent, or a 0700 directory of ours)."""
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(info.st_mode):
        return "is a symlink"
    if not stat.S_ISDIR(info.st_mode):
        return "is not a directory"
    if info.st_uid != os.geteuid():
        return f"belongs to uid {info.st_uid}"
    if info.st_mode & 0o077:
        return f"is accessible to others (mode {stat.S_IMODE(info.st_mode):o})"
    return None


def numbers(folder: Path) -> list[int]:
    """Segment numbers present in ``folder`` (other names are ignored), ascending."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return sorted(int(n) for n in names if len(n) == _NAME_DIGITS and n.isdigit())


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
    return sum(_size(segment_dir(db) / _name(n)) for n in numbers(segment_dir(db)))


def file_bytes(folder: Path, number: int) -> int:
    return _size(folder / _name(number))


def _size(path: Path) -> int:
    try:
        return os.lstat(path).st_size
    except OSError:
        return 0


def remove_all(db: Path) -> None:
    """Delete ``db``'s segment directory and the segments in it (a symlink in its place is removed,
    never followed; a directory of another user is left alone)."""
    folder = segment_dir(db)
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        with contextlib.suppress(OSError):
            os.unlink(folder)
        return
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        return
    with contextlib.suppress(OSError):
        for name in os.listdir(folder):
            with contextlib.suppress(OSError):
                os.unlink(folder / name)
    with contextlib.suppress(OSError):
        os.rmdir(folder)


def read_frame(folder: Path, number: int, offset: int, size: int, fd: int | None = None) -> bytes:
    """The payload of the frame at ``offset`` of segment ``number``, checked. Raises SegmentDamaged."""
    where = f"segment {_name(number)} at byte {offset}"
    own = fd is None
    if fd is None:
        fd = open_segment(folder, number)
    try:
        data = os.pread(fd, FRAME.size + size, offset)
    except OSError as exc:
        if exc.errno in _TRANSIENT:
            raise
        raise SegmentDamaged(f"{where}: cannot read ({exc.strerror or exc})") from None
    finally:
        if own:
            os.close(fd)
    if len(data) < FRAME.size + size:
        raise SegmentDamaged(f"{where}: truncated ({len(data)} of {FRAME.size + size} bytes)")
    magic, length, crc = FRAME.unpack_from(data)
    if magic != MAGIC:
        raise SegmentDamaged(f"{where}: no frame starts here (bad magic)")
    if length != size:
        raise SegmentDamaged(f"{where}: frame holds {length} bytes, the entry expects {size}")
    payload = data[FRAME.size:]
    if zlib.crc32(payload) != crc:
        raise SegmentDamaged(f"{where}: CRC mismatch (the bytes changed on disk)")
    return payload


def open_segment(folder: Path, number: int) -> int:
    """A read descriptor on segment ``number``; refuses symlinks and files not ours."""
    path = folder / _name(number)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in _TRANSIENT:
            raise
        raise SegmentDamaged(f"segment {_name(number)}: cannot open ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        raise SegmentDamaged(f"segment {_name(number)}: cannot stat ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
        os.close(fd)
        raise SegmentDamaged(f"segment {_name(number)}: not a regular file of ours; refused")
    return fd


class SegmentWriter:
    """Appends frames to the segments of one queue file (callers serialise; the queue's lock)."""

    def __init__(self, db: Path, fsync: bool) -> None:
        self.folder = segment_dir(db)
        self.fsync = fsync
        self._fd: int | None = None
        self.current = 0  # segment being written (0: none yet)
        self._offset = 0

    def ensure_dir(self) -> None:
        old = os.umask(0o077)
        try:
            with contextlib.suppress(FileExistsError):
                os.mkdir(self.folder, 0o700)
        finally:
            os.umask(old)
        why = dir_problem(self.folder)
        if why:
            raise OSError(f"{self.folder} {why}; refusing to keep queue payloads there")

    def _start(self) -> None:
        self.close()
        self.ensure_dir()
        number = max([self.current, *numbers(self.folder)]) + 1
        fd = os.open(self.folder / _name(number),
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        if self.fsync:  # the new name itself must survive a power cut
            dir_fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        self._fd, self.current, self._offset = fd, number, 0

    def write(self, payloads: Sequence[bytes]) -> list[tuple[int, int]]:
        """Append one frame per payload (one write); returns (segment, offset) of each. Raises OSError
        (ENOSPC and friends): nothing written then is referenced by anyone."""
        if self._fd is None or self._offset >= SEGMENT_BYTES:
            self._start()
        assert self._fd is not None
        places: list[tuple[int, int]] = []
        parts: list[bytes] = []
        offset = self._offset
        for payload in payloads:
            places.append((self.current, offset))
            parts.append(FRAME.pack(MAGIC, len(payload), zlib.crc32(payload)))
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
        except (OSError, AssertionError):
            self.close()

    def roll(self) -> None:
        """Start a new segment at the next write (the current one becomes collectable)."""
        self.close()

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    @property
    def current_bytes(self) -> int:
        return self._offset if self._fd is not None else 0

    def remove_except(self, keep: Iterable[int]) -> int:
        """Delete every segment not in ``keep`` and not being written; returns how many."""
        kept = set(keep)
        if self._fd is not None:
            kept.add(self.current)
        removed = 0
        for number in numbers(self.folder):
            if number not in kept:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.folder / _name(number))
                    removed += 1
        return removed
