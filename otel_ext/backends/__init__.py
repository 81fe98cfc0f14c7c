"""One module per backend: otlp_grpc, otlp_http, file (elasticsearch: see its issue)."""

from otel_ext.backends.base import Backend
from otel_ext.backends.file import FileBackend, FileConfig
from otel_ext.backends.otlp_grpc import OTLPGrpcBackend, OTLPGrpcConfig
from otel_ext.backends.otlp_http import OTLPHttpBackend, OTLPHttpConfig
from otel_ext.backends.outcome import Outcome, OutcomeKind
from otel_ext.backends.urls import BackendConfigError, backend_from_url

__all__ = [
    "Backend",
    "BackendConfigError",
    "FileBackend",
    "FileConfig",
    "OTLPGrpcBackend",
    "OTLPGrpcConfig",
    "OTLPHttpBackend",
    "OTLPHttpConfig",
    "Outcome",
    "OutcomeKind",
    "backend_from_url",
]
