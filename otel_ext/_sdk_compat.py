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


_NOT_A_PROXY = object()


def instrument_is_live(instrument: object) -> bool:
    """False while a metrics ``instrument`` cannot record anything: it is the API's proxy
    instrument and no ``MeterProvider`` has been set yet (the proxy drops every measurement until
    then: ``_real_instrument`` is None), or it is a no-op instrument. True otherwise; once True, it
    stays True (a proxy is bound to its real instrument for good). Cheap for a proxy (one getattr)."""
    real = getattr(instrument, "_real_instrument", _NOT_A_PROXY)
    if real is not _NOT_A_PROXY:
        return real is not None
    from opentelemetry.metrics import NoOpCounter, NoOpHistogram

    return not isinstance(instrument, (NoOpCounter, NoOpHistogram))
