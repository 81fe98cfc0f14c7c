"""Backends as plug-ins: one module (or package) per backend, each declaring a ``PLUGIN``
(:class:`~otel_ext.backends.urls.BackendPlugin`: URL schemes, query keys, ``from_url()``), registered
through the entry-point group ``otel_ext.backends``. Built in: otlp_grpc, otlp_http, file,
elasticsearch/ (Elasticsearch + OpenSearch), kafka, s3."""

from otel_ext.backends.base import Backend
from otel_ext.backends.file import FileBackend, FileConfig
from otel_ext.backends.otlp_grpc import OTLPGrpcBackend, OTLPGrpcConfig
from otel_ext.backends.otlp_http import OTLPHttpBackend, OTLPHttpConfig
from otel_ext.backends.outcome import Outcome, OutcomeKind
from otel_ext.backends.urls import (
    BackendConfigError,
    BackendPlugin,
    BackendURL,
    backend_from_url,
    schemes,
)
from otel_ext.settings import split_backend_urls

__all__ = [
    "Backend",
    "BackendConfigError",
    "BackendPlugin",
    "BackendURL",
    "FileBackend",
    "FileConfig",
    "OTLPGrpcBackend",
    "OTLPGrpcConfig",
    "OTLPHttpBackend",
    "OTLPHttpConfig",
    "Outcome",
    "OutcomeKind",
    "backend_from_url",
    "schemes",
    "split_backend_urls",
]
