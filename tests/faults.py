"""Fault injection on the wire, on loopback only, bounded in time.

- :class:`TcpProxy`: forwards TCP to an upstream port; can switch to ``blackhole`` (accept, never
  answer), ``reset`` (accept and close at once) or ``pass``, and add a ``delay`` per forwarded
  chunk. Real sockets, real timeouts.
- :class:`HttpFaultProxy`: an HTTP/1.1 proxy in front of an OTLP/HTTP receiver that answers a
  scripted status (429 with Retry-After, 503, 400 …) for the next N requests, else forwards.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import urllib3


class TcpProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.mode = "pass"
        self.delay = 0.0  # seconds added before each forwarded chunk
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(64)
        self.port = int(self._server.getsockname()[1])
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self._server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except (TimeoutError, OSError):
                continue
            if self.mode == "blackhole":
                self._held.append(client)  # never answered, never closed until the proxy stops
                continue
            if self.mode == "reset":
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=2)
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(0.5)
        try:
            while not self._stop.is_set():
                if self.mode == "blackhole":
                    time.sleep(0.05)  # existing connections stop moving bytes too
                    continue
                try:
                    data = src.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                if self.mode == "blackhole":
                    continue  # swallowed: neither side hears anything from now on
                if self.delay:
                    time.sleep(self.delay)  # a slow link or a slow backend
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._stop.set()
        self._server.close()
        for sock in self._held:
            with contextlib.suppress(OSError):
                sock.close()


class HttpFaultProxy:
    """Scripted HTTP answers in front of an OTLP/HTTP receiver."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.script: deque[tuple[int, dict[str, str], bytes]] = deque()
        self.seen: list[int] = []  # status answered for every request, in order
        self.fail_body_containing: bytes | None = None  # answer 400 to requests whose body contains this
        pool = urllib3.PoolManager(retries=False)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if proxy.fail_body_containing is not None and proxy.fail_body_containing in body:
                    scripted: tuple[int, dict[str, str], bytes] | None = (400, {}, b"bad record")
                else:
                    scripted = proxy.script.popleft() if proxy.script else None
                if scripted is not None:
                    status, headers, payload = scripted
                    proxy.seen.append(status)
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                forwarded = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "content-encoding")}
                resp = pool.request("POST", proxy.upstream + self.path, body=body, headers=forwarded, timeout=5)
                proxy.seen.append(resp.status)
                self.send_response(resp.status)
                self.send_header("Content-Type", resp.headers.get("Content-Type", "application/x-protobuf"))
                self.send_header("Content-Length", str(len(resp.data)))
                self.end_headers()
                self.wfile.write(resp.data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class TlsProxy(TcpProxy):
    """Terminates TLS (ALPN h2 and http/1.1) on loopback and forwards plaintext to ``upstream_port``.
    With ``client_ca`` it requires a client certificate signed by that CA (mutual TLS)."""

    def __init__(self, upstream_port: int, cert: str, key: str, client_ca: str | None = None) -> None:
        import ssl

        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.context.set_alpn_protocols(["h2", "http/1.1"])
        if client_ca:
            self.context.verify_mode = ssl.CERT_REQUIRED
            self.context.load_verify_locations(client_ca)
        self.handshakes_failed = 0
        super().__init__(upstream_port)

    def _accept(self) -> None:
        self._server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                raw, _ = self._server.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            raw.settimeout(5)
            client = self.context.wrap_socket(raw, server_side=True)
        except OSError:
            self.handshakes_failed += 1
            raw.close()
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=2)
        except OSError:
            client.close()
            return
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()


class GrpcFaultProxy:
    """A gRPC proxy for the OTLP logs service: answers the next N calls with a scripted status
    (e.g. RESOURCE_EXHAUSTED carrying a google.rpc.RetryInfo), forwards the rest to rotel."""

    METHOD = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"

    def __init__(self, upstream_port: int) -> None:
        from concurrent import futures

        import grpc
        from google.protobuf.duration_pb2 import Duration
        from google.rpc import code_pb2, error_details_pb2, status_pb2

        self.script: deque[tuple[grpc.StatusCode, float | None]] = deque()
        self.partial: deque[int] = deque()  # answer OK with partial_success.rejected_log_records = n
        self.seen: list[str] = []
        self.metadata: list[dict[str, str]] = []
        channel = grpc.insecure_channel(f"127.0.0.1:{upstream_port}")
        forward = channel.unary_unary(self.METHOD, request_serializer=None, response_deserializer=None)
        proxy = self

        def export(request: bytes, context: grpc.ServicerContext) -> bytes:
            proxy.metadata.append({k: v for k, v in context.invocation_metadata() if isinstance(v, str)})
            if proxy.partial:
                from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as pb

                rejected = proxy.partial.popleft()
                proxy.seen.append("PARTIAL")
                forward(request, timeout=5)
                return pb.ExportLogsServiceResponse(partial_success=pb.ExportLogsPartialSuccess(
                    rejected_log_records=rejected, error_message="2 records too large")).SerializeToString()
            if proxy.script:
                code, delay = proxy.script.popleft()
                proxy.seen.append(code.name)
                if delay is not None:
                    info = error_details_pb2.RetryInfo(retry_delay=Duration(seconds=int(delay),
                                                                            nanos=int((delay % 1) * 1e9)))
                    status = status_pb2.Status(code=getattr(code_pb2, code.name), message="slow down")
                    status.details.add().Pack(info)
                    context.set_trailing_metadata((("grpc-status-details-bin", status.SerializeToString()),))
                context.abort(code, "scripted fault")
            proxy.seen.append("OK")
            return forward(request, timeout=5)

        handler = grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.logs.v1.LogsService",
            {"Export": grpc.unary_unary_rpc_method_handler(export)},
        )
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self._server.add_generic_rpc_handlers((handler,))
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()

    def close(self) -> None:
        self._server.stop(0)


class ForwardingFaultProxy:
    """An HTTP/1.1 proxy that forwards any method with every header and the body unchanged (so signed
    requests such as S3's SigV4 stay valid: the Host header is passed through), except for the next N
    requests, which get a scripted answer (e.g. 503 SlowDown)."""

    def __init__(self, upstream_port: int) -> None:
        import http.client

        self.upstream_port = upstream_port
        self.script: deque[tuple[int, dict[str, str], bytes]] = deque()
        self.seen: list[int] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
                scripted = proxy.script.popleft() if proxy.script else None
                if scripted is not None:
                    status, headers, payload = scripted
                    proxy.seen.append(status)
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=10)
                try:
                    conn.request(self.command, self.path, body=body or None, headers=dict(self.headers.items()))
                    resp = conn.getresponse()
                    data = resp.read()
                except OSError:
                    self.send_response(502)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                finally:
                    conn.close()
                proxy.seen.append(resp.status)
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()

    def fail_next(self, count: int, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        for _ in range(count):
            self.script.append((status, headers or {}, body))

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
