"""Helpers for the durable-path fault tests: a real small tmpfs, OTLP payloads that carry a
sequence number, queue files left behind by a process killed with SIGKILL, and damage done to
real SQLite files on disk."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

from otel_ext.queue.ownership import prepare_dir
from otel_ext.queue.store import Entry, NewEntry, PersistentQueue

ROOT = str(Path(__file__).resolve().parents[1])


def payload(seqs: list[int], body_bytes: int = 200) -> bytes:
    records = [LogRecord(body=AnyValue(string_value="x" * body_bytes),
                         attributes=[KeyValue(key="seq", value=AnyValue(int_value=s))]) for s in seqs]
    return ExportLogsServiceRequest(resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=records)])]
                                    ).SerializeToString()


def entry(seqs: list[int], event_class: str = "access", body_bytes: int = 200) -> NewEntry:
    tier = {"access": 0, "error": 1, "security": 2}[event_class]
    return NewEntry(tier, len(seqs), {event_class: len(seqs)}, payload(seqs, body_bytes))


def seqs_of(payloads: Iterable[bytes]) -> list[int]:
    """The ``seq`` attributes of every record in these OTLP payloads, in order."""
    out: list[int] = []
    for p in payloads:
        request = ExportLogsServiceRequest.FromString(p)
        out += [a.value.int_value for rl in request.resource_logs for sl in rl.scope_logs
                for r in sl.log_records for a in r.attributes if a.key == "seq"]
    return out


def entry_seqs(entries: Iterable[Entry]) -> list[int]:
    return seqs_of(e.payload for e in entries)


@contextlib.contextmanager
def append_in_progress(q: PersistentQueue) -> Iterator[None]:
    """Another thread holds ``q``'s writer lock (as an append does) until the block ends."""
    held, release = threading.Event(), threading.Event()

    def appender() -> None:
        with q._lock:
            held.set()
            release.wait(10)

    worker = threading.Thread(target=appender)
    worker.start()
    assert held.wait(10)
    try:
        yield
    finally:
        release.set()
        worker.join(10)


@contextlib.contextmanager
def tmpfs(size: str) -> Iterator[Path]:
    """A real tmpfs of ``size`` (e.g. "3m"), unmounted afterwards. Skips the test if not root."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = Path(tempfile.mkdtemp(prefix="otel-ext-tmpfs-"))
    os.chmod(mnt, 0o700)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        os.rmdir(mnt)
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
        with contextlib.suppress(OSError):
            os.rmdir(mnt)


def fill(directory: Path, leave: int = 0) -> Path:
    """Fill the file system of ``directory`` with one filler file, leaving about ``leave`` bytes."""
    filler = directory / "filler"
    with open(filler, "wb") as f:
        chunk = b"\0" * 65536
        while True:
            free = os.statvfs(directory).f_bavail * os.statvfs(directory).f_frsize
            if free <= leave:
                break
            try:
                f.write(chunk[: max(4096, min(len(chunk), free - leave))])
                f.flush()
            except OSError:
                break
    return filler


ORPHAN_WRITER = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, sys.argv[1])
    sys.path.insert(0, os.path.join(sys.argv[1], "tests"))
    from durable_helpers import entry
    from otel_ext.queue.ownership import claim_new, prepare_dir
    from otel_ext.queue.store import PersistentQueue
    claim = claim_new(prepare_dir(sys.argv[2]))
    q = PersistentQueue(claim.db_path)
    q.register_lanes(["main"])
    total, per = int(sys.argv[3]), int(sys.argv[4])
    for start in range(0, total, per):
        q.append([entry(list(range(start, min(total, start + per))))])
    if sys.argv[5] == "checkpoint":
        q.checkpoint()
    print(claim.db_path, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def orphan_file(directory: Path, records: int = 2000, per_entry: int = 10, checkpoint: bool = False) -> Path:
    """A queue file whose owner was killed with SIGKILL after committing ``records`` records."""
    proc = subprocess.run([sys.executable, "-c", ORPHAN_WRITER, ROOT, str(directory), str(records), str(per_entry),
                           "checkpoint" if checkpoint else "wal"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    return Path(proc.stdout.strip())


def damage(db: Path, kind: str) -> None:
    """Damage a queue file on disk the way a disk, a crash or an operator would."""
    wal = Path(f"{db}-wal")
    if kind == "truncated":
        os.truncate(db, db.stat().st_size // 2 + 100)
    elif kind == "bad_header":
        with open(db, "r+b") as f:
            f.write(b"NOT SQLITE AT ALL")
    elif kind == "bad_page":
        size = db.stat().st_size
        with open(db, "r+b") as f:
            for offset in range(4096 * 3, size, 4096 * 7):  # garbage over one page in seven, from page 4
                f.seek(offset)
                f.write(os.urandom(4096))
    elif kind == "bad_wal":
        size = wal.stat().st_size
        with open(wal, "r+b") as f:
            f.seek(size // 3)
            data = bytearray(f.read(64))
            f.seek(size // 3)
            f.write(bytes(b ^ 0xFF for b in data))
    elif kind == "truncated_wal":
        os.truncate(wal, wal.stat().st_size * 2 // 3 + 17)
    elif kind == "cut_wal_no_shm":
        # cut right after a commit frame about half way, and lose the -shm index too: what remains
        # is a sound, shorter WAL; only the owner's .seq witness knows more was committed
        data = wal.read_bytes()
        page_size = int.from_bytes(data[8:12], "big")
        frame = 24 + page_size
        commits = [end for end in range(32 + frame, len(data) + 1, frame)
                   if int.from_bytes(data[end - frame + 4:end - frame + 8], "big")]
        assert len(commits) >= 3, "the orphan's WAL needs several transactions"
        os.truncate(wal, commits[len(commits) // 2])
        os.unlink(f"{db}-shm")
    else:  # pragma: no cover
        raise ValueError(kind)


def damage_segment(db: Path, kind: str) -> None:
    """Damage the payload segments of a queue file (schema 2): ``segment_flipped`` (one byte in
    every 64 KiB of the first segment), ``segment_truncated`` (the last segment cut in half),
    ``segment_missing`` (the first segment deleted)."""
    segs = sorted(Path(f"{db}.seg").iterdir())
    assert segs, "the orphan has no payload segments (entries too small?)"
    if kind == "segment_flipped":
        size = segs[0].stat().st_size
        with open(segs[0], "r+b") as f:
            for offset in range(1000, size, 65536):
                f.seek(offset)
                byte = f.read(1)
                f.seek(offset)
                f.write(bytes([byte[0] ^ 0x20]))
    elif kind == "segment_truncated":
        os.truncate(segs[-1], segs[-1].stat().st_size // 2)
    elif kind == "segment_missing":
        segs[0].unlink()
    else:  # pragma: no cover
        raise ValueError(kind)


STORM_WRITER = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, sys.argv[1])
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from otel_ext.export import FailoverLogExporter
    print("ready", flush=True)  # adoption of the earlier writers' files starts now
    exp = FailoverLogExporter([sys.argv[2]], queue_dir=sys.argv[3], shutdown_timeout=2)
    provider = LoggerProvider()
    provider.add_log_record_processor(BatchLogRecordProcessor(exp, schedule_delay_millis=20,
                                      max_export_batch_size=200, max_queue_size=100_000))
    logger = provider.get_logger("chaos")
    tag, i, worst = sys.argv[4], 0, 0.0
    body = "chaos record" + "x" * int(os.environ.get("STORM_BODY_BYTES", "0"))  # 400: entries in segments
    drain = tag == "drain"
    while not drain:
        for _ in range(50):
            t = time.perf_counter()
            logger.emit(body=body, severity_number=SeverityNumber.INFO,
                        attributes={"seq": f"{tag}-{i}", "labels.event_class": "access"})
            worst = max(worst, time.perf_counter() - t)
            i += 1
        provider.force_flush(10_000)  # everything emitted so far is durable: acknowledged
        print(f"acked {tag} {i} {worst * 1000:.3f}", flush=True)
        time.sleep(0.005)
    ok = exp.force_flush(60_000)
    print(f"drained {ok}", flush=True)
    exp.shutdown()
""")


def storm(queue_dir: Path, writers: int, writers_backend: str | None, drain_backend: str,
          code: str = ROOT, seed: int = 7, env: dict[str, str] | None = None) -> tuple[set[str], float]:
    """Writer processes one after another on ``queue_dir``, each killed with SIGKILL at a random
    moment after its imports (adoption of the earlier writers' files included), then one drain
    process. ``writers_backend`` None: a port nobody listens on. ``env``: extra variables of every
    process. Returns (acknowledged record ``seq`` values, worst emit latency in ms)."""
    from peers import free_port

    rng = random.Random(seed)
    directory = prepare_dir(queue_dir)
    target = writers_backend or f"otlp+grpc://127.0.0.1:{free_port()}?name=down"
    proc_env = {**os.environ, **(env or {})}
    acked: set[str] = set()
    worst = 0.0
    for n in range(writers):
        proc = subprocess.Popen([sys.executable, "-c", STORM_WRITER, code, target, str(directory), f"w{n}"],
                                stdout=subprocess.PIPE, text=True, env=proc_env)
        assert proc.stdout is not None
        first = proc.stdout.readline()  # imports done: adoption, then logging
        time.sleep(rng.uniform(0.0, 1.0))
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(10)
        lines = [line.split() for line in (first + out).splitlines() if line.startswith("acked")]
        if lines:
            acked.update(f"w{n}-{i}" for i in range(int(lines[-1][2])))
            worst = max([worst] + [float(x[3]) for x in lines])
    done = subprocess.run([sys.executable, "-c", STORM_WRITER, code, drain_backend, str(directory), "drain"],
                          capture_output=True, text=True, timeout=120, env=proc_env)
    assert "drained True" in done.stdout, done.stdout + done.stderr
    return acked, worst
