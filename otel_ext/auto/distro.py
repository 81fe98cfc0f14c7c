"""The otel-ext distro (``OTEL_PYTHON_DISTRO=otel_ext``): sensible defaults so that
``opentelemetry-instrument`` needs as few variables as possible. It only sets variables the user
left unset: our configurator, and the ``failover`` logs exporter."""

from __future__ import annotations

from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]

from otel_ext.settings import set_env_default


class OtelExtDistro(BaseDistro):  # type: ignore[misc]
    """Selects otel-ext's configurator and logs exporter unless the user chose others."""

    def _configure(self, **kwargs: Any) -> None:
        set_env_default("OTEL_PYTHON_CONFIGURATOR", "otel_ext")
        set_env_default("OTEL_LOGS_EXPORTER", "failover")
