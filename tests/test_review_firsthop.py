"""Adversarial review of the first hop's overflow path (sealed raw frames, worker relief, shutdown
rewrite). Each test is an attack; those that hold stay as guards, those that break a promise are
strict xfails with a one-line reason (the report to the lead names file:line and a fix)."""

from __future__ import annotations

import enum
import os
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
import zlib
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import ReadWriteLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, LogRecordExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from peers import wait_until
from test_spill import Held, Slow, _deferred, _frames, _secret_record, _secrets_of

from otel_ext.export.encoding import encode_log_record
from otel_ext.export.firsthop import FirstHopProcessor, SpillFile
from otel_ext.telemetry import Counters

ROOT = Path(__file__).resolve().parents[1]


def _dropped(counters: Counters) -> int:
    return sum(counters.snapshot().get("dropped", {}).values())


def _names(exporter: InMemoryLogRecordExporter) -> list[str]:
    return [str(r.log_record.event_name) for r in exporter.get_finished_logs()]


def _hop(exporter: LogRecordExporter, path: Path, name: str, **kw: Any) -> FirstHopProcessor:
    deferred = _deferred(exporter)
    return FirstHopProcessor(deferred, path, counters=Counters(name), prepare=deferred.prepare,  # type: ignore[arg-type, attr-defined]
                             **kw)


def _successor(path: Path, name: str) -> tuple[InMemoryLogRecordExporter, Counters]:
    """Adopt whatever is left in ``path``; (exporter, counters) once nothing is left on disk."""
    exporter = InMemoryLogRecordExporter()
    counters = Counters(name)
    hop = FirstHopProcessor(exporter, path, counters=counters, schedule_delay_millis=10)
    try:
        wait_until(lambda: not list(path.glob("spill-*.bin")), 5)
        hop.force_flush(10_000)
    finally:
        hop.shutdown()
    return exporter, counters


def _run_child(code: str, timeout: float = 60, preexec: Any = None) -> subprocess.CompletedProcess[str]:
    head = f"import sys\nsys.path.insert(0, {str(ROOT / 'tests')!r})\n"
    return subprocess.run([sys.executable, "-c", head + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT)}, preexec_fn=preexec)


# --- classification / redaction equality -----------------------------------------------------------

def _varied_record(i: int, value: Any = None) -> ReadWriteLogRecord:
    status = [200, 401, 403, 404, 500, 302][i % 6]
    route = ["/api/login", "/health", "/api/orders", "/admin/users"][i % 4]
    body = f"req {i} {route} password=hunter{i}x token=abcd1234efgh{i} ua=sqlmap/1.7 ' OR 1=1 --" if i % 5 == 0 \
        else f"req {i} done in {i % 97} ms"
    attrs: dict[str, Any] = {"http.route": route, "http.response.status_code": status if value is None else value,
                             "http.request.method": ["GET", "POST"][i % 2], "user.id": f"user{i % 7}",
                             "url.query": f"token=secret{i}&page=2", "client.address": f"10.0.0.{i % 250}",
                             "nested": {"list": [1, "a", b"\x02"], "k": f"sk_live_{i:024d}"}}
    rec = LogRecord(timestamp=1_700_000_000_000_000_000 + i, observed_timestamp=5,
                    severity_text=["INFO", "ERROR"][i % 2],
                    severity_number=[SeverityNumber.INFO, SeverityNumber.ERROR][i % 2], body=body,
                    event_name=f"r{i}", attributes=attrs)
    return ReadWriteLogRecord(rec, resource=Resource({"service.name": "svc"}),
                              instrumentation_scope=InstrumentationScope("shop.api", "1"))


def _through(path: Path, records: list[ReadWriteLogRecord], spill: bool) -> dict[str, bytes]:
    path.mkdir(exist_ok=True)
    held = Held(timeout=30)
    hop = _hop(held, path, f"eq{spill}", max_queue_size=1 if spill else 100_000, max_export_batch_size=1 if spill
               else 512)
    try:
        for item in records:
            hop.on_emit(item)
        if spill:
            assert hop.counters.get("spilled") >= len(records) - 2
        held.release.set()
        assert hop.force_flush(30_000)
    finally:
        hop.shutdown()
    return {str(r.log_record.event_name): encode_log_record(r) for r in held.inner.get_finished_logs()}


def test_spilled_records_leave_byte_for_byte_as_the_ones_that_never_spilled(tmp_path: Path) -> None:
    """Guard: 600 records of every class (secrets, attacks, statuses) through a hop that spills all of
    them raw (sealed, prepared by the worker) and through one that never spills: same OTLP bytes."""
    plain = _through(tmp_path / "a", [_varied_record(i) for i in range(600)], spill=False)
    spilled = _through(tmp_path / "b", [_varied_record(i) for i in range(600)], spill=True)
    assert len(plain) == 600 and set(plain) == set(spilled)
    assert [k for k in plain if plain[k] != spilled[k]] == []
    assert not [k for k, v in spilled.items() if b"hunter" in v or b"sk_live_" in v]


class Colour(str, enum.Enum):
    RED = "red"


def test_one_enum_attribute_does_not_take_its_whole_frame_down(tmp_path: Path) -> None:
    """One record in 300 carries ``HTTPStatus.NOT_FOUND`` (an int subclass marshal refuses):
    ``_repaired`` returns ``"[unencodable dict]"`` for its attribute map (it never raises, so the
    per-key fallback in ``_repaired_rows`` is never used), and ``_Rebuilder.records`` then fails on
    the whole frame: every record of it is counted ``unknown:spill_corrupt`` and lost."""
    held = Held(timeout=30)
    hop = _hop(held, tmp_path, "enum1", max_queue_size=1, max_export_batch_size=1)
    try:
        for i in range(300):
            hop.on_emit(_varied_record(i, HTTPStatus.NOT_FOUND if i == 7 else None))
        held.release.set()
        assert hop.force_flush(30_000)
    finally:
        hop.shutdown()
    assert _dropped(hop.counters) == 0
    assert sorted(_names(held.inner)) == sorted(f"r{i}" for i in range(300))


def test_enum_attribute_values_survive_the_spill_and_keep_the_class(tmp_path: Path) -> None:
    """``http.response.status_code=HTTPStatus.UNAUTHORIZED`` is what Flask/Django code logs. marshal
    refuses int/str subclasses and ``repair_value`` returns them unchanged, so ``_repaired`` replaces
    the value by a marker: the status code is gone and the record is classified without it."""
    values: list[Any] = [HTTPStatus.UNAUTHORIZED, HTTPStatus.INTERNAL_SERVER_ERROR, Colour.RED]
    plain = _through(tmp_path / "a", [_varied_record(i, values[i % 3]) for i in range(300)], spill=False)
    spilled = _through(tmp_path / "b", [_varied_record(i, values[i % 3]) for i in range(300)], spill=True)
    assert len(spilled) == 300
    assert not [k for k, v in spilled.items() if b"[unencodable" in v]
    assert [k for k in plain if plain[k] != spilled[k]] == []


# --- damaged, truncated, planted frames ------------------------------------------------------------

def _dead_spill(path: Path, n: int = 800) -> tuple[Path, int]:
    """A spill file of sealed frames left by a process killed with -9: (file, records on disk)."""
    proc = _run_child(f"""
        import os, signal
        from test_spill import Held, _secret_record, _deferred
        from otel_ext.export.firsthop import FirstHopProcessor
        held = Held()
        deferred = _deferred(held)
        hop = FirstHopProcessor(deferred, {str(path)!r}, max_queue_size=10, max_export_batch_size=10,
                                prepare=deferred.prepare)
        for i in range({n}):
            hop.on_emit(_secret_record(i))
        print(hop._spill_records, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    return next(path.glob("spill-*.bin")), int(proc.stdout.split()[0])


def _frame_offsets(path: Path) -> list[tuple[int, int]]:
    data = path.read_bytes()
    pos, out = 16, []
    while pos + 8 <= len(data):
        length = struct.unpack_from(">I", data, pos)[0] & 0x7FFFFFFF
        out.append((pos, pos + 8 + length))
        pos += 8 + length
    return out


def test_a_truncated_sealed_frame_counts_every_record_it_held(tmp_path: Path) -> None:
    spill, on_disk = _dead_spill(tmp_path)
    _start, end = _frame_offsets(spill)[-1]
    with open(spill, "r+b") as f:
        f.truncate(end - 100)  # the last write torn: its 12-byte clear header (nonce, count) is intact
    exporter, counters = _successor(tmp_path, "trunc")
    assert exporter.get_finished_logs() == ()
    assert _dropped(counters) == on_disk


def test_a_bit_flip_in_our_own_spill_file_loses_only_that_frame_and_counts_it(tmp_path: Path) -> None:
    """A live process: one byte of its first sealed frame rots on disk. The damaged frame is lost
    (counted per record: its clear header says how many); the frames behind it are intact and must
    still be delivered (or at least counted)."""
    held = Held(timeout=30)
    hop = _hop(held, tmp_path, "flip", max_queue_size=10, max_export_batch_size=10)
    try:
        for i in range(1000):
            hop.on_emit(_secret_record(i))
        spill = hop._spill.path  # type: ignore[union-attr]
        offsets = _frame_offsets(spill)
        assert len(offsets) >= 3
        with open(spill, "r+b") as f:
            f.seek(offsets[0][0] + 200)
            byte = f.read(1)
            f.seek(offsets[0][0] + 200)
            f.write(bytes([byte[0] ^ 0x10]))
        held.release.set()
        hop.force_flush(30_000)
    finally:
        hop.shutdown()
    delivered = len(held.inner.get_finished_logs())
    assert delivered >= 1000 - 256  # only the damaged frame may be lost
    assert delivered + _dropped(hop.counters) == 1000


def _plain_frame(rows_from: int, n: int) -> bytes:
    from otel_ext.export.firsthop import _encode_frame, record_to_tuple

    rows = [record_to_tuple(_secret_record(i), 0) for i in range(rows_from, rows_from + n)]
    return _encode_frame([({"service.name": "svc"}, "")], rows)[0]


def _crc_valid(payload: bytes, sealed: bool = False) -> bytes:
    return struct.pack(">II", len(payload) | (1 << 31 if sealed else 0), zlib.crc32(payload)) + payload


@pytest.mark.parametrize("payload", [b"\xe9*\x00\x00\x00", None], ids=["int", "rows-not-a-list"])
def test_a_planted_frame_of_the_wrong_shape_is_counted_never_raises(tmp_path: Path, payload: bytes | None) -> None:
    import marshal

    bad = marshal.dumps(42, 4) if payload is not None else marshal.dumps(([({}, "")], 5), 4)
    planted = SpillFile.create(tmp_path)
    planted.append(_plain_frame(0, 5))
    planted.append(_crc_valid(bad))
    planted.append(_plain_frame(5, 5))
    os.close(planted.fd)  # its owner is gone
    exporter = InMemoryLogRecordExporter()
    counters = Counters("plant")
    hop = FirstHopProcessor(exporter, tmp_path, counters=counters, schedule_delay_millis=10, max_export_batch_size=8)
    try:
        assert wait_until(lambda: counters.get("adopted") >= 5, 10)  # the worker took the file
        for i in range(100, 103):  # a partial batch of live records
            hop.on_emit(_secret_record(i))
        flushed = hop.force_flush(5_000)  # must not raise into the app
    finally:
        hop.shutdown()
    names = set(_names(exporter))
    assert {f"r{i}" for i in range(100, 103)} <= names  # the live records are not held hostage
    assert {f"r{i}" for i in range(5)} <= names
    assert _dropped(counters) >= 1 and flushed


def test_planted_sealed_frames_with_lying_counts_are_bounded_and_the_rest_flows(tmp_path: Path) -> None:
    """Guard: a foreign sealed frame cannot be opened; its clear count is believed only up to its
    length; plain frames behind it are still delivered."""
    planted = SpillFile.create(tmp_path)
    planted.append(_crc_valid(struct.pack(">QI", 1, 0xFFFFFFFF) + b"x" * 40, sealed=True))  # impossible
    path = planted.path
    os.close(planted.fd)
    exporter, counters = _successor(tmp_path, "lie1")
    assert counters.get("dropped", "unknown:spill_corrupt") == 1 and not path.exists()

    planted = SpillFile.create(tmp_path)
    planted.append(_crc_valid(struct.pack(">QI", 1, 30) + b"x" * 40, sealed=True))  # a plausible lie
    planted.append(_plain_frame(0, 5))
    os.close(planted.fd)
    exporter, counters = _successor(tmp_path, "lie2")
    assert counters.get("dropped", "unknown:spill_sealed") == 30
    assert sorted(_names(exporter)) == [f"r{i}" for i in range(5)]


# --- shutdown: timeouts 0 and tiny, emits racing it, force_flush racing it ------------------------

@pytest.mark.parametrize("timeout_ms", [0, 1, 50])
def test_tiny_shutdown_timeouts_lose_nothing(tmp_path: Path, timeout_ms: int) -> None:
    """Guard: the worker is stuck in an export (0.3 s); shutdown with a timeout of 0, 1 or 50 ms
    leaves what it could not export on disk in the clear, and a successor delivers it."""
    held = Held(timeout=0.3)
    hop = _hop(held, tmp_path, f"t{timeout_ms}", max_queue_size=10, max_export_batch_size=10)
    for i in range(700):
        hop.on_emit(_secret_record(i))
    hop.shutdown(timeout_millis=timeout_ms)
    for spill in tmp_path.glob("spill-*.bin"):
        blob = spill.read_bytes()
        assert not [s for i in range(700) for s in _secrets_of(i) if s in blob]
        assert not [1 for sealed, _ in _frames(spill) if sealed]
    exporter, counters = _successor(tmp_path, f"s{timeout_ms}")
    names = set(_names(held.inner)) | set(_names(exporter))
    assert names == {f"r{i}" for i in range(700)}
    assert _dropped(hop.counters) == 0 and _dropped(counters) == 0


def test_shutdown_with_timeout_zero_returns_promptly_while_the_worker_unspills(tmp_path: Path) -> None:
    """An exporter taking 0.2 s per batch of 10 (a slow peer). The worker is taking a spilled frame
    back (256 records = 26 exports) when shutdown(timeout_millis=0) starts: shutdown waits for all of
    it before it even calls ``exporter.shutdown()``."""
    held = Held(timeout=0.2)
    hop = _hop(held, tmp_path, "tz", max_queue_size=10, max_export_batch_size=10)
    for i in range(1000):
        hop.on_emit(_secret_record(i))
    hop._worker.join(0.5)  # the worker is now inside _export_rows of the first frame
    started = time.monotonic()
    hop.shutdown(timeout_millis=0)
    elapsed = time.monotonic() - started
    held.release.set()
    assert elapsed < 2, f"shutdown(0) took {elapsed:.1f} s"


def test_records_emitted_while_shutdown_runs_are_delivered_or_counted(tmp_path: Path) -> None:
    """Several app threads keep logging while another thread shuts the provider down (a threaded
    server at exit). Every record must be delivered, left on disk, or counted (``shutdown``)."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # make thread switches inside on_emit likely
    lost_runs = []
    try:
        for run in range(4):
            where = tmp_path / f"run{run}"
            where.mkdir()
            exporter = InMemoryLogRecordExporter()
            hop = _hop(exporter, where, f"race{run}", max_queue_size=64, max_export_batch_size=16)
            stop = threading.Event()
            counts = [0, 0, 0]

            def emit(t: int, hop: FirstHopProcessor = hop, stop: threading.Event = stop,
                     counts: list[int] = counts) -> None:
                i = 0
                while not stop.is_set() and i < 3000:
                    hop.on_emit(_secret_record(t * 100_000 + i))
                    i += 1
                counts[t] = i

            threads = [threading.Thread(target=emit, args=(t,)) for t in range(3)]
            for th in threads:
                th.start()
            time.sleep(0.05)
            hop.shutdown(timeout_millis=2000 if run % 2 else 0)
            time.sleep(0.01)
            stop.set()
            for th in threads:
                th.join()
            succ, counters = _successor(where, f"rs{run}")
            delivered = set(_names(exporter)) | set(_names(succ))
            accounted = len(delivered) + _dropped(hop.counters) + _dropped(counters)
            if accounted != sum(counts):
                lost_runs.append((run, sum(counts) - accounted))
    finally:
        sys.setswitchinterval(old)
    assert lost_runs == []


# --- fork -----------------------------------------------------------------------------------------

def test_fork_with_sealed_frames_pending_reuses_no_key_and_loses_nothing(tmp_path: Path) -> None:
    """Guard: the parent has sealed frames on disk and raw rows pending when it forks. The child
    seals with a key of its own (same nonces, different key: no keystream reuse), never touches the
    parent's file, and a second child killed -9 right after fork takes nothing with it: the
    parent's file stays locked (not adoptable) while the parent lives. All 1200 records arrive."""
    import json

    proc = _run_child(f"""
        import json, os, signal
        from test_spill import Held, _secret_record, _deferred
        from otel_ext.export.firsthop import FirstHopProcessor, SpillFile
        held = Held()
        deferred = _deferred(held)
        hop = FirstHopProcessor(deferred, {str(tmp_path)!r}, max_queue_size=10, max_export_batch_size=10,
                                prepare=deferred.prepare)
        for i in range(600):
            hop.on_emit(_secret_record(i))
        parent_key, parent_path = hop._seal_key, hop._spill.path
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            for i in range(1000, 1600):
                hop.on_emit(_secret_record(i))
            info = dict(key_differs=hop._seal_key != parent_key, path_differs=hop._spill.path != parent_path,
                        nonce=hop._seal_nonce)
            held.release.set()
            hop.force_flush(20_000)
            hop.shutdown(20_000)
            info["names"] = [r.log_record.event_name for r in held.inner.get_finished_logs()]
            info["dropped"] = hop.counters.snapshot().get("dropped", {{}})
            os.write(w, json.dumps(info).encode())
            os._exit(0)
        os.close(w)
        data = b""
        while chunk := os.read(r, 1 << 20):
            data += chunk
        os.waitpid(pid, 0)
        child = json.loads(data)
        pid2 = os.fork()
        if pid2 == 0:
            os.kill(os.getpid(), signal.SIGKILL)
        os.waitpid(pid2, 0)
        child["adoptable_after_kill"] = SpillFile.adopt(parent_path) is not None
        held.release.set()
        hop.force_flush(20_000)
        hop.shutdown(20_000)
        child["parent_names"] = [r.log_record.event_name for r in held.inner.get_finished_logs()]
        child["parent_dropped"] = hop.counters.snapshot().get("dropped", {{}})
        print(json.dumps(child))
    """)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["key_differs"] and info["path_differs"] and info["nonce"] >= 2
    assert not info["adoptable_after_kill"]
    exporter, counters = _successor(tmp_path, "forks")
    names = set(info["names"]) | set(info["parent_names"]) | set(_names(exporter))
    assert names == {f"r{i}" for i in [*range(600), *range(1000, 1600)]}
    assert not info["dropped"] and not info["parent_dropped"] and _dropped(counters) == 0
    assert not {f"r{i}" for i in range(600)} & set(info["names"])  # the child never sent the parent's rows


# --- kill -9 during the shutdown rewrite -------------------------------------------------------------

@pytest.mark.parametrize("kill_after", [1, 300, 700])
def test_kill9_during_the_shutdown_rewrite_loses_nothing_and_leaks_nothing(tmp_path: Path, kill_after: int) -> None:
    """Guard: the process is killed while shutdown re-prepares its sealed frames into a fresh file
    (``prepare`` is the only hook: it kills the process at its n-th call during shutdown). The
    adopter delivers or counts every record (the old file's sealed frames as spill_sealed; records
    that made it into the fresh file may also arrive: at-least-once), and no secret is on disk."""
    proc = _run_child(f"""
        import os, signal
        from test_spill import Held, _secret_record, _deferred
        from otel_ext.export.firsthop import FirstHopProcessor
        held = Held(timeout=0.02)
        deferred = _deferred(held)
        calls = [0]
        armed = [False]
        def prepare(item):
            if armed[0]:
                calls[0] += 1
                if calls[0] == {kill_after}:
                    os.kill(os.getpid(), signal.SIGKILL)
            deferred.prepare(item)
        hop = FirstHopProcessor(deferred, {str(tmp_path)!r}, max_queue_size=10, max_export_batch_size=10,
                                prepare=prepare)
        for i in range(1000):
            hop.on_emit(_secret_record(i))
        hop._worker.join(0.1)
        print(hop._spill_records, flush=True)
        armed[0] = True
        hop.shutdown(timeout_millis=0)
        print("survived", flush=True)
    """)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    for spill in tmp_path.glob("spill-*.bin"):
        blob = spill.read_bytes()
        plain = b"".join(p for sealed, p in _frames(spill) if not sealed)
        assert not [s for i in range(1000) for s in _secrets_of(i) if s in plain], spill
        assert b"hunter" not in blob
    exporter, counters = _successor(tmp_path, f"k{kill_after}")
    sealed = counters.get("dropped", "unknown:spill_sealed")
    delivered = set(_names(exporter))
    # what was on disk is delivered or counted (what was only in memory dies uncounted, as documented)
    assert len(delivered) + sealed >= int(proc.stdout.split()[0])
    assert counters.get("dropped", "unknown:spill_corrupt") == 0


# --- disk full (RLIMIT_FSIZE) during sealed writes and during the shutdown rewrite -----------------

@pytest.mark.parametrize("release", [True, False], ids=["drained", "shutdown-rewrite"])
def test_a_full_disk_during_sealed_writes_and_the_rewrite_counts_every_record(tmp_path: Path, release: bool) -> None:
    """Guard: files may not grow past 240 kB (RLIMIT_FSIZE; Python ignores SIGXFSZ, writes fail with
    EFBIG, a short write is cut back). Sealed frames that do not fit are counted (disk_full); with the
    exporter never released, shutdown's rewrite in the clear (prepared rows are larger) hits the limit
    too. Every record is delivered, left on disk (the successor delivers it) or counted."""
    import json

    proc = _run_child(f"""
        import json, resource
        from test_spill import Held, _secret_record, _deferred
        from otel_ext.export.firsthop import FirstHopProcessor
        held = Held(timeout=0.05)
        deferred = _deferred(held)
        hop = FirstHopProcessor(deferred, {str(tmp_path)!r}, max_queue_size=10, max_export_batch_size=10,
                                prepare=deferred.prepare)
        resource.setrlimit(resource.RLIMIT_FSIZE, (240_000, 240_000))
        for i in range(3000):
            hop.on_emit(_secret_record(i))
        if {release}:
            held.release.set()
            hop.force_flush(30_000)
        hop.shutdown(timeout_millis=0)
        print(json.dumps(dict(names=[r.log_record.event_name for r in held.inner.get_finished_logs()],
                              dropped=hop.counters.snapshot().get("dropped", {{}}))))
    """)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sum(info["dropped"].values()) > 0 and all("disk_full" in k for k in info["dropped"])
    for spill in tmp_path.glob("spill-*.bin"):
        assert not [1 for sealed, _ in _frames(spill) if sealed]
        assert b"hunter" not in spill.read_bytes()
    exporter, counters = _successor(tmp_path, f"full{release}")
    delivered = set(info["names"]) | set(_names(exporter))
    assert len(delivered) + sum(info["dropped"].values()) + _dropped(counters) == 3000


# --- secrets in every field, on disk at many moments of a burst -------------------------------------

def _everywhere_record(i: int) -> ReadWriteLogRecord:
    rec = LogRecord(timestamp=1_700_000_000_000_000_000 + i, observed_timestamp=5, severity_text="ERROR",
                    severity_number=SeverityNumber.ERROR, event_name=f"e{i} sk_live_{i:024d}EVENT",
                    body={"msg": f"login {i} password=hunter{i}x", "card": "4111 1111 1111 1111"},
                    attributes={"http.route": "/api/login", "http.response.status_code": 401,
                                "api_key": f"sk_live_{i:024d}ATTR", "url.query": f"token=secret{i}&page=2",
                                "nested": {"authorization": f"Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig{i}xyzxyzxyz"}})
    return ReadWriteLogRecord(rec, resource=Resource({"service.name": "svc", "db.password": "sk_live_RESOURCE0000000000000"}),
                              instrumentation_scope=InstrumentationScope("shop.api", "1", None,
                                                                         {"api_key": "sk_live_SCOPE000000000000000000"}))


def _burst_snapshots(tmp_path: Path) -> tuple[list[bytes], Slow, FirstHopProcessor]:
    slow = Slow(0.03)
    hop = _hop(slow, tmp_path, "every", max_queue_size=1024, max_export_batch_size=64)
    snapshots: list[bytes] = []
    try:
        for i in range(4000):
            hop.on_emit(_everywhere_record(i))
            if i % 100 == 99:
                snapshots.extend(p.read_bytes() for p in tmp_path.glob("spill-*.bin"))
        hop.shutdown(timeout_millis=0)  # and what the shutdown rewrite leaves behind
        snapshots.extend(p.read_bytes() for p in tmp_path.glob("spill-*.bin"))
    finally:
        hop.shutdown()
    assert hop.counters.get("spilled_by_worker") > 0 and hop.counters.get("spilled") > hop.counters.get(
        "spilled_by_worker")  # both kinds of frame were written
    return snapshots, slow, hop


def test_body_and_attribute_secrets_never_reach_the_spill_file_during_a_burst(tmp_path: Path) -> None:
    """Guard: 40 looks at the spill file during a burst in which the app thread spills sealed raw
    frames and the worker spills prepared plain ones, plus the file the shutdown rewrite leaves."""
    snapshots, _, _ = _burst_snapshots(tmp_path)
    assert len(snapshots) >= 10
    for blob in snapshots:
        assert b"hunter" not in blob and b"ATTR" not in blob and b"token=secret" not in blob
        assert b"4111 1111" not in blob and b"eyJhbGciOiJIUzI1NiJ9" not in blob


def test_event_name_scope_and_resource_secrets_never_reach_the_spill_file(tmp_path: Path) -> None:
    """Was a strict xfail (redaction covered body and attributes only); redaction now reaches the
    event name and the resource's and scope's attributes."""
    snapshots, _, _ = _burst_snapshots(tmp_path)
    leaked = {field for blob in snapshots for field in (b"EVENT", b"sk_live_SCOPE", b"sk_live_RESOURCE") if field in blob}
    assert leaked == set()


# --- the drop policy with sealed frames ---------------------------------------------------------------

def test_drop_policy_drops_only_low_tiers_counted_per_class_and_seals_the_rest(tmp_path: Path) -> None:
    """Guard: ``OTEL_EXT_OVERLOAD=drop`` with the pipeline's app-thread classifier: a record that
    finds the buffer full is dropped (counted ``<class>:buffer_full``) only if access, performance or
    application; error and security records go to disk sealed, then arrive labelled and redacted."""
    from otel_ext.classify.processor import EventClassifierProcessor

    reference = EventClassifierProcessor()
    classes = {}
    for i in range(600):
        item = _varied_record(i)
        classes[f"r{i}"] = reference.classify_record(item.log_record, "shop.api")
    held = Held(timeout=30)
    deferred = _deferred(held)
    hop = FirstHopProcessor(deferred, tmp_path, max_queue_size=10, max_export_batch_size=10,  # type: ignore[arg-type]
                            counters=Counters("drop"), prepare=deferred.prepare, overload="drop",  # type: ignore[attr-defined]
                            classify=EventClassifierProcessor().classify_record)
    try:
        for i in range(600):
            hop.on_emit(_varied_record(i))
        spill = hop._spill.path  # type: ignore[union-attr]
        assert all(sealed for sealed, _ in _frames(spill))
        assert b"hunter" not in spill.read_bytes()
        held.release.set()
        assert hop.force_flush(30_000)
    finally:
        hop.shutdown()
    delivered = set(_names(held.inner))
    missing = {n for n in classes if n not in delivered}
    assert {classes[n] for n in missing} <= {"access", "performance", "application"}
    assert {n for n in classes if classes[n] in ("error", "security")} <= delivered
    by_class: dict[str, int] = {}
    for n in missing:
        by_class[f"{classes[n]}:buffer_full"] = by_class.get(f"{classes[n]}:buffer_full", 0) + 1
    assert hop.counters.snapshot().get("dropped", {}) == by_class
    assert len(missing) > 50 and len(delivered) + len(missing) == 600
    assert not [r for r in held.inner.get_finished_logs() if "hunter" in str(r.log_record.body)]


# --- hostile record contents on the raw path -----------------------------------------------------------

class RaisingIter(list):  # type: ignore[type-arg]
    def __iter__(self):  # type: ignore[no-untyped-def]
        raise RuntimeError("no iteration")


class RaisingRepr:
    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def _deep(levels: int, leaf: Any = "x") -> Any:
    value = leaf
    for _ in range(levels):
        value = {"k": [value]}
    return value


def _hostile_values() -> list[Any]:
    return [
        "A" * 8_000_000 + " password=hunter0x",  # a huge body
        b"\xff\x00raw bytes password=hunter0x", bytearray(b"ba"), memoryview(b"mv"),
        "lone \ud800 surrogate password=hunter0x", {"k\udc80ey": "v\ud800"},
        RaisingIter([1, 2]), RaisingRepr(), _deep(100_000), {1, 2}, frozenset({3}), 3 + 4j, 2 ** 200,
        float("nan"), float("-inf"), ..., (lambda: 0).__code__, iter([1]), object(),
    ]


def test_hostile_bodies_on_the_raw_path_never_raise_and_are_delivered_or_counted(tmp_path: Path) -> None:
    """Guard: every hostile body, spilled raw in sealed frames next to ordinary records, never raises
    into the app thread, never takes a neighbour down, and no secret of it reaches the disk."""
    held = Held(timeout=30)
    hop = _hop(held, tmp_path, "hostile", max_queue_size=4, max_export_batch_size=4)
    values = _hostile_values()
    n = 600
    try:
        for i in range(n):
            item = _secret_record(i)
            if i % 10 == 5:
                item.log_record.body = values[(i // 10) % len(values)]
            if i % 10 == 6:
                item.log_record.event_name = f"r{i}"
                item.log_record.severity_text = "WARN\ud800"
            hop.on_emit(item)  # never raises
            if i % 100 == 99:
                for spill in tmp_path.glob("spill-*.bin"):
                    assert b"hunter" not in spill.read_bytes()
        held.release.set()
        assert hop.force_flush(60_000)
    finally:
        hop.shutdown()
    delivered = set(_names(held.inner))
    assert _dropped(hop.counters) == 0 and delivered == {f"r{i}" for i in range(n)}
    assert not [r for r in held.inner.get_finished_logs() if "hunter" in str(r.log_record.body)[-200:]]


@pytest.mark.parametrize("value", [_deep(5_000), HTTPStatus.OK, Colour.RED], ids=["deep", "intenum", "strenum"])
def test_one_hostile_attribute_value_never_takes_its_frame_down(tmp_path: Path, value: Any) -> None:
    held = Held(timeout=30)
    hop = _hop(held, tmp_path, "hattr", max_queue_size=4, max_export_batch_size=4)
    try:
        for i in range(300):
            item = _secret_record(i)
            if i == 11:
                item.log_record.attributes._dict["payload"] = value  # type: ignore[union-attr]  # as set_many does
            hop.on_emit(item)
        held.release.set()
        assert hop.force_flush(30_000)
    finally:
        hop.shutdown()
    assert _dropped(hop.counters) == 0 and set(_names(held.inner)) == {f"r{i}" for i in range(300)}


# --- force_flush during a burst; a spill directory shared by two live processes ----------------------

def test_force_flush_during_a_burst_never_raises_and_nothing_is_lost(tmp_path: Path) -> None:
    """Guard: one thread bursts (overflowing a tiny buffer: sealed frames, pending raw rows) while
    another calls force_flush over and over (it opens and prepares sealed frames itself)."""
    slow = Slow(0.002)
    hop = _hop(slow, tmp_path, "ff", max_queue_size=16, max_export_batch_size=8)
    errors: list[BaseException] = []
    done = threading.Event()

    def flusher() -> None:
        while not done.is_set():
            try:
                hop.force_flush(50)
            except BaseException as exc:  # noqa: BLE001 - the point of the test
                errors.append(exc)

    th = threading.Thread(target=flusher)
    th.start()
    try:
        for i in range(3000):
            hop.on_emit(_secret_record(i))
    finally:
        done.set()
        th.join()
    try:
        assert hop.force_flush(30_000)
    finally:
        hop.shutdown()
    assert errors == []
    assert _dropped(hop.counters) == 0 and sorted(_names(slow.inner)) == sorted(f"r{i}" for i in range(3000))
    assert not [r for r in slow.inner.get_finished_logs() if "hunter" in str(r.log_record.body)]


def test_a_live_processs_spill_file_is_never_adopted_by_its_neighbour(tmp_path: Path) -> None:
    """Guard: two processes share one queue directory; the second starts while the first has sealed
    frames on disk. It must not take (nor count as sealed-and-dead) the first one's live file."""
    import json

    code = f"""
        import json, sys, time
        from test_spill import Held, _secret_record, _deferred
        from otel_ext.export.firsthop import FirstHopProcessor
        held = Held()
        deferred = _deferred(held)
        hop = FirstHopProcessor(deferred, {str(tmp_path)!r}, max_queue_size=10, max_export_batch_size=10,
                                prepare=deferred.prepare)
        for i in range(600):
            hop.on_emit(_secret_record(i))
        print("ready", flush=True)
        sys.stdin.readline()
        held.release.set()
        hop.force_flush(20_000)
        hop.shutdown()
        print(json.dumps(dict(names=[r.log_record.event_name for r in held.inner.get_finished_logs()],
                              dropped=hop.counters.snapshot().get("dropped", {{}}))), flush=True)
    """
    head = f"import sys\nsys.path.insert(0, {str(ROOT / 'tests')!r})\n"
    first = subprocess.Popen([sys.executable, "-c", head + textwrap.dedent(code)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert first.stdout is not None and first.stdout.readline().strip() == "ready"
        exporter = InMemoryLogRecordExporter()
        counters = Counters("neighbour")
        neighbour = FirstHopProcessor(exporter, tmp_path, counters=counters, schedule_delay_millis=10)
        time.sleep(0.3)  # its worker has looked for orphans by now
        assert neighbour._adopted == [] and _dropped(counters) == 0
        neighbour.shutdown()
        out, err = first.communicate("go\n", timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    info = json.loads(out.strip().splitlines()[-1])
    assert sorted(info["names"]) == sorted(f"r{i}" for i in range(600)) and not info["dropped"], err
    assert exporter.get_finished_logs() == ()


def test_force_flush_racing_shutdown_never_raises(tmp_path: Path) -> None:
    """An app thread calls force_flush while the worker is inside a slow export; another thread shuts
    the provider down meanwhile. Whichever gets ``_export_lock`` first, force_flush must not raise."""
    errors: list[BaseException] = []
    for run in range(25):  # the lock goes to either waiter: shutdown wins it in about 1 run in 5
        if errors:
            break
        where = tmp_path / f"run{run}"
        where.mkdir()
        held = Held(timeout=30)
        hop = _hop(held, where, f"ffs{run}", max_queue_size=10, max_export_batch_size=10)
        for i in range(300):
            hop.on_emit(_secret_record(i))
        assert wait_until(lambda hop=hop: hop._export_lock.locked(), 5)  # type: ignore[misc]

        def flush(hop: FirstHopProcessor = hop) -> None:
            try:
                hop.force_flush(10_000)
            except BaseException as exc:  # noqa: BLE001 - the point of the test
                errors.append(exc)

        flusher = threading.Thread(target=flush)
        flusher.start()
        time.sleep(0.02)  # force_flush is waiting for the lock
        closer = threading.Thread(target=hop.shutdown, kwargs={"timeout_millis": 50})
        closer.start()
        time.sleep(0.1)  # shutdown's join timed out: it waits for the lock too
        held.release.set()
        flusher.join(30)
        closer.join(30)
    assert errors == []
