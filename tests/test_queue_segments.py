"""Queue payloads in segment files (schema version 2): written once beside the database, read back
with their frame checks, deleted when nothing refers to them; version-1 files upgraded in place;
damaged, truncated and missing segments become dead letters with a reason; the directory rules,
adoption, quarantine, overflow, a full disk and kill -9 with segments in play. Real files only."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from durable_helpers import ROOT, damage, entry, fill, tmpfs
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from otel_ext.queue import segments
from otel_ext.queue.ownership import claim_new, orphans, prepare_dir
from otel_ext.queue.salvage import list_quarantine
from otel_ext.queue.store import NewEntry, PersistentQueue, QueueError, read_stats
from otel_ext.telemetry import Counters


def big(seqs: list[int], event_class: str = "access") -> NewEntry:
    """An entry well above INLINE_MAX (a segment frame)."""
    e = entry(seqs, event_class, body_bytes=2000)
    assert len(e.payload) > segments.INLINE_MAX
    return e


def seqs_of(payloads: list[bytes]) -> list[int]:
    out = []
    for p in payloads:
        request = ExportLogsServiceRequest.FromString(p)
        out += [a.value.int_value for rl in request.resource_logs for sl in rl.scope_logs
                for r in sl.log_records for a in r.attributes if a.key == "seq"]
    return out


def seg_files(db: Path) -> list[Path]:
    folder = segments.segment_dir(db)
    return sorted(folder.iterdir()) if folder.is_dir() else []


def drain(q: PersistentQueue, lane: str = "main") -> list[int]:
    got: list[int] = []
    while entries := q.read_after(q.cursor(lane), 10_000, 10**9):
        got += seqs_of([e.payload for e in entries])
        q.advance(lane, entries[-1].id)
    return got


def test_large_payloads_go_to_private_segments_small_ones_stay_inline(tmp_path: Path) -> None:
    directory = prepare_dir(tmp_path / "q")
    db = claim_new(directory).db_path
    q = PersistentQueue(db)
    q.register_lanes(["main"])
    q.append([big(list(range(0, 20))), entry([1000])])  # one frame, one inline row
    folder = segments.segment_dir(db)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    (seg,) = seg_files(db)
    assert stat.S_IMODE(seg.stat().st_mode) == 0o600 and seg.stat().st_uid == os.geteuid()
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT seg, LENGTH(payload), size FROM entries ORDER BY id").fetchall()
    # bytes only in the segment; NULL in the row, so an older otel-ext fails loudly instead of sending b""
    assert rows[0][0] > 0 and rows[0][1] is None and rows[0][2] > segments.INLINE_MAX
    assert rows[1][0] == 0 and rows[1][1] == rows[1][2]  # inline
    assert conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0] == "2"
    conn.close()
    assert q.stats().bytes == sum(len(e.payload) for e in (big(list(range(0, 20))), entry([1000])))
    q.close()
    q = PersistentQueue(db)  # nothing in memory now: read back from the segment, CRC checked
    assert sorted(drain(q)) == [*range(20), 1000]
    assert q.stats().entries == 0
    assert q.close(remove_if_empty=True)
    assert not folder.exists() and not db.exists()


def test_segments_are_deleted_once_no_entry_refers_to_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segments, "SEGMENT_BYTES", 64 * 1024)  # a new segment every few entries
    q = PersistentQueue(tmp_path / "q.db")
    q.register_lanes(["main"])
    for start in range(0, 400, 20):
        q.append([big(list(range(start, start + 20)))])
    assert len(seg_files(q.path)) >= 5
    got: list[int] = []
    before = len(seg_files(q.path))
    for _ in range(3):  # deliver part: the oldest segments go, the rest stay
        entries = q.read_after(q.cursor("main"), 60, 10**9)
        got += seqs_of([e.payload for e in entries])
        q.advance("main", entries[-1].id)
    assert 0 < len(seg_files(q.path)) < before
    got += drain(q)
    assert sorted(got) == list(range(400))
    assert len(seg_files(q.path)) <= 1  # at most the one being written
    q.close()


def _version_1_file(db: Path, entries: int = 6) -> None:
    """A queue file as schema version 1 wrote it: every payload inline; entry 1 delivered, the
    last one deleted (the sequence stays)."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript("""
        CREATE TABLE entries (id INTEGER PRIMARY KEY AUTOINCREMENT, created_ns INTEGER NOT NULL,
            tier INTEGER NOT NULL, records INTEGER NOT NULL, classes TEXT NOT NULL, payload BLOB NOT NULL);
        CREATE INDEX entries_tier ON entries (tier, id);
        CREATE TABLE lanes (name TEXT PRIMARY KEY, cursor INTEGER NOT NULL);
        CREATE TABLE dead_letters (id INTEGER PRIMARY KEY AUTOINCREMENT, created_ns INTEGER NOT NULL,
            failed_ns INTEGER NOT NULL, backend TEXT NOT NULL, reason TEXT NOT NULL, records INTEGER NOT NULL,
            classes TEXT NOT NULL, payload BLOB NOT NULL);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema', '1');
        INSERT INTO lanes VALUES ('main', 1);
    """)
    for k in range(entries):  # version 1 kept every payload inline, large ones too; entry 1 was delivered
        e = big(list(range(k * 20, k * 20 + 20)))
        conn.execute("INSERT INTO entries (created_ns, tier, records, classes, payload) VALUES (1, 0, 20, "
                     "'access=20', ?)", (e.payload,))
    conn.execute("DELETE FROM entries WHERE id = ?", (entries,))  # the sequence stays: ids are never reused
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def test_version_1_file_is_upgraded_in_place_and_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "q-1-old.db"
    _version_1_file(db)
    assert read_stats(db).records == 80  # an old file is readable by the status command as it is
    q = PersistentQueue(db)
    q.register_lanes(["main"])
    assert q.stats().records == 80 and q.stats().bytes == 4 * len(big(list(range(20))).payload)
    q.append([big(list(range(1000, 1020)))])  # new entries go to a segment
    assert len(seg_files(db)) == 1
    assert q.last_id() == 7  # after the old sequence: cursors and the .seq witness stay right
    assert sorted(drain(q)) == [*range(20, 100), *range(1000, 1020)]
    q.close()
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0] == "2"
    assert [r[1] for r in conn.execute("PRAGMA index_list(entries)")] != []  # indexes rebuilt
    conn.close()


def _frame_offsets(db: Path) -> list[tuple[int, int, int]]:
    conn = sqlite3.connect(db)
    try:
        return [(int(r[0]), int(r[1]), int(r[2])) for r in conn.execute("SELECT seg, off, size FROM entries ORDER BY id")]
    finally:
        conn.close()


@pytest.mark.parametrize("kind", ["flipped_byte", "truncated", "missing", "bad_magic", "symlinked_file"])
def test_damaged_segment_becomes_a_dead_letter_with_its_reason_and_the_lane_goes_on(tmp_path: Path,
                                                                                     kind: str) -> None:
    db = tmp_path / "q.db"
    q = PersistentQueue(db, counters=Counters("segq"))
    q.register_lanes(["main"])
    for start in range(0, 60, 20):
        q.append([big(list(range(start, start + 20)))])
    q.close()
    places = _frame_offsets(db)
    seg = segments.segment_dir(db) / f"{places[1][0]:08d}"
    if kind == "flipped_byte":  # one byte inside the second payload
        with open(seg, "r+b") as f:
            f.seek(places[1][1] + segments.FRAME.size + 100)
            byte = f.read(1)
            f.seek(places[1][1] + segments.FRAME.size + 100)
            f.write(bytes([byte[0] ^ 0x01]))
        expected = {"access": list(range(0, 20)) + list(range(40, 60))}
        reason = "CRC mismatch"
    elif kind == "bad_magic":
        with open(seg, "r+b") as f:
            f.seek(places[1][1])
            f.write(b"XXXX")
        expected = {"access": list(range(0, 20)) + list(range(40, 60))}
        reason = "bad magic"
    elif kind == "truncated":  # the third frame cut in half
        os.truncate(seg, places[2][1] + segments.FRAME.size + places[2][2] // 2)
        expected = {"access": list(range(0, 40))}
        reason = "truncated"
    elif kind == "missing":
        seg.unlink()
        expected = {"access": []}
        reason = "cannot open"
    else:  # one segment replaced by a symlink to a copy of itself: refused, never followed
        copy = tmp_path / "elsewhere"
        copy.write_bytes(seg.read_bytes())
        seg.unlink()
        seg.symlink_to(copy)
        expected = {"access": []}
        reason = "cannot open"
    counters = Counters("segq2")
    q = PersistentQueue(db, counters=counters)
    got = drain(q)
    assert sorted(got) == expected["access"]
    letters = q.dead_letters()
    lost = 3 - len(expected["access"]) // 20
    assert len(letters) == lost and all(reason in d.reason and d.backend == "queue" for d in letters), letters
    assert sum(d.records for d in letters) == 20 * lost  # every record accounted for: delivered or kept
    assert counters.get("dead_lettered", "queue") == 20 * lost
    assert q.requeue_dead_letters() == 0  # no bytes to send: they stay, with their reason
    assert q.stats().entries == 0
    q.close()


def test_unreferenced_frames_of_a_crash_are_never_a_dangling_row_and_are_cleaned(tmp_path: Path) -> None:
    """Frames are written before the commit that references them: a process killed in between
    leaves bytes nobody refers to (collected at the next open), never a row without its bytes."""
    script = textwrap.dedent("""
        import os, signal, sys
        sys.path.insert(0, sys.argv[1]); sys.path.insert(0, os.path.join(sys.argv[1], "tests"))
        from durable_helpers import entry
        from otel_ext.queue.store import PersistentQueue
        q = PersistentQueue(sys.argv[2])
        q.register_lanes(["main"])
        q.append([entry(list(range(20)), body_bytes=2000)])
        q._segments.write([b"frame nobody refers to" * 1000])  # the commit never happens
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    db = tmp_path / "q.db"
    proc = subprocess.run([sys.executable, "-c", script, ROOT, str(db)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    q = PersistentQueue(db)
    assert sorted(drain(q)) == list(range(20))
    assert q.dead_letters() == []
    q.close()


def test_kill_9_during_appends_with_segments_leaves_every_committed_entry_readable(tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import os, sys
        sys.path.insert(0, sys.argv[1]); sys.path.insert(0, os.path.join(sys.argv[1], "tests"))
        from durable_helpers import entry
        from otel_ext.queue.store import PersistentQueue
        q = PersistentQueue(sys.argv[2], fsync=sys.argv[3])
        q.register_lanes(["main"])
        n = 0
        while True:
            q.append([entry(list(range(n, n + 20)), body_bytes=2000)])
            n += 20
            print(n, flush=True)
    """)
    for fsync in ("process", "always"):
        db = tmp_path / f"q-{fsync}.db"
        proc = subprocess.Popen([sys.executable, "-c", script, ROOT, str(db), fsync], stdout=subprocess.PIPE,
                                text=True)
        assert proc.stdout is not None
        acknowledged = 0
        for line in proc.stdout:
            acknowledged = int(line)
            if acknowledged >= 2000:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        q = PersistentQueue(db)
        got = drain(q)
        assert sorted(got) == list(range(len(got))) and len(got) >= acknowledged
        assert q.dead_letters() == []
        q.close()


def test_overflow_eviction_keeps_the_disk_bounded_and_never_evicts_a_higher_tier(tmp_path: Path) -> None:
    """The backend is down and the queue (4 MiB) overflows; one entry in ten is security and stays,
    so the segments between evicted entries would stay pinned. Segments are sized to the bound (a
    sixteenth) and compacted as the queue goes: the queue's whole disk use (database, WAL, reserve,
    segments) stays within 3x its bound, and every record is delivered or counted as dropped."""
    directory = tmp_path / "q"
    directory.mkdir(mode=0o700)
    limit = 4 * 1024 * 1024
    counters = Counters("segov")
    q = PersistentQueue(directory / "q.db", max_bytes=limit, counters=counters)
    q.register_lanes(["main"])
    security: list[int] = []
    peak = total = 0
    for k in range(600):
        seqs = list(range(k * 20, k * 20 + 20))
        if k % 10 == 0:
            security += seqs
        q.append([big(seqs, "security" if k % 10 == 0 else "access")])
        total += 20
        if k % 20 == 0:
            q.maintain()  # the exporter's housekeeping
        peak = max(peak, sum(f.stat().st_size for f in directory.rglob("*") if f.is_file()))
    assert q.stats().bytes <= limit
    dropped = counters.get("dropped", "access:queue_full")
    assert dropped > 0 and counters.get("dropped", "security:queue_full") == 0
    assert peak <= 3 * limit, f"{peak} bytes of disk for a {limit}-byte queue ({peak / limit:.1f}x)"
    got = drain(q)
    assert set(security) <= set(got)  # every security record kept
    assert len(got) + dropped == total and len(got) == len(set(got))  # each record delivered or counted
    assert q.dead_letters() == []
    q.close()


def test_segment_dir_swapped_for_a_symlink_while_running_is_never_followed(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    q = PersistentQueue(db, counters=Counters("segsw"))
    q.register_lanes(["main"])
    q.append([big(list(range(20)))])
    folder = segments.segment_dir(db)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    victim = elsewhere / "00000099"
    victim.write_bytes(b"somebody else's file with a segment-like name")
    folder.rename(tmp_path / "moved")
    folder.symlink_to(elsewhere)
    q.maintain()
    q.append([big(list(range(20, 40)))])  # keeps writing into the directory it opened, not the link
    got = drain(q)
    q.maintain()
    assert victim.exists() and sorted(os.listdir(elsewhere)) == ["00000099"]
    assert sorted(got) == list(range(40)) and q.dead_letters() == []
    q.close()


def test_refused_segment_dir_is_not_damage_the_entries_wait_until_it_is_put_right(tmp_path: Path) -> None:
    """At open, the segment directory is a symlink (to a copy of itself): nothing is read through
    it, nothing is dead-lettered; the lane's read fails (and says so) and new payloads go inline.
    Once the operator puts the directory back, everything is delivered."""
    db = tmp_path / "q.db"
    q = PersistentQueue(db)
    q.register_lanes(["main"])
    for start in range(0, 60, 20):
        q.append([big(list(range(start, start + 20)))])
    q.close()
    folder = segments.segment_dir(db)
    copy = tmp_path / "copy"
    folder.rename(copy)
    folder.symlink_to(copy)
    listing = sorted(os.listdir(copy))
    q = PersistentQueue(db, counters=Counters("segref"))
    with pytest.raises(QueueError, match="symlink"):
        q.read_after(0, 10_000, 10**9)
    q.append([big(list(range(100, 120)))])  # stored inline meanwhile
    assert q.dead_letters() == [] and q.stats().records == 80
    assert sorted(os.listdir(copy)) == listing  # nothing deleted or written through it
    q.close()
    folder.unlink()
    copy.rename(folder)  # put right
    q = PersistentQueue(db)
    assert sorted(drain(q)) == [*range(60), *range(100, 120)]
    assert q.dead_letters() == []
    q.close()


@pytest.mark.parametrize("mode", [0o750, 0o777])
def test_segment_dir_mode_changed_while_running_loses_nothing_and_appends_go_on(tmp_path: Path, mode: int) -> None:
    """A backup agent makes the directory group-readable, or an operator makes it world-writable:
    reading our own 0600 frames goes on; new payloads go inline while others may write there."""
    db = tmp_path / "q.db"
    q = PersistentQueue(db, counters=Counters("segmode"))
    q.register_lanes(["main"])
    q.append([big(list(range(20)))])
    os.chmod(segments.segment_dir(db), mode)
    q._segments.roll()  # the next write starts a new segment: the directory is checked again
    for start in range(20, 120, 20):
        q.append([big(list(range(start, start + 20)))])  # never refused
    q.close()
    q = PersistentQueue(db)
    assert sorted(drain(q)) == list(range(120))
    assert q.dead_letters() == []
    q.close()
    os.chmod(segments.segment_dir(db), 0o700)


def test_one_foreign_segment_does_not_keep_our_delivered_segments(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    db = tmp_path / "q.db"
    q = PersistentQueue(db)
    q.register_lanes(["main"])
    q.append([big(list(range(20)))])
    q.close()
    q = PersistentQueue(db)  # a second open: a second segment
    q.append([big(list(range(20, 40)))])
    q.close()
    first = seg_files(db)[0]
    os.chown(first, 4242, 4242)
    counters = Counters("segforeign")
    q = PersistentQueue(db, counters=counters)
    got = drain(q)
    assert sorted(got) == list(range(20, 40))
    (letter,) = q.dead_letters()
    assert "not a regular file of ours" in letter.reason and letter.records == 20
    q.maintain()
    assert seg_files(db) == [first]  # ours collected once delivered; the foreign file left alone
    q.close()


def test_segments_of_an_orphan_are_adopted_and_removed_with_it(tmp_path: Path) -> None:
    directory = prepare_dir(tmp_path / "q")
    orphan = claim_new(directory)
    old = PersistentQueue(orphan.db_path)
    old.register_lanes(["main"])
    for start in range(0, 200, 20):
        old.append([big(list(range(start, start + 20)))])
    old.abandon()  # its owner died
    orphan.release()
    mine = claim_new(directory)
    q = PersistentQueue(mine.db_path)
    q.register_lanes(["main"])
    (claimed,) = list(orphans(directory, exclude=mine.db_path))
    result = q.adopt(claimed.db_path)
    assert result.records == 200 and result.damaged is None
    claimed.release(remove=True)
    assert not segments.segment_dir(orphan.db_path).exists() and not orphan.db_path.exists()
    assert sorted(drain(q)) == list(range(200))
    q.close()


def test_orphan_with_a_damaged_segment_adopts_the_rest_and_keeps_a_dead_letter(tmp_path: Path) -> None:
    directory = prepare_dir(tmp_path / "q")
    orphan = claim_new(directory)
    old = PersistentQueue(orphan.db_path)
    old.register_lanes(["main"])
    for start in range(0, 60, 20):
        old.append([big(list(range(start, start + 20)))])
    old.close()
    orphan.release()
    place = _frame_offsets(orphan.db_path)[0]
    with open(segments.segment_dir(orphan.db_path) / f"{place[0]:08d}", "r+b") as f:
        f.seek(place[1] + segments.FRAME.size + 10)
        f.write(b"\xff\xfe")
    mine = claim_new(directory)
    counters = Counters("segad")
    q = PersistentQueue(mine.db_path, counters=counters)
    q.register_lanes(["main"])
    (claimed,) = list(orphans(directory, exclude=mine.db_path))
    result = q.adopt(claimed.db_path)
    claimed.release(remove=True)
    assert result.records == 40 and result.dead_letter_records == 20
    assert counters.get("dead_lettered", "queue") == 20
    (letter,) = q.dead_letters()
    assert "CRC mismatch" in letter.reason and letter.records == 20
    assert sorted(drain(q)) == list(range(20, 60))
    q.close()


@pytest.mark.parametrize("kind", ["bad_header", "truncated"])
def test_quarantine_moves_the_segments_with_the_file_and_salvage_reads_them(tmp_path: Path, kind: str) -> None:
    directory = prepare_dir(tmp_path / "q")
    orphan = claim_new(directory)
    old = PersistentQueue(orphan.db_path)
    old.register_lanes(["main"])
    for start in range(0, 400, 20):
        old.append([big(list(range(start, start + 20)))])
    old.checkpoint()
    old.abandon()
    orphan.release()
    damage(orphan.db_path, kind)
    mine = claim_new(directory)
    q = PersistentQueue(mine.db_path)
    q.register_lanes(["main"])
    (claimed,) = list(orphans(directory, exclude=mine.db_path))
    result = q.adopt(claimed.db_path)
    claimed.release(remove=True)
    assert result.damaged and result.quarantined_to is not None
    assert segments.segment_dir(result.quarantined_to).is_dir()  # the payloads went with the rows
    (listed,) = list_quarantine(directory)
    assert listed.bytes >= sum(p.stat().st_size for p in seg_files(result.quarantined_to))
    got = drain(q)
    assert set(got) <= set(range(400)) and len(got) == len(set(got))  # nothing forged, nothing twice
    if kind == "bad_header":
        assert sorted(got) == list(range(400))
    q.close()


def test_planted_segment_dir_or_foreign_segment_is_refused(tmp_path: Path) -> None:
    directory = prepare_dir(tmp_path / "q")
    # a fresh queue whose .seg name is a planted symlink: payloads stay inline, the target untouched
    claim = claim_new(directory)
    target = tmp_path / "attacker"
    target.mkdir()
    segments.segment_dir(claim.db_path).symlink_to(target)
    q = PersistentQueue(claim.db_path)
    q.register_lanes(["main"])
    q.append([big(list(range(20)))])
    assert list(target.iterdir()) == []
    assert sorted(drain(q)) == list(range(20))
    q.close()
    claim.release(remove=True)
    assert target.is_dir() and not segments.segment_dir(claim.db_path).exists()  # the link went, not the target
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    # an orphan whose segment belongs to someone else is never adopted
    orphan = claim_new(directory)
    old = PersistentQueue(orphan.db_path)
    old.register_lanes(["main"])
    old.append([big(list(range(20)))])
    old.close()
    orphan.release()
    (seg,) = seg_files(orphan.db_path)
    os.chown(seg, 4242, 4242)
    refused: list[tuple[Path, str]] = []
    assert list(orphans(directory, refused=lambda p, why: refused.append((p, why)))) == []
    assert refused == [(seg, "belongs to uid 4242")]


def test_full_disk_on_the_segment_write_is_a_counted_queue_error_and_recovers(tmp_path: Path) -> None:
    with tmpfs("3m") as mnt:
        q = PersistentQueue(mnt / "q.db")
        q.register_lanes(["main"])
        q.append([big(list(range(20)))])
        filler = fill(mnt, leave=20_000)
        refused = 0
        n = 100
        for _ in range(20):
            try:
                q.append([big(list(range(n, n + 20)))])
                n += 20
            except QueueError as exc:
                assert "segment" in str(exc) or "full" in str(exc).lower()
                refused += 1
        assert refused >= 1
        assert q.stats().records == n - 100 + 20  # the totals agree with what was committed
        os.unlink(filler)
        q.append([big(list(range(5000, 5020)))])
        got = drain(q)
        assert sorted(got) == [*range(20), *range(100, n), *range(5000, 5020)]
        assert q.dead_letters() == []
        q.close()


def test_fsync_always_writes_segments_too(tmp_path: Path) -> None:
    q = PersistentQueue(tmp_path / "q.db", fsync="always")
    q.register_lanes(["main"])
    q.append([big(list(range(20))), big(list(range(20, 40)))])
    assert len(seg_files(q.path)) == 1
    q.close()
    q = PersistentQueue(tmp_path / "q.db", fsync="always")
    assert sorted(drain(q)) == list(range(40))
    q.close()



def test_out_of_descriptors_is_not_taken_for_damage(tmp_path: Path) -> None:
    """EMFILE while opening a segment says nothing about its bytes: the read fails with a
    QueueError (the lane tries again later) and the entry is not dead-lettered."""
    import resource

    db = tmp_path / "q.db"
    q = PersistentQueue(db)
    q.register_lanes(["main"])
    q.append([big(list(range(20)))])
    q.close()
    q = PersistentQueue(db)  # nothing in memory: the payload must come from the segment
    q.read_after(0, 1, 1)  # the lanes' read connection is open now (inline heads only would do too)
    q._hot.clear()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowest = os.dup(0)
    os.close(lowest)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest, hard))  # no descriptor left to open
    try:
        with pytest.raises(QueueError, match="payload segment"):
            q.read_after(0, 10_000, 10**9)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert q.dead_letters() == []
    assert sorted(drain(q)) == list(range(20))
    q.close()


def test_upgrading_a_version_1_file_on_a_full_disk_leaves_it_whole_not_quarantined(tmp_path: Path) -> None:
    with tmpfs("8m") as mnt:
        db = mnt / "q-1-old.db"
        _version_1_file(db, entries=60)  # ~2.4 MB of inline payloads: the rebuild needs that again
        before = read_stats(db)
        filler = fill(mnt, leave=150_000)
        with pytest.raises(QueueError, match="cannot upgrade"):
            PersistentQueue(db)
        assert not (mnt / "quarantine").exists() and db.exists()
        assert read_stats(db).records == before.records  # still version 1, whole
        os.unlink(filler)
        q = PersistentQueue(db)
        assert sorted(drain(q)) == list(range(20, 59 * 20))
        q.close()


@pytest.mark.parametrize("bad_size", [2**40, -5])
def test_a_rotten_size_in_one_row_is_a_dead_letter_and_the_lane_goes_on(tmp_path: Path, bad_size: int) -> None:
    db = tmp_path / "q.db"
    q = PersistentQueue(db)
    q.register_lanes(["main"])
    for start in range(0, 60, 20):
        q.append([big(list(range(start, start + 20)))])
    q.close()
    conn = sqlite3.connect(db)
    conn.execute("UPDATE entries SET size = ? WHERE id = 2", (bad_size,))
    conn.commit()
    conn.close()
    q = PersistentQueue(db)
    assert sorted(drain(q)) == [*range(20), *range(40, 60)]
    (letter,) = q.dead_letters()
    assert letter.records == 20 and ("impossible" in letter.reason or "truncated" in letter.reason)
    q.close()


@pytest.mark.parametrize("what", ["directory", "current_file"])
def test_appends_after_the_segments_were_deleted_under_us_are_kept(tmp_path: Path, what: str) -> None:
    """``rm -rf q-*.db.seg`` (or of the segment being written) while the app runs: what was in it is
    gone (dead letters with the reason), but every append acknowledged afterwards must survive a
    restart: never written into an unlinked file."""
    import shutil

    db = tmp_path / "q.db"
    q = PersistentQueue(db, counters=Counters("segrm"))
    q.register_lanes(["main"])
    q.append([big(list(range(20)))])
    if what == "directory":
        shutil.rmtree(segments.segment_dir(db))
    else:
        seg_files(db)[-1].unlink()
    for start in range(20, 120, 20):
        q.append([big(list(range(start, start + 20)))])
    q.close()
    q = PersistentQueue(db)  # the restart: nothing in memory
    assert sorted(drain(q)) == list(range(20, 120))
    (letter,) = q.dead_letters()
    assert letter.records == 20 and "cannot open" in letter.reason
    q.close()


@pytest.mark.parametrize("bad_seg", [0, -1])
def test_a_row_that_lost_its_segment_number_is_a_dead_letter_never_an_empty_delivery(tmp_path: Path,
                                                                                     bad_seg: int) -> None:
    db = tmp_path / "q.db"
    q = PersistentQueue(db)
    q.register_lanes(["main"])
    for start in range(0, 60, 20):
        q.append([big(list(range(start, start + 20)))])
    q.close()
    conn = sqlite3.connect(db)
    conn.execute("UPDATE entries SET seg = ? WHERE id = 2", (bad_seg,))
    conn.commit()
    conn.close()
    q = PersistentQueue(db)
    entries = q.read_after(0, 10_000, 10**9)
    assert all(e.payload for e in entries)  # nothing empty is ever handed to a backend
    assert sorted(drain(q)) == [*range(20), *range(40, 60)]
    (letter,) = q.dead_letters()
    assert letter.records == 20 and "does not match its size" in letter.reason
    q.close()


def test_segments_left_by_an_owner_killed_after_removing_its_file_are_swept(tmp_path: Path) -> None:
    """A drained (or adopted) queue file is removed before its segment directory: a kill -9 in
    between left the directory for good (seen once in a kill storm). The orphan scan removes it once
    no one holds the file's lock, and leaves it while someone does (an owner creating or
    quarantining that file holds it)."""
    import fcntl

    directory = prepare_dir(tmp_path / "q")
    claim = claim_new(directory)
    q = PersistentQueue(claim.db_path)
    q.append([entry(list(range(50)), body_bytes=400)])
    assert segments.segment_dir(claim.db_path).is_dir()
    q.close()
    for suffix in ("", "-wal", "-shm", ".reserve"):  # what release(remove=True) did before the kill
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{claim.db_path}{suffix}")
    claim.forget()  # our claim lets go of the lock ...
    held = os.open(claim.lock_path, os.O_RDWR)
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ... and someone else holds it: left alone
    assert list(orphans(directory)) == []
    assert segments.segment_dir(claim.db_path).is_dir()
    os.close(held)  # the owner is gone (killed): swept
    assert list(orphans(directory)) == []
    assert not segments.segment_dir(claim.db_path).exists() and not claim.lock_path.exists()
    planted = directory / "q-1-deadbeef.db.seg"  # not ours inside: files of another kind are never removed
    planted.mkdir(mode=0o700)
    (planted / "notes.txt").write_text("not a segment")
    assert list(orphans(directory)) == []
    assert (planted / "notes.txt").exists()
