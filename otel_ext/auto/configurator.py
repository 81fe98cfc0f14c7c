"""Zero-code configurator (``OTEL_PYTHON_CONFIGURATOR=otel_ext``): the SDK configurator plus our
processors, passed through its ``log_record_processors`` / ``export_log_record_processor`` hooks so
they run before (or inside) the export processor. Traces and metrics are set up exactly as the
stock SDK configurator does from the user's env vars."""

from __future__ import annotations

import os
import sys
from typing import Any

from opentelemetry._logs import get_logger_provider
from opentelemetry.sdk._logs import LoggerProvider

from otel_ext._sdk_compat import OTEL_CONFIG_FILE, SDKConfigurator
from otel_ext.auto import exit as exit_flush
from otel_ext.auto.pipeline import Pipeline, build_parts, set_current
from otel_ext.handler import install_for_instrumentation
from otel_ext.settings import ConfigError, env_value, load_settings, on_config_error


class OtelExtConfigurator(SDKConfigurator):
    """Configures the SDK from env vars and installs otel-ext's processors.

    A configuration error stops the process at start-up with one line naming the variable or file
    (``OTEL_EXT_ON_CONFIG_ERROR=continue`` starts the app without otel-ext instead).
    ``OTEL_CONFIG_FILE`` (the SDK's declarative configuration, which ignores the processors we pass)
    is refused the same way rather than reporting a pipeline that is not there.
    """

    def _configure(self, **kwargs: Any) -> None:
        if env_value(OTEL_CONFIG_FILE):
            print(f"otel-ext: configuration error: {OTEL_CONFIG_FILE} is set: the SDK's file configuration "
                  "would run without otel-ext's processors; unset it to use otel-ext (or set "
                  "OTEL_EXT_ON_CONFIG_ERROR=continue to run with the file configuration and without otel-ext)",
                  file=sys.stderr, flush=True)
            if on_config_error() == "continue":
                super()._configure(**kwargs)  # type: ignore[no-untyped-call]
                return
            sys.stdout.flush()
            os._exit(2)
        try:
            settings = load_settings()
            parts = build_parts(settings)
            if "failover" in _log_exporter_names():
                from otel_ext.backends.urls import backend_from_url

                for url in settings.effective_backends:  # fail now, not at the first export
                    backend_from_url(url, default_timeout=settings.timeout).close()
        except (ConfigError, ValueError) as exc:
            print(f"otel-ext: configuration error: {exc}", file=sys.stderr, flush=True)
            if on_config_error() == "continue":
                return
            # We run inside sitecustomize, before the app: SystemExit here would become a fatal
            # "Failed to import the site module" with a traceback. Nothing is started yet.
            sys.stdout.flush()
            os._exit(2)
        install_for_instrumentation()  # the logging instrumentor, run after us, installs our handler
        kwargs.setdefault("log_record_processors", parts.inline_processors)
        kwargs.setdefault("export_log_record_processor", parts.export_processor)
        super()._configure(**kwargs)  # type: ignore[no-untyped-call]
        provider = get_logger_provider()
        if isinstance(provider, LoggerProvider):
            from otel_ext.export.exporter import live_exporters

            if parts.detection is not None:
                parts.detection.bind(provider)

            pipeline = Pipeline(provider, live_exporters(), None, parts)
            set_current(pipeline)
            exit_flush.install(lambda: pipeline.force_flush(int(settings.shutdown_timeout * 1000)))


def _log_exporter_names() -> list[str]:
    names: tuple[str, ...] = env_value("OTEL_LOGS_EXPORTER")
    return list(names)

