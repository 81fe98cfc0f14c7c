"""The durable path under faults, on real files: a full disk (a real small tmpfs), queue files
damaged on disk in every way (truncated, bad header, bad page, bad WAL, truncated WAL), hostile
queue directories and planted files. Delivery goes to the in-package MemoryBackend, so no server is
needed; every record carries a sequence number and is counted at the backend."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from durable_helpers import damage, entry, fill, orphan_file, tmpfs
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

from otel_ext.backends.outcome import Outcome
from otel_ext.export import FailoverLogExporter
from otel_ext.export.testing import MemoryBackend
from otel_ext.queue.ownership import UnsafeQueueDir, claim_new, prepare_dir
from otel_ext.queue.salvage import list_quarantine
from otel_ext.queue.store import PersistentQueue, QueueError
from otel_ext.telemetry import Counters

ROOT = Path(__file__).resolve().parents[1]


def wait_for(predicate: object, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return bool(predicate())  # type: ignore[operator]


def exporter(backend: MemoryBackend, queue_dir: Path, **kwargs: object) -> FailoverLogExporter:
    return FailoverLogExporter([backend], queue_dir=queue_dir, counters=Counters("e"),
                               queue_counters=Counters("q"), probe_interval=0.05, **kwargs)  # type: ignore[arg-type]


class Emitter:
    """The app side: records through a real SDK LoggerProvider into ``exp.export()``."""

    def __init__(self, exp: FailoverLogExporter) -> None:
        self.exp = exp
        self.provider = LoggerProvider()
        self.provider.add_log_record_processor(SimpleLogRecordProcessor(exp))
        self.logger = self.provider.get_logger("test.app")

    def emit(self, numbers: list[int], event_class: str = "access", body_bytes: int = 200) -> bool:
        """True if every record was made durable (export() said SUCCESS)."""
        before = self.exp.counters.get("export_failed")
        for n in numbers:
            self.logger.emit(body="x" * body_bytes, severity_number=SeverityNumber.INFO,
                             attributes={"seq": n, "labels.event_class": event_class})
        return self.exp.counters.get("export_failed") == before


def seqs(backend: MemoryBackend) -> Counter[int]:
    return Counter({int(k): v for k, v in backend.values("seq").items()})


# --- truth from the store ----------------------------------------------------------------------


def test_disk_full_then_backend_back_delivers_every_record_once(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 12: 2,600 acknowledged records became ~590,000 deliveries. Now: each exactly once."""
    with tmpfs("3m") as mnt:
        backend = MemoryBackend(answer=Outcome.retryable("down"))
        exp = exporter(backend, mnt / "q")
        app = Emitter(exp)
        acknowledged: list[int] = []
        seq = refused = 0
        while refused < 25:  # fill the disk with the queue itself
            if app.emit([seq]):
                acknowledged.append(seq)
            else:
                refused += 1
            seq += 1
        assert os.statvfs(mnt).f_bavail < 64  # really full
        assert exp.queue_counters.get("dropped", "access:cannot_write") == 25
        said = [line for line in capsys.readouterr().err.splitlines() if "cannot store records" in line]
        assert len(said) == 1, said  # said once, not once per record
        backend.answer = None  # the backend comes back
        assert wait_for(lambda: sum(seqs(backend).values()) >= len(acknowledged))
        time.sleep(1.5)  # would have been ~7 redeliveries of everything before
        got = seqs(backend)
        assert set(got) == set(acknowledged)
        assert max(got.values()) == 1, "a record was delivered twice"
        stats = exp.queue.stats()
        assert stats.records >= 0 and stats.entries >= 0 and stats.bytes >= 0
        assert exp.force_flush(5000)
        exp.shutdown()


def test_space_freed_later_resumes_normal_operation(tmp_path: Path) -> None:
    with tmpfs("4m") as mnt:
        backend = MemoryBackend()
        exp = exporter(backend, mnt / "q")
        app = Emitter(exp)
        filler = fill(mnt)
        refused = sum(not app.emit([10_000 + i], body_bytes=20_000) for i in range(40))
        assert refused >= 1
        os.unlink(filler)
        assert app.emit([1, 2, 3])
        assert wait_for(lambda: {1, 2, 3} <= set(seqs(backend)))
        assert exp.force_flush(5000)
        exp.shutdown()
        assert list((mnt / "q").glob("q-*.db")) == []  # delivered, proven empty, removed


def test_failed_commit_never_drives_totals_negative_nor_deletes_a_queue_with_records(tmp_path: Path) -> None:
    """A lane whose cursor write fails (disk full) must not make the file look empty: the file is
    removed only when a query inside the deleting transaction proves it empty."""
    with tmpfs("3m") as mnt:
        directory = prepare_dir(mnt / "q")
        claim = claim_new(directory)
        q = PersistentQueue(claim.db_path)
        q.register_lanes(["main"])
        for i in range(40):
            q.append([entry(list(range(i * 10, i * 10 + 10)))])
        os.unlink(q.reserve_path)  # no headroom left at all
        fill(mnt)
        first = q.read_after(0, 100, 10**9)
        with pytest.raises(QueueError):
            for _ in range(50):  # keep writing cursors until the full disk refuses one
                q.advance("main", first[-1].id)
                q.append([entry([99_999])])
        stats = q.stats()
        assert stats.records >= 0 and stats.entries >= 0
        assert q.pending() > 0
        assert not q.close(remove_if_empty=True)
        assert claim.db_path.exists()
        reopened = PersistentQueue(claim.db_path)
        assert reopened.pending() > 0
        reopened.close()


def test_every_write_rolls_back_and_the_connection_stays_usable(tmp_path: Path) -> None:
    with tmpfs("2m") as mnt:
        q = PersistentQueue(mnt / "q.db")
        q.register_lanes(["a"])
        os.unlink(q.reserve_path)
        filler = fill(mnt)
        big = [entry(list(range(200)), body_bytes=2000)]
        with pytest.raises(QueueError) as failure:
            for _ in range(20):
                q.append(big)
        assert "no transaction is active" not in str(failure.value)
        with pytest.raises(QueueError):
            for _ in range(20):
                q.register_lanes(["a", f"b{_}"])
                q.append(big)
        assert not q._conn.in_transaction
        os.unlink(filler)
        q.append([entry([1])])  # space again: the same connection works
        other = sqlite3.connect(mnt / "q.db")
        in_file = other.execute("SELECT COUNT(*), SUM(records) FROM entries").fetchone()
        other.close()
        assert (q.stats().entries, q.stats().records) == (in_file[0], in_file[1])  # totals are the file's
        q.close()


class _Said(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_overflow_drops_are_counted_per_class_and_said_once(tmp_path: Path) -> None:
    counters = Counters("q")
    q = PersistentQueue(tmp_path / "q.db", max_bytes=20_000, counters=counters)
    said = _Said()  # on our logger itself: what stderr shows depends on earlier tests' capture
    logging.getLogger("otel_ext").addHandler(said)
    try:
        for i in range(200):
            q.append([entry([i], "access" if i % 2 else "error", body_bytes=500)])
    finally:
        logging.getLogger("otel_ext").removeHandler(said)
    snapshot = counters.snapshot()["dropped"]
    assert snapshot["access:queue_full"] + snapshot.get("error:queue_full", 0) > 100
    lines = [m for m in said.messages if "at its bound" in m]
    assert len(lines) == 1, lines
    q.close()


def test_wal_is_truncated_once_the_queue_is_idle(tmp_path: Path) -> None:
    q = PersistentQueue(tmp_path / "q.db")
    q.register_lanes(["main"])
    for i in range(100):
        q.append([entry(list(range(i * 10, i * 10 + 10)))])
    assert q.wal_bytes() > 100_000
    q.maintain()  # entries pending: the WAL is under its bound, left alone
    assert q.wal_bytes() > 100_000
    q.advance("main", q.last_id())
    q.maintain()
    assert q.wal_bytes() == 0 and q.stats().entries == 0
    q.close()


# --- corruption contained ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["truncated", "bad_header", "bad_page", "bad_wal", "truncated_wal",
                                  "cut_wal_no_shm"])
def test_damaged_orphan_is_quarantined_salvaged_and_never_stops_us(tmp_path: Path, kind: str) -> None:
    directory = prepare_dir(tmp_path / "q")
    wal_kind = "wal" in kind
    total = 1000 if wal_kind else 2000
    orphan = orphan_file(directory, total, 10, checkpoint=not wal_kind)
    damage(orphan, kind)
    backend = MemoryBackend()
    exp = exporter(backend, directory)  # adopts at start
    assert exp.queue_counters.get("quarantined") == 1
    quarantined = list_quarantine(directory)
    assert len(quarantined) == 1 and quarantined[0].reason
    assert not orphan.exists() and not orphan.with_suffix(".lock").exists()
    # we keep appending and delivering our own records
    assert Emitter(exp).emit([100_000, 100_001])
    assert wait_for(lambda: {100_000, 100_001} <= set(seqs(backend)))
    got = seqs(backend)
    salvaged = {s for s in got if s < total}
    assert all(0 <= s < total for s in salvaged)  # nothing but real records
    assert max(got.values()) == 1
    assert exp.queue_counters.get("adopted") == len(salvaged)
    if kind == "bad_header":
        assert len(salvaged) == total  # only the magic string was broken
    elif kind == "bad_wal":
        assert len(salvaged) >= total * 0.9  # committed frames after the bad one are replayed from a copy
    else:
        assert 0 < len(salvaged) < total  # the bytes are gone; what remains is delivered
    status = subprocess.run([sys.executable, "-m", "otel_ext.cli", "queue", "status", "--queue-dir", str(directory)],
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    assert "quarantined" in status.stdout and quarantined[0].path.name in status.stdout
    assert quarantined[0].reason.split(" (")[0] in status.stdout
    assert exp.force_flush(5000)
    exp.shutdown()


def test_sound_orphan_is_adopted_whole_without_attach(tmp_path: Path) -> None:
    directory = prepare_dir(tmp_path / "q")
    orphan = orphan_file(directory, 1000, 10)
    backend = MemoryBackend()
    exp = exporter(backend, directory)
    assert wait_for(lambda: len(seqs(backend)) == 1000)
    assert max(seqs(backend).values()) == 1
    assert list_quarantine(directory) == [] and not orphan.exists()
    exp.shutdown()


# --- hostile neighbours ------------------------------------------------------------------------


def test_symlinked_queue_dir_is_refused_and_its_target_left_alone(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    link = tmp_path / "link"
    link.symlink_to(shared)
    with pytest.raises(UnsafeQueueDir) as refused:
        exporter(MemoryBackend(), link)
    assert str(link) in str(refused.value) and "symlink" in str(refused.value)
    assert "\n" not in str(refused.value)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777  # never chmod-ed


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o1777])
def test_group_or_world_writable_queue_dir_is_refused_unless_opted_in(tmp_path: Path, mode: int) -> None:
    directory = tmp_path / "open"
    directory.mkdir()
    os.chmod(directory, mode)
    with pytest.raises(UnsafeQueueDir, match="writable by"):
        exporter(MemoryBackend(), directory)
    exp = exporter(MemoryBackend(), directory, queue_insecure_dir=True)
    assert stat.S_IMODE(directory.stat().st_mode) == mode  # opted in: still not chmod-ed
    exp.shutdown()


def test_opt_in_by_env_applies_to_every_user_of_the_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "open"
    directory.mkdir()
    os.chmod(directory, 0o777)
    with pytest.raises(UnsafeQueueDir):
        prepare_dir(directory)
    monkeypatch.setenv("OTEL_EXT_QUEUE_INSECURE_DIR", "true")
    assert prepare_dir(directory) == directory
    exp = exporter(MemoryBackend(), directory)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o777
    exp.shutdown()


def test_queue_dir_of_another_user_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    directory = tmp_path / "theirs"
    directory.mkdir(mode=0o700)
    os.chown(directory, 4242, 4242)
    with pytest.raises(UnsafeQueueDir, match="belongs to uid 4242"):
        exporter(MemoryBackend(), directory)


def test_files_planted_by_another_user_or_as_symlinks_are_never_adopted(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    directory = prepare_dir(tmp_path / "q")
    planted = orphan_file(directory, 50, 10)
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{planted}{suffix}").exists():
            os.chown(f"{planted}{suffix}", 4242, 4242)
    os.chown(planted.with_suffix(".lock"), 4242, 4242)
    target = tmp_path / "elsewhere.db"
    orphan_file(prepare_dir(tmp_path / "other"), 30, 10).rename(target)
    (directory / "q-1-deadbeef.db").symlink_to(target)
    backend = MemoryBackend()
    exp = exporter(backend, directory)
    exp.adopt_orphans()
    assert Emitter(exp).emit([7])
    assert wait_for(lambda: 7 in seqs(backend))
    assert set(seqs(backend)) == {7}  # nothing forged was delivered as ours
    assert planted.exists() and planted.stat().st_uid == 4242
    exp.shutdown()


# --- bounded duplicates ------------------------------------------------------------------------

ADOPT_THEN_DIE = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from otel_ext.queue.ownership import claim_new, orphans, prepare_dir
from otel_ext.queue.store import PersistentQueue
directory = prepare_dir(sys.argv[2])
claim = claim_new(directory)
q = PersistentQueue(claim.db_path)
q.register_lanes(["main"])
for orphan in orphans(directory, exclude=claim.db_path):
    q.adopt(orphan.db_path)  # committed ...
    os.kill(os.getpid(), signal.SIGKILL)  # ... and killed before the orphan is removed
"""


def test_adopter_killed_between_commit_and_removal_causes_no_duplicates(tmp_path: Path) -> None:
    directory = prepare_dir(tmp_path / "q")
    first = orphan_file(directory, 500, 10)
    for _ in range(2):  # two adopters in a row die at the worst moment
        done = subprocess.run([sys.executable, "-c", ADOPT_THEN_DIE, str(ROOT), str(directory)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == -9, done.stderr
    assert first.exists()  # the original is still there, and so are two copies
    backend = MemoryBackend()
    exp = exporter(backend, directory)
    assert wait_for(lambda: len(seqs(backend)) == 500)
    assert exp.force_flush(5000)
    got = seqs(backend)
    assert set(got) == set(range(500)) and max(got.values()) == 1, Counter(got.values())
    exp.shutdown()
    assert list(directory.glob("q-*.db")) == []
