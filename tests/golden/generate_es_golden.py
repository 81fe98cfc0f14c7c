"""Regenerate ``es_documents.json``: run the real collector's elasticsearchexporter (the binary built
from ``collector_configs/builder-config.yaml``, v0.145.0) in ecs and otel mapping modes against a
loopback capture endpoint, send ``corpus.request()`` over OTLP/gRPC, and store the documents the
exporter produced. ``python tests/golden/generate_es_golden.py /path/to/otelcol-otel-ext``
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import request
from peers import free_port, port_open, wait_until

OUT = Path(__file__).resolve().parent / "es_documents.json"


class Capture:
    """Answers like Elasticsearch 8 just enough for the exporter, and keeps every bulk document."""

    def __init__(self) -> None:
        self.docs: list[dict] = []  # type: ignore[type-arg]
        capture = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _send(self, doc: object) -> None:
                data = json.dumps(doc).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Elastic-Product", "Elasticsearch")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._send({"version": {"number": "8.17.0", "build_flavor": "default"}, "tagline": "You Know, for Search"})

            def do_HEAD(self) -> None:
                self.do_GET()

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                lines = [json.loads(line) for line in body.splitlines() if line.strip()]
                items = []
                for action, doc in zip(lines[::2], lines[1::2], strict=True):
                    op, meta = next(iter(action.items()))
                    capture.docs.append({"op": op, "index": meta.get("_index"), "id": meta.get("_id"), "doc": doc})
                    items.append({op: {"status": 201, "_index": meta.get("_index")}})
                self._send({"took": 1, "errors": False, "items": items})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def main(binary: str) -> None:
    captures = {"ecs": Capture(), "otel": Capture()}
    grpc_port = free_port()
    exporters = "".join(f"""
  elasticsearch/{mode}:
    endpoints: [http://127.0.0.1:{cap.port}]
    compression: none
    mapping: {{mode: {mode}}}
    sending_queue: {{enabled: true, batch: {{flush_timeout: 200ms, min_size: 1, sizer: items}}}}
    retry: {{enabled: false}}""" for mode, cap in captures.items())
    config = f"""
receivers:
  otlp:
    protocols: {{grpc: {{endpoint: 127.0.0.1:{grpc_port}}}}}
exporters:{exporters}
service:
  telemetry: {{metrics: {{level: none}}, logs: {{level: warn}}}}
  pipelines:
    logs: {{receivers: [otlp], exporters: [elasticsearch/ecs, elasticsearch/otel]}}
"""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(config)
        proc = subprocess.Popen([binary, "--config", str(path)])
        try:
            assert wait_until(lambda: port_open(grpc_port), 30), "collector did not start"
            channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
            export = channel.unary_unary("/opentelemetry.proto.collector.logs.v1.LogsService/Export",
                                         request_serializer=None, response_deserializer=None)
            export(request().SerializeToString(), timeout=10)
            n = sum(len(sl.log_records) for rl in request().resource_logs for sl in rl.scope_logs)
            assert wait_until(lambda: all(len(c.docs) >= n for c in captures.values()), 30), "no documents"
            time.sleep(0.5)
        finally:
            proc.terminate()
            proc.wait(30)
    result = {
        "source": "opentelemetry-collector-contrib exporter/elasticsearchexporter v0.145.0, run as a real "
                  "collector built from collector_configs/builder-config.yaml; input: tests/golden/corpus.py",
        **{mode: sorted(cap.docs, key=lambda d: str(d["id"] or d["doc"].get("log", {}).get("record", {})))
           for mode, cap in captures.items()},
    }
    OUT.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT}: {len(result['ecs'])} ecs and {len(result['otel'])} otel documents")


if __name__ == "__main__":
    main(sys.argv[1])
