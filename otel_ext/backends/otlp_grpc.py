"""OTLP/gRPC backend: sends queued ExportLogsServiceRequest bytes as they are (no re-encoding).

Short per-attempt deadline and no hidden retry loop: retries and failover belong to the sender.
Reconnect backoff is kept short so a restarted receiver is seen again within about a second.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

from otel_ext.backends.base import Backend
from otel_ext.backends.outcome import Outcome
from otel_ext.backends.urls import OTLP_QUERY_KEYS, BackendPlugin, BackendURL, otlp_options

EXPORT_METHOD = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"

_RETRYABLE = {
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DATA_LOSS,
}
_AUTH = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}


@dataclass(frozen=True)
class OTLPGrpcConfig:
    endpoint: str  # host:port
    insecure: bool = True
    headers: dict[str, str] = field(default_factory=dict)
    compression: str | None = None  # "gzip" or None
    timeout: float = 2.0  # seconds per attempt
    ca_file: str | None = None
    client_cert_file: str | None = None
    client_key_file: str | None = None
    name: str = ""


def _read(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path else None


def _retry_delay(error: grpc.Call) -> float | None:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                    info = error_details_pb2.RetryInfo()
                    detail.Unpack(info)
                    return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
    return None


def classify_grpc_error(error: grpc.RpcError) -> Outcome:
    code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (error.details() if isinstance(error, grpc.Call) else None) or ""
    message = f"{code.name}: {details}"[:500]
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return Outcome.throttled(message, _retry_delay(error) if isinstance(error, grpc.Call) else None)
    if code in _RETRYABLE:
        delay = _retry_delay(error) if isinstance(error, grpc.Call) else None
        return Outcome.throttled(message, delay) if delay else Outcome.retryable(message)
    if code in _AUTH:
        return Outcome.auth(message)
    return Outcome.permanent(message)


class OTLPGrpcBackend(Backend):
    """Delivers to an OTLP/gRPC logs endpoint."""

    def __init__(self, config: OTLPGrpcConfig) -> None:
        self.config = config
        self.name = config.name or f"otlp+grpc://{config.endpoint}"
        self._connect()

    def _connect(self) -> None:
        config = self.config
        options = [
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ("grpc.enable_retries", 0),
        ]
        if config.insecure:
            self._channel = grpc.insecure_channel(config.endpoint, options=options)
        else:
            creds = grpc.ssl_channel_credentials(
                root_certificates=_read(config.ca_file),
                private_key=_read(config.client_key_file),
                certificate_chain=_read(config.client_cert_file),
            )
            self._channel = grpc.secure_channel(config.endpoint, creds, options=options)
        self._export = self._channel.unary_unary(
            EXPORT_METHOD,
            request_serializer=None,  # payloads are already serialized ExportLogsServiceRequest bytes
            response_deserializer=ExportLogsServiceResponse.FromString,
        )
        self._metadata = tuple((k.lower(), v) for k, v in config.headers.items())
        self._compression = grpc.Compression.Gzip if config.compression == "gzip" else None

    def send(self, payload: bytes, records: int) -> Outcome:
        try:
            response = self._export(
                payload, timeout=self.config.timeout, metadata=self._metadata, compression=self._compression
            )
        except grpc.RpcError as error:
            return classify_grpc_error(error)
        except Exception as exc:  # noqa: BLE001 - never raise into the sender
            return Outcome.retryable(f"{type(exc).__name__}: {exc}"[:500])
        partial = response.partial_success
        if partial.rejected_log_records:
            return Outcome.partial(partial.rejected_log_records, partial.error_message[:500])
        return Outcome.ok()

    def close(self) -> None:
        self._channel.close()

    def reset_after_fork(self) -> None:
        self._connect()  # the parent's channel is not usable in the child; do not close it here

    def describe(self) -> str:
        return self.name


def from_url(u: BackendURL) -> OTLPGrpcBackend:
    """``otlp+grpc://host:4317`` (plaintext) or ``otlp+grpcs://host:4317`` (TLS)."""
    host, port = u.host_port(example="collector:4317")
    o = otlp_options(u)
    return OTLPGrpcBackend(OTLPGrpcConfig(
        endpoint=f"{host}:{port}", insecure=u.scheme == "otlp+grpc", headers=o.headers,
        compression=o.compression, timeout=u.timeout, ca_file=o.ca_file, client_cert_file=o.cert_file,
        client_key_file=o.key_file, name=u.name or f"{u.scheme}://{host}:{port}"))


PLUGIN = BackendPlugin("otlp_grpc", ("otlp+grpc", "otlp+grpcs"), OTLP_QUERY_KEYS, from_url,
                       "OTLP/gRPC to a collector or any OTLP receiver")
