"""S3 archive backend: ``s3://bucket/prefix?region=…&endpoint=…`` (any S3-compatible store).

Each queued entry becomes one gzip-compressed OTLP JSON object per event class, in the layout the
collector's ``awss3exporter`` writes and its ``awss3receiver`` reads back (UTC partitions)::

    <prefix>/<class>/year=2026/month=11/day=26/hour=16/minute=54/logs_<sha256 of the entry>.json.gz

The class (``labels.event_class``; ``application`` when a record has none) comes right after the
prefix, so lifecycle rules act per class (``otel-ext archive setup``), and a collector replays one
class with ``awss3receiver: {s3downloader: {s3_bucket: …, s3_prefix: <prefix>/<class>,
s3_partition_format: "year=%Y/month=%m/day=%d/hour=%H/minute=%M", s3_partition_timezone: UTC}}``.
The object name is the entry's content hash: retrying an entry in the same minute overwrites the
same object instead of archiving it twice.

An entry leaves our queue when S3 acknowledged every PUT of it. Outcomes: 503 SlowDown / throttling
-> throttled (pause, retry); 5xx, timeouts, connection errors, a missing bucket -> retryable;
AccessDenied / bad keys / bad signature -> auth. The SDK's own retries are off (max_attempts 1): our
queue is the retry loop, so an outage never blocks a sender thread for long.

Credentials: the AWS SDK's usual chain only (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE,
instance roles), never the URL. Query keys: ``region``, ``endpoint`` (http(s)://host:port of an
S3-compatible server; path-style addressing is used with it), ``ca_file``, ``format`` (json, or
proto for ``.binpb``), ``compression`` (gzip or none).
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import json
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from google.protobuf.json_format import Parse
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import ResourceLogs

from otel_ext.backends.base import Backend
from otel_ext.backends.otlp_json import to_otlp_json
from otel_ext.backends.outcome import Outcome
from otel_ext.backends.urls import BackendConfigError, BackendPlugin, BackendURL

PARTITION_FORMAT = "year=%Y/month=%m/day=%d/hour=%H/minute=%M"
_PARTITION = re.compile(r"/year=(\d{4})/month=(\d{2})/day=(\d{2})/hour=(\d{2})/minute=(\d{2})/")
DEFAULT_CLASS = "application"
_CLASS_SAFE = re.compile(r"[^a-z0-9_.-]")
_THROTTLE = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests",
             "RequestThrottled", "ServiceUnavailable"}
_AUTH = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
         "AllAccessDisabled", "AccountProblem", "InvalidClientTokenId", "UnrecognizedClientException", "403"}


@dataclass(frozen=True)
class S3Config:
    bucket: str
    prefix: str = ""
    region: str | None = None
    endpoint: str | None = None
    ca_file: str | None = None
    format: str = "json"  # json (.json) or proto (.binpb)
    compression: str = "gzip"
    timeout: float = 5.0
    name: str = ""

    def base(self, event_class: str) -> str:
        return f"{self.prefix}/{event_class}" if self.prefix else event_class


def make_client(config: S3Config) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3", region_name=config.region or "us-east-1", endpoint_url=config.endpoint,
        verify=config.ca_file if config.ca_file else None,
        config=Config(connect_timeout=config.timeout, read_timeout=config.timeout,
                      retries={"total_max_attempts": 1, "mode": "standard"},
                      s3={"addressing_style": "path" if config.endpoint else "auto"},
                      # integrity headers S3-compatible servers may not know; plain Content-MD5 is enough
                      request_checksum_calculation="when_required", response_checksum_validation="when_required"))


def _hex_to_b64(node: Any) -> None:
    """OTLP JSON carries trace/span ids as hex; protobuf's JSON parser wants base64 for bytes."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("traceId", "spanId") and isinstance(value, str):
                node[key] = base64.b64encode(bytes.fromhex(value)).decode() if value else ""
            else:
                _hex_to_b64(value)
    elif isinstance(node, list):
        for item in node:
            _hex_to_b64(item)


def otlp_json(payload: bytes) -> bytes:
    """OTLP/JSON of a serialized ExportLogsServiceRequest (hex trace/span ids, int64 as strings,
    enums as integers), written straight from the wire format by the file backend's writer
    (:func:`otel_ext.backends.otlp_json.to_otlp_json`: cached fragments for repeated attributes,
    the protobuf runtime's JSON mapping for anything unusual)."""
    return to_otlp_json(payload).encode()


def encode_object(payload: bytes, fmt: str, compression: str) -> bytes:
    if fmt == "json":
        body = otlp_json(payload)
    else:
        body = payload
    return gzip.compress(body, compresslevel=5, mtime=0) if compression == "gzip" else body


def decode_object(key: str, data: bytes) -> bytes:
    """An archived object -> a serialized ExportLogsServiceRequest (by its name, like awss3receiver)."""
    if key.endswith(".gz"):
        data = gzip.decompress(data)
        key = key[:-3]
    if key.endswith(".json"):
        document = json.loads(data)
        _hex_to_b64(document)
        parsed: bytes = Parse(json.dumps(document), ExportLogsServiceRequest()).SerializeToString()
        return parsed
    request = ExportLogsServiceRequest.FromString(data)  # validates the bytes
    return bytes(request.SerializeToString())


def record_class(record: Any) -> str:
    for kv in record.attributes:
        if kv.key == "labels.event_class":
            value = _CLASS_SAFE.sub("_", kv.value.string_value.lower())[:40]
            return value or DEFAULT_CLASS
    return DEFAULT_CLASS


def split_by_class(payload: bytes) -> dict[str, tuple[bytes, int]]:
    """class -> (request holding only that class's records, record count); the payload itself when
    every record is of one class."""
    request = ExportLogsServiceRequest.FromString(payload)
    classes: dict[str, int] = {}
    for rl in request.resource_logs:
        for sl in rl.scope_logs:
            for rec in sl.log_records:
                c = record_class(rec)
                classes[c] = classes.get(c, 0) + 1
    if len(classes) <= 1:
        return {c: (payload, n) for c, n in classes.items()} or {DEFAULT_CLASS: (payload, 0)}
    out: dict[str, tuple[bytes, int]] = {}
    for wanted, count in classes.items():
        part = ExportLogsServiceRequest()
        for rl in request.resource_logs:
            new_rl: ResourceLogs | None = None
            for sl in rl.scope_logs:
                kept = [rec for rec in sl.log_records if record_class(rec) == wanted]
                if not kept:
                    continue
                if new_rl is None:
                    new_rl = part.resource_logs.add(resource=rl.resource, schema_url=rl.schema_url)
                new_sl = new_rl.scope_logs.add(scope=sl.scope, schema_url=sl.schema_url)
                new_sl.log_records.extend(kept)
        out[wanted] = (part.SerializeToString(), count)
    return out


def object_key(config: S3Config, event_class: str, when: dt.datetime, body: bytes) -> str:
    suffix = (".json" if config.format == "json" else ".binpb") + (".gz" if config.compression == "gzip" else "")
    return (f"{config.base(event_class)}/{when.strftime(PARTITION_FORMAT)}/"
            f"logs_{hashlib.sha256(body).hexdigest()[:32]}{suffix}")


def partition_time(key: str) -> dt.datetime | None:
    match = _PARTITION.search("/" + key)
    if not match:
        return None
    y, mo, d, h, mi = (int(g) for g in match.groups())
    return dt.datetime(y, mo, d, h, mi, tzinfo=dt.timezone.utc)


def classify_s3_error(exc: BaseException) -> Outcome:
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        text = f"s3: {code or status}: {error.get('Message', '')}"[:300]
        if code in _THROTTLE or status in (429, 503):
            return Outcome.throttled(text, 1.0)
        if code in _AUTH or status in (401, 403):
            return Outcome.auth(text)
        if code in ("NoSuchBucket", "PermanentRedirect", "AuthorizationHeaderMalformed") or status >= 500:
            return Outcome.retryable(text)
        if code in ("EntityTooLarge", "InvalidArgument", "MalformedXML") or status == 400:
            return Outcome.permanent(text)
        return Outcome.retryable(text)
    if isinstance(exc, BotoCoreError):  # connection refused / reset, timeouts, DNS
        return Outcome.retryable(f"s3: {type(exc).__name__}: {exc}"[:300])
    return Outcome.retryable(f"s3: {type(exc).__name__}: {exc}"[:300])


class S3Backend(Backend):
    """Archives OTLP requests as objects. Never raises from send()/probe()."""

    def __init__(self, config: S3Config) -> None:
        self.config = config
        self.name = config.name or f"s3://{config.bucket}/{config.prefix}".rstrip("/")
        self._lock = threading.Lock()
        self._client: Any = make_client(config)

    def _c(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = make_client(self.config)
            return self._client

    def send(self, payload: bytes, records: int) -> Outcome:
        if not payload:
            return self.probe()
        try:
            now = dt.datetime.now(dt.timezone.utc)
            client = self._c()
            for event_class, (part, _count) in sorted(split_by_class(payload).items()):
                body = encode_object(part, self.config.format, self.config.compression)
                key = object_key(self.config, event_class, now, part)
                client.put_object(Bucket=self.config.bucket, Key=key, Body=body,
                                  ContentType="application/json" if self.config.format == "json"
                                  else "application/x-protobuf")
            return Outcome.ok()
        except Exception as exc:  # noqa: BLE001 - never raise into the sender
            return classify_s3_error(exc)

    def probe(self) -> Outcome:
        try:
            self._c().head_bucket(Bucket=self.config.bucket)
            return Outcome.ok()
        except Exception as exc:  # noqa: BLE001
            return classify_s3_error(exc)

    def iter_keys(self, event_class: str | None, since: dt.datetime | None,
                  until: dt.datetime | None) -> Iterable[str]:
        """Archived object keys of one class (or every class), whose partition lies in [since, until]."""
        client = self._c()
        base = self.config.base(event_class) + "/" if event_class else (self.config.prefix + "/"
                                                                          if self.config.prefix else "")
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.config.bucket, Prefix=base):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                when = partition_time(key[len(self.config.prefix):] if self.config.prefix else key)
                if when is None or not key.rsplit("/", 1)[-1].startswith("logs_"):
                    continue
                if since is not None and when < since.replace(second=0, microsecond=0):
                    continue
                if until is not None and when > until:
                    continue
                yield key

    def get(self, key: str) -> bytes:
        data: bytes = self._c().get_object(Bucket=self.config.bucket, Key=key)["Body"].read()
        return data

    def close(self) -> None:
        with self._lock:
            self._client = None

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._client = None


def from_url(u: BackendURL) -> S3Backend:
    try:
        import boto3  # noqa: F401
    except ImportError:
        raise BackendConfigError(f"{u.source}: s3 backends need boto3: pip install 'otel-ext[s3]'") from None
    bucket = u.parts.netloc
    if not bucket or not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
        raise u.error(f"needs a bucket name: s3://bucket/prefix (got {bucket!r})")
    prefix = u.parts.path.strip("/")
    if "//" in prefix:
        raise u.error("prefix must not contain empty segments")
    endpoint = u.query.get("endpoint") or None
    if endpoint and not re.fullmatch(r"https?://[^/?#@]+/?", endpoint):
        raise u.error(f"endpoint must be http(s)://host:port, got {endpoint!r}")
    fmt = u.query.get("format", "json")
    if fmt not in ("json", "proto"):
        raise u.error(f"format must be json or proto, got {fmt!r}")
    compression = u.query.get("compression", "gzip")
    if compression not in ("gzip", "none"):
        raise u.error(f"compression must be gzip or none, got {compression!r}")
    config = S3Config(bucket=bucket, prefix=prefix, region=u.query.get("region") or None, endpoint=endpoint,
                      ca_file=u.readable("ca_file", u.query.get("ca_file")), format=fmt, compression=compression,
                      timeout=u.timeout, name=u.name)
    return S3Backend(config)


PLUGIN = BackendPlugin("s3", ("s3",), frozenset({"region", "endpoint", "ca_file", "format", "compression"}),
                       from_url, "archive: compressed OTLP JSON objects, partitioned by class and time")
