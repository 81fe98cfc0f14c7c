"""PersistentQueue: crash safety under kill -9, class-tiered overflow, permissions, corruption
quarantine, lanes and cursors, dead letters, orphan adoption."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from durable_helpers import append_in_progress

from otel_ext.queue.ownership import claim_new, list_queue_files, orphans, prepare_dir
from otel_ext.queue.store import NewEntry, PersistentQueue, decode_classes
from otel_ext.telemetry import Counters


def entry(tier: int, records: int = 10, size: int = 1000, cls: str | None = None) -> NewEntry:
    name = cls or {0: "access", 1: "error", 2: "security"}[tier]
    return NewEntry(tier, records, {name: records}, b"x" * size)


def test_advance_without_waiting_writes_nothing_while_an_append_holds_the_queue(tmp_path: Path) -> None:
    """A lane's periodic cursor write does not wait for an append in progress (another thread holds
    the queue): it says so and writes nothing; waiting, or once the append is done, it writes the
    cursor and deletes the acknowledged entries in one go."""
    q = PersistentQueue(tmp_path / "q.db")
    q.register_lanes(["main"])
    q.append([entry(0), entry(0), entry(0)])
    ids = [e.id for e in q.read_after(0, 100, 10**9)]
    with append_in_progress(q):
        assert q.advance("main", ids[1], wait=False) is False
    assert q.cursor("main") == 0 and q.stats().entries == 3
    assert q.advance("main", ids[1], wait=False) is True
    assert q.cursor("main") == ids[1] and q.stats().entries == 1 and q.pending() == 10
    assert q.advance("main", ids[2]) is True and q.stats().entries == 0
    q.close()


def test_files_are_private(tmp_path: Path) -> None:
    directory = prepare_dir(tmp_path / "queue")
    claim = claim_new(directory)
    q = PersistentQueue(claim.db_path)
    q.append([entry(0)])
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for path in [claim.db_path, claim.lock_path, Path(f"{claim.db_path}-wal")]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    q.close()


def test_lanes_delete_only_after_every_lane_acknowledged(tmp_path: Path) -> None:
    q = PersistentQueue(tmp_path / "q.db")
    q.register_lanes(["a", "b"])
    q.append([entry(0), entry(1), entry(2)])
    ids = [e.id for e in q.read_after(0, 10_000, 10**9)]
    q.advance("a", ids[-1])
    assert q.stats().records == 30  # b has not acknowledged
    assert [e.id for e in q.read_after(q.cursor("b"), 10_000, 10**9)] == ids
    q.advance("b", ids[1])
    assert q.stats().records == 10
    q.advance("b", ids[2])
    assert q.stats().entries == 0
    q.close()


def test_overflow_drops_access_before_error_before_security_and_counts(tmp_path: Path) -> None:
    counters = Counters("q")
    q = PersistentQueue(tmp_path / "q.db", max_bytes=5000, counters=counters)
    q.append([entry(2), entry(1), entry(0), entry(0), entry(1)])  # 5 x 1000 bytes: full
    q.append([entry(1)])  # evicts the oldest access entry
    q.append([entry(0)])  # evicts the other access entry (an access newcomer may evict access)
    q.append([entry(2)])  # evicts the newest access entry: lowest tier goes first, never security
    assert sorted(e.tier for e in q.read_after(0, 10**6, 10**9)) == [1, 1, 1, 2, 2]
    q.append([entry(0)])  # only error/security left: the access newcomer itself is dropped
    q.append([entry(2)])  # evicts the oldest error entry
    assert sorted(e.tier for e in q.read_after(0, 10**6, 10**9)) == [1, 1, 2, 2, 2]
    assert counters.snapshot()["dropped"] == {"access:queue_full": 40, "error:queue_full": 10}
    assert q.stats().bytes <= 5000
    q.close()


def test_dead_letters_keep_reason_and_can_be_requeued(tmp_path: Path) -> None:
    q = PersistentQueue(tmp_path / "q.db")
    q.register_lanes(["main"])
    q.append([entry(1, records=3)])
    first = q.read_after(0, 100, 10**9)[0]
    q.dead_letter(first, "es", "mapper_parsing_exception: failed to parse field [status]")
    q.advance("main", first.id)
    assert q.stats().records == 0
    letters = q.dead_letters()
    assert letters[0].reason.startswith("mapper_parsing_exception") and letters[0].records == 3
    assert decode_classes(letters[0].classes) == {"error": 3}
    assert q.requeue_dead_letters() == 3
    assert q.stats().records == 3 and q.dead_letters() == []
    q.close()


def test_corrupt_queue_file_is_quarantined_and_a_fresh_one_started(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    path.write_bytes(b"this is not a sqlite database" * 200)
    counters = Counters("q")
    q = PersistentQueue(path, counters=counters)
    assert q.quarantined_to is not None and q.quarantined_to.exists()
    assert counters.get("quarantined") == 1
    q.append([entry(0)])
    assert q.stats().records == 10
    q.close()


def test_orphans_are_found_only_when_their_owner_is_dead(tmp_path: Path) -> None:
    directory = prepare_dir(tmp_path / "queue")
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
        from otel_ext.queue.ownership import claim_new, prepare_dir
        from otel_ext.queue.store import NewEntry, PersistentQueue
        claim = claim_new(prepare_dir({str(directory)!r}))
        q = PersistentQueue(claim.db_path)
        q.append([NewEntry(0, 7, {{"access": 7}}, b"payload")])
        print("ready", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        assert list(orphans(directory)) == []  # owner alive: its lock is held
        assert [f.alive for f in list_queue_files(directory)] == [True]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        found = list(orphans(directory))
        assert len(found) == 1
        mine = PersistentQueue(tmp_path / "mine.db")
        assert mine.absorb(found[0].db_path) == (7, 0)
        found[0].release(remove=True)
        assert mine.stats().records == 7
        assert list(directory.glob("q-*")) == []
        mine.close()
    finally:
        proc.kill()


WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[3])
    from otel_ext.queue.store import NewEntry, PersistentQueue
    q = PersistentQueue(sys.argv[1], fsync=sys.argv[2])
    i = 0
    while True:
        q.append([NewEntry(0, 100, {"access": 100}, i.to_bytes(8, "big") * 1000)])
        print(i, flush=True)  # acknowledged: the batch is committed
        i += 1
""")


@pytest.mark.parametrize("fsync", ["process", "always"])
def test_kill_9_at_any_moment_leaves_a_consistent_queue(tmp_path: Path, fsync: str) -> None:
    root = str(Path(__file__).resolve().parents[1])
    for attempt in range(6):
        path = tmp_path / f"crash-{attempt}.db"
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), fsync, root],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        acked = -1
        deadline = time.monotonic() + 0.3 + attempt * 0.17
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.strip().isdigit():
                acked = int(line)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        acked = max([acked] + [int(x) for x in proc.stdout.read().split() if x.isdigit()])
        assert acked >= 0
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.close()
        q = PersistentQueue(path)
        entries = q.read_after(0, 10**9, 10**12)
        got = q.stats().entries
        # every acknowledged batch is there; at most the one being written when killed is extra
        assert acked + 1 <= got <= acked + 2, (acked, got)
        payloads = [e.payload for e in q.read_after(0, 10**9, 10**12)]
        assert all(p == p[:8] * 1000 for p in payloads) and entries
        q.close()
