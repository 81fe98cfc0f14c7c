"""collector_configs/gateway-kafka.yaml on the real collector build: apps -> otel-ext Kafka backend ->
a real Kafka 4.4.0 broker -> two gateway instances in one consumer group -> Elasticsearch 8.17.
One gateway is killed -9 mid-stream; every record must be in the index exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from kafka_server import KafkaBroker
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from peers import free_port, kill_process, port_open, stop_process, wait_until

from otel_ext.export import FailoverLogExporter

pytestmark = pytest.mark.peers
ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "collector_configs"
NAMESPACE = "kafkagw"
STREAM = f"logs-generic.otel-{NAMESPACE}"


def test_gateway_kafka_config_validates(otelcol: Path) -> None:
    env = {**os.environ, "OTEL_EXT_ES_ENDPOINT": "http://127.0.0.1:3", "OTEL_EXT_KAFKA_BROKERS": "127.0.0.1:1,127.0.0.1:2"}
    out = subprocess.run([str(otelcol), "validate", "--config", str(SHIPPED / "gateway-kafka.yaml"), "--config",
                          str(SHIPPED / "classify.yaml")], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_builder_manifest_pins_kafkareceiver_to_the_collector_release() -> None:
    text = (SHIPPED / "builder-config.yaml").read_text()
    assert "receiver/kafkareceiver v0.145.0" in text


class Gateway:
    def __init__(self, otelcol: Path, workdir: Path, name: str, env: dict[str, str]) -> None:
        self.otelcol, self.workdir, self.name = otelcol, workdir, name
        self.health = free_port()
        self.env = {**os.environ, **env, "OTEL_EXT_HEALTH_ENDPOINT": f"127.0.0.1:{self.health}",
                    "OTEL_EXT_KAFKA_CLIENT_ID": name}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Gateway:
        log = (self.workdir / f"{self.name}.log").open("ab")
        self.proc = subprocess.Popen([str(self.otelcol), "--config", str(SHIPPED / "gateway-kafka.yaml"), "--config",
                                      str(SHIPPED / "classify.yaml")], env=self.env, stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        assert wait_until(lambda: port_open(self.health), 30), self.log()[-3000:]
        return self

    def log(self) -> str:
        path = self.workdir / f"{self.name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self) -> None:
        kill_process(self.proc)

    def stop(self) -> None:
        stop_process(self.proc)


def index_uids(url: str) -> list[str]:
    http = urllib3.PoolManager()
    http.request("POST", f"{url}/{STREAM}/_refresh")
    uids: list[str] = []
    body = {"size": 5000, "sort": ["_doc"], "_source": ["attributes.log.record.uid"]}
    resp = http.request("POST", f"{url}/{STREAM}/_search?scroll=1m", body=json.dumps(body).encode(),
                        headers={"Content-Type": "application/json"})
    if resp.status != 200:
        return []
    data = resp.json()
    while data["hits"]["hits"]:
        uids += [h["_source"]["attributes"]["log.record.uid"] for h in data["hits"]["hits"]]
        resp = http.request("POST", f"{url}/_search/scroll", body=json.dumps(
            {"scroll": "1m", "scroll_id": data["_scroll_id"]}).encode(), headers={"Content-Type": "application/json"})
        data = resp.json()
    return uids


def group_assignment(bootstrap: str, group: str) -> dict[str, int]:
    """client id -> number of partitions it is assigned in the consumer group."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        description = admin.describe_consumer_groups([group], request_timeout=5)[group].result(10)
    except Exception:  # noqa: BLE001 - group not formed yet
        return {}
    return {m.client_id: len(m.assignment.topic_partitions) for m in description.members}


@pytest.fixture
def stream(es_server: Any) -> Iterator[str]:
    http = urllib3.PoolManager()
    http.request("PUT", f"{es_server.url}/_index_template/test-kafka-gateway", body=json.dumps(
        {"index_patterns": [STREAM], "data_stream": {}, "priority": 60}).encode(),
        headers={"Content-Type": "application/json"})
    http.request("DELETE", f"{es_server.url}/_data_stream/{STREAM}")
    yield es_server.url
    http.request("DELETE", f"{es_server.url}/_data_stream/{STREAM}")
    http.request("DELETE", f"{es_server.url}/_index_template/test-kafka-gateway")


def test_two_gateways_share_the_topic_and_one_killed_mid_stream_loses_nothing(
        otelcol: Path, stream: str, tmp_path: Path) -> None:
    broker = KafkaBroker(partitions=4).start()
    gateways: list[Gateway] = []
    apps: list[tuple[LoggerProvider, FailoverLogExporter]] = []
    try:
        topic = "otel-ext-logs"
        broker.create_topic(topic, 4)
        env = {"OTEL_EXT_KAFKA_BROKERS": broker.bootstrap, "OTEL_EXT_KAFKA_TOPIC": topic,
               "OTEL_EXT_KAFKA_GROUP": "gateways", "OTEL_EXT_ES_ENDPOINT": stream,
               "OTEL_EXT_ES_NAMESPACE": NAMESPACE, "OTEL_EXT_KAFKA_SESSION_TIMEOUT": "6s",
               "OTEL_EXT_KAFKA_HEARTBEAT_INTERVAL": "1s"}
        gateways = [Gateway(otelcol, tmp_path, f"gw{i}", env).start() for i in range(2)]
        # four services -> four message keys -> spread over the four partitions
        for i in range(4):
            exporter = FailoverLogExporter([broker.url(topic, timeout="5s")], queue_dir=tmp_path / f"q{i}")
            provider = LoggerProvider(resource=Resource.create({"service.name": f"svc-{i}"}))
            provider.add_log_record_processor(BatchLogRecordProcessor(exporter, schedule_delay_millis=50,
                                                                      max_queue_size=100_000))
            apps.append((provider, exporter))
        emitted = 0
        stop = threading.Event()

        def produce() -> None:
            nonlocal emitted
            loggers = [p.get_logger("app") for p, _ in apps]
            while not stop.is_set() and emitted < 8000:
                for logger in loggers:
                    for _ in range(25):
                        logger.emit(body=f"GET /api/items/{emitted} 200", severity_number=SeverityNumber.INFO,
                                    attributes={"seq": emitted})
                        emitted += 1
                time.sleep(0.05)

        producer = threading.Thread(target=produce)
        producer.start()
        # both gateways are members of the group, each with partitions of the topic
        assert wait_until(lambda: sorted(group_assignment(broker.bootstrap, "gateways").values()) == [2, 2], 60), \
            group_assignment(broker.bootstrap, "gateways")
        assert wait_until(lambda: len(index_uids(stream)) > 500, 90), gateways[0].log()[-3000:]
        gateways[0].kill()  # kill -9 mid-stream: its partitions move to gw1 after the session timeout
        producer.join()
        for provider, exporter in apps:
            assert provider.force_flush(30_000)
            assert exporter.force_flush(60_000)
        total = emitted
        assert wait_until(lambda: len(set(index_uids(stream))) >= total, 120), \
            f"{len(set(index_uids(stream)))} of {total}\n" + gateways[1].log()[-3000:]
        time.sleep(2)  # anything still arriving would be a duplicate: give it the chance
        uids = index_uids(stream)
        dupes = [u for u, n in Counter(uids).items() if n > 1]
        assert len(set(uids)) == total and not dupes, f"{len(set(uids))} unique of {total}, {len(dupes)} duplicated"
        assert group_assignment(broker.bootstrap, "gateways") == {"gw1": 4}  # the survivor took over
    finally:
        for provider, _ in apps:
            provider.shutdown()
        for gw in gateways:
            gw.stop()
        broker.stop()
