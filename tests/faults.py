"""Fault injection on the wire, on loopback only, bounded in time.

- :class:`TcpProxy`: forwards TCP to an upstream port; can switch to ``blackhole`` (accept, never
  answer), ``reset`` (accept and close at once) or ``pass``. Real sockets, real timeouts.
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
