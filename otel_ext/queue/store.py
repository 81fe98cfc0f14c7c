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
class.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from otel_ext.telemetry import Counters, register_counters

_logger = logging.getLogger(__name__)

QUEUE_COUNTERS = register_counters(Counters("queue"), {
    "appended": (), "dropped": ("event_class", "reason"), "dead_lettered": ("backend",), "quarantined": (),
    "adopted": ()})
"""``appended``/``dropped`` records per ``class:reason``, ``dead_lettered``, ``quarantined``, ``adopted``."""

TIER_BY_CLASS = {"access": 0, "performance": 0, "application": 0, "error": 1, "security": 2}
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_ns INTEGER NOT NULL,
    tier INTEGER NOT NULL,
    records INTEGER NOT NULL,
    classes TEXT NOT NULL,
    payload BLOB NOT NULL
);
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


class PersistentQueue:
    """A durable, bounded queue of OTLP payloads in one SQLite file (thread-safe)."""

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
        self.quarantined_to: Path | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._conn = self._open_or_quarantine()
        row = self._conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(records), 0), COALESCE(SUM(LENGTH(payload)), 0) FROM entries"
        ).fetchone()
        self._entries, self._records, self._bytes = int(row[0]), int(row[1]), int(row[2])

    # --- opening -------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        old_umask = os.umask(0o077)  # db, -wal and -shm files are created 0600
        try:
            conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={'FULL' if self.fsync == 'always' else 'NORMAL'}")
            conn.executescript(_SCHEMA)
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        finally:
            os.umask(old_umask)
        for suffix in ("", "-wal", "-shm"):
            _secure_file(Path(f"{self.path}{suffix}"))
        return conn

    def _open_or_quarantine(self) -> sqlite3.Connection:
        try:
            conn = self._connect()
            check = conn.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                conn.close()
                raise sqlite3.DatabaseError(f"quick_check: {check}")
            return conn
        except sqlite3.DatabaseError as exc:
            target = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
            for suffix in ("", "-wal", "-shm"):
                source = Path(f"{self.path}{suffix}")
                if source.exists():
                    os.replace(source, Path(f"{target}{suffix}"))
            self.counters.add("quarantined")
            _logger.error("otel-ext: queue file %s is corrupt (%s); moved to %s, starting a fresh queue",
                          self.path, exc, target)
            self.quarantined_to = target
            return self._connect()

    # --- writing -------------------------------------------------------------------------------

    def append(self, batch: Sequence[NewEntry]) -> None:
        """Store ``batch`` atomically (all entries or none). Raises :class:`QueueError`."""
        if not batch:
            return
        with self._lock:
            if self._closed:
                raise QueueError("queue is closed")
            now = time.time_ns()
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    for entry in batch:
                        size = len(entry.payload)
                        if not self._make_room(size, entry.tier):
                            self._count_dropped(entry.classes, "queue_full")
                            continue
                        self._conn.execute(
                            "INSERT INTO entries (created_ns, tier, records, classes, payload) VALUES (?,?,?,?,?)",
                            (now, entry.tier, entry.records, encode_classes(entry.classes), entry.payload),
                        )
                        self._entries += 1
                        self._records += entry.records
                        self._bytes += size
                    self._conn.execute("COMMIT")
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    self._reload_totals()
                    raise
            except sqlite3.Error as exc:
                raise QueueError(f"{type(exc).__name__}: {exc}") from exc
        for entry in batch:
            self.counters.add("appended", "", entry.records)

    def _count_dropped(self, classes: dict[str, int], reason: str) -> None:
        for name, count in classes.items():
            self.counters.add("dropped", f"{name}:{reason}", count)

    def _make_room(self, size: int, tier: int) -> bool:
        """Evict lower-or-equal tiers, oldest first, until ``size`` fits. False if it cannot fit."""
        if self._bytes + size <= self.max_bytes:
            return True
        if size > self.max_bytes:
            return False
        while self._bytes + size > self.max_bytes:
            row = self._conn.execute(
                "SELECT id, records, classes, LENGTH(payload) FROM entries WHERE tier <= ? ORDER BY tier, id LIMIT 1",
                (tier,),
            ).fetchone()
            if row is None:
                return False
            self._conn.execute("DELETE FROM entries WHERE id = ?", (row[0],))
            self._entries -= 1
            self._records -= int(row[1])
            self._bytes -= int(row[3])
            self._count_dropped(decode_classes(row[2]), "queue_full")
        return True

    def _reload_totals(self) -> None:
        row = self._conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(records), 0), COALESCE(SUM(LENGTH(payload)), 0) FROM entries"
        ).fetchone()
        self._entries, self._records, self._bytes = int(row[0]), int(row[1]), int(row[2])

    # --- lanes and reading ---------------------------------------------------------------------

    def register_lanes(self, names: Iterable[str]) -> None:
        """Declare the delivery lanes; lanes not named are removed, new lanes start at the head."""
        wanted = list(dict.fromkeys(names))
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            existing = {r[0] for r in self._conn.execute("SELECT name FROM lanes")}
            for name in existing - set(wanted):
                self._conn.execute("DELETE FROM lanes WHERE name = ?", (name,))
            for name in wanted:
                self._conn.execute("INSERT OR IGNORE INTO lanes VALUES (?, 0)", (name,))
            self._conn.execute("COMMIT")
            self._delete_acknowledged()

    def cursor(self, lane: str) -> int:
        with self._lock:
            row = self._conn.execute("SELECT cursor FROM lanes WHERE name = ?", (lane,)).fetchone()
            return int(row[0]) if row else 0

    def read_after(self, cursor: int, max_records: int, max_bytes: int) -> list[Entry]:
        """Entries with id > cursor, oldest first, up to the limits (at least one entry)."""
        with self._lock:
            if self._closed:
                return []
            rows = self._conn.execute(
                "SELECT id, created_ns, tier, records, classes, payload FROM entries "
                "WHERE id > ? ORDER BY id LIMIT 256",
                (cursor,),
            ).fetchall()
        out: list[Entry] = []
        records = size = 0
        for row in rows:
            entry = Entry(int(row[0]), int(row[1]), int(row[2]), int(row[3]), str(row[4]), bytes(row[5]))
            if out and (records + entry.records > max_records or size + len(entry.payload) > max_bytes):
                break
            out.append(entry)
            records += entry.records
            size += len(entry.payload)
        return out

    def advance(self, lane: str, last_id: int) -> None:
        """Lane ``lane`` has delivered (or dead-lettered) every entry up to ``last_id``."""
        with self._lock:
            if self._closed:
                return
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute("UPDATE lanes SET cursor = MAX(cursor, ?) WHERE name = ?", (last_id, lane))
            self._delete_acknowledged()
            self._conn.execute("COMMIT")

    def _delete_acknowledged(self) -> None:
        row = self._conn.execute("SELECT MIN(cursor) FROM lanes").fetchone()
        if row is None or row[0] is None:
            return
        upto = int(row[0])
        gone = self._conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(records), 0), COALESCE(SUM(LENGTH(payload)), 0) FROM entries WHERE id <= ?",
            (upto,),
        ).fetchone()
        if gone[0]:
            self._conn.execute("DELETE FROM entries WHERE id <= ?", (upto,))
            self._entries -= int(gone[0])
            self._records -= int(gone[1])
            self._bytes -= int(gone[2])

    # --- dead letters --------------------------------------------------------------------------

    def dead_letter(self, entry: Entry, backend: str, reason: str) -> None:
        with self._lock:
            if self._closed:
                return
            self._conn.execute(
                "INSERT INTO dead_letters (created_ns, failed_ns, backend, reason, records, classes, payload) "
                "VALUES (?,?,?,?,?,?,?)",
                (entry.created_ns, time.time_ns(), backend, reason[:2000], entry.records, entry.classes, entry.payload),
            )
        self.counters.add("dead_lettered", backend, entry.records)

    def dead_letters(self) -> list[DeadLetter]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, created_ns, failed_ns, backend, reason, records, classes, payload "
                "FROM dead_letters ORDER BY id"
            ).fetchall()
        return [DeadLetter(int(r[0]), int(r[1]), int(r[2]), str(r[3]), str(r[4]), int(r[5]), str(r[6]), bytes(r[7]))
                for r in rows]

    def requeue_dead_letters(self, ids: Iterable[int] | None = None) -> int:
        """Move dead letters (all, or ``ids``) back into the queue; returns records requeued."""
        with self._lock:
            letters = [d for d in self.dead_letters() if ids is None or d.id in set(ids)]
            if not letters:
                return 0
            self._conn.execute("BEGIN IMMEDIATE")
            now = time.time_ns()
            for d in letters:
                tier = max((TIER_BY_CLASS.get(c, 0) for c in decode_classes(d.classes)), default=0)
                self._conn.execute(
                    "INSERT INTO entries (created_ns, tier, records, classes, payload) VALUES (?,?,?,?,?)",
                    (now, tier, d.records, d.classes, d.payload),
                )
                self._conn.execute("DELETE FROM dead_letters WHERE id = ?", (d.id,))
            self._conn.execute("COMMIT")
            self._reload_totals()
            return sum(d.records for d in letters)

    # --- adoption, stats, lifecycle ------------------------------------------------------------

    def absorb(self, other: Path) -> tuple[int, int]:
        """Move every pending entry and dead letter of the queue file ``other`` into this queue.

        Returns (records, dead-letter records) moved. The caller owns ``other``'s lock.
        """
        with self._lock:
            self._conn.execute("ATTACH DATABASE ? AS orphan", (str(other),))
            try:
                tables = {r[0] for r in self._conn.execute("SELECT name FROM orphan.sqlite_master WHERE type='table'")}
                if "entries" not in tables:
                    return 0, 0
                self._conn.execute("BEGIN IMMEDIATE")
                pending = self._conn.execute(
                    "SELECT COALESCE(SUM(records), 0) FROM orphan.entries WHERE id > "
                    "COALESCE((SELECT MIN(cursor) FROM orphan.lanes), 0)"
                ).fetchone()[0]
                self._conn.execute(
                    "INSERT INTO entries (created_ns, tier, records, classes, payload) "
                    "SELECT created_ns, tier, records, classes, payload FROM orphan.entries WHERE id > "
                    "COALESCE((SELECT MIN(cursor) FROM orphan.lanes), 0) ORDER BY id"
                )
                dead = 0
                if "dead_letters" in tables:
                    dead = self._conn.execute("SELECT COALESCE(SUM(records), 0) FROM orphan.dead_letters").fetchone()[0]
                    self._conn.execute(
                        "INSERT INTO dead_letters (created_ns, failed_ns, backend, reason, records, classes, payload) "
                        "SELECT created_ns, failed_ns, backend, reason, records, classes, payload "
                        "FROM orphan.dead_letters ORDER BY id"
                    )
                self._conn.execute("COMMIT")
            finally:
                self._conn.execute("DETACH DATABASE orphan")
            self._reload_totals()
        self.counters.add("adopted", "", int(pending))
        return int(pending), int(dead)

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

    def purge(self) -> int:
        """Delete every pending entry (deliberate drop, counted); returns records purged."""
        with self._lock:
            rows = self._conn.execute("SELECT classes FROM entries").fetchall()
            self._conn.execute("DELETE FROM entries")
            purged = self._records
            self._reload_totals()
        for (classes,) in rows:
            self._count_dropped(decode_classes(classes), "purged")
        return purged

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                with contextlib.suppress(sqlite3.Error):
                    self._conn.close()

    def abandon(self) -> None:
        """Forget the connection without closing it (in a forked child: the parent still uses it).

        Takes no lock: at fork time another thread of the parent may have held it forever."""
        self._lock = threading.RLock()
        self._closed = True
        _ABANDONED.append(self._conn)


# Connections inherited across fork are kept referenced so their finalizer never runs in the child
# (closing would checkpoint and delete the parent's WAL).
_ABANDONED: list[sqlite3.Connection] = []


def read_stats(path: Path) -> QueueStats:
    """Stats of any queue file, read-only (safe while its owner is running)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    try:
        row = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(records), 0), COALESCE(SUM(LENGTH(payload)), 0), MIN(created_ns) "
            "FROM entries WHERE id > COALESCE((SELECT MIN(cursor) FROM lanes), 0)"
        ).fetchone()
        dead = conn.execute("SELECT COUNT(*), COALESCE(SUM(records), 0) FROM dead_letters").fetchone()
    finally:
        conn.close()
    oldest = row[3]
    return QueueStats(int(row[0]), int(row[1]), int(row[2]),
                      None if oldest is None else max(0.0, (time.time_ns() - int(oldest)) / 1e9),
                      int(dead[0]), int(dead[1]))
