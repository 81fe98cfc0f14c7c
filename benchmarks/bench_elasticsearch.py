"""Benchmark: documents/s into a real Elasticsearch (8.17, or 9.2) through ElasticsearchBackend
(starting from the queued OTLP protobuf: decode, map, serialize, bulk) divided by the same documents sent with
``elasticsearch.helpers.bulk`` from prebuilt plain dicts (its default chunk_size=500), same server,
same run; helpers.bulk with our request size (2,000 docs) is printed for reference.

    python benchmarks/bench_elasticsearch.py [--records 40000] [--rounds 3] [--mapping ecs|otel]
                                             [--server 8.17.0|9.2.0]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from elasticsearch import Elasticsearch, helpers
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs._internal import LogRecord

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from search_server import SearchServer

from otel_ext.backends import backend_from_url
from otel_ext.backends.elasticsearch.mapping import iter_mapped
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
    parser.add_argument("--mapping", choices=["ecs", "otel"], default="ecs")
    parser.add_argument("--server", choices=["8.17.0", "9.2.0"], default="8.17.0", help="Elasticsearch version")
    args = parser.parse_args()
    server = SearchServer("elasticsearch", version=args.server).start()
    try:
        if args.server.startswith("8."):
            # the anchor uses the installed 9.x client as is, except that its REST-compatibility
            # header must say 8 for an 8.x server (otel-ext's backend sends compatible-with=8 itself)
            import elasticsearch._sync.client._base as es_base

            es_base._COMPAT_MIMETYPE_SUB = r"application/vnd.elasticsearch+\g<1>; compatible-with=8"
        client = Elasticsearch(server.url, request_timeout=60)
        ours: list[float] = []
        anchor: list[float] = []
        same_size: list[float] = []  # helpers.bulk with our request size (2,000 docs), for reference

        def run_ours(n: int, namespace: str) -> float:
            data = payloads(n)
            backend = backend_from_url(f"elasticsearch+http://127.0.0.1:{server.port}?namespace={namespace}&timeout=60"
                                       f"&mapping={args.mapping}")
            # the sender coalesces queued entries into requests of up to 10,000 records
            requests = [b"".join(data[i:i + 20]) for i in range(0, len(data), 20)]
            t0 = time.perf_counter()
            for payload in requests:
                assert backend.send(payload, 0).delivered
            return n / (time.perf_counter() - t0)

        def run_anchor(n: int, namespace: str, chunk_size: int = 500) -> float:
            actions = [{"_op_type": "create", "_index": m.index.name, "_id": m.doc_id, "_source": m.document}
                       for payload in payloads(n) for m in iter_mapped(payload, args.mapping, namespace)]
            t0 = time.perf_counter()
            ok, errors = helpers.bulk(client, actions, chunk_size=chunk_size, raise_on_error=True)
            rate = n / (time.perf_counter() - t0)
            assert ok == n and not errors
            return rate

        # warm both paths (JIT of the server, index creation), then alternate which goes first
        run_ours(10_000, "warmours")
        run_anchor(10_000, "warmanchor")
        for r in range(args.rounds):
            # fresh uids each round: every create is real work
            steps: list[tuple[list[float], Callable[[int, str], float], str]] = [
                (ours, run_ours, f"ours{r}"), (anchor, run_anchor, f"anchor{r}"),
                (same_size, lambda n, ns: run_anchor(n, ns, 2000), f"size{r}")]
            for results, run, namespace in (steps if r % 2 == 0 else steps[::-1]):
                results.append(run(args.records, namespace))
    finally:
        server.stop()
    o, a, s = statistics.median(ours), statistics.median(anchor), statistics.median(same_size)
    print(f"Elasticsearch {args.server}, {args.mapping} mapping ({args.records} docs x {args.rounds} rounds, medians): "
          "ElasticsearchBackend "
          f"{o:,.0f} docs/s (from OTLP protobuf); helpers.bulk {a:,.0f} docs/s (prebuilt dicts, default "
          f"chunk_size=500); ratio {o / a:.2f} (goal >= 1.0). Reference: helpers.bulk with chunk_size=2000 "
          f"(our request size) {s:,.0f} docs/s, ratio {o / s:.2f}")


if __name__ == "__main__":
    main()
