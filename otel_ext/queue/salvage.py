"""Checking a queue file before it is adopted, and containing the damage when it is not sound.

A file left by a dead process may be damaged in every way a disk or an operator can manage:
truncated, a broken header, a bad page, a WAL with flipped or missing bytes. SQLite itself notices
some of these (``PRAGMA quick_check``), but not a damaged WAL: frames whose checksum fails are taken
as the end of the log and the transactions in them vanish without an error. So we read the WAL
format ourselves (https://www.sqlite.org/fileformat2.html#walformat) before SQLite opens the file.

What fails a check is moved, with its WAL and a ``.reason`` file, into ``quarantine/`` beside the
queue files (never deleted by us; ``otel-ext queue status`` lists it) and whatever rows are still
readable are salvaged from a copy. All of this runs on connections of its own: the adopting
process's queue connection never attaches a foreign file.

Payloads kept in segment files (schema version 2, ``<queue>.db.seg/``) are read back with their
frame checks; an entry whose frame is missing, truncated or fails its CRC becomes a dead letter
with the reason (``damaged`` counts them). Quarantine moves the segment directory with the file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import stat
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from otel_ext.queue import segments

SQLITE_HEADER = b"SQLite format 3\x00"
WAL_MAGIC_LE, WAL_MAGIC_BE = 0x377F0682, 0x377F0683
QUARANTINE = "quarantine"
# Outside the SQLite files, the owner notes the highest entry id it committed (8 bytes, big-endian,
# rewritten in place after each append): the witness of a WAL cut short at a commit boundary
# together with its -shm index, which the WAL alone cannot show (see check_file).
WITNESS_SUFFIX = ".seq"
WITNESS = struct.Struct(">Q")
_SIDECARS = ("-wal", "-shm", WITNESS_SUFFIX)
# salvage gives up skipping damaged id ranges after this many probes or seconds
_SALVAGE_PROBES = 200_000
_SALVAGE_SECONDS = 10.0

Row = tuple[int, int, int, str, bytes]  # created_ns, tier, records, classes, payload
DeadRow = tuple[int, int, str, str, int, str, bytes]  # created_ns, failed_ns, backend, reason, records, classes


@dataclass
class Contents:
    """What could be read from a queue file: pending entries and dead letters, oldest first."""

    entries: list[Row] = field(default_factory=list)
    dead_letters: list[DeadRow] = field(default_factory=list)
    skipped: int = 0  # entry ids that could not be read (salvage only)
    damaged_records: int = 0  # records of entries whose payload frame failed its checks (now dead letters)
    adopted_files: list[str] = field(default_factory=list)  # files whose rows this one already holds

    @property
    def records(self) -> int:
        return sum(r[2] for r in self.entries)

    @property
    def dead_records(self) -> int:
        return sum(r[4] for r in self.dead_letters)


class DamagedFile(Exception):
    """A queue file failed a check; the message is the reason written beside it in quarantine."""


# --- checks ------------------------------------------------------------------------------------


def _checksum(data: bytes, big_endian: bool, s0: int, s1: int) -> tuple[int, int]:
    words = struct.unpack(f"{'>' if big_endian else '<'}{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


def check_wal(wal: Path) -> str | None:
    """Why the WAL file ``wal`` would silently lose committed frames, or None if it would not.

    SQLite replays frames of the current generation (matching salts) while their running checksum
    holds and stops silently at the first that fails. The WAL index (``-shm``, left by a killed
    process) says how many frames were committed: fewer readable frames than that is damage. With
    no usable index, a frame that fails followed by a commit frame of the current generation is.
    A torn or stale tail after the last commit (a write the disk refused, a crash mid-transaction)
    is not: nothing acknowledged was in it.
    """
    try:
        data = wal.read_bytes()
    except FileNotFoundError:
        return None
    if not data:
        return None
    if len(data) < 32:
        return f"WAL truncated inside its header ({len(data)} bytes)"
    magic, _version, page_size, _seq, salt1, salt2, c0, c1 = struct.unpack(">8I", data[:32])
    if magic not in (WAL_MAGIC_LE, WAL_MAGIC_BE) or page_size < 512 or page_size & (page_size - 1):
        return "WAL header damaged (bad magic or page size)"
    big = magic == WAL_MAGIC_BE
    committed = _shm_committed_frames(Path(str(wal)[: -len("-wal")] + "-shm"), salt1, salt2)
    if _checksum(data[:24], big, 0, 0) != (c0, c1):
        if committed:
            return "WAL header checksum mismatch (SQLite would ignore every frame)"
        return None
    frame = 24 + page_size
    s0, s1 = c0, c1
    offset, readable = 32, 0
    failed = ""
    while offset + frame <= len(data):
        head = data[offset:offset + 24]
        _page, _commit, f_salt1, f_salt2, f_c0, f_c1 = struct.unpack(">6I", head)
        if (f_salt1, f_salt2) != (salt1, salt2):
            failed = "a frame of another generation"
            break
        t0, t1 = _checksum(head[:8], big, s0, s1)
        t0, t1 = _checksum(data[offset + 24:offset + frame], big, t0, t1)
        if (t0, t1) != (f_c0, f_c1):
            failed = "checksum mismatch"
            break
        s0, s1 = t0, t1
        offset += frame
        readable += 1
    else:
        failed = "end of file"
    if committed is not None:
        if readable < committed:
            return (f"WAL damaged: frame {readable + 1} of {committed} committed frames is unreadable ({failed}); "
                    "SQLite would silently drop the rest")
        return None
    if failed == "checksum mismatch":
        offset += frame
        while offset + frame <= len(data):
            _page, commit, f_salt1, f_salt2 = struct.unpack(">4I", data[offset:offset + 16])
            if (f_salt1, f_salt2) == (salt1, salt2) and commit:
                return (f"WAL damaged: frame {readable + 1} fails its checksum and committed frames follow it; "
                        "SQLite would silently drop them")
            offset += frame
    return None


def _shm_committed_frames(shm: Path, salt1: int, salt2: int) -> int | None:
    """mxFrame of the WAL index (``-shm``) if it describes this WAL generation, else None."""
    try:
        with open(shm, "rb") as f:
            head = f.read(48)
    except OSError:
        return None
    if len(head) < 48:
        return None
    version, _unused, _change, is_init, _big, _size, max_frame = struct.unpack("=IIIBBHI", head[:20])
    shm_salts = struct.unpack("=II", head[32:40])
    if version != 3007000 or not is_init:
        return None
    # the salts are stored as read from the WAL header (big-endian bytes, copied as is)
    if struct.pack("=II", *shm_salts) != struct.pack(">II", salt1, salt2):
        return None
    return int(max_frame)


def read_witness(db: Path) -> int:
    """The highest entry id the owner of ``db`` noted as committed (0: none, or not trustworthy:
    not a regular file of ours)."""
    try:
        fd = os.open(f"{db}{WITNESS_SUFFIX}", os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return 0
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            return 0
        data = os.pread(fd, WITNESS.size, 0)
    except OSError:
        return 0
    finally:
        os.close(fd)
    return int(WITNESS.unpack(data)[0]) if len(data) == WITNESS.size else 0


def check_file(db: Path) -> None:
    """Raise :class:`DamagedFile` unless ``db`` (and its WAL) is a sound queue file.

    Runs ``PRAGMA quick_check`` on a connection of its own; closing it checkpoints a sound WAL.
    """
    try:
        with open(db, "rb") as f:
            header = f.read(100)
    except OSError as exc:
        raise DamagedFile(f"cannot read: {exc.strerror or exc}") from None
    if len(header) < 100 or not header.startswith(SQLITE_HEADER):
        raise DamagedFile("not an SQLite file (bad or truncated header)")
    page_size = struct.unpack(">H", header[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    pages = struct.unpack(">I", header[28:32])[0]
    size = db.stat().st_size
    if page_size and size % page_size:
        raise DamagedFile(f"file truncated ({size} bytes is not a whole number of {page_size}-byte pages)")
    if pages and size < pages * page_size and not Path(f"{db}-wal").exists():
        raise DamagedFile(f"file truncated ({size} bytes, header says {pages} pages)")
    reason = check_wal(Path(f"{db}-wal"))
    if reason:
        raise DamagedFile(reason)
    witness = read_witness(db)
    try:
        conn = sqlite3.connect(db, timeout=2.0, isolation_level=None)
    except sqlite3.Error as exc:
        raise DamagedFile(f"cannot open: {exc}") from None
    try:
        result = [r[0] for r in conn.execute("PRAGMA quick_check(5)")]
        if result != ["ok"]:
            raise DamagedFile("quick_check: " + "; ".join(str(r) for r in result).replace("\n", "; "))
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not {"entries", "lanes"} <= tables:
            raise DamagedFile(f"not a queue file (tables: {sorted(tables)})")
        if witness:
            row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'entries'").fetchone()
            known = int(row[0]) if row else 0
            if known < witness:
                raise DamagedFile(f"WAL cut short: entries up to id {witness} were committed ({db.name}"
                                  f"{WITNESS_SUFFIX}) but the file knows ids up to {known} only; SQLite would "
                                  "silently drop the rest")
    except sqlite3.Error as exc:
        raise DamagedFile(f"{type(exc).__name__}: {exc}") from None
    finally:
        conn.close()


# --- reading -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _open(db: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(db, timeout=2.0, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def _min_cursor(conn: sqlite3.Connection) -> int:
    try:
        row = conn.execute("SELECT MIN(cursor) FROM lanes").fetchone()
    except sqlite3.Error:
        return 0  # unknown: take everything (duplicates rather than loss)
    return int(row[0]) if row and row[0] is not None else 0


_ENTRY_COLUMNS_V1 = "id, created_ns, tier, records, classes, payload"
_ENTRY_COLUMNS = "id, created_ns, tier, records, classes, payload, seg, off, size"


def _entry_columns(conn: sqlite3.Connection) -> str:
    try:
        names = {str(r[1]) for r in conn.execute("PRAGMA table_info(entries)")}
    except sqlite3.Error:
        names = set()
    return _ENTRY_COLUMNS if "seg" in names else _ENTRY_COLUMNS_V1


class _Payloads:
    """Reads the payload of an entry row: inline, or from ``db``'s segments (frames checked), through
    a descriptor of the segment directory opened without following a symlink. A refused directory
    (symlink, another user's) raises OSError: the caller tries again later, nothing is taken for
    damage; a missing directory or file, or a bad frame, is damage."""

    def __init__(self, db: Path) -> None:
        self.folder = segments.segment_dir(db)
        self._dir_fd: int | None = None
        self._opened = False

    def __call__(self, r: tuple[Any, ...], out: Contents) -> bytes | None:
        """The payload of row ``r`` (None: damaged, and added to ``out`` as a dead letter)."""
        seg = int(r[6]) if len(r) > 6 else 0
        if seg <= 0:
            if r[5] is not None and seg == 0 and (len(r) <= 8 or len(r[5]) == int(r[8])):
                return bytes(r[5])
            reason = f"the row's payload is missing or does not match its size (segment number {seg})"
            out.dead_letters.append((int(r[1]), time.time_ns(), "queue", f"damaged payload: {reason}",
                                     int(r[3]), str(r[4]), bytes(r[5] or b"")))
            out.damaged_records += int(r[3])
            return None
        try:
            if not self._opened:
                self._opened = True
                self._dir_fd = segments.open_dir(self.folder)
            if self._dir_fd is None:
                raise segments.SegmentDamaged(f"segment {seg:08d}: cannot open (the segment directory is missing)")
            fd = segments.open_segment(self._dir_fd, seg)
            try:
                return segments.read_frame(fd, seg, int(r[7]), int(r[8]))
            finally:
                os.close(fd)
        except segments.SegmentDamaged as exc:
            out.dead_letters.append((int(r[1]), time.time_ns(), "queue", f"damaged payload: {exc}"[:2000],
                                     int(r[3]), str(r[4]), b""))
            out.damaged_records += int(r[3])
            return None

    def close(self) -> None:
        if self._dir_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._dir_fd)
            self._dir_fd = None


_DEAD_COLUMNS = "id, created_ns, failed_ns, backend, reason, records, classes, payload"


def read_sound(db: Path) -> Contents:
    """Pending entries and dead letters of a file that passed :func:`check_file`.

    Raises sqlite3.Error if a read still fails (the caller then quarantines and salvages)."""
    out = Contents()
    with _open(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        after = _min_cursor(conn)
        payload_of = _Payloads(db)
        try:
            for r in conn.execute(f"SELECT {_entry_columns(conn)} FROM entries WHERE id > ? ORDER BY id", (after,)):
                payload = payload_of(tuple(r), out)
                if payload is not None:
                    out.entries.append((int(r[1]), int(r[2]), int(r[3]), str(r[4]), payload))
        finally:
            payload_of.close()
        if "dead_letters" in tables:
            for r in conn.execute(f"SELECT {_DEAD_COLUMNS} FROM dead_letters ORDER BY id"):
                out.dead_letters.append((int(r[1]), int(r[2]), str(r[3]), str(r[4]), int(r[5]), str(r[6]),
                                         bytes(r[7])))
        out.adopted_files = _adopted_files(conn)
    return out


ADOPTED_PREFIX = "adopted:"


def _adopted_files(conn: sqlite3.Connection) -> list[str]:
    try:
        return [str(r[0])[len(ADOPTED_PREFIX):] for r in
                conn.execute("SELECT key FROM meta WHERE key LIKE 'adopted:%'")]
    except sqlite3.Error:
        return []


def adopted_elsewhere(directory: Path, name: str, skip: tuple[Path, ...]) -> Path | None:
    """The queue file in ``directory`` that already holds the rows of queue file ``name`` (its
    adopter died between its commit and removing ``name``), or None."""
    for db in sorted(directory.glob("q-*.db")):
        if db.name == name or db in skip:
            continue
        try:
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0)
        except sqlite3.Error:
            continue
        try:
            if conn.execute("SELECT 1 FROM meta WHERE key = ?", (ADOPTED_PREFIX + name,)).fetchone():
                return db
        except sqlite3.Error:
            continue
        finally:
            conn.close()
    return None


def _read_skipping(conn: sqlite3.Connection, table: str, columns: str, after: int,
                   deadline: float) -> tuple[list[tuple[Any, ...]], int]:
    """Rows of ``table`` with id > ``after``, stepping over ids whose pages cannot be read."""
    rows: list[tuple[Any, ...]] = []
    skipped = probes = 0
    upper: int | None = None
    with contextlib.suppress(sqlite3.Error):
        seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
        upper = int(seq[0]) if seq else None
    cursor = after
    failures = 0  # in a row
    while probes < _SALVAGE_PROBES and time.monotonic() < deadline and failures < 5000:
        try:
            for r in conn.execute(f"SELECT {columns} FROM {table} WHERE id > ? ORDER BY id", (cursor,)):
                rows.append(tuple(r))
                cursor = int(r[0])
                failures = 0
            return rows, skipped
        except sqlite3.Error:
            probes += 1
            failures += 1
            if upper is not None and cursor >= upper:
                break
            cursor += 1  # this id sits on a page we cannot read: step over it
            skipped += 1
    return rows, skipped


def _repair_copy(copy: Path) -> None:
    """Undo the damage SQLite cannot read past: a broken magic string or page size, a torn last
    page, a page count in the header larger than the file."""
    with open(copy, "r+b") as f:
        header = bytearray(f.read(100))
        if len(header) < 100:
            return
        header[:16] = SQLITE_HEADER
        page_size = struct.unpack(">H", header[16:18])[0]
        page_size = 65536 if page_size == 1 else page_size
        if page_size < 512 or page_size & (page_size - 1):
            page_size = 4096
            header[16:18] = struct.pack(">H", page_size)
        size = os.fstat(f.fileno()).st_size
        if size % page_size:
            size -= size % page_size
            f.truncate(size)
        pages = size // page_size
        if struct.unpack(">I", header[28:32])[0] > pages:
            header[28:32] = struct.pack(">I", pages)
        f.seek(0)
        f.write(header)


def _payload_intact(payload: bytes, records: int) -> bool:
    """A salvaged payload must still parse as an OTLP request with the records it was stored
    with (SQLite has no row checksums: a damaged page can yield a readable, altered row)."""
    try:
        request = ExportLogsServiceRequest.FromString(payload)
    except Exception:  # noqa: BLE001 - protobuf raises DecodeError and friends
        return False
    return sum(len(s.log_records) for r in request.resource_logs for s in r.scope_logs) == records


def _repair_wal_copy(wal: Path, shm: Path) -> None:
    """Re-chain the checksums of the committed frames of a WAL copy, so SQLite replays every
    committed frame instead of stopping at the first damaged one (the damaged pages then fail row
    by row and are stepped over). Frames past the index's last commit are left alone."""
    try:
        data = bytearray(wal.read_bytes())
    except OSError:
        return
    if len(data) < 32:
        return
    magic, _version, page_size, _seq, salt1, salt2 = struct.unpack(">6I", data[:24])
    if magic not in (WAL_MAGIC_LE, WAL_MAGIC_BE) or page_size < 512 or page_size & (page_size - 1):
        return
    committed = _shm_committed_frames(shm, salt1, salt2)
    if not committed:
        return
    big = magic == WAL_MAGIC_BE
    s0, s1 = _checksum(bytes(data[:24]), big, 0, 0)
    data[24:32] = struct.pack(">II", s0, s1)
    frame = 24 + page_size
    for index in range(committed):
        offset = 32 + index * frame
        if offset + frame > len(data):
            break
        data[offset + 8:offset + 16] = struct.pack(">II", salt1, salt2)
        s0, s1 = _checksum(bytes(data[offset:offset + 8]), big, s0, s1)
        s0, s1 = _checksum(bytes(data[offset + 24:offset + frame]), big, s0, s1)
        data[offset + 16:offset + 24] = struct.pack(">II", s0, s1)
    wal.write_bytes(bytes(data))


def salvage(db: Path, workdir: Path) -> Contents:
    """Every row still readable from a damaged queue file (read from a copy in ``workdir``)."""
    out = Contents()
    workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    copy = workdir / "salvage.db"
    try:
        shutil.copyfile(db, copy)
        if Path(f"{db}-wal").exists():
            shutil.copyfile(f"{db}-wal", f"{copy}-wal")
            if Path(f"{db}-shm").exists():
                _repair_wal_copy(Path(f"{copy}-wal"), Path(f"{db}-shm"))
        _repair_copy(copy)
        deadline = time.monotonic() + _SALVAGE_SECONDS
        with _open(copy) as conn:
            after = _min_cursor(conn)
            rows, out.skipped = _read_skipping(conn, "entries", _entry_columns(conn), after, deadline)
            payload_of = _Payloads(db)
            try:
                for r in rows:
                    try:
                        payload = payload_of(r, out)
                        if payload is None:
                            continue
                        row = (int(r[1]), int(r[2]), int(r[3]), str(r[4]), payload)
                    except (TypeError, ValueError):
                        out.skipped += 1
                        continue
                    if _payload_intact(row[4], row[2]):
                        out.entries.append(row)
                    else:
                        out.skipped += 1
            finally:
                payload_of.close()
            out.adopted_files = _adopted_files(conn)
            dead, _ = _read_skipping(conn, "dead_letters", _DEAD_COLUMNS, 0, deadline)
            for r in dead:
                with contextlib.suppress(TypeError, ValueError):
                    out.dead_letters.append((int(r[1]), int(r[2]), str(r[3]), str(r[4]), int(r[5]),
                                             str(r[6]), bytes(r[7])))
    except (sqlite3.Error, OSError):
        pass  # nothing (more) readable
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return out


# --- quarantine --------------------------------------------------------------------------------


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None


def quarantine(db: Path, reason: str) -> Path:
    """Move ``db`` and its WAL/SHM into ``quarantine/`` beside it, with a ``.reason`` file."""
    folder = db.parent / QUARANTINE
    folder.mkdir(mode=0o700, exist_ok=True)
    info = os.lstat(folder)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise OSError(f"{folder} is not a directory of ours; not moving {db.name} there")
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = folder / f"{db.stem}.{stamp}{db.suffix}"
    n = 1
    while target.exists():
        target = folder / f"{db.stem}.{stamp}-{n}{db.suffix}"
        n += 1
    for suffix in ("", *_SIDECARS):
        source = Path(f"{db}{suffix}")
        if source.exists():
            os.replace(source, Path(f"{target}{suffix}"))
    seg_info = _lstat(segments.segment_dir(db))
    if seg_info is not None and stat.S_ISDIR(seg_info.st_mode):  # a real directory (never a symlink)
        os.replace(segments.segment_dir(db), segments.segment_dir(target))  # the payloads go with the rows
    fd = os.open(f"{target}.reason", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(f"{reason}\n")
    return target


@dataclass(frozen=True)
class QuarantinedFile:
    path: Path
    reason: str
    bytes: int


def list_quarantine(directory: Path) -> list[QuarantinedFile]:
    folder = directory / QUARANTINE
    out = []
    if folder.is_dir():
        for db in sorted(folder.glob("*.db")):
            reason_file = Path(f"{db}.reason")
            try:
                reason = reason_file.read_text(encoding="utf-8").strip().splitlines()[0]
            except (OSError, IndexError):
                reason = "(no reason recorded)"
            size = sum(Path(f"{db}{s}").stat().st_size for s in ("", *_SIDECARS) if Path(f"{db}{s}").exists())
            size += segments.total_bytes(db)
            out.append(QuarantinedFile(db, reason, size))
    return out
