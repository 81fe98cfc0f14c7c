"""OTLP/HTTP (protobuf) backend: POSTs queued ExportLogsServiceRequest bytes to ``/v1/logs``.

No internal retries (urllib3 ``retries=False``); outcomes follow the OTLP/HTTP spec: 429/502/503/504
retryable (Retry-After honoured), 401/403 auth, other 4xx/5xx permanent.
"""

from __future__ import annotations

import gzip
import ssl
from dataclasses import dataclass, field

import urllib3
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

from otel_ext.backends.base import Backend
from otel_ext.backends.outcome import Outcome, parse_retry_after
from otel_ext.backends.urls import OTLP_QUERY_KEYS, BackendPlugin, BackendURL, otlp_options


@dataclass(frozen=True)
class OTLPHttpConfig:
    url: str  # full URL of the logs endpoint, e.g. http://host:4318/v1/logs
    headers: dict[str, str] = field(default_factory=dict)
    compression: str | None = None  # "gzip" or None
    timeout: float = 2.0
    ca_file: str | None = None
    client_cert_file: str | None = None
    client_key_file: str | None = None
    verify: bool = True
    name: str = ""


class OTLPHttpBackend(Backend):
    """Delivers to an OTLP/HTTP logs endpoint."""

    def __init__(self, config: OTLPHttpConfig) -> None:
        self.config = config
        self.name = config.name or config.url
        kwargs: dict[str, object] = {"retries": False, "maxsize": 2}
        if config.url.startswith("https://"):
            kwargs["cert_reqs"] = ssl.CERT_REQUIRED if config.verify else ssl.CERT_NONE
            if config.ca_file:
                kwargs["ca_certs"] = config.ca_file
            if config.client_cert_file:
                kwargs["cert_file"] = config.client_cert_file
                kwargs["key_file"] = config.client_key_file
        self._pool_kwargs = kwargs
        self._pool = urllib3.PoolManager(**kwargs)  # type: ignore[arg-type]
        self._headers = {"Content-Type": "application/x-protobuf", **config.headers}
        if config.compression == "gzip":
            self._headers["Content-Encoding"] = "gzip"
        self._timeout = urllib3.Timeout(connect=config.timeout, read=config.timeout)

    def send(self, payload: bytes, records: int) -> Outcome:
        body = gzip.compress(payload, compresslevel=1) if self.config.compression == "gzip" else payload
        try:
            response = self._pool.request(
                "POST", self.config.url, body=body, headers=self._headers, timeout=self._timeout, redirect=False
            )
        except urllib3.exceptions.HTTPError as exc:
            return Outcome.retryable(f"{type(exc).__name__}: {exc}"[:500])
        except Exception as exc:  # noqa: BLE001 - never raise into the sender
            return Outcome.retryable(f"{type(exc).__name__}: {exc}"[:500])
        status = response.status
        if 200 <= status < 300:
            try:
                parsed = ExportLogsServiceResponse.FromString(response.data)
            except Exception:  # noqa: BLE001 - a 2xx is an acknowledgement even if its body is odd
                return Outcome.ok()
            partial = parsed.partial_success
            if partial.rejected_log_records:
                return Outcome.partial(partial.rejected_log_records, partial.error_message[:500])
            return Outcome.ok()
        message = f"HTTP {status}: {response.data[:300].decode('utf-8', 'replace')}"
        if status == 429 or status in (502, 503, 504):
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if status == 429 or retry_after is not None:
                return Outcome.throttled(message, retry_after)
            return Outcome.retryable(message)
        if status in (401, 403, 407):
            return Outcome.auth(message)
        return Outcome.permanent(message)

    def close(self) -> None:
        self._pool.clear()

    def reset_after_fork(self) -> None:
        self._pool = urllib3.PoolManager(**self._pool_kwargs)  # type: ignore[arg-type]


def from_url(u: BackendURL) -> OTLPHttpBackend:
    """``otlp+http://host:4318[/path]`` (path defaults to ``/v1/logs``) or ``otlp+https://…``."""
    host, port = u.host_port(example="collector:4318")
    o = otlp_options(u)
    http_scheme = "https" if u.scheme == "otlp+https" else "http"
    path = u.parts.path if u.parts.path not in ("", "/") else "/v1/logs"
    return OTLPHttpBackend(OTLPHttpConfig(
        url=f"{http_scheme}://{host}:{port}{path}", headers=o.headers, compression=o.compression,
        timeout=u.timeout, ca_file=o.ca_file, client_cert_file=o.cert_file, client_key_file=o.key_file,
        name=u.name or f"{u.scheme}://{host}:{port}{path}"))


PLUGIN = BackendPlugin("otlp_http", ("otlp+http", "otlp+https"), OTLP_QUERY_KEYS, from_url,
                       "OTLP/HTTP (protobuf) to a collector or any OTLP receiver")
