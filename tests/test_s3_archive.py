"""S3 archive backend, `otel-ext archive setup` and `archive replay` against a real S3-compatible server
(SeaweedFS built from the Go module proxy; moto only as a declared fallback), with faults on the wire:
the endpoint down then back, 503 SlowDown from a proxy, and replay into Elasticsearch twice."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from exporter_harness import make_app, queued_records
from faults import ForwardingFaultProxy
from kafka_server import record_uids
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from peers import stop_process, wait_until
from s3_server import S3Server

from otel_ext.archive import parse_duration, parse_time, replay, within
from otel_ext.backends import BackendConfigError, backend_from_url
from otel_ext.backends.outcome import OutcomeKind
from otel_ext.backends.s3 import S3Backend, decode_object, object_key, partition_time, split_by_class
from otel_ext.cli import main
from otel_ext.export.testing import MemoryBackend


def _request(classes: dict[str, int], trace: bool = True) -> bytes:
    rl = ResourceLogs(resource=Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value="api"))]))
    sl = ScopeLogs()
    for event_class, n in classes.items():
        for i in range(n):
            record = LogRecord(time_unix_nano=1_700_000_000_000_000_000 + i, body=AnyValue(string_value=f"{event_class} {i}"),
                               attributes=[KeyValue(key="log.record.uid", value=AnyValue(string_value=f"{event_class}-{i}")),
                                           KeyValue(key="labels.event_class", value=AnyValue(string_value=event_class))])
            if trace:
                record.trace_id = bytes(range(16))
                record.span_id = bytes(range(8))
            sl.log_records.append(record)
    rl.scope_logs.append(sl)
    return ExportLogsServiceRequest(resource_logs=[rl]).SerializeToString()


# --- without a server -------------------------------------------------------------------------

def test_records_are_split_by_class_and_round_trip_through_otlp_json() -> None:
    payload = _request({"security": 2, "access": 3})
    parts = split_by_class(payload)
    assert {c: n for c, (_, n) in parts.items()} == {"security": 2, "access": 3}
    from otel_ext.backends.s3 import encode_object

    for event_class, (part, _) in parts.items():
        blob = encode_object(part, "json", "gzip")
        document = json.loads(gzip.decompress(blob))
        record = document["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
        assert record["traceId"] == bytes(range(16)).hex()  # OTLP JSON: hex ids, as the collector reads them
        back = decode_object("x/logs_1.json.gz", blob)
        assert ExportLogsServiceRequest.FromString(back) == ExportLogsServiceRequest.FromString(part)
        assert all(u.startswith(event_class) for u in record_uids([(None, back)]))


def test_archived_otlp_json_equals_the_protobuf_runtimes_json_for_every_value_kind() -> None:
    """The S3 objects are written by the file backend's wire-format writer; every value kind gives
    the document protobuf's own JSON mapping gives (MessageToDict, ids in hex), and reads back."""
    from opentelemetry.proto.common.v1.common_pb2 import ArrayValue, InstrumentationScope, KeyValueList

    from otel_ext.backends.file import to_otlp_json_reference
    from otel_ext.backends.s3 import otlp_json

    def kv(key: str, value: AnyValue) -> KeyValue:
        return KeyValue(key=key, value=value)

    values = [AnyValue(string_value="héllo \u2028 \"q\""), AnyValue(int_value=-(2**63)), AnyValue(int_value=2**63 - 1),
              AnyValue(bool_value=False), AnyValue(double_value=float("nan")), AnyValue(double_value=float("-inf")),
              AnyValue(double_value=1.5e-300), AnyValue(bytes_value=b"\x00\xffbin"), AnyValue(),
              AnyValue(array_value=ArrayValue(values=[AnyValue(int_value=1), AnyValue(string_value="x")])),
              AnyValue(kvlist_value=KeyValueList(values=[kv("a", AnyValue(double_value=2.0)),
                                                         kv("b", AnyValue(array_value=ArrayValue()))])),
              AnyValue(string_value_strindex=3)]
    record = LogRecord(time_unix_nano=2**64 - 1, observed_time_unix_nano=1, severity_number=17, severity_text="ERROR",
                       body=values[10], attributes=[kv(f"k{i}", v) for i, v in enumerate(values)],
                       dropped_attributes_count=4, flags=1, trace_id=bytes(range(16)), span_id=bytes(range(8)),
                       event_name="login")
    record.attributes.append(KeyValue(key_strindex=7, value=AnyValue(string_value="indexed")))
    request = ExportLogsServiceRequest(resource_logs=[ResourceLogs(
        resource=Resource(attributes=[kv("service.name", AnyValue(string_value="api"))], dropped_attributes_count=1),
        scope_logs=[ScopeLogs(scope=InstrumentationScope(name="s", version="1", attributes=[kv("x", values[1])]),
                              log_records=[record, LogRecord()], schema_url="https://opentelemetry.io/schemas/1.0")],
        schema_url="u")])
    payload = request.SerializeToString()
    assert json.loads(otlp_json(payload)) == json.loads(to_otlp_json_reference(payload))
    assert ExportLogsServiceRequest.FromString(decode_object("k/logs_1.json", otlp_json(payload))) == request


def test_key_layout_is_the_collectors_awss3_layout_with_the_class_first() -> None:
    backend = backend_from_url("s3://archive/prod/api?region=eu-west-1", env={})
    assert isinstance(backend, S3Backend)
    when = dt.datetime(2026, 11, 26, 16, 54, 7, tzinfo=dt.timezone.utc)
    key = object_key(backend.config, "security", when, b"payload")
    assert key.startswith("prod/api/security/year=2026/month=11/day=26/hour=16/minute=54/logs_")
    assert key.endswith(".json.gz")
    assert key == object_key(backend.config, "security", when, b"payload")  # same entry, same object
    assert partition_time(key) == when.replace(second=0)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("s3://", "needs a bucket name"),
        ("s3://Bad_Bucket/x", "needs a bucket name"),
        ("s3://bkt/x?endpoint=ftp://h", "endpoint must be http"),
        ("s3://bkt/x?format=parquet", "format must be json or proto"),
        ("s3://bkt/x?mapping=ecs", r"allowed: ca_file, compression, endpoint, format, name, region, timeout"),
        ("s3://key:secret@bkt/x", "credentials in a backend URL are not allowed"),
    ],
)
def test_bad_s3_urls(url: str, problem: str) -> None:
    with pytest.raises(BackendConfigError, match=problem):
        backend_from_url(url, env={})


def test_replay_time_arguments() -> None:
    now = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.timezone.utc)
    assert parse_time("2h", now) == dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.timezone.utc)
    assert parse_time("2026-11-25T08:30") == dt.datetime(2026, 11, 25, 8, 30, tzinfo=dt.timezone.utc)
    assert parse_time("2026-11-25T08:30+01:00").utcoffset() == dt.timedelta(hours=1)
    with pytest.raises(ValueError, match="not a time"):
        parse_time("yesterday")


NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.timezone.utc)


def _timed_request(times: dict[str, tuple[dt.datetime | None, dt.datetime | None]]) -> bytes:
    """One record per uid, with (time_unix_nano, observed_time_unix_nano) as given (None: unset),
    spread over two resources so that emptied resources and scopes are seen to go."""
    request = ExportLogsServiceRequest()
    for n, (uid, (at, observed)) in enumerate(times.items()):
        if n % 3 == 0:
            rl = request.resource_logs.add()
            rl.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value=f"svc{n}")))
            sl = rl.scope_logs.add()
        record = sl.log_records.add()
        if at is not None:
            record.time_unix_nano = int(at.timestamp() * 1e9)
        if observed is not None:
            record.observed_time_unix_nano = int(observed.timestamp() * 1e9)
        record.attributes.append(KeyValue(key="log.record.uid", value=AnyValue(string_value=uid)))
        record.attributes.append(KeyValue(key="labels.event_class", value=AnyValue(string_value="security")))
    return request.SerializeToString()


def test_replay_keeps_records_by_their_own_time_not_by_the_objects_write_time() -> None:
    h = dt.timedelta(hours=1)
    payload = _timed_request({
        "three-hours-ago": (NOW - 3 * h, NOW), "observed-three-hours-ago": (None, NOW - 3 * h),
        "now": (NOW, NOW), "in-an-hour": (NOW + h, None), "no-time": (None, None),
        "edge": (NOW - 3.5 * h, None)})
    request = ExportLogsServiceRequest.FromString(payload)
    # written now (the object's partition), but asking for what happened 4 to 2 hours ago
    assert within(request, NOW - 4 * h, NOW - 2 * h, written=NOW) == (3, 3)
    assert sorted(record_uids([(None, request.SerializeToString())])) == [
        "edge", "observed-three-hours-ago", "three-hours-ago"]
    assert all(sl.log_records for rl in request.resource_logs for sl in rl.scope_logs)
    assert len(request.resource_logs) == 2  # the resource left without records is gone
    # a record with no time at all is judged by its object's partition
    request = ExportLogsServiceRequest.FromString(payload)
    assert within(request, NOW - 10 * h, NOW - 5 * h, written=NOW - 6 * h) == (1, 5)
    assert record_uids([(None, request.SerializeToString())]) == ["no-time"]
    request = ExportLogsServiceRequest.FromString(payload)
    assert within(request, None, None, written=None) == (6, 0)
    assert parse_duration("90m") == dt.timedelta(minutes=90) and parse_duration("0") == dt.timedelta(0)
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")


# --- against a real server --------------------------------------------------------------------

@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    saved = {k: os.environ.get(k) for k in S3Server.credentials_env()}
    os.environ.update(S3Server.credentials_env())
    server = S3Server().start()
    print(f"S3 server: {server.kind}")
    yield server
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _bucket(s3: S3Server) -> str:
    name = f"archive-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(name)
    return name


def _archived_uids(s3: S3Server, bucket: str, prefix: str = "") -> list[str]:
    client: Any = s3.client()
    uids: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            data = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            uids += record_uids([(None, decode_object(obj["Key"], data))])
    return uids


@pytest.mark.peers
def test_every_record_is_archived_once_under_its_class(s3: S3Server, tmp_path: Path) -> None:
    bucket = _bucket(s3)
    app = make_app([s3.url(bucket, "prod")], tmp_path / "q")
    app.emit(600, "access")
    app.emit(400, "security")
    assert app.deliver()
    app.close()
    assert queued_records(tmp_path / "q") == 0
    access, security = _archived_uids(s3, bucket, "prod/access/"), _archived_uids(s3, bucket, "prod/security/")
    assert len(access) == 600 == len(set(access)) and len(security) == 400 == len(set(security))
    assert not set(access) & set(security)


@pytest.mark.peers
def test_endpoint_down_then_back_loses_nothing(s3: S3Server, tmp_path: Path) -> None:
    bucket = _bucket(s3)
    app = make_app([s3.url(bucket, "p", timeout="1s")], tmp_path / "q")
    app.emit(300)
    assert app.deliver()
    s3.kill()
    try:
        app.emit(700)
        app.flush_to_queue()
        assert not app.exporter.force_flush(2000)  # nothing can leave: S3 is down
        assert queued_records(tmp_path / "q") > 0
    finally:
        s3.start()
    expected = 1000
    if s3.kind == "moto":  # the emulator keeps nothing across a restart: only what was queued arrives
        s3.create_bucket(bucket)
        expected = 700
    assert app.deliver(timeout=60)
    app.close()
    uids = _archived_uids(s3, bucket, "p/")
    assert len(set(uids)) == expected, f"{len(set(uids))} of {expected}"


@pytest.mark.peers
def test_503_slowdown_is_throttling_and_nothing_is_lost(s3: S3Server, tmp_path: Path) -> None:
    bucket = _bucket(s3)
    proxy = ForwardingFaultProxy(s3.port)
    try:
        proxy.fail_next(5, 503, body=b'<?xml version="1.0"?><Error><Code>SlowDown</Code>'
                                     b'<Message>Please reduce your request rate.</Message></Error>',
                        headers={"Content-Type": "application/xml"})
        url = f"s3://{bucket}/slow?endpoint=http://127.0.0.1:{proxy.port}&region=us-east-1"
        backend = backend_from_url(url, env=dict(os.environ))
        outcome = backend.send(_request({"access": 3}), 3)
        assert outcome.kind is OutcomeKind.THROTTLED and "SlowDown" in outcome.message
        backend.close()
        assert proxy.seen == [503]  # one attempt: our queue retries, not the SDK
        app = make_app([url], tmp_path / "q")
        app.emit(500)
        assert app.deliver(timeout=60)
        app.close()
    finally:
        proxy.close()
    assert len(set(_archived_uids(s3, bucket, "slow/"))) == 500


@pytest.mark.peers
def test_wrong_secret_is_an_auth_outcome(s3: S3Server) -> None:
    if s3.kind == "moto":
        pytest.skip("moto accepts any credentials")
    bucket = _bucket(s3)
    env = {**os.environ, "AWS_SECRET_ACCESS_KEY": "wrong"}
    saved = os.environ["AWS_SECRET_ACCESS_KEY"]
    os.environ["AWS_SECRET_ACCESS_KEY"] = "wrong"
    try:
        backend = backend_from_url(s3.url(bucket, "x"), env=env)
        assert backend.send(_request({"access": 1}), 1).kind is OutcomeKind.AUTH
    finally:
        os.environ["AWS_SECRET_ACCESS_KEY"] = saved


@pytest.mark.peers
def test_archive_setup_installs_per_class_rules_idempotently(s3: S3Server, capsys: pytest.CaptureFixture[str]) -> None:
    bucket = _bucket(s3)
    client: Any = s3.client()
    client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
        {"ID": "team-tmp", "Status": "Enabled", "Filter": {"Prefix": "tmp/"}, "Expiration": {"Days": 1}}]})
    url = s3.url(bucket, "prod")
    assert main(["archive", "setup", "--backend", url]) == 0
    first = capsys.readouterr().out
    assert f"created rule otel-ext-security: s3://{bucket}/prod/security/* expires after 365 d" in first
    assert "created rule otel-ext-application" in first and "kept 1 rule(s) not managed by otel-ext: team-tmp" in first
    rules = {r["ID"]: r for r in client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    days = {i: r["Expiration"]["Days"] for i, r in rules.items()}
    assert days == {"team-tmp": 1, "otel-ext-security": 365, "otel-ext-error": 90, "otel-ext-access": 30,
                    "otel-ext-performance": 14, "otel-ext-application": 7}
    assert rules["otel-ext-access"]["Filter"]["Prefix"] == "prod/access/"
    assert main(["archive", "setup", "--backend", url]) == 0
    second = capsys.readouterr().out
    assert "created" not in second and "updated" not in second and "nothing written" in second
    assert main(["archive", "setup", "--backend", url, "--retention", "access=14d"]) == 0
    assert f"updated rule otel-ext-access: s3://{bucket}/prod/access/* expires after 14 d (was 30 d)" \
        in capsys.readouterr().out
    assert main(["archive", "setup", "--backend", "otlp+grpc://127.0.0.1:4317"]) == 2


def _es_uids(url: str, index: str) -> list[str]:
    http = urllib3.PoolManager()
    http.request("POST", f"{url}/{index}/_refresh")
    resp = http.request("POST", f"{url}/{index}/_search", body=json.dumps({"size": 10000}).encode(),
                        headers={"Content-Type": "application/json"})
    assert resp.status == 200, resp.data[:300]
    return [h["_source"]["log"]["record"]["uid"] if "log" in h["_source"] else h["_source"]["log.record.uid"]
            for h in resp.json()["hits"]["hits"]]


@pytest.mark.peers
def test_replay_into_elasticsearch_is_idempotent_and_filters_by_class_and_time(
        s3: S3Server, search_server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bucket = _bucket(s3)
    archive = s3.url(bucket, "prod")
    app = make_app([archive], tmp_path / "q")
    app.emit(300, "security")
    app.emit(200, "access")
    assert app.deliver()
    app.close()
    namespace = f"replay{uuid.uuid4().hex[:6]}"
    target = f"opensearch+http://127.0.0.1:{search_server.port}?namespace={namespace}"
    argv = ["archive", "replay", "--from", archive, "--to", target, "--since", "1h", "--class", "security"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "replayed 300 records" in out
    index = f"logs-security-{namespace}"
    assert wait_until(lambda: len(_es_uids(search_server.url, index)) >= 300, 20)
    assert main(argv) == 0  # again: the same documents, not new ones
    assert "replayed 300 records" in capsys.readouterr().out
    uids = _es_uids(search_server.url, index)
    assert len(uids) == 300 == len(set(uids))
    # a damaged object is reported by name and the rest still replays
    client: Any = s3.client()
    client.put_object(Bucket=bucket, Key="prod/security/year=2026/month=01/day=01/hour=00/minute=00/logs_x.json.gz",
                      Body=b"not gzip")
    assert main([*argv[:-4], "--class", "security"]) == 1
    out = capsys.readouterr().out
    assert "NOT DELIVERED: prod/security/year=2026/month=01/day=01/hour=00/minute=00/logs_x.json.gz: unreadable" in out
    assert "replayed 300 records" in out
    # nothing of the access class went there, and a window in the past selects nothing
    assert main(["archive", "replay", "--from", archive, "--to", target, "--since", "3h", "--until", "2h"]) == 0
    out = capsys.readouterr().out
    assert "replayed 0 records from 0 objects" in out
    assert "selected by each record's own time" in out and "500 records in them were outside it" in out


@pytest.mark.peers
def test_replay_window_finds_records_archived_long_after_they_happened(s3: S3Server) -> None:
    """Records archived now (partition = write time) that happened hours ago, an hour ahead (a skewed
    clock) or now: a window selects them by their own time, searching partitions widened by the slack."""
    bucket = _bucket(s3)
    archive = backend_from_url(s3.url(bucket, "prod"), env=dict(os.environ))
    assert isinstance(archive, S3Backend)
    now = dt.datetime.now(dt.timezone.utc)
    h = dt.timedelta(hours=1)
    payload = _timed_request({f"old-{i}": (now - 5 * h, None) for i in range(4)}
                             | {f"skewed-{i}": (now + 3 * h, None) for i in range(2)}
                             | {f"now-{i}": (now, None) for i in range(3)}
                             | {"observed-old": (None, now - 5 * h)})
    assert archive.send(payload, 10).delivered
    assert archive.send(_timed_request({"later": (now - 5 * h, None)}), 1).delivered  # a second object

    def replayed(since: dt.datetime, until: dt.datetime, slack: dt.timedelta) -> tuple[list[str], int]:
        target = MemoryBackend()
        result = replay(archive, target, since, until, ["security"], slack=slack)
        assert not result.failed
        uids = sorted(record_uids([(None, p) for p in target.payloads]))
        assert result.records == len(uids)
        return uids, result.outside

    old = sorted([f"old-{i}" for i in range(4)] + ["observed-old", "later"])
    assert replayed(now - 6 * h, now - 4 * h, slack=24 * h) == (old, 5)
    assert replayed(now + 2 * h, now + 4 * h, slack=24 * h) == (["skewed-0", "skewed-1"], 9)
    assert replayed(now - 6 * h, now - 4 * h, slack=h) == ([], 0)  # archived 5 h later: outside a 1 h slack
    target = MemoryBackend()  # no window: everything
    assert replay(archive, target, None, None, ["security"]).records == 11
    archive.close()


@pytest.mark.peers
def test_the_collectors_awss3receiver_replays_one_class_of_our_archive(s3: S3Server, otelcol: Path,
                                                                      tmp_path: Path) -> None:
    """The real collector build reads our gzip OTLP JSON objects back (awss3receiver, time-based, one
    class's prefix) and writes what it read with its file exporter: exactly our security records."""
    bucket = _bucket(s3)
    app = make_app([s3.url(bucket, "prod")], tmp_path / "q")
    start = dt.datetime.now(dt.timezone.utc).replace(second=0, microsecond=0)
    app.emit(250, "security")
    app.emit(150, "access")
    assert app.deliver()
    app.close()
    security = set(_archived_uids(s3, bucket, "prod/security/"))
    assert len(security) == 250
    out = tmp_path / "replayed.json"
    config = tmp_path / "replay.yaml"
    end = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=1)
    config.write_text(json.dumps({
        "receivers": {"awss3": {
            "s3downloader": {"s3_bucket": bucket, "s3_prefix": "prod/security", "region": "us-east-1",
                             "endpoint": s3.endpoint, "s3_force_path_style": True,
                             "s3_partition_format": "year=%Y/month=%m/day=%d/hour=%H/minute=%M",
                             "s3_partition_timezone": "UTC"},
            "starttime": start.strftime("%Y-%m-%d %H:%M"), "endtime": end.strftime("%Y-%m-%d %H:%M")}},
        "exporters": {"file": {"path": str(out)}},
        "service": {"telemetry": {"metrics": {"level": "none"}},
                    "pipelines": {"logs": {"receivers": ["awss3"], "exporters": ["file"]}}}}))
    log = (tmp_path / "collector.log").open("wb")
    proc = subprocess.Popen([str(otelcol), "--config", str(config)], env={**os.environ, **S3Server.credentials_env()},
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def replayed() -> list[str]:
        if not out.exists():
            return []
        return [uid for line in out.read_text().splitlines() if line.strip()
                for uid in record_uids([(None, decode_object("x.json", line.encode()))])]

    try:
        assert wait_until(lambda: len(replayed()) >= 250 or proc.poll() is not None, 60, interval=0.5), \
            (tmp_path / "collector.log").read_text()[-3000:]
        time.sleep(1.0)  # anything more would arrive now
        uids = replayed()
    finally:
        stop_process(proc)
    assert sorted(uids) == sorted(security), (tmp_path / "collector.log").read_text()[-3000:]


@pytest.mark.peers
def test_report_from_the_archive_equals_the_report_from_the_file_backend(s3: S3Server, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """``otel-ext report --backend s3://…`` reads the archive as it lies (every class, gzip OTLP JSON):
    the same records replicated to a file backend and the archive give the same numbers."""
    from opentelemetry._logs import SeverityNumber

    from otel_ext.report import OTLPJsonFileReader, S3ArchiveReader
    from otel_ext.report.model import Aggregator

    bucket = _bucket(s3)
    archive = s3.url(bucket, "rep")
    app = make_app([f"file://{tmp_path / 'logs'}?name=files", archive], tmp_path / "q", policy="replicate")
    logger = app.provider.get_logger("shop.api")
    tenants = ["acme"] * 9 + ["globex"] * 4 + ["initech"]
    for i in range(280):
        status = 500 if i % 20 == 0 else 401 if i % 31 == 0 else 200
        cls = "error" if status == 500 else "security" if status == 401 else "access"
        logger.emit(body=f"GET /api/orders/{i} {status}", severity_number=SeverityNumber.INFO,
                    attributes={"labels.event_class": cls, "tenant.id": tenants[i % len(tenants)],
                                "http.route": "/api/orders/{order_id}" if i % 3 else "/api/items",
                                "http.request.method": "GET", "http.response.status_code": status,
                                "http.server.request.duration": 0.001 * (i % 50), "client.address": "10.0.0.7",
                                "event.action": "authz_fail" if status == 401 else ""})
    assert app.deliver()
    app.close()
    client: Any = s3.client()
    client.put_object(Bucket=bucket, Key="rep/access/year=2026/month=11/day=26/hour=12/minute=00/logs_bad.json.gz",
                      Body=b"not gzip")  # a damaged object is counted, not fatal
    retention = {"access": 30, "error": 90, "security": 365, "performance": 14, "application": 7}
    from_files = Aggregator("tenant.id", "files", retention).build(OTLPJsonFileReader(tmp_path / "logs").records())
    reader = S3ArchiveReader(archive)
    from_archive = Aggregator("tenant.id", "archive", retention).build(reader.records())
    assert reader.bad_objects == 1 and reader.objects >= 3  # one object per class at least
    assert from_archive.records == from_files.records == 280
    assert from_archive.client_totals() == from_files.client_totals() == {"acme": 180, "globex": 80, "initech": 20}
    assert from_archive.usage == from_files.usage and from_archive.timeline == from_files.timeline
    assert from_archive.classes == from_files.classes
    assert from_archive.security_actions == from_files.security_actions
    assert {r: s.calls for r, s in from_archive.routes.items()} == {r: s.calls for r, s in from_files.routes.items()}
    from otel_ext import cli

    capsys.readouterr()
    assert cli.main(["report", "--backend", archive, "--out", str(tmp_path / "r.html"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["records"] == 280 and doc["clients"] == {"acme": 180, "globex": 80, "initech": 20}
    assert (tmp_path / "r.html").read_text().count("acme") >= 1
