"""Every reach of otel-ext into names the OpenTelemetry SDK/API keep private, in one place.

``tests/test_config_honesty.py`` imports each of them and checks its shape and behaviour, so an SDK
upgrade that renames or changes one fails that test loudly instead of breaking a guarantee quietly.
That includes the private members of the contrib ``LoggingHandler`` (opentelemetry-instrumentation-
logging) that ``otel_ext/handler.py`` builds on: the handler reaches them only through the functions
below (a test checks that it names none of them itself).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from opentelemetry._logs import LoggerProvider as APILoggerProvider
from opentelemetry._logs import LogRecord
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.instrumentation.logging.handler import LoggingHandler as ContribLoggingHandler
from opentelemetry.sdk._configuration import _OTelSDKConfigurator
from opentelemetry.sdk._logs import LogRecordLimits, ReadWriteLogRecord
from opentelemetry.util.types import AnyValue

# opentelemetry.context key: when True in the current context, instrumentations (and our logging
# handler) must not record anything. Set in otel-ext's own threads.
SUPPRESS_INSTRUMENTATION_KEY = _SUPPRESS_INSTRUMENTATION_KEY

# The SDK configurator that ``OTEL_PYTHON_CONFIGURATOR`` selects and we subclass; its ``_configure``
# accepts ``log_record_processors`` / ``export_log_record_processor`` keyword hooks.
SDKConfigurator = _OTelSDKConfigurator

# Environment variable with which the SDK configurator switches to declarative (file) configuration,
# which ignores the processors we pass.
OTEL_CONFIG_FILE = "OTEL_CONFIG_FILE"


# --- the contrib LoggingHandler ----------------------------------------------------------------

# Its private names our handler depends on (the subclass also overrides ``_translate`` with its safe
# translation, so contrib code calling it gets ours). Checked by the compat test.
CONTRIB_HANDLER_PRIVATE_NAMES = ("_is_emitting", "_logger_provider", "_get_attributes", "_translate")


def handler_emitting_flag() -> ContextVar[bool]:
    """The contrib handler's re-entry guard: one ContextVar on the class, shared by every contrib
    handler and ours, so a record the SDK logs while any of them emits is never re-entered."""
    flag: ContextVar[bool] = ContribLoggingHandler._is_emitting
    return flag


def handler_provider(handler: ContribLoggingHandler) -> APILoggerProvider:
    """The LoggerProvider the handler emits into."""
    provider: APILoggerProvider = handler._logger_provider
    return provider


def handler_attributes(handler: ContribLoggingHandler,
                       record: logging.LogRecord) -> tuple[dict[str, AnyValue], str | None]:
    """The contrib handler's attributes of ``record`` (extras, exception.*, code.*) and its event name."""
    attributes, event_name = handler._get_attributes(record)
    return attributes, event_name


_PLAIN_VALUE_TYPES = frozenset({str, int, float, bool, bytes, type(None)})


def writable_record(logger: Any, record: LogRecord) -> Any:
    """``record`` as the SDK's ``Logger.emit`` would wrap it — a ``ReadWriteLogRecord`` with the
    logger's resource, scope and limits, its attributes in a ``BoundedAttributes`` — built without
    re-validating attributes that need no cleaning: non-empty ``str`` keys, values exactly ``str``
    (within the length limit), ``int``, ``float``, ``bool``, ``bytes`` or None, no more of them than
    the count limit. The SDK's cleaning returns such a mapping unchanged, so the result is the same
    (property-tested against ``Logger.emit``'s own wrapping, tests/test_handler_record.py); it saves
    the per-value validation on the app thread. Anything else (another logger, an exception to
    merge, a value to clean or truncate, attributes to drop) returns ``record`` itself: the SDK
    wraps it as always."""
    try:
        return _writable_record(logger, record)
    except Exception:  # noqa: BLE001 - an unexpected logger or record: the SDK's own path decides
        return record


def _writable_record(logger: Any, record: LogRecord) -> Any:
    try:
        resource = logger._resource
        scope = logger._instrumentation_scope
        limits = logger._log_record_limits
    except AttributeError:
        return record
    if getattr(record, "exception", None) is not None or not isinstance(limits, LogRecordLimits):
        return record
    attrs = record.attributes
    maxlen = limits.max_log_record_attributes
    max_value_len = limits.max_log_record_attribute_length
    if attrs:
        if attrs.__class__ is not dict or (maxlen is not None and len(attrs) > maxlen):
            return record
        plain = _PLAIN_VALUE_TYPES
        for key, value in attrs.items():
            cls = value.__class__
            if cls not in plain or key.__class__ is not str or not key or (
                    cls is str and max_value_len is not None and len(value) > max_value_len):
                return record
    bounded = BoundedAttributes(maxlen=maxlen, immutable=False, max_value_len=max_value_len,
                                extended_attributes=True)
    if attrs:
        bounded._dict.update(attrs)
    record.attributes = bounded
    item = ReadWriteLogRecord.__new__(ReadWriteLogRecord)  # the dataclass's four fields, no __post_init__
    item.log_record = record
    item.resource = resource
    item.instrumentation_scope = scope
    item.limits = limits
    return item


def provider_limits(provider: Any) -> LogRecordLimits:
    """The SDK provider's attribute limits (the defaults from env for any other provider)."""
    limits = getattr(provider, "_log_record_limits", None)
    return limits if isinstance(limits, LogRecordLimits) else LogRecordLimits()


def keep_through_logging_config(handler: logging.Handler) -> None:
    """Make ``logging.basicConfig`` / ``dictConfig`` keep ``handler`` on the root logger, as the
    contrib instrumentation does for its own handler."""
    from opentelemetry.instrumentation.logging import handler as contrib

    contrib._overwrite_logging_config_fns(handler)  # type: ignore[arg-type]


def swap_instrumentation_handler_setup(
        setup: Callable[..., logging.Handler]) -> Callable[..., logging.Handler] | None:
    """Make the contrib logging instrumentor install its handler through ``setup``; returns the
    function it replaced, or None (nothing replaced) when the instrumentation lacks that hook."""
    import opentelemetry.instrumentation.logging as instrumentation

    previous: Callable[..., logging.Handler] | None = getattr(instrumentation, "_setup_logging_handler", None)
    if previous is None:
        return None
    instrumentation._setup_logging_handler = setup  # type: ignore[attr-defined,assignment]
    return previous


__all__ = ["CONTRIB_HANDLER_PRIVATE_NAMES", "OTEL_CONFIG_FILE", "SUPPRESS_INSTRUMENTATION_KEY", "ContribLoggingHandler",
           "SDKConfigurator", "handler_attributes", "handler_emitting_flag", "handler_provider", "instrument_is_live",
           "keep_through_logging_config", "provider_limits", "swap_instrumentation_handler_setup"]

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
