"""The logging handler boundary: whatever the record, a log call returns normally.

:class:`OtelExtLoggingHandler` is the contrib ``LoggingHandler`` with the application's side of the
boundary made safe. ``otel_ext.configure()`` installs it, and the zero-code configurator makes the
contrib logging instrumentation install it in place of its own (:func:`install_for_instrumentation`).

Guarantees:

- **No exception reaches the app.** A message whose ``__str__``/``__repr__``/``__format__`` raises
  (or recurses without end) is still emitted, with a safe body: the unformatted message plus the
  ``repr`` of each argument, unprintable parts replaced by ``<unprintable TYPE>``. An attribute value
  the SDK cannot take (a raising ``__str__``, a self-containing list, nesting deeper than Python's
  recursion limit) does not cost the record: the attributes are rebuilt as plain values
  (:func:`safe_value`: unprintable parts as ``<unprintable TYPE>``, cycles as ``<cycle>``, nesting
  cut at :data:`MAX_VALUE_DEPTH` levels) and the record is emitted with them, counted as
  ``format_failed{part=attribute_values}``. Any other failure goes to :meth:`handleError`, which
  counts it and writes at most one line a minute to stderr.
- **Our own logs never feed back.** Records of the ``otel_ext`` logger tree, records emitted on one
  of our threads or while OTel instrumentation is suppressed in the current context (our
  sender/queue threads run that way) — one decision, :func:`otel_ext.selflog.own_record_reason` —
  and records logged by the SDK while this handler is already emitting (re-entry) are skipped and
  counted, silently.
- **Private names of the contrib handler** are reached only through ``otel_ext/_sdk_compat.py``.
- **Attribute limits without noise.** The SDK's count and value-length limits
  (``OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT`` / ``OTEL_ATTRIBUTE_COUNT_LIMIT`` and the ``_VALUE_LENGTH_``
  pair) are applied here, before the SDK would log one warning per dropped key; drops are counted and
  one warning a minute says so.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from time import time_ns
from typing import Any

from opentelemetry._logs import LoggerProvider as APILoggerProvider
from opentelemetry._logs import LogRecord, NoOpLogger, get_logger
from opentelemetry.context import get_current
from opentelemetry.instrumentation.log_utils import std_to_otel
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.util.types import AnyValue

from otel_ext._sdk_compat import (
    handler_attributes,
    handler_emitting_flag,
    handler_provider,
    keep_through_logging_config,
    provider_limits,
    swap_instrumentation_handler_setup,
    writable_record,
)
from otel_ext.selflog import own_record_reason
from otel_ext.telemetry import Counters, register_counters

_logger = logging.getLogger(__name__)

HANDLER_COUNTERS = register_counters(
    Counters("handler"),
    {
        "skipped": ("reason",),  # own | own_thread | suppressed | reentrant
        "format_failed": ("part",),  # message | attributes | attribute_values
        "failed": (),  # records that could not be emitted at all (handleError)
        "attributes_dropped": (),
        "values_truncated": (),
    },
)
"""What the handler did instead of raising: skipped records, failed formatting, applied limits."""

OWN_LOGGER = "otel_ext"
_IS_EMITTING = handler_emitting_flag()  # shared with every contrib LoggingHandler
WARN_INTERVAL_S = 60.0
_SEVERITY_TEXT = {"WARNING": "WARN", "CRITICAL": "FATAL"}


def safe_text(obj: Any, use_repr: bool = False) -> str:
    """``str(obj)`` (or ``repr``), falling back to the other, then to ``<unprintable TYPE>``; never raises."""
    first, second = (repr, str) if use_repr else (str, repr)
    for conv in (first, second):
        try:
            text = conv(obj)
            if isinstance(text, str):
                return text
        except Exception:  # noqa: BLE001 - any user __str__/__repr__ may raise (RecursionError too)
            continue
    try:
        name = type(obj).__name__
    except Exception:  # noqa: BLE001 - a hostile metaclass
        name = "object"
    return f"<unprintable {name}>"


MAX_VALUE_DEPTH = 32
_PLAIN = frozenset({str, bool, int, float, bytes, type(None)})
_OBJECT_STR: Any = object.__str__
_OBJECT_REPR: Any = object.__repr__


def safe_value(value: Any, repaired: list[str] | None = None, depth: int = 0,
               seen: frozenset[int] = frozenset()) -> AnyValue:
    """``value`` cleaned as the SDK cleans attribute values (sequences as lists, mappings as dicts
    with text keys, an object with its own ``__str__``/``__repr__`` as its text, any other object as
    None), but never raising: an unprintable part becomes ``<unprintable TYPE>``, a container inside
    itself ``<cycle>``, nesting beyond :data:`MAX_VALUE_DEPTH` levels the text ``<nested TYPE deeper
    than N>``, an int outside int64 its decimal text. Each such repair is noted in ``repaired``."""
    notes = repaired if repaired is not None else []
    try:
        kind = type(value)
        if kind in _PLAIN:
            if kind is int and not -(2**63) <= value < 2**63:
                notes.append("int64")
                return str(value)
            return value  # type: ignore[no-any-return]
        if isinstance(value, (Sequence, Mapping)) and not isinstance(value, (str, bytes)):
            if id(value) in seen:
                notes.append("cycle")
                return "<cycle>"
            if depth >= MAX_VALUE_DEPTH:
                notes.append("depth")
                return f"<nested {kind.__name__} deeper than {MAX_VALUE_DEPTH}>"
            inner = seen | {id(value)}
            if isinstance(value, Mapping):
                return {_text(k, notes): safe_value(v, notes, depth + 1, inner) for k, v in list(value.items())}
            return [safe_value(v, notes, depth + 1, inner) for v in list(value)]
        if isinstance(value, (str, bytes)):  # subclasses
            return str(value) if isinstance(value, str) else bytes(value)
        if getattr(kind, "__str__", None) is _OBJECT_STR and getattr(kind, "__repr__", None) is _OBJECT_REPR:
            return None  # as the SDK: no "<Foo object at 0x…>" addresses in the data
    except Exception:  # noqa: BLE001 - a hostile container (raising __iter__/items/__len__), metaclass
        pass
    return _text(value, notes)


def _text(value: Any, notes: list[str]) -> str:
    if type(value) is str:
        return value
    text = safe_text(value)
    if text.startswith("<unprintable "):
        notes.append("unprintable")
    return text


ATOM_LOGGERS = frozenset({"hypercorn.access", "gunicorn.access"})
"""Access loggers that pass their log-format atoms (``%(h)s``, ``%(r)s``...) as the record's mapping."""
_STRING_ATOMS = (("m", "http.request.method"), ("U", "url.path"), ("q", "url.query"),
                 ("a", "user_agent.original"))


def access_atoms(logger_name: str, atoms: Mapping[Any, Any], attributes: dict[str, AnyValue]) -> None:
    """The request's method, path, query, status, client, user agent and duration, read from the
    atoms hypercorn and gunicorn pass with every access-log line, as HTTP semconv attributes
    (those the record already has win). hypercorn's default format writes the request line without
    its query string, where an attack usually is. Only these atoms are read: the mapping also holds
    every request header (``{authorization}i``) and, in hypercorn, every environment variable."""
    def atom(key: str) -> Any:
        try:
            value = dict.get(atoms, key) if isinstance(atoms, dict) else atoms.get(key)
        except Exception:  # noqa: BLE001 - a hostile mapping
            return None
        return None if value is None or (type(value) is str and value in ("", "-")) else value

    for key, name in _STRING_ATOMS:
        value = atom(key)
        if type(value) is str and name not in attributes:
            attributes[name] = value
    status = atom("s")
    if type(status) is str and status.isascii() and status.isdigit() and len(status) == 3:
        attributes.setdefault("http.response.status_code", int(status))
    client = atom("h")
    if type(client) is str and "client.address" not in attributes:
        if logger_name == "hypercorn.access":  # "host:port" from the ASGI client tuple
            host, sep, port = client.rpartition(":")
            client = host if sep and port.isdigit() else client
        attributes["client.address"] = client
    micros = atom("D")  # request time in microseconds (an int in both servers)
    if type(micros) is int and micros >= 0:
        attributes.setdefault("http.server.request.duration", micros / 1e6)


def safe_body(record: logging.LogRecord) -> str:
    """The unformatted message plus the ``repr`` of each argument (the fallback body)."""
    msg = safe_text(record.msg)
    args = record.args
    if not args:
        return msg
    if isinstance(args, dict):
        parts = [f"{safe_text(k)}={safe_text(v, use_repr=True)}" for k, v in list(args.items())[:64]]
    elif isinstance(args, tuple):
        parts = [safe_text(a, use_repr=True) for a in args[:64]]
    else:
        parts = [safe_text(args, use_repr=True)]
    return f"{msg} args=({', '.join(parts)})"


class _RateLimitedWarning:
    """At most one warning per ``interval`` seconds per topic; the rest are only counted."""

    def __init__(self, interval: float = WARN_INTERVAL_S) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def due(self, topic: str) -> bool:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(topic)
            if last is not None and now - last < self.interval:
                return False
            self._last[topic] = now
            return True


class OtelExtLoggingHandler(LoggingHandler):
    """The contrib ``LoggingHandler`` whose ``emit`` never raises into the application.

    See the module docstring for the guarantees; counters are in :data:`HANDLER_COUNTERS`.
    """

    def __init__(
        self,
        level: int = logging.NOTSET,
        logger_provider: APILoggerProvider | None = None,
        log_code_attributes: bool = False,
        counters: Counters = HANDLER_COUNTERS,
    ) -> None:
        super().__init__(level=level, logger_provider=logger_provider, log_code_attributes=log_code_attributes)
        self.counters = counters
        self._warnings = _RateLimitedWarning()
        self.provider = handler_provider(self)
        limits = provider_limits(self.provider)
        self.max_attributes: int | None = limits.max_log_record_attributes
        self.max_value_length: int | None = limits.max_log_record_attribute_length

    # --- the boundary ------------------------------------------------------------------------

    def emit(self, record: logging.LogRecord) -> None:
        try:
            reason = own_record_reason(record)  # ours, our threads', suppressed contexts'
            if reason is not None:
                self.counters.add("skipped", reason)
                return
            if _IS_EMITTING.get():  # the SDK logging while we emit: never recurse, never print
                self.counters.add("skipped", "reentrant")
                return
            token = _IS_EMITTING.set(True)
            try:
                logger = get_logger(record.name, logger_provider=self.provider)
                if not isinstance(logger, NoOpLogger):
                    logger.emit(writable_record(logger, self.translate(record)))
            finally:
                _IS_EMITTING.reset(token)
        except Exception:  # noqa: BLE001 - the application's log call must return normally
            self.handleError(record)

    def handleError(self, record: logging.LogRecord) -> None:
        """Count the failure; at most one line a minute to stderr (when ``logging.raiseExceptions``)."""
        try:
            self.counters.add("failed")
            if logging.raiseExceptions and self._warnings.due("failed"):
                exc = sys.exc_info()[1]
                sys.stderr.write(
                    f"otel-ext: a log record from {safe_text(getattr(record, 'name', '?'))!r} could not be "
                    f"exported ({safe_text(type(exc).__name__ if exc else 'unknown error')}); "
                    f"{self.counters.get('failed')} so far, counted as otel_ext.handler.failed\n"
                )
        except Exception:  # noqa: BLE001 - stderr closed or worse: nothing more we can do safely
            pass

    # --- translation ---------------------------------------------------------------------------

    def _body(self, record: logging.LogRecord) -> str:
        try:
            return self.format(record) if self.formatter else record.getMessage()
        except Exception:  # noqa: BLE001 - a raising __str__/__repr__/__format__, or recursion
            self.counters.add("format_failed", "message")
            self._warn_once("message", "otel-ext: a log message could not be formatted; exported "
                            "unformatted with repr-safe args (counted as otel_ext.handler.format_failed)")
            return safe_body(record)

    def _attributes(self, record: logging.LogRecord) -> tuple[dict[str, AnyValue], str | None]:
        try:
            return handler_attributes(self, record)
        except Exception:  # noqa: BLE001 - e.g. an exception whose args[0].__str__ raises
            self.counters.add("format_failed", "attributes")
            attributes: dict[str, AnyValue] = {}
            exc_info = record.exc_info
            if exc_info and exc_info[0] is not None:
                attributes["exception.type"] = safe_text(getattr(exc_info[0], "__name__", exc_info[0]))
                attributes["exception.message"] = safe_text(exc_info[1])
            return attributes, None

    def _limit(self, attributes: dict[str, AnyValue]) -> dict[str, AnyValue]:
        """Apply the SDK's count limit (oldest keys dropped, as the SDK does) and the string length
        limit here, counted, so the SDK never logs one warning per key."""
        maxlen = self.max_attributes
        if maxlen is not None and len(attributes) > maxlen:
            dropped = len(attributes) - maxlen
            keys = list(attributes)
            attributes = {k: attributes[k] for k in keys[dropped:]} if maxlen else {}
            self.counters.add("attributes_dropped", amount=dropped)
            self._warn_once("count", f"otel-ext: log record attributes beyond the limit of {maxlen} were dropped "
                                     f"({dropped} on this record; counted as otel_ext.handler.attributes_dropped)")
        maxval = self.max_value_length
        if maxval is not None:
            for key, value in attributes.items():
                if isinstance(value, str) and len(value) > maxval:
                    attributes[key] = value[:maxval]
                    self.counters.add("values_truncated")
        return attributes

    def _warn_once(self, topic: str, message: str) -> None:
        if self._warnings.due(topic):
            _logger.warning(message)  # the otel_ext tree: skipped by this handler, seen by the app's others

    def translate(self, record: logging.LogRecord) -> LogRecord:
        body = self._body(record)
        attributes, event_name = self._attributes(record)
        if record.name in ATOM_LOGGERS and isinstance(record.args, Mapping):
            access_atoms(record.name, record.args, attributes)
        attributes = self._limit(attributes)
        if not _PLAIN.issuperset(map(type, attributes.values())):
            attributes = self._plain_values(attributes)
        return LogRecord(
            timestamp=int(record.created * 1e9),
            observed_timestamp=time_ns(),
            context=get_current() or None,
            severity_text=_SEVERITY_TEXT.get(record.levelname, record.levelname),
            severity_number=std_to_otel(record.levelno),
            body=body,
            attributes=attributes,
            event_name=event_name,
        )

    def _plain_values(self, attributes: dict[str, AnyValue]) -> dict[str, AnyValue]:
        """Containers and objects cleaned here, as the SDK would, but never raising (the SDK's own
        cleaning raises on a raising ``__str__``, a cycle or deep nesting — in the app's log call)."""
        repaired: list[str] = []
        plain = {k: safe_value(v, repaired) for k, v in attributes.items()}
        if repaired:
            self.counters.add("format_failed", "attribute_values")
            self._warn_once("values", "otel-ext: a log record attribute value could not be exported as it was "
                                      f"({repaired[0]}); exported with a placeholder "
                                      "(counted as otel_ext.handler.format_failed)")
        return plain

    _translate = translate  # the contrib's private name too: any contrib code calling it gets ours


def _setup_handler(
    logger_provider: APILoggerProvider,
    log_code_attributes: bool = False,
    level: int | None = None,
) -> LoggingHandler:
    """Drop-in for the contrib instrumentation's ``_setup_logging_handler``: same effect, our handler."""
    handler = OtelExtLoggingHandler(level=level or logging.NOTSET, logger_provider=logger_provider,
                                    log_code_attributes=log_code_attributes)
    logging.getLogger().addHandler(handler)
    keep_through_logging_config(handler)  # dictConfig/basicConfig keep our handler, as theirs
    return handler


def install_for_instrumentation() -> Callable[..., LoggingHandler] | None:
    """Make the contrib logging instrumentation (``opentelemetry-instrument``) install our handler.

    The instrumentor installs its handler through a module-level hook that
    :func:`otel_ext._sdk_compat.swap_instrumentation_handler_setup` points at :func:`_setup_handler`.
    Returns the previous function (None when the instrumentation has no such hook: its own handler
    is then used, and one warning says so). tests/test_handler.py fails loudly if the hook moves.
    """
    previous = swap_instrumentation_handler_setup(_setup_handler)
    if previous is None:
        _logger.warning("otel-ext: opentelemetry-instrumentation-logging has no handler setup hook; "
                        "its own LoggingHandler is used")
        return None
    return previous  # type: ignore[return-value]
