"""Kafka backend: ``kafka://broker1:9092,broker2:9092/topic`` (plaintext) or ``kafkas://…`` (TLS).

Produces the queued OTLP ``ExportLogsServiceRequest`` bytes unchanged, one Kafka message per
service: the ``otlp_proto`` encoding the collector's ``kafkareceiver`` reads. The message key is the
resource's ``service.name``, so one service's records stay in one partition, in order. A payload
holding several services is split by resource into one request per service (re-encoded; a
single-service payload goes out byte for byte).

Delivery guarantees: an idempotent producer (``enable.idempotence``: no duplicates from the
producer's own retries, per-partition order kept), ``acks=all``, compression (``lz4`` by default).
:meth:`KafkaBackend.send` returns OK only when the broker acknowledged every message of the entry;
otherwise the entry stays in our queue. Outcomes: broker down / not enough replicas / timeouts ->
retryable; authentication / authorisation -> auth; a message above the size limit -> split in halves
and sent again, and a single record that alone is too large -> dead-lettered (partial) or permanent.

Query keys: ``compression`` (lz4, zstd, gzip, snappy, none), ``sasl_mechanism`` (PLAIN,
SCRAM-SHA-256, SCRAM-SHA-512), ``ca_file`` (kafkas), ``max_message_bytes`` (producer limit, default
1000000 — keep it at or below the broker's/topic's ``max.message.bytes``), ``linger_ms``.
Credentials only from the environment: ``OTEL_EXT_KAFKA_USERNAME`` + ``OTEL_EXT_KAFKA_PASSWORD``
(SASL; the mechanism defaults to SCRAM-SHA-512 when they are set).

Why confluent-kafka: librdkafka is the reference C client (idempotence, acks, compression codecs,
SASL/SCRAM, TLS), maintained by Confluent with wheels that bundle it; the pure-Python clients are
slower and lag on idempotent production.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

from otel_ext.backends.base import Backend, Ticket
from otel_ext.backends.outcome import Outcome, OutcomeKind
from otel_ext.backends.urls import BackendConfigError, BackendPlugin, BackendURL

_log = logging.getLogger(__name__)
COMPRESSIONS = ("lz4", "zstd", "gzip", "snappy", "none")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_SPLIT = "split"
_MAX_SPLIT_DEPTH = 16


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap: str  # host:port[,host:port…]
    topic: str
    tls: bool = False
    compression: str = "lz4"
    sasl_mechanism: str | None = None
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    timeout: float = 2.0  # seconds until an unacknowledged message counts as failed
    max_message_bytes: int = 1_000_000
    linger_ms: int = 5
    name: str = ""

    def producer_config(self) -> dict[str, Any]:
        timeout_ms = max(1, int(self.timeout * 1000))
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap,
            "client.id": "otel-ext",
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": self.compression,
            "linger.ms": min(self.linger_ms, timeout_ms),
            "message.max.bytes": self.max_message_bytes,
            "message.timeout.ms": timeout_ms,
            "request.timeout.ms": max(timeout_ms, 1000),
            "socket.connection.setup.timeout.ms": max(timeout_ms, 1000),
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 1000,
            "topic.metadata.refresh.interval.ms": 10_000,
        }
        if self.sasl_mechanism:
            conf.update({"security.protocol": "SASL_SSL" if self.tls else "SASL_PLAINTEXT",
                         "sasl.mechanisms": self.sasl_mechanism, "sasl.username": self.username or "",
                         "sasl.password": self.password or ""})
        elif self.tls:
            conf["security.protocol"] = "SSL"
        if self.ca_file:
            conf["ssl.ca.location"] = self.ca_file
        return conf


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("malformed varint")


def _fields(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[int, int, int, int]]:
    """Top-level fields of a protobuf message: (field number, field start, value start, field end),
    without decoding any value (length-delimited values are skipped by their length)."""
    end = len(data) if end is None else end
    out = []
    pos = start
    while pos < end:
        field_start = pos
        tag, pos = _varint(data, pos)
        wire = tag & 7
        if wire == 2:
            length, pos = _varint(data, pos)
            value_start, pos = pos, pos + length
        elif wire == 0:
            value_start = pos
            _, pos = _varint(data, pos)
        elif wire == 1:
            value_start, pos = pos, pos + 8
        elif wire == 5:
            value_start, pos = pos, pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > end:
            raise ValueError("truncated message")
        out.append((tag >> 3, field_start, value_start, pos))
    return out


def _resource_bytes(data: bytes, start: int, end: int) -> bytes:
    """The Resource field of one ResourceLogs, encoded (b"": none)."""
    for number, _, value_start, field_end in _fields(data, start, end):
        if number == 1:  # ResourceLogs.resource
            return bytes(data[value_start:field_end])
    return b""


def _service_of(resource: bytes) -> str | None:
    """service.name of an encoded Resource."""
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource

    for kv in Resource.FromString(resource).attributes:
        if kv.key == "service.name":
            return kv.value.string_value or None
    return None


def messages_for(payload: bytes | Sequence[bytes], limit: int = 1_000_000) -> list[tuple[bytes | None, bytes]]:
    """(key, value) per service, each value at most ``limit`` bytes where resource boundaries allow:
    the payload itself, byte for byte, when it holds one service and fits. The sender coalesces
    queued entries by concatenation (or hands them over as a sequence of parts, the request being
    their concatenation: then nothing is copied before the messages are cut), so a large payload is
    many ResourceLogs fields: they are cut apart on the wire format and regrouped without decoding or
    re-encoding any record (any run of top-level fields is itself a valid ExportLogsServiceRequest).
    One ResourceLogs above the limit is split by records later, when the producer refuses it."""
    parts = [payload] if isinstance(payload, bytes) else list(payload)
    by_service: dict[str | None, list[memoryview]] = {}
    services: dict[bytes, str | None] = {}  # the same resource bytes in every entry of a service
    total = 0
    for part in parts:
        view = memoryview(part)  # slices without copies: each message is copied once, by its join
        total += len(part)
        for number, field_start, value_start, field_end in _fields(part):
            if number != 1:  # not resource_logs: nothing else is defined at the top level
                continue
            resource = _resource_bytes(part, value_start, field_end)
            if resource not in services:
                services[resource] = _service_of(resource)
            by_service.setdefault(services[resource], []).append(view[field_start:field_end])
    if len(by_service) <= 1 and total <= limit:
        only = next(iter(by_service), None)
        whole = parts[0] if len(parts) == 1 else b"".join(parts)
        return [(only.encode() if only else None, bytes(whole))]
    out: list[tuple[bytes | None, bytes]] = []
    for service, spans in by_service.items():
        key = service.encode() if service else None
        chunk: list[memoryview] = []
        size = 0
        for span in spans:
            if chunk and size + len(span) > limit:
                out.append((key, b"".join(chunk)))
                chunk, size = [], 0
            chunk.append(span)
            size += len(span)
        if chunk:
            out.append((key, b"".join(chunk)))
    return out


def _flatten(value: bytes) -> list[tuple[ResourceLogs, ScopeLogs, LogRecord]]:
    request = ExportLogsServiceRequest.FromString(value)
    return [(rl, sl, rec) for rl in request.resource_logs for sl in rl.scope_logs for rec in sl.log_records]


def _encode(records: Iterable[tuple[ResourceLogs, ScopeLogs, LogRecord]]) -> bytes:
    from otel_ext.backends.elasticsearch.mapping import otlp_payload

    return otlp_payload(records)


def halves(value: bytes) -> tuple[bytes, bytes] | None:
    """A request split into two requests of half its records each (None: a single record)."""
    records = _flatten(value)
    if len(records) < 2:
        return None
    middle = len(records) // 2
    return _encode(records[:middle]), _encode(records[middle:])


class _Batch:
    """Delivery reports of one send() call (callbacks run in whichever thread polls)."""

    def __init__(self) -> None:
        self.pending = 0
        self.errors: list[tuple[Any, bytes | None, bytes, int]] = []

    def callback(self, key: bytes | None, value: bytes, depth: int) -> Any:
        def report(err: Any, _msg: Any) -> None:
            self.pending -= 1
            if err is not None:
                self.errors.append((err, key, value, depth))
        return report


def classify_kafka_error(err: Any) -> Outcome | str:
    """A librdkafka error -> our outcome class, or ``"split"`` for a message that is too large."""
    from confluent_kafka import KafkaError

    code = err.code()
    text = f"kafka: {err.name()}: {err.str()}"
    too_large = {getattr(KafkaError, name, -10_000) for name in (
        "MSG_SIZE_TOO_LARGE", "_MSG_SIZE_TOO_LARGE", "RECORD_LIST_TOO_LARGE")}
    if code in too_large:
        return _SPLIT
    auth = {getattr(KafkaError, name, -10_000) for name in (
        "_AUTHENTICATION", "SASL_AUTHENTICATION_FAILED", "TOPIC_AUTHORIZATION_FAILED",
        "CLUSTER_AUTHORIZATION_FAILED", "GROUP_AUTHORIZATION_FAILED", "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
        "ILLEGAL_SASL_STATE", "UNSUPPORTED_SASL_MECHANISM", "_SSL")}
    if code in auth:
        return Outcome.auth(text)
    permanent = {getattr(KafkaError, name, -10_000) for name in (
        "INVALID_RECORD", "CORRUPT_MESSAGE", "POLICY_VIOLATION", "INVALID_TOPIC_EXCEPTION",
        "UNSUPPORTED_FOR_MESSAGE_FORMAT", "_INVALID_ARG")}
    if code in permanent:
        return Outcome.permanent(text)
    # broker down (_TRANSPORT, _ALL_BROKERS_DOWN), not enough replicas, leader elections, timeouts,
    # unknown topic, and anything unknown: keep the entry and try again / fail over
    return Outcome.retryable(text)


class KafkaBackend(Backend):
    """Produces OTLP requests to one topic. Never raises from send()/probe()/submit()."""

    pipelined = True

    def __init__(self, config: KafkaConfig) -> None:
        self.config = config
        self.name = config.name or f"{'kafkas' if config.tls else 'kafka'}://{config.bootstrap}/{config.topic}"
        self._lock = threading.Lock()
        self._last_error = ""
        self._producer: Any = None
        self._producer = self._new_producer()

    def _new_producer(self) -> Any:
        from confluent_kafka import Producer

        conf = self.config.producer_config()
        conf["error_cb"] = self._on_error
        conf["logger"] = _log
        return Producer(conf)

    _fatal = False

    _auth_failed_at = 0.0

    def _on_error(self, err: Any) -> None:  # client-level errors (all brokers down, auth): noted, not raised
        self._last_error = f"{err.name()}: {err.str()}"
        verdict = classify_kafka_error(err)
        if isinstance(verdict, Outcome) and verdict.kind is OutcomeKind.AUTH:
            self._auth_failed_at = time.monotonic()
        if err.fatal():  # an idempotent producer in a fatal state: start a fresh one at the next send
            self._fatal = True

    def _ensure_producer(self) -> Any:
        with self._lock:
            if self._producer is None or self._fatal:
                self._drop_producer()
                self._fatal = False
                self._producer = self._new_producer()
            return self._producer

    def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):  # closing must not fail
                producer.purge()
                producer.flush(0)

    def describe(self) -> str:
        return self.name

    def send(self, payload: bytes, records: int) -> Outcome:
        try:
            if not payload:
                return self.probe()
            return self._send(payload)
        except Exception as exc:  # noqa: BLE001 - never raise into the sender
            return Outcome.retryable(f"kafka: {type(exc).__name__}: {exc}")

    def _send(self, payload: bytes) -> Outcome:
        from confluent_kafka import KafkaException

        producer = self._ensure_producer()
        started = time.monotonic()
        deadline = started + self.config.timeout + 1.0
        try:
            work = [(key, value, 0) for key, value in messages_for(payload, self.config.max_message_bytes)]
        except Exception as exc:  # noqa: BLE001 - not an OTLP request: no broker will ever take it
            return Outcome.permanent(f"kafka: payload is not an OTLP ExportLogsServiceRequest: {exc}")
        rejected: list[tuple[ResourceLogs, ScopeLogs, LogRecord]] = []
        worst: Outcome | None = None
        while work:
            batch = _Batch()
            retry: list[tuple[bytes | None, bytes, int]] = []
            for key, value, depth in work:
                while True:
                    try:
                        batch.pending += 1
                        producer.produce(self.config.topic, value, key,
                                         on_delivery=batch.callback(key, value, depth))
                        break
                    except BufferError:  # local queue full: serve reports, then try again
                        batch.pending -= 1
                        producer.poll(0.05)
                        if time.monotonic() > deadline:
                            return Outcome.retryable("kafka: producer queue stayed full")
                    except KafkaException as exc:
                        batch.pending -= 1
                        verdict = classify_kafka_error(exc.args[0])
                        if verdict == _SPLIT:
                            rejected += self._split_into(retry, key, value, depth)
                            break
                        return verdict if isinstance(verdict, Outcome) else Outcome.retryable(str(exc))
            while batch.pending > 0 and time.monotonic() < deadline:
                producer.flush(max(0.01, deadline - time.monotonic()))
            if batch.pending > 0 and self._auth_failed_at >= started - 1.0:
                return Outcome.auth(f"kafka: authentication failed ({self._last_error})")
            if batch.pending > 0:
                return Outcome.retryable(f"kafka: {batch.pending} message(s) not acknowledged in time "
                                         f"({self._last_error or 'no broker answer'})")
            for err, key, value, depth in batch.errors:
                verdict = classify_kafka_error(err)
                if verdict == _SPLIT:
                    rejected += self._split_into(retry, key, value, depth)
                elif isinstance(verdict, Outcome) and (worst is None or _rank(verdict) > _rank(worst)):
                    worst = verdict
            if worst is not None:
                if worst.kind is OutcomeKind.RETRYABLE and self._auth_failed_at >= started - 1.0:
                    # the messages only timed out: the broker refused our credentials meanwhile
                    return Outcome.auth(f"kafka: authentication failed ({self._last_error})")
                return worst
            work = retry
        if rejected:
            total = sum(len(sl.log_records) for rl in ExportLogsServiceRequest.FromString(payload).resource_logs
                        for sl in rl.scope_logs)
            message = f"kafka: {len(rejected)} record(s) each larger than max_message_bytes"
            if len(rejected) >= total:
                return Outcome.permanent(message)
            return Outcome.partial(len(rejected), message, dead_letter=_encode(rejected))
        return Outcome.ok()

    def submit(self, payload: bytes, records: int) -> Ticket:
        """Produce the messages of ``payload`` and return at once; the ticket settles when the broker
        acknowledged every one of them (or any failed). Anything unusual (a message too large, a
        payload that is not OTLP, a full local queue) fails the ticket: the lane then sends the
        request again with :meth:`send`, which sorts out split / permanent / partial."""
        return self.submit_parts([payload], records)

    def submit_parts(self, parts: Sequence[bytes], records: int) -> Ticket:
        """:meth:`submit` of the request ``b"".join(parts)``, cut into messages straight from the parts
        (each message's bytes are copied once, by its own join, instead of twice)."""
        ticket = Ticket(time.monotonic() + self.config.timeout + 1.0)
        try:
            producer = self._ensure_producer()
            for key, value in messages_for(parts, self.config.max_message_bytes):
                while True:
                    ticket.pending += 1
                    try:
                        producer.produce(self.config.topic, value, key, on_delivery=ticket.report)
                        break
                    except BufferError:  # local queue full: serve reports, then try again
                        ticket.pending -= 1
                        producer.poll(0.05)
                        if time.monotonic() > ticket.deadline:
                            ticket.fail("kafka: producer queue stayed full")
                            return ticket
                    except BaseException:
                        ticket.pending -= 1
                        raise
            ticket.submitted = True
        except Exception as exc:  # noqa: BLE001 - never raise into the sender
            ticket.fail(f"kafka: {type(exc).__name__}: {exc}")
        return ticket

    def serve(self, timeout: float) -> None:
        producer = self._producer
        if producer is None:  # being replaced: its tickets fail by their deadline
            time.sleep(min(max(0.0, timeout), 0.01))
            return
        with contextlib.suppress(Exception):
            producer.poll(max(0.0, timeout))

    @staticmethod
    def _split_into(retry: list[tuple[bytes | None, bytes, int]], key: bytes | None, value: bytes,
                    depth: int) -> list[tuple[ResourceLogs, ScopeLogs, LogRecord]]:
        """Queue the two halves of a too-large message again; a lone record comes back as rejected."""
        parts = halves(value) if depth < _MAX_SPLIT_DEPTH else None
        if parts is None:
            return _flatten(value)
        retry.extend((key, part, depth + 1) for part in parts)
        return []

    def probe(self) -> Outcome:
        """Topic metadata from the cluster (no customer data): a leader for every partition."""
        try:
            producer = self._ensure_producer()
            metadata = producer.list_topics(self.config.topic, timeout=self.config.timeout)
            topic = metadata.topics.get(self.config.topic)
            if topic is None:
                return Outcome.retryable(f"kafka: topic {self.config.topic} not in the metadata")
            if topic.error is not None:
                verdict = classify_kafka_error(topic.error)
                return verdict if isinstance(verdict, Outcome) else Outcome.retryable(str(topic.error))
            if not topic.partitions or any(p.leader < 0 for p in topic.partitions.values()):
                return Outcome.retryable(f"kafka: topic {self.config.topic} has partitions without a leader")
            return Outcome.ok()
        except Exception as exc:  # noqa: BLE001 - never raise into the prober
            return Outcome.retryable(f"kafka: {type(exc).__name__}: {exc} ({self._last_error})")

    def close(self) -> None:
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):  # anything in flight belongs to entries still queued
                producer.flush(1.0)

    def reset_after_fork(self) -> None:
        # librdkafka's threads did not survive the fork: a fresh producer at the next send
        self._producer = None
        self._lock = threading.Lock()


def _rank(outcome: Outcome) -> int:
    return {"auth": 3, "permanent": 2, "retryable": 1}.get(outcome.kind.value, 0)


def from_url(u: BackendURL) -> KafkaBackend:
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        raise BackendConfigError(f"{u.source}: kafka backends need confluent-kafka: "
                                 "pip install 'otel-ext[kafka]'") from None
    bootstrap = u.parts.netloc
    topic = u.parts.path.strip("/")
    if not bootstrap or not topic or "/" in topic:
        raise BackendConfigError(f"{u.source}: {u.scheme} backend needs brokers and a topic: "
                                 f"{u.scheme}://broker1:9092,broker2:9092/topic")
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", topic) or topic in (".", ".."):
        raise u.error(f"topic {topic!r} is not a legal Kafka topic name (letters, digits, '.', '_', '-')")
    for broker in bootstrap.split(","):
        host, sep, port = broker.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise BackendConfigError(f"{u.source}: {u.scheme} backend: broker {broker!r} needs host:port")
    compression = u.query.get("compression", "lz4")
    if compression not in COMPRESSIONS:
        raise u.error(f"compression must be one of {', '.join(COMPRESSIONS)}, got {compression!r}")
    username, password = u.setting("OTEL_EXT_KAFKA_USERNAME"), u.setting("OTEL_EXT_KAFKA_PASSWORD")
    if bool(username) != bool(password):
        raise BackendConfigError("OTEL_EXT_KAFKA_USERNAME and OTEL_EXT_KAFKA_PASSWORD: set both or neither")
    mechanism = u.query.get("sasl_mechanism") or ("SCRAM-SHA-512" if username else None)
    if mechanism and mechanism not in SASL_MECHANISMS:
        raise u.error(f"sasl_mechanism must be one of {', '.join(SASL_MECHANISMS)}, got {mechanism!r}")
    if mechanism and not username:
        raise u.error("sasl_mechanism needs OTEL_EXT_KAFKA_USERNAME and OTEL_EXT_KAFKA_PASSWORD")
    if mechanism == "PLAIN" and u.scheme == "kafka":
        raise u.error("SASL PLAIN over a plaintext connection would send the password in clear: use kafkas://")
    ca_file = u.readable("ca_file", u.query.get("ca_file"))
    config = KafkaConfig(
        bootstrap=bootstrap, topic=topic, tls=u.scheme == "kafkas", compression=compression,
        sasl_mechanism=mechanism, username=username, password=password, ca_file=ca_file, timeout=u.timeout,
        max_message_bytes=u.integer("max_message_bytes", 1_000_000, minimum=1000),
        linger_ms=u.integer("linger_ms", 5, minimum=0), name=u.name)
    try:
        return KafkaBackend(config)
    except Exception as exc:  # noqa: BLE001 - librdkafka refuses a configuration
        raise u.error(f"{type(exc).__name__}: {exc}") from None


PLUGIN = BackendPlugin("kafka", ("kafka", "kafkas"),
                       frozenset({"compression", "sasl_mechanism", "ca_file", "max_message_bytes", "linger_ms"}),
                       from_url, "OTLP protobuf messages to a Kafka topic (collector kafkareceiver: otlp_proto)")
