"""The first hop: from the logging handler to the exporter, with no silent drop.

:class:`FirstHopProcessor` takes the place of the SDK's ``BatchLogRecordProcessor`` in front of our
exporter. The SDK processor keeps at most ``max_queue_size`` records in memory and silently evicts
the oldest when a burst outruns its worker thread; that was where records died (issue 11).

Mechanism — a bounded in-memory buffer that *spills* to disk, chosen because:

- the app thread must stay as fast as stock OTel during a burst (emit p99 within 1.2x), so it may
  not wait for the worker (back-pressure would make every emit of a burst as slow as the worker:
  the worker, not the app, is the slow side, ~2-5x the app's per-record cost);
- during a burst, the worker relieves a buffer past three quarters full itself: it classifies and redacts
  (``prepare``) the oldest records and spills them in frames of up to 256, which costs it about half
  of exporting them, and exports them after the burst. So the buffer fills up only when a burst
  outruns even that;
- a record that finds the buffer full costs the app thread a tuple copy (~2 µs) and, once per 256
  records, one ``marshal`` + seal + ``write``: it is *not* prepared there. Classification and
  redaction are regex passes, and every RE2 match releases the GIL, which the busy worker then
  holds for up to a switch interval: an app thread that prepared its own overflow waited for the
  worker several times per log call (emit p99 1.3-1.4x stock in a 60,000-record burst, p50 2x);
- the disk budget is the queue's (``OTEL_EXT_QUEUE_MAX_BYTES``), so a burst larger than every
  buffer is still delivered, only later.

Overload policy (``OTEL_EXT_OVERLOAD``):

- ``spill`` (default): a record that finds the buffer full is spilled; nothing is dropped while the
  spill file has room. When the spill file nears its bound, classes go in tier order: access,
  performance and application records are dropped beyond 80 % of it, error beyond 90 %, security
  only at 100 % (reason ``spill_full``).
- ``drop``: a record that finds the buffer full is dropped if its class is access, performance or
  application (reason ``buffer_full``); error and security records are still spilled.

Every record that does not reach the exporter is counted per ``<class>:<reason>`` in
:data:`FIRST_HOP_COUNTERS` (``otel_ext.first_hop.dropped``), shown by ``stats()`` and summarised on
stderr at most once a minute. The class of an overflowing record is computed on the app thread only
when it decides something (``drop`` policy, or spill file past 80 %).

Spill files (``spill-<pid>-<rand>.bin`` in the queue directory, 0600, held by an exclusive
``flock``) are a header with the consumed offset plus length- and CRC-framed ``marshal`` lists of
plain record tuples, truncated once consumed. No secret reaches them in the clear:

- frames the worker writes hold prepared records (in deferred mode, ``configure()`` passes the
  deferred stage's classify + redact as ``prepare``): what reaches the disk is what would reach
  the queue;
- frames holding records the app thread spilled unprepared are *sealed*: XORed with a SHAKE-128
  keystream of a 256-bit key drawn at start (a new one after fork) and a per-frame nonce. The key
  never leaves the process; the worker opens and prepares those records when it takes them back.
  At shutdown, what is left of them is prepared and the file rewritten in the clear.

A spill file whose owner died (lock free) is adopted by the next first hop that starts in the same
directory, and processed from its consumed offset (at-least-once, like the queue; the record uid is
assigned before spilling, so Elasticsearch replays stay idempotent). Sealed frames of a process
that was killed cannot be opened by anyone: their records are counted as dropped
(``unknown:spill_sealed``), like the in-memory buffer's records, which die with it uncounted.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import inspect
import logging
import marshal
import os
import secrets
import struct
import sys
import threading
import time
import weakref
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import attach, detach, set_value
from opentelemetry.sdk._logs import LogRecordLimits, LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import TraceFlags

from otel_ext._attrs import read_view, set_many
from otel_ext._fork import after_fork_in_child
from otel_ext._sdk_compat import SUPPRESS_INSTRUMENTATION_KEY
from otel_ext.export.encoding import repair_value
from otel_ext.telemetry import Counters, register_counters, register_gauge

_logger = logging.getLogger(__name__)

FIRST_HOP_COUNTERS = register_counters(Counters("first_hop"), {
    "dropped": ("event_class", "reason"), "spilled": (), "spilled_by_worker": (), "unspilled": (), "adopted": ()})
"""``dropped`` per ``<class>:<reason>`` (``buffer_full``, ``spill_full``, ``disk_full``, ``shutdown``,
``spill_corrupt``, ``spill_sealed``: sealed by a process that died, ``unencodable``), ``spilled``
(records that took the spill path: found the buffer full, or taken from a buffer past 3/4 full by
the worker), ``spilled_by_worker`` (the latter part), ``unspilled`` (spilled records handed to the
exporter), ``adopted`` (records taken over from a dead process's spill file)."""

OVERLOAD_POLICIES = ("spill", "drop")
TIER_BY_CLASS = {"access": 0, "performance": 0, "application": 0, "error": 1, "security": 2}
# fraction of the spill bound each tier may fill: security and error are the last to go
_TIER_SHARE = (0.8, 0.9, 1.0)
_CLASS_ATTR = "labels.event_class"
_UID_ATTR = "log.record.uid"
_MAGIC = b"OXSP0001"
_HEADER = struct.Struct(">8sQ")  # magic, consumed offset
_FRAME = struct.Struct(">II")  # payload length (top bit: sealed), crc32 of the payload
_SEALED = 1 << 31
_SEAL = struct.Struct(">QI")  # a sealed payload starts with its nonce and its record count (in clear)
_SPILL_FRAME_RECORDS = 256
_MAX_FRAME = 256 * 1024 * 1024
_PAUSE_S = 0.0002  # how long the worker steps aside for a busy app thread (see FirstHopProcessor.pause)

_LIVE: weakref.WeakSet[FirstHopProcessor] = weakref.WeakSet()


def _gauge(field: str) -> list[tuple[float, dict[str, str]]]:
    return [(float(getattr(p, field)), {}) for p in list(_LIVE)]


register_gauge("first_hop.buffered", "{record}", lambda: _gauge("buffered"))
register_gauge("first_hop.spill_backlog", "{record}", lambda: _gauge("spill_backlog"))
register_gauge("first_hop.spill_bytes", "By", lambda: _gauge("spill_bytes"))


def parse_overload(text: str | None) -> str:
    value = (text or "spill").strip().lower()
    if value not in OVERLOAD_POLICIES:
        raise ValueError(f"OTEL_EXT_OVERLOAD: use one of {', '.join(OVERLOAD_POLICIES)}, got {text!r}")
    return value


# --- record <-> plain tuple ------------------------------------------------------------------------

def record_to_tuple(item: ReadWriteLogRecord, resource_index: int) -> tuple[Any, ...]:
    rec = item.log_record
    scope = item.instrumentation_scope
    attrs = rec.attributes
    dropped = attrs.dropped if isinstance(attrs, BoundedAttributes) else 0
    return (
        rec.timestamp, rec.observed_timestamp, rec.trace_id or 0, rec.span_id or 0, int(rec.trace_flags or 0),
        rec.severity_text, rec.severity_number.value if rec.severity_number is not None else None,
        rec.body, dict(read_view(attrs)), dropped, rec.event_name,
        None if scope is None else (scope.name, scope.version, scope.schema_url,
                                    dict(scope.attributes) if scope.attributes else None),
        resource_index,
    )


def _keystream_xor(key: bytes, nonce: int, data: bytes) -> bytes:
    """``data`` XOR SHAKE-128(key || nonce): the stream cipher of sealed frames (stdlib only; a
    nonce is never reused under one key)."""
    stream = hashlib.shake_128(key + nonce.to_bytes(8, "big")).digest(len(data))
    return (int.from_bytes(data, "little") ^ int.from_bytes(stream, "little")).to_bytes(len(data), "little")


def _repaired_rows(rows: list[tuple[Any, ...]]) -> tuple[list[tuple[Any, ...]], int]:
    """``rows`` made encodable one by one; a row that cannot be (a container whose iteration
    raises, a structure nested too deep) is left out: (rows, how many were left out)."""
    out: list[tuple[Any, ...]] = []
    for row in rows:
        try:
            # key by key: one value that cannot be kept costs that value, never its neighbours
            fixed_attrs = {_repaired_key(k): _repaired(v) for k, v in dict.items(row[8])}
            scope = row[11]
            if scope is not None:
                scope = (_repaired(scope[0]), _repaired(scope[1]), _repaired(scope[2]),
                         None if scope[3] is None else {_repaired_key(k): _repaired(v) for k, v in scope[3].items()})
            fixed = (*row[:5], _repaired(row[5]), row[6], _repaired(row[7]), fixed_attrs, row[9],
                     _repaired(row[10]), scope, row[12])
            marshal.dumps(fixed, 4)
        except Exception:  # noqa: BLE001 - nothing left to try
            continue
        out.append(fixed)
    return out, len(rows) - len(out)


def _repaired_key(key: Any) -> str:
    try:
        text = repair_value(key if isinstance(key, str) else str(key))
    except Exception:  # noqa: BLE001 - a key whose __str__ raises
        return f"<unprintable {type(key).__name__}>"
    return text if isinstance(text, str) else str(text)


def _repaired(value: Any) -> Any:
    """``repair_value``, or a marker naming the type when even that fails (a structure nested too
    deep for it, a mapping whose iteration raises): the record is kept, that value is not."""
    try:
        fixed = repair_value(value)
        marshal.dumps(fixed, 4)
        return fixed
    except Exception:  # noqa: BLE001 - RecursionError, a raising __iter__/items(), ...
        return f"[unencodable {type(value).__name__}]"


def _encode_frame(resources: list[tuple[dict[str, Any], str]], rows: list[tuple[Any, ...]],
                  seal: tuple[bytes, int] | None = None) -> tuple[bytes, bool, int]:
    """The frame, whether its rows had to be repaired (then they are no longer exactly what
    ``prepare`` redacted: a foreign object became its ``str()``) and how many rows could not be
    written at all. ``seal`` (key, nonce): encrypt the payload (rows the app thread spilled before
    any redaction). The frame carries only the resources its rows refer to (renumbered): a plain
    frame never holds the resource of a record that was not prepared, and frames do not grow with
    the number of resources the process has seen."""
    left_out = 0
    used: dict[int, int] = {}
    local: list[tuple[Any, ...]] = []
    for row in rows:
        index = row[-1]
        mine = used.get(index)
        if mine is None:
            mine = used[index] = len(used)
        local.append(row if mine == index else (*row[:-1], mine))
    rows = local
    resources = [resources[index] for index in used]
    try:
        payload = marshal.dumps((resources, rows), 4)
        repaired = False
    except Exception:  # noqa: BLE001 - an exotic value or a lone surrogate: repair and retry
        rows, left_out = _repaired_rows(rows)
        resources = [(repair_value(a), s) for a, s in resources]
        payload = marshal.dumps((resources, rows), 4)
        repaired = True
    flag = 0
    if seal is not None:
        key, nonce = seal
        payload = _SEAL.pack(nonce, len(rows)) + _keystream_xor(key, nonce, payload)
        flag = _SEALED
    if len(payload) > _MAX_FRAME:
        raise ValueError(f"a spill frame of {len(payload)} bytes")
    return _FRAME.pack(len(payload) | flag, zlib.crc32(payload)) + payload, repaired, left_out


class DamagedFrame(ValueError):
    """A frame that fails its checks. ``end``: where it ends if its length is plausible (the next
    frame may start there), else None; ``records``: its clear record count when it is sealed."""

    def __init__(self, reason: str, end: int | None, records: int | None = None) -> None:
        super().__init__(reason)
        self.end = end
        self.records = records


class SealedFrame(ValueError):
    """A sealed frame whose key is not ours (its process died with it): ``records`` are unreadable."""

    def __init__(self, records: int, end: int) -> None:
        super().__init__(f"{records} records sealed by a process that is gone")
        self.records = records
        self.end = end


class _Rebuilder:
    """Turns plain tuples back into ``ReadWriteLogRecord``s, sharing Resource/scope objects."""

    def __init__(self) -> None:
        self._scopes: dict[Any, InstrumentationScope] = {}
        self._limits = LogRecordLimits()

    def records_counted(self, resources: list[Any], rows: list[Any]) -> tuple[list[ReadWriteLogRecord], int]:
        """The records of ``rows``, and how many rows could not be rebuilt (left out, for the
        caller to count: one bad row never takes its frame-mates with it)."""
        built_resources = [Resource(attrs or {}, schema or None) for attrs, schema in resources]
        out: list[ReadWriteLogRecord] = []
        for row in rows:
            try:
                out.append(self._record(row, built_resources))
            except Exception:  # noqa: BLE001 - a row of the wrong shape (planted, or a bug)
                continue
        return out, len(rows) - len(out)

    def _record(self, row: Any, built_resources: list[Resource]) -> ReadWriteLogRecord:
        limits = self._limits
        (ts, observed, trace_id, span_id, flags, sev_text, sev_num, body, attrs, dropped, event_name,
         scope, resource_index) = row
        rec = LogRecord.__new__(LogRecord)
        rec.timestamp, rec.observed_timestamp = ts, observed
        rec.context = None  # type: ignore[assignment]
        rec.trace_id, rec.span_id, rec.trace_flags = trace_id, span_id, TraceFlags(flags)
        rec.severity_text = sev_text
        rec.severity_number = SeverityNumber(sev_num) if sev_num is not None else None
        rec.body, rec.event_name, rec.exception = body, event_name, None
        bounded = BoundedAttributes(maxlen=limits.max_log_record_attributes, immutable=False,
                                    max_value_len=limits.max_log_record_attribute_length,
                                    extended_attributes=True)
        bounded._dict.update(attrs)
        bounded.dropped = dropped
        rec.attributes = bounded
        item = ReadWriteLogRecord.__new__(ReadWriteLogRecord)
        item.log_record = rec
        item.resource = built_resources[resource_index]
        item.instrumentation_scope = self._scope(scope)
        item.limits = limits
        return item

    def _scope(self, scope: Any) -> InstrumentationScope | None:
        if scope is None:
            return None
        key = (scope[0], scope[1], scope[2], tuple(sorted((scope[3] or {}).items())) if scope[3] else None)
        built = self._scopes.get(key)
        if built is None:
            if len(self._scopes) > 4096:
                self._scopes.clear()
            built = InstrumentationScope(scope[0], scope[1], scope[2], scope[3])
            self._scopes[key] = built
        return built


# --- spill file ------------------------------------------------------------------------------------

class SpillFile:
    """One append-only spill file, owned through an exclusive ``flock`` on the file itself.

    Writers append whole frames with one ``write``; the reader advances a consumed offset kept in
    the header (``pwrite``), and truncates the file once everything written was consumed.
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd
        self.size = os.fstat(fd).st_size
        if self.size < _HEADER.size:
            os.pwrite(fd, _HEADER.pack(_MAGIC, _HEADER.size), 0)
            self.size = _HEADER.size
            self.consumed = _HEADER.size
        else:
            magic, consumed = _HEADER.unpack(os.pread(fd, _HEADER.size, 0))
            if magic != _MAGIC:
                raise OSError(f"{path}: not an otel-ext spill file")
            self.consumed = min(max(consumed, _HEADER.size), self.size)

    @classmethod
    def create(cls, directory: Path) -> SpillFile:
        """A new spill file, locked and with its header *before* its name becomes visible: an
        adopter (another process, or our own worker looking for orphans) can never take a live
        file in the instant between its creation and its lock."""
        stem = f"spill-{os.getpid()}-{secrets.token_hex(4)}"
        tmp = directory / f".{stem}.tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            spill = cls(tmp, fd)
            path = directory / f"{stem}.bin"
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            os.close(fd)
            raise
        spill.path = path
        return spill

    @classmethod
    def adopt(cls, path: Path) -> SpillFile | None:
        """Open and lock ``path`` if its owner is gone and it is ours to take; else None."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if st.st_uid != os.getuid() or st.st_mode & 0o077:
                os.close(fd)
                return None
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return cls(path, fd)
        except OSError:
            os.close(fd)
            return None

    @property
    def pending_bytes(self) -> int:
        return self.size - self.consumed

    def append(self, frame: bytes) -> None:
        written = os.pwrite(self.fd, frame, self.size)
        if written != len(frame):
            os.ftruncate(self.fd, self.size)  # never leave half a frame behind
            raise OSError(f"short write to {self.path}")
        self.size += written

    def read_frame(self, key: bytes | None = None) -> tuple[Any, int, bool] | None:
        """The next unconsumed frame as (decoded payload, end offset, sealed), None at the end.
        ``key``: the key of this process's sealed frames.

        Raises :class:`SealedFrame` for a sealed frame ``key`` cannot open (the caller counts its
        records and goes on at its end) and :class:`DamagedFrame` for a frame that fails its checks
        or does not decode to ``(resources, rows)`` lists."""
        if self.consumed + _FRAME.size > self.size:
            return None
        word, crc = _FRAME.unpack(os.pread(self.fd, _FRAME.size, self.consumed))
        sealed = bool(word & _SEALED)
        length = word & ~_SEALED
        end = self.consumed + _FRAME.size + length
        count = None
        if sealed and self.consumed + _FRAME.size + _SEAL.size <= self.size:
            _nonce, count = _SEAL.unpack(os.pread(self.fd, _SEAL.size, self.consumed + _FRAME.size))
            count = count if count <= length else None
        if length > _MAX_FRAME or end > self.size:
            raise DamagedFrame("truncated frame", None, count)
        payload = os.pread(self.fd, length, self.consumed + _FRAME.size)
        if len(payload) != length or zlib.crc32(payload) != crc:
            raise DamagedFrame("frame checksum mismatch", end, count)
        if sealed:
            if length < _SEAL.size:
                raise DamagedFrame("truncated sealed frame", end)
            nonce, records = _SEAL.unpack_from(payload)
            if records > length:  # a row takes more than one byte: a count no frame can hold
                raise DamagedFrame("sealed frame with an impossible record count", end)
            if key is None:
                raise SealedFrame(records, end)
            payload = _keystream_xor(key, nonce, payload[_SEAL.size:])
        try:
            decoded = marshal.loads(payload)
            resources, rows = decoded
            if not isinstance(resources, list) or not isinstance(rows, list):
                raise TypeError(f"{type(resources).__name__}, {type(rows).__name__}")
        except (ValueError, EOFError, TypeError) as exc:
            raise DamagedFrame(f"a frame that does not decode to records ({exc})", end, count) from None
        return (resources, rows), end, sealed

    def mark_consumed(self, offset: int) -> None:
        self.consumed = offset
        if self.consumed >= self.size:  # all done: reclaim the space
            os.ftruncate(self.fd, _HEADER.size)
            self.size = self.consumed = _HEADER.size
        os.pwrite(self.fd, _HEADER.pack(_MAGIC, self.consumed), 0)

    def close(self, remove: bool) -> None:
        if remove:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.fd = -1


# --- the processor ---------------------------------------------------------------------------------

class FirstHopProcessor(LogRecordProcessor):
    """Batches records for ``exporter`` on a worker thread; never drops one silently.

    A record handed to :meth:`on_emit` is exported, spilled to disk and exported later, or counted
    in ``FIRST_HOP_COUNTERS`` as deliberately dropped per class and reason (see module docstring).
    ``on_emit`` never raises and never waits for the worker.
    """

    def __init__(
        self,
        exporter: LogRecordExporter,
        spill_dir: str | os.PathLike[str],
        *,
        max_queue_size: int = 16384,
        max_export_batch_size: int = 512,
        schedule_delay_millis: float = 100,
        overload: str = "spill",
        spill_max_bytes: int = 256 * 1024 * 1024,
        classify: Callable[[Any, str], str | None] | None = None,
        assign_uid: Callable[[], str] | None = None,
        prepare: Callable[[Any], None] | None = None,
        counters: Counters = FIRST_HOP_COUNTERS,
        report_interval: float = 60.0,
        report_stream: Any = None,
    ) -> None:
        self.exporter = exporter
        self.spill_dir = Path(spill_dir)
        self.max_queue_size = max(1, max_queue_size)
        self.batch_size = max(1, min(max_export_batch_size, self.max_queue_size))
        self._pause_below = self.max_queue_size // 2
        # past this the worker spills instead of exporting (half full measured worse: at a paced
        # rate just above the worker's, it spilled most records it could have exported in time)
        self._relieve_above = self.max_queue_size * 3 // 4
        self.delay = schedule_delay_millis / 1000
        self.overload = parse_overload(overload)
        self.spill_max_bytes = spill_max_bytes
        self.classify = classify
        self.assign_uid = assign_uid
        self.prepare = prepare
        self.counters = counters
        self.report_interval = report_interval
        self.report_stream = report_stream
        self._rebuilder = _Rebuilder()
        self._init_state()
        _LIVE.add(self)
        after_fork_in_child(self._after_fork_in_child)

    def _init_state(self) -> None:
        self._pid = os.getpid()
        self._buffer: deque[ReadWriteLogRecord] = deque()
        self._wake = threading.Event()
        self._export_lock = threading.Lock()
        self._spill_lock = threading.Lock()
        self._pending: list[tuple[Any, ...]] = []  # spilled rows not yet written
        self._pending_raw = False  # some of them were spilled by the app thread, unprepared
        self._seal_key = os.urandom(32)  # never leaves this process (a child makes its own)
        self._seal_nonce = 0
        self._resources: list[tuple[dict[str, Any], str]] = []
        self._resource_ids: dict[int, int] = {}
        self._resource_refs: list[Resource | None] = []
        self._spill: SpillFile | None = None
        self._spill_records = 0  # records written to our spill file and not yet consumed
        self._adopted: list[SpillFile] = []
        self._unprepared_ends: set[int] = set()  # end offsets of our frames not as ``prepare`` left them
        self._frame_records: dict[int, int] = {}  # end offset of each of our unconsumed frames -> records
        self._closed = False
        self._shutdown = False
        self._emits = self._emits_seen = 0
        self._last_report = time.monotonic()
        self._reported: dict[str, int] = {}
        self._worker = threading.Thread(name="OtelExtFirstHop", target=self._run, daemon=True)
        self._worker.start()

    def _after_fork_in_child(self) -> None:
        if self._shutdown:
            return
        spill = self._spill
        if spill is not None:  # the parent's file: leave it to the parent
            with contextlib.suppress(OSError):
                os.close(spill.fd)
        for adopted in self._adopted:
            with contextlib.suppress(OSError):
                os.close(adopted.fd)
        self._init_state()

    # --- app thread ------------------------------------------------------------------------------

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        try:
            if self._shutdown:
                self._count_drop([log_record], "shutdown")
                return
            if self._pid != os.getpid():
                self._after_fork_in_child()
            self._emits += 1
            buffer = self._buffer
            if len(buffer) < self.max_queue_size:
                buffer.append(log_record)
                if len(buffer) >= self.batch_size and not self._wake.is_set():
                    self._wake.set()
                return
            self._overflow(log_record)
        except Exception:  # noqa: BLE001 - never raise into the application
            self.counters.add("dropped", "unknown:internal")

    def _class_of(self, item: ReadWriteLogRecord) -> str:
        record = item.log_record
        existing = read_view(record.attributes).get(_CLASS_ATTR)
        if isinstance(existing, str) and existing in TIER_BY_CLASS:
            return existing
        if self.classify is not None:
            scope = item.instrumentation_scope
            found = self.classify(record, scope.name if scope is not None else "")
            if found in TIER_BY_CLASS:
                return found
        return "application"

    def _overflow(self, item: ReadWriteLogRecord) -> None:
        event_class: str | None = None
        if self.overload == "drop":
            event_class = self._class_of(item)
            if TIER_BY_CLASS[event_class] == 0:
                self.counters.add("dropped", f"{event_class}:buffer_full")
                return
        spill = self._spill
        used = (spill.pending_bytes if spill is not None else 0)
        if used > self.spill_max_bytes * _TIER_SHARE[0]:
            event_class = event_class or self._class_of(item)
            if used > self.spill_max_bytes * _TIER_SHARE[TIER_BY_CLASS[event_class]]:
                self.counters.add("dropped", f"{event_class}:spill_full")
                return
        if self.assign_uid is not None and _UID_ATTR not in read_view(item.log_record.attributes):
            set_many(item.log_record, {_UID_ATTR: self.assign_uid()})
        # not prepared here: classifying and redacting take regex passes, and each one hands the GIL
        # to the busy worker (the app thread then waits for it). The row goes to disk sealed instead,
        # and the worker prepares it when it takes it back.
        with self._spill_lock:
            if self._closed:  # shutdown() wrote its last frame while we waited for the lock
                self.counters.add("dropped", "unknown:shutdown")
                return
            self.counters.add("spilled")
            self._pending.append(self._row(item))
            if self.prepare is not None:
                self._pending_raw = True
            if len(self._pending) >= _SPILL_FRAME_RECORDS:
                self._write_pending()
        if not self._wake.is_set():
            self._wake.set()

    def _prepare(self, item: ReadWriteLogRecord) -> bool:
        """Classify and redact a record about to be spilled (``prepare``): never raw to disk.
        False (counted as dropped) in the unexpected case that ``prepare`` raised."""
        if self.prepare is not None:
            try:
                self.prepare(item)
            except Exception:  # noqa: BLE001 - prepare fails closed itself; this is a last guard
                self.counters.add("dropped", "unknown:prepare_failed")
                return False
        return True

    def _row(self, item: ReadWriteLogRecord) -> tuple[Any, ...]:
        """The spill tuple of ``item`` (spill lock held)."""
        resource = item.resource
        index = self._resource_ids.get(id(resource))
        if index is None:
            res = resource if resource is not None else Resource.get_empty()
            self._resource_refs.append(resource)  # keeps id() stable while indexed
            self._resources.append((dict(res.attributes), res.schema_url or ""))
            index = len(self._resources) - 1
            self._resource_ids[id(resource)] = index
        return record_to_tuple(item, index)

    def _write_pending(self) -> None:
        """Write the pending rows as one frame, sealed if any was not prepared (spill lock held)."""
        rows, self._pending = self._pending, []
        raw, self._pending_raw = self._pending_raw, False
        self._write_rows(rows, raw)
        if len(self._resources) > 64:  # no pending row refers to the table now (frames carry their own):
            # an app that makes a Resource per record must not grow it, nor keep them all alive
            self._resources.clear()
            self._resource_ids.clear()
            self._resource_refs.clear()

    def _write_rows(self, rows: list[tuple[Any, ...]], raw: bool) -> None:
        """Write ``rows`` as one frame; ``raw``: some were not prepared, seal it (spill lock held)."""
        if not rows:
            return
        try:
            if self._spill is None:
                self._spill = SpillFile.create(self.spill_dir)
            seal = None
            if raw:
                self._seal_nonce += 1
                seal = (self._seal_key, self._seal_nonce)
            frame, repaired, left_out = _encode_frame(self._resources, rows, seal)
            self._spill.append(frame)
            self._frame_records[self._spill.size] = len(rows) - left_out
            if repaired or raw:
                self._unprepared_ends.add(self._spill.size)
            if left_out:
                self.counters.add("dropped", "unknown:unencodable", left_out)
                self._note_error(f"{left_out} spilled records could not be written (values that cannot "
                                 "be made encodable)")
        except Exception as exc:  # noqa: BLE001 - disk full, I/O error: count per class, never raise
            try:
                items, bad = self._rebuilder.records_counted(self._resources, rows)
                self._count_drop(items, "disk_full")
                if bad:
                    self.counters.add("dropped", "unclassified:disk_full", bad)
            except Exception:  # noqa: BLE001
                self.counters.add("dropped", "unclassified:disk_full", len(rows))
            self._note_error(f"could not spill {len(rows)} records to {self.spill_dir}: {exc}")
            return
        self._spill_records += len(rows) - left_out

    def _open_sealed_frames(self) -> None:
        """At shutdown (both locks held): our sealed frames' key dies with this process, so what is
        left of them is prepared now and our spill file rewritten in the clear for the process that
        adopts it. Like the buffer's last records, this is not bounded by the shutdown timeout."""
        spill = self._spill
        if spill is None or not any(end > spill.consumed for end in self._unprepared_ends):
            return
        try:
            fresh = SpillFile.create(self.spill_dir)
        except OSError as exc:
            self._note_error(f"could not rewrite {spill.path} in the clear: {exc}")
            return
        records = 0
        fresh_frames: dict[int, int] = {}
        try:
            while (frame := spill.read_frame(self._seal_key)) is not None:
                (resources, rows), end, sealed = frame
                if sealed:
                    rebuilt, bad = self._rebuilder.records_counted(resources, rows)
                    if bad:
                        self.counters.add("dropped", "unknown:spill_corrupt", bad)
                    rows = [self._row(item) for item in rebuilt if self._prepare(item)]
                    resources = self._resources
                if rows:
                    try:
                        frame_bytes, _, left_out = _encode_frame(resources, rows)
                        fresh.append(frame_bytes)
                        fresh_frames[fresh.size] = len(rows) - left_out
                        records += len(rows) - left_out
                        if left_out:
                            self.counters.add("dropped", "unknown:unencodable", left_out)
                    except OSError as exc:  # disk full: counted, as any spill write that fails
                        self.counters.add("dropped", "unknown:disk_full", len(rows))
                        self._note_error(f"could not rewrite {len(rows)} spilled records: {exc}")
                self._frame_records.pop(end, None)
                spill.consumed = end
        except (ValueError, EOFError, TypeError, OSError) as exc:  # count what is left behind, once
            lost = sum(n for e, n in self._frame_records.items() if e > spill.consumed) or 1
            self.counters.add("dropped", "unknown:spill_corrupt", lost)
            self._note_error(f"damaged spill frame in {spill.path} at shutdown: {exc}; {lost} records lost")
        spill.mark_consumed(spill.size)
        spill.close(remove=True)
        self._spill, self._spill_records = fresh, records
        self._unprepared_ends.clear()
        self._frame_records = fresh_frames

    # --- worker ----------------------------------------------------------------------------------

    def pause(self) -> None:
        """Called by the worker's stages every few records (``DeferredProcessingExporter.pause``):
        if the app emitted since the last call and the buffer is less than half full, step aside
        for ~0.2 ms. A thread that waits for the GIL gets it only after the holder's whole switch
        interval (5 ms); without these pauses every such hand-over stalls an app log call for that
        long, and during a burst that is often enough to show in its emit p99. With the buffer
        half full or more the worker does not pause: it then competes as the SDK's worker does."""
        emits = self._emits
        if emits != self._emits_seen:
            self._emits_seen = emits
            if len(self._buffer) < self._pause_below:
                time.sleep(_PAUSE_S)

    def _run(self) -> None:
        self._adopt_orphans()
        while not self._shutdown:
            woken = self._wake.wait(self.delay)
            self._wake.clear()
            if self._shutdown:
                break
            try:
                self._drain(deadline=None, everything=not woken)  # a partial batch waits one delay
                self._maybe_report()
            except Exception as exc:  # noqa: BLE001 - the worker must outlive any bug: records keep flowing
                self._note_error(f"worker error (continuing): {type(exc).__name__}: {exc}")
                time.sleep(self.delay)
        try:
            self._drain(deadline=self._shutdown_deadline, everything=True)
        except Exception as exc:  # noqa: BLE001 - what is left is spilled by shutdown()
            self._note_error(f"final drain failed: {type(exc).__name__}: {exc}")

    def _export(self, batch: Sequence[ReadWriteLogRecord], prepared: bool = False) -> bool:
        """``prepared``: every record of ``batch`` went through ``prepare`` and is unchanged since
        (an exporter with ``export_prepared``, the deferred stage, then does not redact it again)."""
        token = attach(set_value(SUPPRESS_INSTRUMENTATION_KEY, True))
        try:
            export = getattr(self.exporter, "export_prepared", None) if prepared else None
            if export is None:
                export = self.exporter.export
            return export(batch) == LogRecordExportResult.SUCCESS  # type: ignore[arg-type]
        except Exception:  # the exporter counts its own failures; never kill the worker
            _logger.exception("otel-ext: exporter raised")
            return False
        finally:
            detach(token)

    def _drain(self, deadline: float | None, everything: bool) -> None:
        """Export full batches from memory, then spilled frames; ``everything``: partial batches too.

        In the worker's own loop (``deadline`` None), a buffer past three quarters full is relieved by the
        worker itself (:meth:`_spill_from_buffer`) before the app thread would have to spill."""
        with self._export_lock:
            if self._closed:  # shutdown() came first: nothing left to drain, the files are closed
                return
            buffer = self._buffer
            # (only with room for more than a batch below half full: else it would take back at once
            # what it just spilled)
            relieve = deadline is None and self.overload == "spill" and self._pause_below > self.batch_size
            while deadline is None or time.monotonic() < deadline:
                if deadline is None and self._shutdown:  # shutdown() waits: its own drain has a deadline
                    return
                n = len(buffer)
                if relieve and n > self._relieve_above and self._spill_from_buffer(n - self._relieve_above):
                    continue
                if n >= self.batch_size:
                    self._export([buffer.popleft() for _ in range(self.batch_size)])
                elif not self._unspill_one():
                    if n and everything:
                        self._export([buffer.popleft() for _ in range(n)])
                        continue
                    return

    def _spill_from_buffer(self, excess: int) -> bool:
        """Worker, during a burst: spill up to one frame of the oldest buffered records (classified
        and redacted here, so the frame is plain and a successor can adopt it) instead of exporting
        them; they are exported after the burst. Spilling costs about half of what the full export
        path costs, so the buffer drains faster and the app thread finds it full less often. False
        (export instead) when the spill file is past the share its lowest tier may fill."""
        spill = self._spill
        if spill is not None and spill.pending_bytes > self.spill_max_bytes * _TIER_SHARE[0]:
            return False
        buffer = self._buffer
        take = min(_SPILL_FRAME_RECORDS, excess, len(buffer))
        if take <= 0:
            return False
        items = [buffer.popleft() for _ in range(take)]
        ready: list[ReadWriteLogRecord] = []
        assign_uid = self.assign_uid
        for item in items:
            if assign_uid is not None and _UID_ATTR not in read_view(item.log_record.attributes):
                set_many(item.log_record, {_UID_ATTR: assign_uid()})
            if self._prepare(item):
                ready.append(item)
        self.counters.add("spilled", "", len(ready))
        self.counters.add("spilled_by_worker", "", len(ready))
        with self._spill_lock:  # a frame of its own: the app's pending rows may be raw
            self._write_rows([self._row(item) for item in ready], raw=False)
        return True

    def _has_spill(self) -> bool:
        return bool(self._pending) or self._spill_records > 0 or bool(self._adopted)

    def _unspill_one(self) -> bool:
        """Hand one frame of spilled records to the exporter; False when there was none."""
        with self._spill_lock:
            pending, self._pending = self._pending, []
            raw, self._pending_raw = self._pending_raw, False
            resources = list(self._resources)
        if pending:  # never reached the disk: export directly (prepared unless the app spilled some)
            self._export_rows(resources, pending, prepared=self.prepare is not None and not raw)
            return True
        for source in [self._spill, *self._adopted]:
            if source is None:
                continue
            try:
                with self._spill_lock:
                    frame = source.read_frame(self._seal_key if source is self._spill else None)
                    # our own frames were prepared, unless sealed or repaired; an adopted file: maybe not
                    prepared = (self.prepare is not None and source is self._spill and frame is not None
                                and frame[1] not in self._unprepared_ends)
                    if frame is not None:
                        self._unprepared_ends.discard(frame[1])
            except SealedFrame as sealed:  # raw rows of a process that died: unreadable, counted
                self.counters.add("dropped", "unknown:spill_sealed", sealed.records)
                self._note_error(f"{sealed.records} records in {source.path} were sealed by a process that "
                                 "died before it could prepare them: counted as dropped (spill_sealed)")
                with self._spill_lock:
                    source.mark_consumed(sealed.end)
                continue
            except (ValueError, EOFError, TypeError, OSError) as exc:
                self._skip_damaged(source, exc)
                continue
            if frame is None:
                if source is not self._spill:
                    source.close(remove=True)
                    self._adopted.remove(source)
                continue
            (frame_resources, rows), end, _ = frame
            ok = self._export_rows(frame_resources, rows, prepared=prepared)
            if not ok:  # the exporter counted why (queue error, shutdown); do not spin on it
                time.sleep(min(self.delay, 0.1))
            with self._spill_lock:
                if source.fd < 0:  # closed by shutdown meanwhile (what was exported is exported)
                    return True
                source.mark_consumed(end)
                if source is self._spill:
                    self._spill_records = max(0, self._spill_records - self._frame_records.pop(end, len(rows)))
            if source is not self._spill:
                self.counters.add("adopted", "", len(rows))
            return True
        return False

    def _skip_damaged(self, source: SpillFile, exc: Exception) -> None:
        """Count a damaged frame's records and go on after it (our own file: exactly, from the
        records we wrote per frame; an adopted file: its sealed count, else at least one)."""
        with self._spill_lock:
            if source.fd < 0:
                return
            found = getattr(exc, "end", None)
            end: int = found if isinstance(found, int) else source.size
            if source is self._spill:
                if end in self._frame_records:
                    lost = self._frame_records.pop(end)
                else:  # the frame's length cannot be trusted: the rest of the file goes
                    end = source.size
                    lost = self._spill_records
                    self._frame_records.clear()
                    self._unprepared_ends.clear()
                self._spill_records = max(0, self._spill_records - lost)
            else:
                lost = getattr(exc, "records", None) or 1
            try:
                source.mark_consumed(end)
            except OSError:
                source.consumed = source.size
            self._unprepared_ends.discard(end)
        self.counters.add("dropped", "unknown:spill_corrupt", max(1, lost))
        self._note_error(f"damaged spill frame in {source.path}: {exc}; {max(1, lost)} records counted lost")

    def _export_rows(self, resources: list[Any], rows: list[Any], prepared: bool = False) -> bool:
        try:
            items, bad = self._rebuilder.records_counted(resources, rows)
        except Exception as exc:  # noqa: BLE001 - a frame we cannot rebuild is counted, not fatal
            self.counters.add("dropped", "unknown:spill_corrupt", len(rows))
            self._note_error(f"could not rebuild {len(rows)} spilled records: {exc}")
            return True
        if bad:
            self.counters.add("dropped", "unknown:spill_corrupt", bad)
            self._note_error(f"{bad} spilled records could not be rebuilt (rows of the wrong shape)")
        ok = True
        for start in range(0, len(items), self.batch_size):
            if start and self._shutdown:  # shutdown waits for us: the rest goes back to disk with it
                with self._spill_lock:
                    self._pending.extend(self._row(item) for item in items[start:])
                    self._pending_raw = self._pending_raw or not prepared
                break
            self.counters.add("unspilled", "", len(items[start:start + self.batch_size]))
            ok = self._export(items[start:start + self.batch_size], prepared) and ok
        return ok

    def _adopt_orphans(self) -> None:
        try:
            # a process killed inside SpillFile.create leaves an empty temporary file (one being
            # created right now is microseconds old: leave anything younger than a minute alone)
            for path in self.spill_dir.glob(".spill-*.tmp"):
                with contextlib.suppress(OSError):
                    if time.time() - path.lstat().st_mtime > 60:
                        stale = SpillFile.adopt(path)
                        if stale is not None:
                            stale.close(remove=True)
            for path in sorted(self.spill_dir.glob("spill-*.bin")):
                if self._spill is not None and path == self._spill.path:
                    continue
                adopted = SpillFile.adopt(path)
                if adopted is None:
                    continue
                if adopted.pending_bytes == 0:
                    adopted.close(remove=True)
                    continue
                self._adopted.append(adopted)
                self._note_error(f"adopting {adopted.pending_bytes} bytes of spilled records from {path.name}")
        except OSError as exc:
            self._note_error(f"could not look for orphan spill files in {self.spill_dir}: {exc}")

    # --- reporting -------------------------------------------------------------------------------

    def _note_error(self, message: str) -> None:
        stream = self.report_stream or sys.stderr
        with contextlib.suppress(Exception):
            stream.write(f"otel-ext: first hop: {message}\n")
            stream.flush()

    def _maybe_report(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_report < self.report_interval:
            return
        self._last_report = now
        snap = self.counters.snapshot()
        flat = {f"{name}:{label}": v for name, by in snap.items() for label, v in by.items()}
        delta = {k: v - self._reported.get(k, 0) for k, v in flat.items() if v != self._reported.get(k, 0)}
        self._reported = flat
        if not delta:
            return
        dropped = {k.split(":", 1)[1]: v for k, v in delta.items() if k.startswith("dropped:")}
        spilled = sum(v for k, v in delta.items() if k.startswith("spilled:"))
        self._note_error(
            f"in the last {self.report_interval:.0f}s: spilled {spilled} records past the in-memory buffer "
            f"(backlog {self.spill_backlog}), dropped "
            + (", ".join(f"{k}={v}" for k, v in sorted(dropped.items())) if dropped else "none")
            + f" (policy OTEL_EXT_OVERLOAD={self.overload})")

    def _count_drop(self, items: Iterable[ReadWriteLogRecord], reason: str) -> None:
        for item in items:
            try:
                cls = self._class_of(item)
            except Exception:  # noqa: BLE001
                cls = "unclassified"
            self.counters.add("dropped", f"{cls}:{reason}")

    # --- introspection ---------------------------------------------------------------------------

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def spill_backlog(self) -> int:
        return self._spill_records + len(self._pending)

    @property
    def spill_bytes(self) -> int:
        return (self._spill.pending_bytes if self._spill is not None else 0) + sum(
            a.pending_bytes for a in self._adopted)

    def stats(self) -> dict[str, Any]:
        snap = self.counters.snapshot()
        return {
            "overload": self.overload,
            "buffer_size": self.max_queue_size,
            "buffered": self.buffered,
            "spill_backlog": self.spill_backlog,
            "spill_bytes": self.spill_bytes,
            "spilled": sum(snap.get("spilled", {}).values()),
            "spilled_by_worker": sum(snap.get("spilled_by_worker", {}).values()),
            "dropped": dict(snap.get("dropped", {})),
        }

    # --- lifecycle -------------------------------------------------------------------------------

    _shutdown_deadline: float | None = None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        if self._shutdown:
            return False
        deadline = time.monotonic() + timeout_millis / 1000
        try:
            self._drain(deadline=deadline, everything=True)
        except Exception as exc:  # noqa: BLE001 - called on the app thread: never raise into it
            self._note_error(f"flush failed: {type(exc).__name__}: {exc}")
            return False
        return not self._buffer and not self._has_spill()

    def shutdown(self, timeout_millis: int = 30000) -> None:
        if self._shutdown:
            return
        deadline = time.monotonic() + timeout_millis / 1000
        self._shutdown_deadline = deadline
        self._shutdown = True
        self._wake.set()
        self._worker.join(max(0.0, deadline - time.monotonic()))
        # what the worker could not export in time is spilled: the next process adopts it
        with self._export_lock, self._spill_lock:
            left = list(self._buffer)
            self._buffer.clear()
            if self._pending_raw:  # rows the app thread spilled unprepared: prepared now, in the clear
                rebuilt, bad = self._rebuilder.records_counted(self._resources, self._pending)
                if bad:
                    self.counters.add("dropped", "unknown:spill_corrupt", bad)
                left = rebuilt + left
                self._pending, self._pending_raw = [], False
            self._pending.extend(self._row(item) for item in left if self._prepare(item))
            self._write_pending()
            self._open_sealed_frames()
            self._closed = True
            for source in [self._spill, *self._adopted]:
                if source is not None:
                    source.close(remove=source.pending_bytes == 0)
            if self._spill is not None and self._spill.pending_bytes:
                self._note_error(f"{self.spill_backlog} records not yet exported stay in {self._spill.path}")
        self._maybe_report(force=True)
        _LIVE.discard(self)
        remaining = max(0.0, deadline - time.monotonic()) * 1000
        if "timeout_millis" in inspect.signature(self.exporter.shutdown).parameters:
            self.exporter.shutdown(timeout_millis=remaining)  # type: ignore[call-arg, no-untyped-call]
        else:
            self.exporter.shutdown()  # type: ignore[no-untyped-call]
