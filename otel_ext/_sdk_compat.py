"""Every reach of otel-ext into names the OpenTelemetry SDK/API keep private, in one place.

``tests/test_config_honesty.py`` imports each of them and checks its shape, so an SDK upgrade that
renames or changes one fails that test loudly instead of breaking a guarantee quietly. The one other
reach is ``otel_ext/handler.py``, a subclass of the contrib ``LoggingHandler`` that uses a few of its
private members; the same test file checks those too.
"""

from __future__ import annotations

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.sdk._configuration import _OTelSDKConfigurator

# opentelemetry.context key: when True in the current context, instrumentations (and our logging
# handler) must not record anything. Set in otel-ext's own threads.
SUPPRESS_INSTRUMENTATION_KEY = _SUPPRESS_INSTRUMENTATION_KEY

# The SDK configurator that ``OTEL_PYTHON_CONFIGURATOR`` selects and we subclass; its ``_configure``
# accepts ``log_record_processors`` / ``export_log_record_processor`` keyword hooks.
SDKConfigurator = _OTelSDKConfigurator

# Environment variable with which the SDK configurator switches to declarative (file) configuration,
# which ignores the processors we pass.
OTEL_CONFIG_FILE = "OTEL_CONFIG_FILE"

__all__ = ["OTEL_CONFIG_FILE", "SUPPRESS_INSTRUMENTATION_KEY", "SDKConfigurator"]
