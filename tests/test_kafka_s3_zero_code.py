"""OTEL_EXT_BACKENDS=kafka://…,s3://… under ``opentelemetry-instrument`` (the README's zero-code set-up)
with the replicate policy: the example service's records reach a real Kafka topic and the S3 archive,
each exactly once, classified."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from kafka_server import KafkaBroker, consume, record_uids
from s3_server import S3Server
from service import Service, uvicorn
from test_zero_code import appended, run_traffic_and_flush, zero_code_env

from otel_ext.backends.s3 import decode_object

pytestmark = pytest.mark.peers


def test_kafka_and_s3_archive_replicated_under_opentelemetry_instrument(tmp_path: Path) -> None:
    broker = KafkaBroker(partitions=2).start()
    s3 = S3Server().start()
    try:
        broker.create_topic("app-logs", 2)
        s3.create_bucket("archive")
        backends = f"kafka://{broker.bootstrap}/app-logs?timeout=5s,{s3.url('archive', 'shop')}"
        env = {**zero_code_env(tmp_path, backends, OTEL_EXT_FAILOVER_POLICY="replicate"), **S3Server.credentials_env()}
        service = Service(uvicorn(), env, tmp_path)
        try:
            stats = run_traffic_and_flush(service, 120)
        finally:
            assert service.stop() in (0, -15), service.output()
        total = appended(stats)
        assert total > 120
        messages = consume(broker.bootstrap, "app-logs", expect=1, timeout=30)
        in_kafka = record_uids(messages)
        assert len(in_kafka) == total == len(set(in_kafka))
        assert {key for key, _ in messages} == {b"shop-api"}
        client = s3.client()
        archived: list[str] = []
        per_class: Counter[str] = Counter()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket="archive", Prefix="shop/"):  # type: ignore[attr-defined]
            for obj in page.get("Contents", []):
                uids = record_uids([(None, decode_object(obj["Key"], client.get_object(  # type: ignore[attr-defined]
                    Bucket="archive", Key=obj["Key"])["Body"].read()))])
                archived += uids
                per_class[obj["Key"].split("/")[1]] += len(uids)
        assert sorted(archived) == sorted(in_kafka)
        assert set(per_class) == {"security", "error", "performance", "access", "application"}, per_class
    finally:
        s3.stop()
        broker.stop()
