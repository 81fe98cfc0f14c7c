"""PersistentQueue: the durable store between ``export()`` and the backends.

One SQLite database (stdlib, WAL mode) per owning process. Why SQLite: a committed transaction is
atomic and survives kill -9 at any moment (at most the batch being written is missing, and it was
never acknowledged), appends of a whole batch cost ~0.3 ms, readers and the writer do not block
each other, and the file is inspectable with standard tools. ``fsync="process"`` (default,
``synchronous=NORMAL``) is durable against process crashes; ``fsync="always"`` (``synchronous=FULL``)
also against power loss.

Entries are OTLP ``ExportLogsServiceRequest`` bytes, each holding records of one *drop tier*
(0: access/performance/application, 1: error, 2: security). Each delivery lane keeps a cursor; an
entry is deleted once every lane's cursor has passed it. Permanent rejections are moved to the
dead-letter table with the reason. When ``max_bytes`` would be exceeded, the oldest entries of the
lowest tier go first and a newcomer never evicts a higher tier; every dropped record is counted per
class. Eviction knows what the lanes hold in memory (:meth:`PersistentQueue.mark_delivered`, and the
``lane`` of :meth:`PersistentQueue.read_after`): entries every lane has delivered but not yet recorded
are freed first and not counted (they were delivered), within the lowest tier entries a lane has in
hand are evicted only when nothing else of that tier is left (the tier order wins over the lanes'
hands: security last), and an entry evicted while a lane was reading it is taken out of that read.
So delivered + counted drops = appended, exactly (an entry evicted from a lane's hands is counted
when the lane passes it undelivered, or at close: if a request abandoned at shutdown still arrives
afterwards, it is both delivered and counted).

Since schema version 2 the payload bytes of entries larger than ``INLINE_MAX`` live in append-only
segment files beside the database (``<queue>.db.seg/``, see :mod:`otel_ext.queue.segments`), written
once and fsynced (``fsync="always"``) before the transaction that references them commits; the row
keeps (segment, offset, size). SQLite's WAL copied every payload twice (WAL, then checkpoint), which
was most of the queue's cost. Version-1 files (every payload inline) are upgraded in place when
opened and their inline entries are read as they are. A frame that fails its checks turns its
entry into a dead letter with the reason (counted), never a silent loss.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from otel_ext.queue import segments
from otel_ext.queue.salvage import (
    ADOPTED_PREFIX,
    WITNESS,
    WITNESS_SUFFIX,
    DamagedFile,
    adopted_elsewhere,
    check_file,
    quarantine,
    read_sound,
    salvage,
)
from otel_ext.selflog import install as install_selflog
from otel_ext.selflog import say_every
from otel_ext.telemetry import Counters, register_counters

_logger = logging.getLogger(__name__)

QUEUE_COUNTERS = register_counters(Counters("queue"), {
    "appended": (), "dropped": ("event_class", "reason"), "dead_lettered": ("backend",), "quarantined": (),
    "adopted": ()})
"""``appended``/``dropped`` records per ``class:reason``, ``dead_lettered``, ``quarantined``, ``adopted``."""

TIER_BY_CLASS = {"access": 0, "performance": 0, "application": 0, "error": 1, "security": 2}
SCHEMA_VERSION = 2
# payloads just appended, kept in memory for the lanes (they do not read back what they are about to
# send while they keep up); a bound, not a cache size to tune: a lane that falls behind reads from disk
HOT_BYTES = 32 * 1024 * 1024
WAL_SIZE_LIMIT = 4 * 1024 * 1024
# disk space set aside beside each queue file: given back when the disk is full so that a lane can
# still record what it delivered (which frees pages for new entries), taken again when space returns
RESERVE_BYTES = 1024 * 1024

_ENTRIES = """(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_ns INTEGER NOT NULL,
    tier INTEGER NOT NULL,
    records INTEGER NOT NULL,
    classes TEXT NOT NULL,
    payload BLOB,
    seg INTEGER NOT NULL DEFAULT 0,
    off INTEGER NOT NULL DEFAULT 0,
    size INTEGER NOT NULL DEFAULT 0
)"""
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS entries {_ENTRIES};
CREATE INDEX IF NOT EXISTS entries_tier ON entries (tier, id);
CREATE TABLE IF NOT EXISTS lanes (name TEXT PRIMARY KEY, cursor INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_ns INTEGER NOT NULL,
    failed_ns INTEGER NOT NULL,
    backend TEXT NOT NULL,
    reason TEXT NOT NULL,
    records INTEGER NOT NULL,
    classes TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# version 1 -> 2: payloads may live in segment files (``payload`` NULL), ``size`` is the payload's
# length either way. The table is rebuilt (a column cannot become nullable in place), ids and the
# AUTOINCREMENT sequence kept as they were (cursors and the .seq witness refer to them).
_UPGRADE_1_2 = (
    f"CREATE TABLE entries_v2 {_ENTRIES}",
    "INSERT INTO entries_v2 (id, created_ns, tier, records, classes, payload, seg, off, size) "
    "SELECT id, created_ns, tier, records, classes, payload, 0, 0, LENGTH(payload) FROM entries",
    "DROP TABLE entries",
    "ALTER TABLE entries_v2 RENAME TO entries",
    "CREATE INDEX IF NOT EXISTS entries_tier ON entries (tier, id)",
    "INSERT OR REPLACE INTO meta VALUES ('schema', '2')",
)
_INSERT_ENTRY = ("INSERT INTO entries (created_ns, tier, records, classes, payload, seg, off, size) "
                 "VALUES (?,?,?,?,?,?,?,?)")


def has_segment_columns(conn: sqlite3.Connection) -> bool:
    """True if the queue file's entries carry (seg, off, size): schema version 2 or later."""
    return "seg" in {str(r[1]) for r in conn.execute("PRAGMA table_info(entries)")}


class QueueError(Exception):
    """The queue cannot take the batch (disk full, I/O error, closed)."""


@dataclass(frozen=True)
class NewEntry:
    tier: int
    records: int
    classes: dict[str, int]
    payload: bytes


@dataclass(frozen=True)
class Entry:
    id: int
    created_ns: int
    tier: int
    records: int
    classes: str
    payload: bytes


@dataclass(frozen=True)
class DeadLetter:
    id: int
    created_ns: int
    failed_ns: int
    backend: str
    reason: str
    records: int
    classes: str
    payload: bytes


@dataclass(frozen=True)
class QueueStats:
    entries: int
    records: int
    bytes: int
    oldest_age_s: float | None
    dead_letters: int
    dead_letter_records: int


def encode_classes(classes: dict[str, int]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(classes.items()))


def decode_classes(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in text.split(","):
        name, _, count = item.partition("=")
        if name and count.isdigit():
            out[name] = out.get(name, 0) + int(count)
    return out


def _secure_file(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.chmod(path, 0o600)


@dataclass
class _Delta:
    """Changes to the in-memory totals made by one write transaction, applied only after COMMIT."""

    entries: int = 0
    records: int = 0
    bytes: int = 0
    dropped: list[tuple[dict[str, int], str]] = field(default_factory=list)
    appended: int = 0
    removed: list[int] = field(default_factory=list)  # entry ids deleted (-1: "up to" the id after it)
    marks: bool = False  # this transaction holds the queue's ``_marks_lock`` (it evicts)
    evicted: list[int] = field(default_factory=list)  # entry ids evicted to make room
    # evicted entries lanes had in hand: (id, classes, those lanes), counted only if not delivered
    in_hand: list[tuple[int, dict[str, int], set[str]]] = field(default_factory=list)


@dataclass(frozen=True)
class Adopted:
    """Outcome of :meth:`PersistentQueue.adopt`: records moved, and the reason if the file was damaged."""

    records: int
    dead_letter_records: int
    damaged: str | None = None
    quarantined_to: Path | None = None
    skipped: int = 0
    already_in: Path | None = None  # another queue file already holds these rows (nothing moved)


class PersistentQueue:
    """A durable, bounded queue of OTLP payloads in one SQLite file (thread-safe).

    Every write is one transaction that is rolled back on any error; the in-memory totals change
    only after a COMMIT succeeded and are re-read from the file after a failed one, so a decision
    (overflow, flush, delete the file) never rests on a number the file does not hold.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        max_bytes: int = 256 * 1024 * 1024,
        fsync: str = "process",
        counters: Counters = QUEUE_COUNTERS,
    ) -> None:
        if fsync not in ("process", "always"):
            raise ValueError(f"fsync must be 'process' or 'always', got {fsync!r}")
        if max_bytes <= 0:
            raise ValueError(f"queue max_bytes must be positive, got {max_bytes}")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.counters = counters
        self._lock = threading.RLock()
        self._closed = False
        self._dropped_full = 0
        install_selflog()
        self.quarantined_to: Path | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._conn = self._open_or_quarantine()
        # lanes read on a connection of their own (WAL readers never block the writer): export()
        # appends while a lane reads the next request's payloads
        self._read_lock = threading.Lock()
        self._read_conn: sqlite3.Connection | None = None
        self._readers_closed = False
        # what the lanes hold in memory, for eviction (see the module docstring): per lane the highest
        # entry id it was handed by read_after, and the highest it delivered (maybe not yet recorded);
        # ids evicted by committed transactions, until every lane is past them. An evicting transaction
        # holds _marks_lock from its first eviction to its COMMIT, a lane's read takes it to take note
        # of what it read: either the eviction sees the read, or the read sees the eviction.
        self._marks_lock = threading.Lock()
        self._held: dict[str, int] = {}
        self._acked: dict[str, int] = {}
        # evicted id -> the number of the evicting commit; kept only while a lane's read that began
        # before that commit is in progress (a read that begins later does not see the row at all), so
        # this stays small however long a lane is stuck (it used to grow by every eviction then)
        self._evicted: dict[int, int] = {}
        self._evictions = 0  # evicting commits so far
        self._reads: dict[int, int] = {}  # lanes' reads in progress: token -> _evictions when they began
        self._reads_lock = threading.Lock()  # small, never held across a transaction (after _marks_lock)
        self._read_tokens = itertools.count()
        self._in_hand: dict[int, tuple[dict[str, int], set[str]]] = {}  # evicted from a lane's hands
        self._entries = self._records = self._bytes = 0
        self._reload_totals()
        # payload segments (a directory that is not ours: new payloads stay inline, entries already
        # in it wait, loudly, until it is put right; nothing is deleted through it)
        self._segments = segments.Segments(self.path, fsync == "always", segments.segment_bytes_for(max_bytes))
        self._compact_floor = 0
        try:
            self._segments.dir_fd()
        except OSError as exc:
            _logger.error("otel-ext: payload segments of %s not used (%s): new payloads stay inline in the "
                          "database; entries already in segments wait until it is put right", self.path.name, exc)
        else:
            self._collect_segments(everything=True)  # frames a crash left unreferenced
        self._hot: dict[int, bytes] = {}
        self._hot_bytes = 0
        self._hot_lock = threading.Lock()
        self.reserve_path = Path(f"{self.path}.reserve")
        self._take_reserve()
        self._witness_fd = self._open_witness()

    # --- opening -------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        old_umask = os.umask(0o077)  # db, -wal and -shm files are created 0600
        try:
            conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={'FULL' if self.fsync == 'always' else 'NORMAL'}")
            # the WAL is cut back to this size whenever it restarts after a checkpoint
            conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            # Deleted entries are not zeroed on disk (FAST zeroes only inside b-tree pages, where it
            # costs no extra I/O). Builds compiled with SQLITE_SECURE_DELETE (Debian's, pyenv's)
            # zeroed every delivered payload: a second full write of each record into the WAL and
            # again at the checkpoint, ~40 % of a steady append+deliver cycle. The file is private
            # (0600 in a 0700 directory) and its freed pages are the first reused by new entries.
            conn.execute("PRAGMA secure_delete=FAST")
            conn.executescript(_SCHEMA)
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            if not has_segment_columns(conn):  # a version-1 file: upgraded in one transaction
                self._upgrade(conn)
            conn.execute("CREATE INDEX IF NOT EXISTS entries_seg ON entries (seg) WHERE seg > 0")
        finally:
            os.umask(old_umask)
        for suffix in ("", "-wal", "-shm"):
            _secure_file(Path(f"{self.path}{suffix}"))
        return conn

    def _upgrade(self, conn: sqlite3.Connection) -> None:
        """Version 1 -> 2 in one transaction. A full disk is not damage: the file is left as it was
        and :class:`QueueError` says why (the caller tries again once there is room)."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'entries'").fetchone()
            for statement in _UPGRADE_1_2:
                conn.execute(statement)
            conn.execute("DELETE FROM sqlite_sequence WHERE name = 'entries'")
            if seq is not None:
                conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('entries', ?)", (seq[0],))
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError) and (
                    getattr(exc, "sqlite_errorcode", None) == 13 or "full" in str(exc)):  # SQLITE_FULL
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
                raise QueueError(f"cannot upgrade {self.path.name} to queue format 2 now ({exc}); the file is "
                                 "left as it was") from exc
            raise

    def _open_or_quarantine(self) -> sqlite3.Connection:
        try:
            if self.path.exists():
                check_file(self.path)
            return self._connect()
        except (DamagedFile, sqlite3.DatabaseError) as exc:
            target = quarantine(self.path, str(exc))
            self.counters.add("quarantined")
            _logger.error("otel-ext: queue file %s is damaged (%s); moved to %s, starting a fresh queue",
                          self.path, exc, target)
            self.quarantined_to = target
            return self._connect()

    # --- transactions --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self) -> Iterator[_Delta]:
        """One write transaction: COMMIT, or ROLLBACK on any error and re-read the totals from the
        file. sqlite3 errors leave as :class:`QueueError`. Call with ``self._lock`` held."""
        if self._closed:
            raise QueueError("queue is closed")
        delta = _Delta()
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise QueueError(f"{type(exc).__name__}: {exc}") from exc
        committed = False
        try:
            yield delta
            self._conn.execute("COMMIT")
            committed = True
        except BaseException as exc:
            self._rollback()
            self._reload_totals()
            if isinstance(exc, sqlite3.Error):
                raise QueueError(f"{type(exc).__name__}: {exc}") from exc
            raise
        finally:
            if delta.marks:
                if committed and delta.evicted:
                    self._note_evicted(delta.evicted)
                    for entry_id, classes, lanes in delta.in_hand:
                        self._in_hand[entry_id] = (classes, lanes)
                delta.marks = False
                self._marks_lock.release()
        self._entries += delta.entries
        self._records += delta.records
        self._bytes += delta.bytes
        if delta.removed:
            self._forget_hot(delta.removed)
            self._collect_segments()
        for classes, reason in delta.dropped:
            self._count_dropped(classes, reason)
        if delta.dropped:
            self._dropped_full += sum(sum(c.values()) for c, r in delta.dropped if r == "queue_full")
            if self._dropped_full:
                say_every(60.0, f"queue-full:{self.path}", "otel-ext: queue %s is at its bound (max_bytes=%d): "
                          "%d records dropped so far to make room, lowest class first, counted as "
                          "queue.dropped{reason=queue_full}", self.path.name, self.max_bytes, self._dropped_full)
        if delta.appended:
            self.counters.add("appended", "", delta.appended)

    def _rollback(self) -> None:
        # SQLite may already have rolled back (disk full, I/O error): "no transaction is active"
        # must not hide the error that got us here
        if self._conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")

    def _reload_totals(self) -> None:
        """The totals as the file holds them (keeps the last known ones if even reading fails)."""
        with contextlib.suppress(sqlite3.Error):
            row = self._conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(records), 0), COALESCE(SUM(size), 0) FROM entries"
            ).fetchone()
            self._entries, self._records, self._bytes = int(row[0]), int(row[1]), int(row[2])

    # --- writing -------------------------------------------------------------------------------

    def append(self, batch: Sequence[NewEntry]) -> None:
        """Store ``batch`` atomically (all entries or none). Raises :class:`QueueError`."""
        if not batch:
            return
        with self._lock:
            now = time.time_ns()
            last_id: int | None = None
            places = self._store_payloads([e.payload for e in batch])
            hot: list[tuple[int, bytes]] = []
            with self._write() as delta:
                for entry, place in zip(batch, places, strict=True):
                    size = len(entry.payload)
                    if not self._make_room(size, entry.tier, delta):
                        delta.dropped.append((entry.classes, "queue_full"))
                        continue
                    last_id = self._insert(now, entry.tier, entry.records, encode_classes(entry.classes),
                                           entry.payload, place)
                    if place is not None:
                        hot.append((last_id, entry.payload))
                    delta.entries += 1
                    delta.records += entry.records
                    delta.bytes += size
                    delta.appended += entry.records
            self._note_committed(last_id)
            if hot:
                self._keep_hot(hot)
            self._bound_segments()

    def _bound_segments(self) -> None:
        """After a commit: compact when the segments hold much more than the live bytes (overflow
        evicts out of order). Never raises: the batch is stored whatever happens here."""
        seg = self._segments.segment_bytes
        total = self._segments.total_bytes
        if total <= self._bytes + max(self._bytes // 2, 2 * seg) or total <= self._compact_floor:
            return
        try:
            moved = self._compact_segments()
        except Exception as exc:  # noqa: BLE001 - housekeeping retries it
            say_every(60.0, f"compact:{self.path}", "otel-ext: could not compact the payload segments of %s (%s)",
                      self.path.name, exc)
            moved = 0
        # nothing to move (every segment mostly live): do not look again before it grew a segment more
        self._compact_floor = 0 if moved else self._segments.total_bytes + seg

    def _store_payloads(self, payloads: Sequence[bytes]) -> list[tuple[int, int] | None]:
        """Write the large payloads into the current segment (before the commit that references them):
        (segment, offset) for each, None for those that stay inline. Raises :class:`QueueError`."""
        if self._closed:
            raise QueueError("queue is closed")
        large = [p for p in payloads if len(p) > segments.INLINE_MAX]
        if not large:
            return [None] * len(payloads)
        problem = self._segments.write_problem()
        if problem:
            say_every(60.0, f"segments-refused:{self.path}", "otel-ext: %s; payloads of %s stay inline in the "
                      "database until it is put right", problem, self.path.name)
            return [None] * len(payloads)
        try:
            written = iter(self._segments.write(large))
        except OSError as exc:  # ENOSPC, EIO, EDQUOT: the same outcome as SQLite refusing the batch
            raise QueueError(f"payload segment: {exc.strerror or exc}") from exc
        return [next(written) if len(p) > segments.INLINE_MAX else None for p in payloads]

    def _insert(self, created_ns: int, tier: int, records: int, classes: str, payload: bytes,
                place: tuple[int, int] | None) -> int:
        row: tuple[int, int, int, str, bytes | None, int, int, int]
        if place is None:
            row = (created_ns, tier, records, classes, payload, 0, 0, len(payload))
        else:
            # NULL: an older otel-ext reading this file fails loudly (and keeps the entry) instead
            # of sending an empty request
            row = (created_ns, tier, records, classes, None, place[0], place[1], len(payload))
        entry_id = self._conn.execute(_INSERT_ENTRY, row).lastrowid
        assert entry_id is not None
        return int(entry_id)

    # --- payload segments ----------------------------------------------------------------------

    def _keep_hot(self, items: list[tuple[int, bytes]]) -> None:
        with self._hot_lock:
            for entry_id, payload in items:
                if self._hot_bytes + len(payload) > HOT_BYTES:
                    return  # the oldest stay: lanes read in id order
                self._hot[entry_id] = payload
                self._hot_bytes += len(payload)

    def _take_hot(self, entry_id: int) -> bytes | None:
        with self._hot_lock:
            payload = self._hot.pop(entry_id, None)
            if payload is not None:
                self._hot_bytes -= len(payload)
            return payload

    def _forget_hot(self, removed: list[int]) -> None:
        if not self._hot:
            return
        with self._hot_lock:
            upto = max((removed[i + 1] for i, v in enumerate(removed[:-1]) if v == -1), default=0)
            gone = {v for v in removed if v > 0}
            for entry_id in [k for k in self._hot if k <= upto or k in gone]:
                self._hot_bytes -= len(self._hot.pop(entry_id))

    def _collect_segments(self, everything: bool = False) -> None:
        """Delete segment files no entry refers to (call with ``_lock`` held, after a COMMIT).

        The quick test (every segment below the oldest referenced one) runs after each deletion;
        ``everything`` also finds segments freed out of order (overflow eviction, dead letters)."""
        if self._closed:
            return
        try:
            if self._segments.dir_fd() is None:
                return
            if everything:
                keep = {int(r[0]) for r in self._conn.execute("SELECT DISTINCT seg FROM entries WHERE seg > 0")}
                self._segments.remove_except(keep)
                return
            row = self._conn.execute("SELECT MIN(seg) FROM entries WHERE seg > 0").fetchone()
            oldest = int(row[0]) if row and row[0] is not None else None
            if oldest is None and self._segments.current_bytes > self._segments.segment_bytes // 16:
                self._segments.roll()  # nothing refers to any segment: start afresh, free the disk
            if any(oldest is None or n < oldest for n in self._segments.sizes):
                self._segments.remove_except(
                    n for n in list(self._segments.sizes) if oldest is not None and n >= oldest)
        except (sqlite3.Error, OSError) as exc:
            say_every(60.0, f"segments:{self.path}", "otel-ext: could not delete unused payload segments of %s "
                      "(%s); will retry", self.path.name, exc)

    def _compact_segments(self, budget: int | None = None) -> int:
        """Bound the disk that deleted entries leave behind in segments still in use (overflow evicts
        low tiers out of order; one live entry keeps its whole segment): when the segments hold more
        than twice the live bytes (and more than four segments' worth), the live frames of the
        emptiest segments are copied to the current one, their rows repointed in one transaction,
        and the old segments deleted. Up to ``budget`` bytes per call; returns bytes moved. Call
        with ``_lock`` held. A lane reading an old place meanwhile finds the row moved and reads again."""
        if self._closed:
            return 0
        try:
            if self._segments.dir_fd() is None:
                return 0
        except OSError:
            return 0
        seg_bytes = self._segments.segment_bytes
        budget = 2 * seg_bytes if budget is None else budget
        on_disk = dict(self._segments.sizes)
        live = {int(r[0]): int(r[1]) for r in self._conn.execute(
            "SELECT seg, SUM(size) + COUNT(*) * ? FROM entries WHERE seg > 0 GROUP BY seg", (segments.FRAME.size,))}
        total, used = sum(on_disk.values()), sum(live.values())
        if total <= used + max(used // 2, 2 * seg_bytes):
            return 0
        moved = 0
        victims = sorted((n for n in live if n != self._segments.current and on_disk.get(n)),
                         key=lambda n: live[n] / max(1, on_disk[n]))
        for number in victims:
            if moved >= budget or live[number] > on_disk[number] // 2:
                break
            rows = self._conn.execute("SELECT id, off, size FROM entries WHERE seg = ? ORDER BY id",
                                      (number,)).fetchall()
            damaged: dict[int, tuple[tuple[int, int, int], str, bytes]] = {}
            payloads: list[tuple[int, int, bytes]] = []
            fd = None
            try:
                fd = self._segments.open_for_read(number)
                for entry_id, off, size in rows:
                    try:
                        payloads.append((int(entry_id), int(off), segments.read_frame(fd, number, int(off),
                                                                                      int(size))))
                    except segments.SegmentDamaged as exc:
                        damaged[int(entry_id)] = ((number, int(off), int(size)), str(exc), b"")
            except segments.SegmentDamaged as exc:
                damaged.update({int(r[0]): ((number, int(r[1]), int(r[2])), str(exc), b"") for r in rows})
            except OSError:  # out of descriptors or memory: not now
                return moved
            finally:
                if fd is not None:
                    os.close(fd)
            if damaged:
                self._dead_letter_damaged(damaged)
            if payloads:
                try:
                    places = self._segments.write([p for _, _, p in payloads])
                except OSError as exc:
                    raise QueueError(f"payload segment: {exc.strerror or exc}") from exc
                with self._write():
                    self._conn.executemany(
                        "UPDATE entries SET seg = ?, off = ? WHERE id = ? AND seg = ? AND off = ?",
                        [(seg, off, entry_id, number, old) for (entry_id, old, _), (seg, off)
                         in zip(payloads, places, strict=True)])
                moved += sum(len(p) for _, _, p in payloads)
        self._collect_segments(everything=True)
        return moved

    def _resolve(self, rows: list[tuple[int, int, int, int, str, bytes | None, int, int, int]],
                 damaged: dict[int, tuple[tuple[int, int, int], str, bytes]]) -> list[Entry]:
        """Entries of ``rows`` with their payloads (from memory, else from their segment). Frames that
        fail their checks are noted in ``damaged`` (id -> (place, reason, raw bytes)) and left out."""
        out: list[Entry] = []
        fds: dict[int, int] = {}
        try:
            return self._resolve_rows(rows, damaged, fds, out)
        except OSError as exc:  # out of descriptors or memory, a refused directory: not damage,
            # the entries stay and the lane tries again
            say_every(60.0, f"segments-read:{self.path}", "otel-ext: cannot read the payload segments of %s (%s); "
                      "the entries stay queued", self.path.name, exc)
            raise QueueError(f"payload segment: {exc.strerror or exc}") from exc
        finally:
            for fd in fds.values():
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _resolve_rows(self, rows: list[tuple[int, int, int, int, str, bytes | None, int, int, int]],
                      damaged: dict[int, tuple[tuple[int, int, int], str, bytes]],
                      fds: dict[int, int], out: list[Entry]) -> list[Entry]:
        for entry_id, created_ns, tier, records, classes, stored, seg, off, size in rows:
            if seg <= 0:
                if stored is None or seg < 0 or len(stored) != size:  # a row SQLite handed back altered
                    damaged[entry_id] = ((seg, off, size), f"the row's payload is missing or does not match "
                                         f"its size {size} (segment number {seg})", bytes(stored or b""))
                    continue
                payload = bytes(stored)
            else:
                hot = self._take_hot(entry_id)
                if hot is not None and len(hot) == size:
                    payload = hot
                else:
                    try:
                        if seg not in fds:
                            fds[seg] = self._segments.open_for_read(seg)
                        payload = segments.read_frame(fds[seg], seg, off, size)
                    except segments.SegmentDamaged as exc:
                        damaged[entry_id] = ((seg, off, size), str(exc), b"")
                        continue
            out.append(Entry(entry_id, created_ns, tier, records, classes, payload))
        return out

    def _dead_letter_damaged(self, damaged: dict[int, tuple[tuple[int, int, int], str, bytes]]) -> None:
        """Entries whose payload frame is damaged: into the dead-letter store with the reason (those
        deleted meanwhile, by eviction or purge, are left alone: already counted)."""
        moved: list[tuple[int, str, str]] = []
        with self._lock, self._write() as delta:
            for entry_id, (place, reason, raw) in damaged.items():
                row = self._conn.execute(
                    "SELECT created_ns, records, classes, seg, off, size FROM entries WHERE id = ?",
                    (entry_id,)).fetchone()
                if row is None or (int(row[3]), int(row[4]), int(row[5])) != place:
                    continue
                self._conn.execute(
                    "INSERT INTO dead_letters (created_ns, failed_ns, backend, reason, records, classes, payload) "
                    "VALUES (?,?,?,?,?,?,?)",
                    (int(row[0]), time.time_ns(), "queue", f"damaged payload: {reason}"[:2000], int(row[1]),
                     str(row[2]), raw))
                self._conn.execute("DELETE FROM entries WHERE id = ?", (entry_id,))
                delta.entries -= 1
                delta.records -= int(row[1])
                delta.bytes -= int(row[5])
                delta.removed.append(entry_id)
                moved.append((int(row[1]), str(row[2]), reason))
        for records, classes, reason in moved:
            self.counters.add("dead_lettered", "queue", records)
            _logger.error("otel-ext: queue %s: %d records (%s) cannot be read back (%s); kept in the dead-letter "
                          "store", self.path.name, records, classes, reason)

    def _open_witness(self) -> int | None:
        try:
            return os.open(f"{self.path}{WITNESS_SUFFIX}", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                           0o600)
        except OSError:
            return None

    def _note_committed(self, last_id: int | None) -> None:
        """After a COMMIT: note the highest entry id outside the SQLite files, so that a WAL cut
        short together with its -shm index is still detected at adoption (``check_file``)."""
        if last_id and self._witness_fd is not None:
            with contextlib.suppress(OSError):
                os.pwrite(self._witness_fd, WITNESS.pack(last_id), 0)

    def _count_dropped(self, classes: dict[str, int], reason: str) -> None:
        for name, count in classes.items():
            self.counters.add("dropped", f"{name}:{reason}", count)

    def count_unwritable(self, classes: dict[str, int], reason: str = "cannot_write") -> None:
        """Count records that could not be stored at all (disk full, I/O error) per class."""
        self._count_dropped(classes, reason)

    def _make_room(self, size: int, tier: int, delta: _Delta) -> bool:
        """Evict lower-or-equal tiers, oldest first, until ``size`` fits. False if it cannot fit.

        First frees what every lane has delivered (not a drop), then, lowest tier first, evicts the
        entries of that tier no lane has in hand (counted dropped), and only then those of that tier
        lanes are delivering: those are counted dropped when a lane passes them without delivering
        them (see :meth:`mark_delivered`), not now."""
        if self._bytes + delta.bytes + size <= self.max_bytes:
            return True
        if size > self.max_bytes:
            return False
        if not delta.marks:  # held until this transaction ends (see _write)
            self._marks_lock.acquire()
            delta.marks = True
        floor, done, held = self._lane_marks()
        if floor > 0:
            self._delete_upto(floor, delta)
        guard = "".join(" AND NOT (id > ? AND id <= ?)" for _ in held)
        guarded = [bound for _, low, top in held for bound in (low, top)]
        # a newcomer that cannot fit even with every entry of its tier and below gone evicts nothing
        # (it used to evict them all and be dropped too)
        before = (delta.entries, delta.records, delta.bytes, len(delta.removed), len(delta.evicted),
                  len(delta.in_hand), len(delta.dropped))
        self._conn.execute("SAVEPOINT room")
        while self._bytes + delta.bytes + size > self.max_bytes:
            # the lowest tier first, whatever the lanes hold (security last); within it, what no lane
            # has in hand first, and only when that tier has nothing else, an entry in a lane's hands
            row = self._conn.execute(
                "SELECT id, records, classes, size, tier FROM entries WHERE tier <= ? ORDER BY tier, id LIMIT 1",
                (tier,),
            ).fetchone()
            if row is None:
                self._conn.execute("ROLLBACK TO room")
                self._conn.execute("RELEASE room")
                delta.entries, delta.records, delta.bytes = before[:3]
                del delta.removed[before[3]:], delta.evicted[before[4]:], delta.in_hand[before[5]:]
                del delta.dropped[before[6]:]
                return False
            if guard:
                row = self._conn.execute(
                    f"SELECT id, records, classes, size, tier FROM entries WHERE tier = ?{guard} ORDER BY id LIMIT 1",
                    (int(row[4]), *guarded),
                ).fetchone() or row
            entry_id = int(row[0])
            self._conn.execute("DELETE FROM entries WHERE id = ?", (entry_id,))
            delta.removed.append(entry_id)
            delta.evicted.append(entry_id)
            delta.entries -= 1
            delta.records -= int(row[1])
            delta.bytes -= int(row[3])
            holders = {lane for lane, low, top in held if low < entry_id <= top}
            waiting = {lane for lane, past in done.items() if past < entry_id}  # lanes still to deliver it
            if holders and waiting <= holders:  # every lane still to deliver it has it in hand
                delta.in_hand.append((entry_id, decode_classes(row[2]), holders))
            else:
                delta.dropped.append((decode_classes(row[2]), "queue_full"))
        self._conn.execute("RELEASE room")
        return True

    def _lane_marks(self) -> tuple[int, dict[str, int], list[tuple[str, int, int]]]:
        """(the highest id every lane has delivered, each lane's delivered id, the id ranges
        ``(lane, after, upto)`` lanes have in hand). Lanes' cursors in the file count as delivered;
        a lane that never took note of a read holds nothing."""
        cursors = {str(name): int(cursor) for name, cursor in self._conn.execute("SELECT name, cursor FROM lanes")}
        done = {name: max(cursor, self._acked.get(name, 0)) for name, cursor in cursors.items()}
        floor = min(done.values(), default=0)
        held = [(name, done.get(name, self._acked.get(name, 0)), top) for name, top in list(self._held.items())]
        return floor, done, [(name, low, top) for name, low, top in held if top > low]

    def _note_evicted(self, ids: list[int]) -> None:
        """After an evicting COMMIT (``_marks_lock`` held): keep its ids for the reads in progress
        (their snapshot may still hold those rows), forget what no read in progress can have seen."""
        with self._reads_lock:
            self._evictions += 1
            if not self._reads:
                self._evicted.clear()
                return
            for entry_id in ids:
                self._evicted[entry_id] = self._evictions
            oldest = min(self._reads.values())
            if len(self._evicted) > len(ids):
                self._evicted = {i: n for i, n in self._evicted.items() if n > oldest}

    def mark_delivered(self, lane: str, upto: int, delivered: Sequence[Entry | int] = ()) -> None:
        """Lane ``lane`` delivered (or dead-lettered) every entry up to ``upto``, maybe not recorded yet
        (:meth:`advance` records it); ``delivered`` are the entries of this acknowledgement. Eviction
        frees such entries first, without counting them. An entry evicted from the lane's hands is
        counted dropped here if the lane passed it without delivering it (its request failed and
        the entry was gone when the lane read again)."""
        with self._marks_lock:  # an evicting transaction sees this, or this sees its evictions
            if upto > self._acked.get(lane, 0):
                self._acked[lane] = upto
            if not self._in_hand:
                return
            ids = {e if isinstance(e, int) else e.id for e in delivered}
            for entry_id, (classes, lanes) in list(self._in_hand.items()):
                if lane not in lanes:
                    continue
                if entry_id in ids:
                    lanes.discard(lane)
                elif entry_id <= upto:
                    self._count_dropped(classes, "queue_full")
                    lanes.clear()
                if not lanes:
                    del self._in_hand[entry_id]

    def _count_in_hand(self) -> None:
        """At close: entries evicted from a lane's hands and never delivered are dropped."""
        with self._marks_lock:
            for classes, _ in self._in_hand.values():
                self._count_dropped(classes, "queue_full")
            self._in_hand.clear()

    # --- lanes and reading ---------------------------------------------------------------------

    def register_lanes(self, names: Iterable[str]) -> None:
        """Declare the delivery lanes; lanes not named are removed, new lanes start at the head."""
        wanted = list(dict.fromkeys(names))
        with self._lock, self._write() as delta:
            existing = {r[0] for r in self._conn.execute("SELECT name FROM lanes")}
            for name in existing - set(wanted):
                self._conn.execute("DELETE FROM lanes WHERE name = ?", (name,))
            for name in wanted:
                self._conn.execute("INSERT OR IGNORE INTO lanes VALUES (?, 0)", (name,))
            self._delete_acknowledged(delta)

    def cursor(self, lane: str) -> int:
        with self._lock:
            if self._closed:
                return 0
            row = self._conn.execute("SELECT cursor FROM lanes WHERE name = ?", (lane,)).fetchone()
            return int(row[0]) if row else 0

    def read_after(self, cursor: int, max_records: int, max_bytes: int, lane: str | None = None) -> list[Entry]:
        """Entries with id > cursor, oldest first, up to the limits (at least one entry).

        Read on the lanes' own connection, in one read transaction, without the writer's lock.
        Payloads come from memory when just appended, else from their segment; an entry whose frame
        is damaged is moved to the dead letters (with the reason) and the read is done again.
        ``lane`` (the reading lane) takes note of the entries it is handed, so that eviction leaves
        them alone; an entry evicted (and counted dropped) while this read ran is left out of it."""
        token = next(self._read_tokens)
        try:
            for _ in range(100):
                if lane is not None:  # before the read's snapshot: evictions committed after it count
                    with self._reads_lock:
                        self._reads[token] = self._evictions
                damaged: dict[int, tuple[tuple[int, int, int], str, bytes]] = {}
                entries = self._read_once(cursor, max_records, max_bytes, damaged)
                if damaged:
                    self._dead_letter_damaged(damaged)
                    continue
                if lane is None or not entries:
                    return entries
                with self._marks_lock:
                    if entries[-1].id > self._held.get(lane, 0):
                        self._held[lane] = entries[-1].id
                    if self._evicted:
                        began = self._reads[token]
                        entries = [e for e in entries if self._evicted.get(e.id, 0) <= began]
                if entries:
                    return entries
            return []
        finally:
            if lane is not None:
                with self._reads_lock:
                    self._reads.pop(token, None)

    def _read_once(self, cursor: int, max_records: int, max_bytes: int,
                   damaged: dict[int, tuple[tuple[int, int, int], str, bytes]]) -> list[Entry]:
        with self._read_lock:
            if self._closed or self._readers_closed:
                return []
            try:
                if self._read_conn is None:
                    self._read_conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None,
                                                      check_same_thread=False)
                conn = self._read_conn
                conn.execute("BEGIN")
                try:
                    rows = self._read_rows(conn, cursor, max_records, max_bytes)
                finally:
                    conn.execute("ROLLBACK")
                return self._resolve(rows, damaged)
            except sqlite3.Error:
                self._close_reader()
        with self._lock:  # the reader connection failed: read on the writer's
            if self._closed:
                return []
            return self._resolve(self._read_rows(self._conn, cursor, max_records, max_bytes), damaged)

    def _close_reader(self) -> None:
        """Close the lanes' read connection (call with ``_read_lock`` held)."""
        conn, self._read_conn = self._read_conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    @staticmethod
    def _read_rows(conn: sqlite3.Connection, cursor: int, max_records: int,
                   max_bytes: int) -> list[tuple[int, int, int, int, str, bytes | None, int, int, int]]:
        # sizes first (no blob is read), then only the rows of the entries that fit
        heads = conn.execute(
            "SELECT id, records, size FROM entries WHERE id > ? ORDER BY id LIMIT 256",
            (cursor,),
        ).fetchall()
        records = size = 0
        last = None
        for entry_id, entry_records, entry_size in heads:
            if last is not None and (records + entry_records > max_records or size + entry_size > max_bytes):
                break
            last = int(entry_id)
            records += int(entry_records)
            size += int(entry_size)
        if last is None:
            return []
        rows = conn.execute(
            "SELECT id, created_ns, tier, records, classes, payload, seg, off, size FROM entries "
            "WHERE id > ? AND id <= ? ORDER BY id",
            (cursor, last),
        ).fetchall()
        return [(int(r[0]), int(r[1]), int(r[2]), int(r[3]), str(r[4]), r[5], int(r[6]), int(r[7]),
                 int(r[8])) for r in rows]

    def advance(self, lane: str, last_id: int, wait: bool = True) -> bool:
        """Lane ``lane`` has delivered (or dead-lettered) every entry up to ``last_id``.

        When the disk is full, the reserve is given back and the WAL truncated for one more try.
        Raises :class:`QueueError` if the cursor cannot be written (the caller keeps it in memory).
        With ``wait=False``, returns False at once, writing nothing, while another thread holds the
        queue (an append in progress); True otherwise."""
        if not self._lock.acquire(blocking=wait):
            return False
        try:
            self._advance(lane, last_id)
        finally:
            self._lock.release()
        return True

    def _advance(self, lane: str, last_id: int) -> None:
        if self._closed:
            return
        try:  # the cursor and the deletion it allows, one commit
            with self._write() as delta:
                self._conn.execute("UPDATE lanes SET cursor = MAX(cursor, ?) WHERE name = ?", (last_id, lane))
                self._delete_acknowledged(delta)
            return
        except QueueError:
            pass  # e.g. a full disk: the cursor alone (one row) may still fit, below
        try:
            self._set_cursor(lane, last_id)
        except QueueError:
            if not self._give_back_reserve():
                raise
            self.checkpoint()
            self._set_cursor(lane, last_id)
        # freeing acknowledged entries is a separate, smaller step: when the disk is full the
        # cursor (one row) may still fit where the deletion does not
        with contextlib.suppress(QueueError), self._write() as delta:
            self._delete_acknowledged(delta)

    def _set_cursor(self, lane: str, last_id: int) -> None:
        with self._write():
            self._conn.execute("UPDATE lanes SET cursor = MAX(cursor, ?) WHERE name = ?", (last_id, lane))

    # --- disk space ----------------------------------------------------------------------------

    def _take_reserve(self) -> bool:
        """Set ``RESERVE_BYTES`` aside (False if the disk has no room for it now)."""
        if self.reserve_path.exists():
            return True
        try:
            fd = os.open(self.reserve_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except OSError:
            return False
        try:
            try:
                os.posix_fallocate(fd, 0, RESERVE_BYTES)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                os.write(fd, b"\0" * RESERVE_BYTES)
            return True
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(self.reserve_path)
            return False
        finally:
            os.close(fd)

    def _give_back_reserve(self) -> bool:
        try:
            os.unlink(self.reserve_path)
        except OSError:
            return False
        _logger.warning("otel-ext: the disk holding %s is full; used the space set aside to record deliveries",
                        self.path)
        return True

    def maintain(self) -> None:
        """Housekeeping: delete acknowledged entries a full disk kept, truncate the WAL when it grew
        past its limit or the queue is empty, take the reserve back if it was used."""
        if self._closed:
            return
        if self._entries:  # acknowledged entries a full disk kept us from deleting
            with contextlib.suppress(QueueError), self._lock, self._write() as delta:
                self._delete_acknowledged(delta)
        with self._lock:
            self._collect_segments(everything=True)
            with contextlib.suppress(QueueError):
                self._compact_segments()
        wal = self.wal_bytes()
        if wal > WAL_SIZE_LIMIT or (wal and not self._entries):  # grown past its bound, or idle
            self.checkpoint()
        if not self.reserve_path.exists():
            with self._lock:
                if not self._closed:
                    self._take_reserve()

    def _delete_acknowledged(self, delta: _Delta) -> None:
        row = self._conn.execute("SELECT MIN(cursor) FROM lanes").fetchone()
        if row is None or row[0] is None:
            return
        self._delete_upto(int(row[0]), delta)

    def _delete_upto(self, upto: int, delta: _Delta) -> None:
        """Delete every entry with id <= ``upto`` (delivered by every lane: not a drop)."""
        gone = self._conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(records), 0), COALESCE(SUM(size), 0) FROM entries WHERE id <= ?",
            (upto,),
        ).fetchone()
        if gone[0]:
            self._conn.execute("DELETE FROM entries WHERE id <= ?", (upto,))
            delta.removed += [-1, upto]
            delta.entries -= int(gone[0])
            delta.records -= int(gone[1])
            delta.bytes -= int(gone[2])

    def last_id(self) -> int:
        """Id of the newest entry in the file (0 when empty). Raises :class:`QueueError`."""
        with self._lock:
            if self._closed:
                return 0
            try:
                row = self._conn.execute("SELECT COALESCE(MAX(id), 0) FROM entries").fetchone()
            except sqlite3.Error as exc:
                raise QueueError(f"{type(exc).__name__}: {exc}") from exc
            return int(row[0])

    def pending(self) -> int:
        """Records not yet acknowledged by every lane, counted in the file (not in memory)."""
        with self._lock:
            if self._closed:
                return 0
            try:
                return self._pending_in_file()
            except sqlite3.Error as exc:
                raise QueueError(f"{type(exc).__name__}: {exc}") from exc

    def _pending_in_file(self) -> int:
        row = self._conn.execute(
            "SELECT COALESCE(SUM(records), 0) FROM entries WHERE id > COALESCE((SELECT MIN(cursor) FROM lanes), 0)"
        ).fetchone()
        return int(row[0])

    # --- dead letters --------------------------------------------------------------------------

    def dead_letter(self, entry: Entry, backend: str, reason: str) -> None:
        """Keep ``entry`` in the dead-letter store. Raises :class:`QueueError` if it cannot be written."""
        with self._lock, self._write():
            self._conn.execute(
                "INSERT INTO dead_letters (created_ns, failed_ns, backend, reason, records, classes, payload) "
                "VALUES (?,?,?,?,?,?,?)",
                (entry.created_ns, time.time_ns(), backend, reason[:2000], entry.records, entry.classes, entry.payload),
            )
        self.counters.add("dead_lettered", backend, entry.records)

    def dead_letters(self) -> list[DeadLetter]:
        with self._lock:
            if self._closed:
                return []
            rows = self._conn.execute(
                "SELECT id, created_ns, failed_ns, backend, reason, records, classes, payload "
                "FROM dead_letters ORDER BY id"
            ).fetchall()
        return [DeadLetter(int(r[0]), int(r[1]), int(r[2]), str(r[3]), str(r[4]), int(r[5]), str(r[6]), bytes(r[7]))
                for r in rows]

    def requeue_dead_letters(self, ids: Iterable[int] | None = None) -> int:
        """Move dead letters (all, or ``ids``) back into the queue; returns records requeued."""
        with self._lock:
            chosen = None if ids is None else set(ids)
            # a letter without its bytes (a payload lost to a damaged segment) stays where it is:
            # sending an empty request would count records as delivered that were never sent
            letters = [d for d in self.dead_letters() if (chosen is None or d.id in chosen)
                       and (d.payload or not d.records)]
            if not letters:
                return 0
            with self._write() as delta:
                now = time.time_ns()
                for d in letters:
                    tier = max((TIER_BY_CLASS.get(c, 0) for c in decode_classes(d.classes)), default=0)
                    self._insert(now, tier, d.records, d.classes, d.payload, None)
                    self._conn.execute("DELETE FROM dead_letters WHERE id = ?", (d.id,))
                    delta.entries += 1
                    delta.records += d.records
                    delta.bytes += len(d.payload)
            return sum(d.records for d in letters)

    # --- adoption, stats, lifecycle ------------------------------------------------------------

    def adopt(self, other: Path) -> Adopted:
        """Move every pending entry and dead letter of the queue file ``other`` into this queue.

        ``other`` is checked first on a connection of its own (WAL checksums, header, size,
        ``PRAGMA quick_check``). A damaged file is moved to ``quarantine/`` with a reason file and
        whatever rows are still readable are salvaged. The caller owns ``other``'s lock; after a
        return the caller may remove what is left of ``other``. Raises :class:`QueueError` only when
        *this* queue cannot take the rows (``other`` is then left as it was, for a later attempt).

        If an earlier adopter committed ``other``'s rows but died before removing it, the rows are
        not taken again: ``already_in`` names the file that holds them (the caller removes ``other``).
        """
        holder = self.path if self.holds_rows_of(other.name) else adopted_elsewhere(
            other.parent, other.name, skip=(self.path,))
        if holder is not None:
            return Adopted(0, 0, already_in=holder)
        damaged: str | None = None
        target: Path | None = None
        try:
            check_file(other)
            contents = read_sound(other)
        except (DamagedFile, sqlite3.Error) as exc:
            damaged = str(exc) or type(exc).__name__
            target = quarantine(other, damaged)
            self.counters.add("quarantined")
            contents = salvage(target, target.parent / f".{target.name}.salvage")
        last_id: int | None = None
        with self._lock, contextlib.ExitStack() as stack:  # frames and the rows that reference them, one hold
            places = self._store_payloads([row[4] for row in contents.entries])
            delta = stack.enter_context(self._write())
            for (created_ns, tier, records, classes, payload), place in zip(contents.entries, places, strict=True):
                last_id = self._insert(created_ns, tier, records, classes, payload, place)
                delta.entries += 1
                delta.records += records
                delta.bytes += len(payload)
            self._conn.executemany(
                "INSERT INTO dead_letters (created_ns, failed_ns, backend, reason, records, classes, payload) "
                "VALUES (?,?,?,?,?,?,?)", contents.dead_letters)
            # in the same transaction: "this file now holds other's rows" (and those other held),
            # so if we die before other is removed, its next adopter removes it instead of
            # delivering it twice
            now = str(time.time_ns())
            for name in (other.name, *contents.adopted_files):
                self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (ADOPTED_PREFIX + name, now))
        with self._lock:
            self._note_committed(last_id)
        self.counters.add("adopted", "", contents.records)
        if contents.damaged_records:
            self.counters.add("dead_lettered", "queue", contents.damaged_records)
            _logger.error("otel-ext: queue file %s: %d records cannot be read back from its payload segments; "
                          "kept in the dead-letter store with the reason", other.name, contents.damaged_records)
        return Adopted(contents.records, contents.dead_records, damaged, target, contents.skipped)

    def holds_rows_of(self, name: str) -> bool:
        """True if this queue already adopted the queue file called ``name``."""
        with self._lock:
            if self._closed:
                return False
            row = self._conn.execute("SELECT 1 FROM meta WHERE key = ?", (ADOPTED_PREFIX + name,)).fetchone()
            return row is not None

    def forget_adopted(self, keep: Iterable[str]) -> None:
        """Drop the adoption markers of files that no longer exist (best effort)."""
        keep_keys = {ADOPTED_PREFIX + n for n in keep}
        with self._lock:
            if self._closed:
                return
            keys = [str(r[0]) for r in self._conn.execute("SELECT key FROM meta WHERE key LIKE 'adopted:%'")]
            stale = [k for k in keys if k not in keep_keys]
            if stale:
                with contextlib.suppress(QueueError), self._write():
                    self._conn.executemany("DELETE FROM meta WHERE key = ?", [(k,) for k in stale])

    def absorb(self, other: Path) -> tuple[int, int]:
        """:meth:`adopt`, returning (records, dead-letter records) moved."""
        result = self.adopt(other)
        return result.records, result.dead_letter_records

    def stats(self) -> QueueStats:
        with self._lock:
            if self._closed:
                return QueueStats(0, 0, 0, None, 0, 0)
            oldest = self._conn.execute("SELECT MIN(created_ns) FROM entries").fetchone()[0]
            dead = self._conn.execute("SELECT COUNT(*), COALESCE(SUM(records), 0) FROM dead_letters").fetchone()
            return QueueStats(
                entries=self._entries,
                records=self._records,
                bytes=self._bytes,
                oldest_age_s=None if oldest is None else max(0.0, (time.time_ns() - int(oldest)) / 1e9),
                dead_letters=int(dead[0]),
                dead_letter_records=int(dead[1]),
            )

    @property
    def pending_records(self) -> int:
        return self._records

    def checkpoint(self) -> bool:
        """Copy the WAL into the database and cut the WAL file to zero (frees disk). True if done."""
        with self._lock:
            if self._closed:
                return False
            try:
                row = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            except sqlite3.Error:
                return False
            return bool(row) and int(row[0]) == 0

    def wal_bytes(self) -> int:
        try:
            return os.stat(f"{self.path}-wal").st_size
        except OSError:
            return 0

    def purge(self) -> int:
        """Delete every pending entry (deliberate drop, counted); returns records purged."""
        with self._lock:
            with self._write() as delta:
                rows = self._conn.execute("SELECT classes, records, size, id FROM entries").fetchall()
                self._conn.execute("DELETE FROM entries")
                delta.removed += [-1, max((int(r[3]) for r in rows), default=0)]
                for classes, records, size, _id in rows:
                    delta.entries -= 1
                    delta.records -= int(records)
                    delta.bytes -= int(size)
                    delta.dropped.append((decode_classes(classes), "purged"))
            return sum(int(r[1]) for r in rows)

    def close(self, remove_if_empty: bool = False) -> bool:
        """Close the queue. With ``remove_if_empty``, delete the file when a query inside one write
        transaction proves it holds no pending entry and no dead letter; returns True if deleted."""
        removed = False
        with self._lock:
            if self._closed:
                return False
            self._close_readers()
            if remove_if_empty:
                removed = self._remove_if_empty()
            self._segments.close()
            if removed:
                segments.remove_all(self.path)
            with contextlib.suppress(OSError):
                os.unlink(self.reserve_path)
            if self._witness_fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._witness_fd)
                self._witness_fd = None
            self._closed = True
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
        self._count_in_hand()
        return removed

    def _close_readers(self) -> None:
        """Close the lanes' read connection (before the writer's connection, which as the last
        one closes and checkpoints the WAL)."""
        with self._read_lock:
            self._readers_closed = True
            self._close_reader()

    def _remove_if_empty(self) -> bool:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error:
            return False
        try:
            pending = self._pending_in_file()
            dead = int(self._conn.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0])
            if pending or dead:
                return False
            # still inside the transaction that proved it empty: nobody can append meanwhile
            for suffix in ("", "-wal", "-shm", ".reserve", WITNESS_SUFFIX):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{self.path}{suffix}")
            return True
        except (sqlite3.Error, OSError):
            return False
        finally:
            self._rollback()

    def abandon(self) -> None:
        """Forget the connection without closing it (in a forked child: the parent still uses it).

        Takes no lock: at fork time another thread of the parent may have held it forever."""
        self._lock = threading.RLock()
        self._read_lock = threading.Lock()
        self._closed = True
        _ABANDONED.append(self._conn)
        self._segments.close()  # this process's copy of the descriptor
        self._hot = {}
        if self._witness_fd is not None:  # this process's copy of the descriptor: the parent keeps its own
            with contextlib.suppress(OSError):
                os.close(self._witness_fd)
            self._witness_fd = None
        if self._read_conn is not None:
            _ABANDONED.append(self._read_conn)


# Connections inherited across fork are kept referenced so their finalizer never runs in the child
# (closing would checkpoint and delete the parent's WAL).
_ABANDONED: list[sqlite3.Connection] = []


def read_stats(path: Path) -> QueueStats:
    """Stats of any queue file, read-only (safe while its owner is running)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    try:
        size = "size" if has_segment_columns(conn) else "LENGTH(payload)"
        row = conn.execute(
            f"SELECT COUNT(*), COALESCE(SUM(records), 0), COALESCE(SUM({size}), 0), MIN(created_ns) "
            "FROM entries WHERE id > COALESCE((SELECT MIN(cursor) FROM lanes), 0)"
        ).fetchone()
        dead = conn.execute("SELECT COUNT(*), COALESCE(SUM(records), 0) FROM dead_letters").fetchone()
    finally:
        conn.close()
    oldest = row[3]
    return QueueStats(int(row[0]), int(row[1]), int(row[2]),
                      None if oldest is None else max(0.0, (time.time_ns() - int(oldest)) / 1e9),
                      int(dead[0]), int(dead[1]))
