"""Elasticsearch/OpenSearch backend against real server processes over HTTP: Elasticsearch 8.17.0
(and 9.2.0) with the official client (9.x, and 8.x in a subprocess), OpenSearch 2.19.4 with
opensearch-py; faults are injected on the wire by a loopback proxy in front of Elasticsearch (503,
429 items, lost responses, delays, 413)."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from es_proxy import EsProxy
from exporter_harness import App, make_app
from opentelemetry._logs import SeverityNumber
from peers import collect

from otel_ext.backends import backend_from_url

pytestmark = pytest.mark.peers
CLASSES = ["access", "security", "error", "performance", "application"]


class Search:
    def __init__(self, url: str) -> None:
        self.url = url
        self.http = urllib3.PoolManager(retries=False)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        resp = self.http.request(method, self.url + path, body=data, headers={"Content-Type": "application/json"},
                                 timeout=30)
        return json.loads(resp.data) if resp.data else {}

    def count(self, index: str) -> int:
        self.call("POST", f"/{index}/_refresh")
        return int(self.call("GET", f"/{index}/_count").get("count", 0))

    def ids(self, index: str) -> list[str]:
        self.call("POST", f"/{index}/_refresh")
        hits = self.call("POST", f"/{index}/_search", {"size": 10000, "_source": False})["hits"]["hits"]
        return [h["_id"] for h in hits]


def clean(url: str) -> Search:
    client = Search(url)
    client.call("DELETE", "/logs-*,otel-ext-*?expand_wildcards=all")
    return client


@pytest.fixture
def search(search_server: Any) -> Search:
    """OpenSearch, emptied."""
    return clean(search_server.url)


@pytest.fixture
def es(es_server: Any) -> Search:
    """Elasticsearch, emptied."""
    return clean(es_server.url)


@pytest.fixture
def proxy(es_server: Any, es: Search) -> Iterator[EsProxy]:
    server = EsProxy(es_server.url)
    yield server
    server.close()


def emit_classes(app: App, per_class: int) -> None:
    for event_class in CLASSES:
        app.emit(per_class, event_class=event_class)


def test_opensearch_flavour_delivers_once_routed_by_class(search: Search, search_server: Any, tmp_path: Path) -> None:
    app = make_app([f"opensearch+http://127.0.0.1:{search_server.port}?name=os"], tmp_path / "q")
    emit_classes(app, 40)
    assert app.deliver(60)
    app.close()
    for event_class in CLASSES:
        assert search.count(f"logs-{event_class}-default") == 40, event_class
    assert len(set(search.ids("logs-*-default"))) == 200
    doc = search.call("POST", "/logs-security-default/_search", {"size": 1})["hits"]["hits"][0]["_source"]
    assert doc["labels"]["event_class"] == "security" and doc["message"].startswith("record ")
    assert "level" not in doc["log"] and doc["event"]["severity"] == 9  # no severity text: no log.level
    assert doc["log"]["record"]["uid"] == search.ids("logs-security-default")[0] or doc["log"]["record"]["uid"]
    assert doc["data_stream"] == {"type": "logs", "dataset": "security", "namespace": "default"}
    assert doc["agent"]["name"] == "opentelemetry/python"


def test_elasticsearch_with_the_official_client_and_otel_mapping(es: Search, es_server: Any, tmp_path: Path) -> None:
    app = make_app([f"elasticsearch+http://127.0.0.1:{es_server.port}?name=es&mapping=otel&namespace=prod"],
                   tmp_path / "q")
    emit_classes(app, 20)
    assert app.deliver(60)
    app.close()
    assert es.count("logs-security.otel-prod") == 20
    assert es.count("logs-error.otel-prod") == 20
    doc = es.call("POST", "/logs-error.otel-prod/_search", {"size": 1})["hits"]["hits"][0]["_source"]
    assert doc["attributes"]["labels.event_class"] == "error"
    assert doc["body"]["text"].startswith("record ") and doc["severity_number"] == 9
    assert doc["scope"]["name"] == "test.app" and "telemetry.sdk.name" in doc["resource"]["attributes"]
    assert "." in doc["@timestamp"]


@pytest.mark.parametrize("flavour", ["opensearch", "elasticsearch"])
def test_replaying_an_entry_is_idempotent(flavour: str, search_server: Any, es_server: Any, tmp_path: Path) -> None:
    server = search_server if flavour == "opensearch" else es_server
    search = clean(server.url)
    backend = backend_from_url(f"{flavour}+http://127.0.0.1:{server.port}")
    app = make_app([f"file://{tmp_path / 'out'}"], tmp_path / "q")  # only to build real queue entries
    app.emit(50, event_class="access")
    app.flush_to_queue()
    entries = app.exporter.queue.read_after(0, 10_000, 10**9)
    app.close()
    payload = b"".join(e.payload for e in entries)
    assert backend.send(payload, 50).delivered
    assert backend.send(payload, 50).delivered  # every create answers 409: already delivered
    assert search.count("logs-access-default") == 50


def test_lost_response_after_the_bulk_was_processed_makes_no_duplicates(es: Search, proxy: EsProxy,
                                                                        tmp_path: Path) -> None:
    proxy.drop_next_response = True
    app = make_app([f"elasticsearch+http://127.0.0.1:{proxy.port}?name=es"], tmp_path / "q")
    app.emit(100, event_class="access")
    assert app.deliver(60)
    app.close()
    assert proxy.bulk_docs[0] == 100 and len(proxy.bulk_docs) >= 2  # processed, then sent again
    assert es.count("logs-access-default") == 100
    assert app.counters.get("attempts", "es:retryable") >= 1


def test_429_items_are_retried_alone(es: Search, proxy: EsProxy, tmp_path: Path) -> None:
    app = make_app([f"elasticsearch+http://127.0.0.1:{proxy.port}?name=es"], tmp_path / "q")
    app.emit(30, event_class="access")
    app.flush_to_queue()
    # learn the ids the records carry, then throttle three of them once
    from otel_ext.backends.elasticsearch.mapping import iter_mapped

    entries = app.exporter.queue.read_after(0, 10_000, 10**9)
    ids = [m.doc_id for e in entries for m in iter_mapped(e.payload, "ecs")]
    proxy.throttle_ids.update({ids[0]: 1, ids[7]: 1, ids[29]: 1})
    assert app.deliver(60)
    app.close()
    assert es.count("logs-access-default") == 30
    assert 3 in proxy.bulk_docs  # the retry carried only the three throttled documents


def test_503_fails_over_to_otlp_and_back(es: Search, proxy: EsProxy, receivers: Any, tmp_path: Path) -> None:
    rx = receivers("otlp")
    proxy.bulk_status = 503
    app = make_app([f"elasticsearch+http://127.0.0.1:{proxy.port}?name=es", rx.grpc_url], tmp_path / "q")
    app.emit(100, event_class="error")
    assert app.deliver(60)
    assert len(set(collect(100, rx))) == 100
    proxy.bulk_status = None  # ES recovers: probes (GET /) bring it back, new records go to ES
    deadline = time.monotonic() + 20
    while app.exporter.lanes[0].active_backend != "es" and time.monotonic() < deadline:
        time.sleep(0.1)
    app.emit(50, event_class="error")
    assert app.deliver(60)
    app.close()
    assert es.count("logs-error-default") == 50
    assert app.counters.get("failovers") >= 2


def test_otlp_down_fails_over_to_opensearch(search: Search, search_server: Any, receivers: Any, tmp_path: Path) -> None:
    rx = receivers("otlp", start=False)
    app = make_app([rx.grpc_url, f"opensearch+http://127.0.0.1:{search_server.port}?name=os"], tmp_path / "q")
    emit_classes(app, 10)
    assert app.deliver(60)
    app.close()
    assert len(set(search.ids("logs-*-default"))) == 50


def test_slow_server_times_out_and_fails_over(es: Search, proxy: EsProxy, receivers: Any, tmp_path: Path) -> None:
    rx = receivers("otlp")
    proxy.delay = 3.0
    app = make_app([f"elasticsearch+http://127.0.0.1:{proxy.port}?name=es&timeout=500ms", rx.grpc_url],
                   tmp_path / "q", shutdown_timeout=0.5)
    app.emit(40, event_class="access")
    assert app.deliver(60)
    app.close()
    assert len(set(collect(40, rx))) == 40


def test_413_splits_the_request(es: Search, proxy: EsProxy, tmp_path: Path) -> None:
    proxy.max_body = 30_000
    app = make_app([f"elasticsearch+http://127.0.0.1:{proxy.port}?name=es"], tmp_path / "q")
    app.emit(300, event_class="access")
    assert app.deliver(60)
    app.close()
    assert es.count("logs-access-default") == 300
    assert max(proxy.bulk_docs) < 300


def test_mapping_errors_go_to_the_dead_letter_store_and_replay(search: Search, search_server: Any,
                                                               tmp_path: Path) -> None:
    app = make_app([f"opensearch+http://127.0.0.1:{search_server.port}?name=os"], tmp_path / "q")
    logger = app.provider.get_logger("shop")
    for i in range(20):
        amount: Any = i if i != 13 else "thirteen dollars"  # one record does not fit the mapping
        logger.emit(body=f"order {i}", severity_number=SeverityNumber.INFO,
                    attributes={"order.amount": amount, "elasticsearch.index": "otel-ext-orders"})
        app.flush_to_queue() if i == 0 else None  # the first document fixes the mapping: long
    assert app.deliver(60)
    letters = app.exporter.queue.dead_letters()
    assert [d.records for d in letters] == [1]
    assert "mapper_parsing_exception" in letters[0].reason and letters[0].backend == "os"
    assert search.count("otel-ext-orders") == 19
    search.call("DELETE", "/otel-ext-orders")  # the operator fixes the mapping, then replays
    search.call("PUT", "/otel-ext-orders", {"mappings": {"properties": {"order": {"properties": {
        "amount": {"type": "keyword"}}}}}})
    assert app.exporter.queue.requeue_dead_letters() == 1
    assert app.deliver(60)
    app.close()
    assert search.count("otel-ext-orders") == 1  # (refreshes the index)
    hits = search.call("POST", "/otel-ext-orders/_search", {"query": {"match": {"message": "13"}}})["hits"]["hits"]
    assert hits[0]["_source"]["order"]["amount"] == "thirteen dollars"


def test_request_level_auth_and_throttle_outcomes(proxy: EsProxy) -> None:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    backend = backend_from_url(f"elasticsearch+http://127.0.0.1:{proxy.port}?name=es")
    request = ExportLogsServiceRequest()
    request.resource_logs.add().scope_logs.add().log_records.add().body.string_value = "x"
    payload = request.SerializeToString()
    outcomes = Counter()
    for status in (401, 403, 429, 503, 400):
        proxy.bulk_status = status
        outcomes[status] = backend.send(payload, 1).kind.value
    assert outcomes == Counter({401: "auth", 403: "auth", 429: "throttled", 503: "retryable", 400: "permanent"})


def access_request(uids: list[str]) -> bytes:
    """An OTLP request of access records with these log.record.uid values."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    request = ExportLogsServiceRequest()
    scope = request.resource_logs.add().scope_logs.add()
    for uid in uids:
        record = scope.log_records.add()
        record.body.string_value = f"record {uid}"
        record.attributes.add(key="log.record.uid").value.string_value = uid
        record.attributes.add(key="labels.event_class").value.string_value = "access"
    return bytes(request.SerializeToString())


CLIENT_8_SCRIPT = """
import json, sys
import elasticsearch
from otel_ext.backends import backend_from_url

url, dead_port = sys.argv[1], sys.argv[2]
payload = sys.stdin.buffer.read()  # an OTLP request of 50 records
backend = backend_from_url(url)
outcomes = [backend.send(payload, 50).kind.value, backend.send(payload, 50).kind.value]  # a replay: 409s
down = backend_from_url(f"elasticsearch+http://127.0.0.1:{dead_port}?timeout=1s").send(payload, 50).kind.value
print(json.dumps({"client": elasticsearch.__versionstr__, "outcomes": outcomes, "down": down}))
"""


def test_the_elasticsearch_8_client_works_too(es: Search, es_server: Any) -> None:
    """The venv has the 9.x client; the same backend code runs with 8.x first on the path."""
    import os
    import subprocess
    import sys

    from peers import free_port
    from search_server import ensure_es_client_8

    env = {**os.environ, "PYTHONPATH": str(ensure_es_client_8())}
    uids = [f"c8-{i:03d}" for i in range(50)]
    done = subprocess.run([sys.executable, "-c", CLIENT_8_SCRIPT,
                           f"elasticsearch+http://127.0.0.1:{es_server.port}?namespace=client8", str(free_port())],
                          env=env, input=access_request(uids), capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["client"].startswith("8.")
    assert result["outcomes"] == ["ok", "ok"] and result["down"] == "retryable"
    assert sorted(es.ids("logs-access-client8")) == [f"c8-{i:03d}" for i in range(50)]


def test_elasticsearch_9_server_same_backend(es9_server: Any, tmp_path: Path) -> None:
    """Elasticsearch 9.2 accepts what the backend sends (REST compatibility v8 headers): both
    mappings are delivered, a replay makes no duplicates, a mapping error is dead-lettered."""
    es9 = clean(es9_server.url)
    url = f"elasticsearch+http://127.0.0.1:{es9_server.port}?name=es9"
    app = make_app([f"{url}&namespace=nine"], tmp_path / "q")
    emit_classes(app, 20)
    logger = app.provider.get_logger("shop")
    for i in range(3):
        amount: Any = i if i != 2 else "two dollars"  # the first fixes the mapping (long): the third is refused
        logger.emit(body=f"order {i}", severity_number=SeverityNumber.INFO,
                    attributes={"order.amount": amount, "elasticsearch.index": "otel-ext-orders9"})
        app.flush_to_queue()
    assert app.deliver(60)
    letters = app.exporter.queue.dead_letters()
    app.close()
    assert [es9.count(f"logs-{c}-nine") for c in CLASSES] == [20] * 5
    assert es9.count("otel-ext-orders9") == 2
    # Elasticsearch 9 says document_parsing_exception where 8 said mapper_parsing_exception
    assert [d.records for d in letters] == [1] and "failed to parse field [order.amount]" in letters[0].reason

    uids = [f"nine-{i:02d}" for i in range(30)]
    backend = backend_from_url(f"{url}&namespace=nine&mapping=otel")
    assert backend.send(access_request(uids), 30).delivered
    assert backend.send(access_request(uids), 30).delivered  # replay: 409s, no duplicates
    assert sorted(es9.ids("logs-access.otel-nine")) == uids


def test_kill_9_of_elasticsearch_mid_stream_loses_nothing(tmp_path: Path) -> None:
    """Elasticsearch dies (SIGKILL) while bulks are in flight, stays down while the app keeps
    logging, then restarts on the same data: every record arrives once (what ES had acknowledged
    survived in its translog; the rest waited in our disk queue; replays answered 409)."""
    import threading

    from peers import wait_until
    from search_server import SearchServer

    server = SearchServer("elasticsearch").start()
    try:
        search = Search(server.url)
        app = make_app([f"elasticsearch+http://127.0.0.1:{server.port}?name=es&namespace=crash&timeout=2s"],
                       tmp_path / "q")
        total = 6000
        killed = threading.Event()

        def produce() -> None:
            while app.emitted < total:  # ~2,000 records/s
                if app.emitted >= total - 1000:
                    killed.wait(60)  # the last 1,000 only after the kill: it always lands mid-stream
                app.emit(100)
                time.sleep(0.05)

        producer = threading.Thread(target=produce)
        producer.start()
        assert wait_until(lambda: search.count("logs-access-crash") >= 500, 60, interval=0.05)
        server.kill()
        assert app.emitted < total  # killed mid-stream: the app still has records to log
        killed.set()
        producer.join(60)
        app.flush_to_queue()  # everything emitted is on our disk, ES is still down
        server.start()
        assert app.deliver(120)
        app.close()
        ids = search.ids("logs-access-crash")
        assert len(ids) == len(set(ids)) == total
        assert search.count("logs-access-crash") == total
    finally:
        server.stop()
