"""Benchmark: documents/s into a real Elasticsearch 8.17 through ElasticsearchBackend (starting from
the queued OTLP protobuf: decode, map to ECS, serialize, bulk) divided by the same documents sent with
``elasticsearch.helpers.bulk`` from prebuilt plain dicts, same server, same run.

    python benchmarks/bench_elasticsearch.py [--records 40000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from elasticsearch import Elasticsearch, helpers
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs._internal import LogRecord

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from search_server import SearchServer

from otel_ext.backends import backend_from_url
from otel_ext.backends.es_mapping import iter_mapped
from otel_ext.export.encoding import encode_batch

ATTRS = {"http.request.method": "GET", "http.route": "/api/orders/{id}", "http.response.status_code": 200,
         "url.path": "/api/orders/12345", "client.address": "10.0.3.17", "labels.event_class": "access",
         "event.kind": "event", "event.category": ("web",), "event.type": ("access",), "event.outcome": "success"}


def payloads(n: int, batch: int = 500) -> list[bytes]:
    resource = LoggerProvider().resource
    out = []
    for start in range(0, n, batch):
        records = [ReadableLogRecord(LogRecord(timestamp=time.time_ns(), body=f"GET /api/orders/{i} 200",
                                               attributes=dict(ATTRS), severity_number=SeverityNumber.INFO,
                                               severity_text="INFO"), resource)
                   for i in range(start, min(n, start + batch))]
        out += [e.payload for e in encode_batch(records)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=40_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    server = SearchServer("elasticsearch").start()
    try:
        # the anchor uses the installed 9.x client as is, except that its REST-compatibility header
        # must say 8 for this 8.17 server (otel-ext's backend sends compatible-with=8 itself)
        import elasticsearch._sync.client._base as es_base

        es_base._COMPAT_MIMETYPE_SUB = r"application/vnd.elasticsearch+\g<1>; compatible-with=8"  # type: ignore[attr-defined]
        client = Elasticsearch(server.url, request_timeout=60)
        ours, anchor = [], []
        for r in range(args.rounds):
            data = payloads(args.records)  # fresh uids each round: every create is real work
            backend = backend_from_url(f"elasticsearch+http://127.0.0.1:{server.port}?namespace=ours{r}&timeout=60")
            # the sender coalesces queued entries into requests of up to 10,000 records
            requests = [b"".join(data[i:i + 20]) for i in range(0, len(data), 20)]
            t0 = time.perf_counter()
            for payload in requests:
                assert backend.send(payload, 0).delivered
            ours.append(args.records / (time.perf_counter() - t0))
            actions = [{"_op_type": "create", "_index": m.index.name.replace(f"ours{r}", f"anchor{r}"),
                        "_id": m.doc_id, "_source": m.document}
                       for payload in data for m in iter_mapped(payload, "ecs", f"ours{r}")]
            t0 = time.perf_counter()
            ok, errors = helpers.bulk(client, actions, chunk_size=500, raise_on_error=True)
            anchor.append(args.records / (time.perf_counter() - t0))
            assert ok == args.records and not errors
    finally:
        server.stop()
    o, a = statistics.median(ours), statistics.median(anchor)
    print(f"Elasticsearch 8.17 ({args.records} docs x {args.rounds} rounds, medians): ElasticsearchBackend "
          f"{o:,.0f} docs/s (from OTLP protobuf); helpers.bulk {a:,.0f} docs/s (prebuilt dicts); "
          f"ratio {o / a:.2f} (goal >= 1.0)")


if __name__ == "__main__":
    main()
