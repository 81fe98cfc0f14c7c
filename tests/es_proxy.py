"""A loopback HTTP proxy in front of the OpenSearch test server.

- Lets the official ``elasticsearch`` client (8.x/9.x) talk to an OpenSearch-API server: rewrites
  its ``application/vnd.elasticsearch+json; compatible-with=N`` media types to plain JSON/NDJSON and
  adds ``X-Elastic-Product: Elasticsearch`` to answers (the client's product check).
- Injects faults on the wire: request-level statuses for ``_bulk`` (503, 429), 429 on chosen bulk
  items (those documents are not forwarded), a lost response after the server processed the bulk,
  delays, and 413 for bodies over a size.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import urllib3

_MEDIA = {
    "application/vnd.elasticsearch+x-ndjson": "application/x-ndjson",
    "application/vnd.elasticsearch+json": "application/json",
}


def _plain(value: str) -> str:
    for vendor, plain in _MEDIA.items():
        if value.startswith(vendor):
            return plain
    return value


class EsProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.bulk_status: int | None = None  # answer every _bulk with this status while set
        self.throttle_ids: dict[str, int] = {}  # _id -> how many more times to answer 429 for it
        self.drop_next_response = False  # forward the next _bulk, then hang up without answering
        self.delay = 0.0
        self.max_body: int | None = None
        self.bulk_docs: list[int] = []  # documents per _bulk the server actually received
        self.requests = 0
        self.gzipped = 0  # requests that arrived gzip-compressed
        self.authorization: list[str] = []  # the Authorization header of each request ("" if none)
        self._lock = threading.Lock()
        pool = urllib3.PoolManager(retries=False, maxsize=8)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _relay(self, method: str) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length) if length else None
                if body is not None and self.headers.get("Content-Encoding", "").lower() == "gzip":
                    body = gzip.decompress(body)  # e.g. a Cloud ID client compresses; forwarded plain
                    with proxy._lock:
                        proxy.gzipped += 1
                with proxy._lock:
                    proxy.requests += 1
                    proxy.authorization.append(self.headers.get("Authorization", ""))
                if proxy.delay:
                    time.sleep(proxy.delay)
                is_bulk = self.path.split("?")[0].endswith("/_bulk")
                if is_bulk and proxy.bulk_status is not None:
                    return self._answer(proxy.bulk_status, {"error": "injected"}, {"Retry-After": "1"})
                if is_bulk and proxy.max_body is not None and body is not None and len(body) > proxy.max_body:
                    return self._answer(413, {"error": "request entity too large"})
                throttled: list[tuple[int, dict[str, Any]]] = []
                if is_bulk and body is not None:
                    body, throttled = proxy._strip_throttled(body)
                    with proxy._lock:
                        proxy.bulk_docs.append(body.count(b"\n") // 2 if body else 0)
                headers = {k: _plain(v) for k, v in self.headers.items()
                           if k.lower() in ("content-type", "accept", "authorization")}
                if is_bulk and not body:
                    result: dict[str, Any] = {"took": 0, "errors": False, "items": []}
                    status, data = 200, b""
                else:
                    try:
                        resp = pool.request(method, proxy.upstream + self.path, body=body, headers=headers,
                                            timeout=30)
                    except urllib3.exceptions.HTTPError as exc:  # upstream gone: answer as a gateway does
                        return self._answer(502, {"error": f"upstream unreachable: {type(exc).__name__}"})
                    status, data = resp.status, resp.data
                    if is_bulk and proxy.drop_next_response:
                        proxy.drop_next_response = False
                        self.close_connection = True  # the server did the work; the client never hears
                        return None
                    if not throttled:
                        return self._answer_raw(status, data)
                    result = json.loads(data)
                items = result.get("items", [])
                for position, item in throttled:
                    items.insert(position, item)
                result["items"] = items
                result["errors"] = True
                return self._answer(status, result)

            def _answer(self, status: int, doc: Any, extra: dict[str, str] | None = None) -> None:
                self._answer_raw(status, json.dumps(doc).encode(), extra)

            def _answer_raw(self, status: int, data: bytes, extra: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Elastic-Product", "Elasticsearch")
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._relay("GET")

            def do_POST(self) -> None:
                self._relay("POST")

            def do_PUT(self) -> None:
                self._relay("PUT")

            def do_HEAD(self) -> None:
                self._relay("HEAD")

            def do_DELETE(self) -> None:
                self._relay("DELETE")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()

    def _strip_throttled(self, body: bytes) -> tuple[bytes, list[tuple[int, dict[str, Any]]]]:
        if not self.throttle_ids:
            return body, []
        lines = body.split(b"\n")
        kept: list[bytes] = []
        throttled: list[tuple[int, dict[str, Any]]] = []
        for i in range(0, len(lines) - 1, 2):
            action = json.loads(lines[i])
            op = action.get("create") or action.get("index") or {}
            doc_id = op.get("_id")
            with self._lock:
                left = self.throttle_ids.get(doc_id, 0)
                if left:
                    self.throttle_ids[doc_id] = left - 1
            if left:
                throttled.append((i // 2, {"create": {"_index": op.get("_index"), "_id": doc_id, "status": 429,
                                                      "error": {"type": "es_rejected_execution_exception",
                                                                "reason": "rejected execution (injected)"}}}))
                continue
            kept += [lines[i], lines[i + 1]]
        return (b"\n".join(kept) + b"\n") if kept else b"", throttled

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
