"""DetectionEngine: feeds classified records to the enabled detectors and emits each alert as a log
record (``event.kind=alert``) through the same LoggerProvider, so alerts travel the same durable,
failover path; optionally notifies a webhook. DetectorProcessor is its in-line SDK processor."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry._logs import LogRecord, SeverityNumber, get_logger
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor, ReadWriteLogRecord

from otel_ext._attrs import read_view
from otel_ext._pairs import split_pairs
from otel_ext.detect.detectors import DETECTORS, Alert, Detector, Event
from otel_ext.detect.webhook import WebhookSink
from otel_ext.settings import env_value
from otel_ext.telemetry import Counters, register_counters

_logger = logging.getLogger(__name__)

DETECT_COUNTERS = register_counters(Counters("detect"), {
    "alerts": ("rule_id",), "evicted_keys": ("rule_id",), "failed": ()})
ENV = "OTEL_EXT_DETECTORS"
_SEVERITY = {"WARN": SeverityNumber.WARN, "ERROR": SeverityNumber.ERROR, "FATAL": SeverityNumber.FATAL}


@dataclass(frozen=True)
class DetectorConfig:
    """Which detectors run, with which parameters. Default: all, with their default thresholds."""

    enabled: tuple[str, ...] = tuple(DETECTORS)
    params: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    max_keys: int = 10_000

    @classmethod
    def parse(cls, yaml_section: Any = None, env_text: str | None = None, source: str = "rules file") -> DetectorConfig:
        enabled = dict.fromkeys(DETECTORS, True)
        params: dict[str, dict[str, float]] = {name: {} for name in DETECTORS}
        max_keys = 10_000
        if yaml_section is not None:
            if not isinstance(yaml_section, Mapping):
                raise ValueError(f"{source}: 'detectors' must be a mapping of detector -> settings")
            for name, spec in yaml_section.items():
                if name == "max_keys":
                    max_keys = _positive_int(spec, f"{source}: detectors.max_keys")
                    continue
                _known(name, f"{source}: detectors")
                if spec is False or spec == "off":
                    enabled[name] = False
                    continue
                if not isinstance(spec, Mapping):
                    raise ValueError(f"{source}: detectors.{name} must be a mapping (or false)")
                for key, value in spec.items():
                    if key == "enabled":
                        enabled[name] = bool(value)
                    else:
                        params[name][str(key)] = value
        text = (env_text or "").strip()
        if text.lower() in ("off", "none", "false"):
            enabled = dict.fromkeys(DETECTORS, False)
        elif text:
            for target, value in split_pairs(text, f"{ENV}: expected name=off|on or name.param=value"):
                name, _, param = target.strip().partition(".")
                _known(name, ENV)
                if not param:
                    if value.strip() not in ("on", "off"):
                        raise ValueError(f"{ENV}: {name}= must be on or off, got {value!r}")
                    enabled[name] = value.strip() == "on"
                else:
                    try:
                        params[name][param] = float(value)
                    except ValueError:
                        raise ValueError(f"{ENV}: {target} must be a number, got {value!r}") from None
        config = cls(tuple(n for n, on in enabled.items() if on), params, max_keys)
        config.build(lambda _n: None)  # validate parameters now, not at the first record
        return config

    def build(self, on_evict: Any) -> list[Detector]:
        detectors = []
        for name in self.enabled:
            try:
                evict = functools.partial(on_evict, name)
                detectors.append(DETECTORS[name](self.max_keys, evict, **self.params.get(name, {})))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"detectors: {exc}") from None
        return detectors


def _known(name: str, source: str) -> None:
    if name not in DETECTORS:
        raise ValueError(f"{source}: unknown detector {name!r} (known: {', '.join(DETECTORS)})")


def _positive_int(value: Any, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{source} must be a positive integer, got {value!r}")
    return value


def _extras(extra: dict[str, Any]) -> dict[str, Any]:
    """Alert extras: ECS fields (dotted names, e.g. ``client.address``) as they are, our own
    (``samples``, ``baseline``) under ``otel_ext.alert.`` rather than at the document root."""
    return {(k if "." in k else f"otel_ext.alert.{k}"): v for k, v in extra.items() if v is not None}


def _int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


class DetectionEngine:
    """Runs the detectors on labelled records; never raises into the caller."""

    def __init__(self, config: DetectorConfig | None = None, provider: LoggerProvider | None = None,
                 webhook: WebhookSink | None = None, counters: Counters = DETECT_COUNTERS) -> None:
        self.config = config or DetectorConfig()
        self.counters = counters
        self.detectors = self.config.build(lambda name: counters.add("evicted_keys", name))
        self.provider = provider
        self.webhook = webhook
        self._logger: Any = None
        self._by_action: dict[str | None, tuple[Detector, ...]] = {}

    def _for_action(self, action: str | None) -> tuple[Detector, ...]:
        """The detectors that may react to records with this ``event.action`` (bounded memo)."""
        found = self._by_action.get(action)
        if found is None:
            found = tuple(d for d in self.detectors if d.wants(action))
            if len(self._by_action) >= 1024:
                self._by_action.clear()
            self._by_action[action] = found
        return found

    def bind(self, provider: LoggerProvider) -> None:
        self.provider = provider
        self._logger = None

    def observe(self, record: Any) -> list[Alert]:
        if not self.detectors:
            return []
        try:
            attrs = read_view(record.attributes)
            if attrs.get("event.kind") == "alert" or "labels.event_class" not in attrs:
                return []
            duration = attrs.get("event.duration")
            route = attrs.get("http.route") or attrs.get("url.path")
            action = attrs.get("event.action")
            event = Event(
                ts_ns=record.timestamp or record.observed_timestamp or time.time_ns(),
                event_class=str(attrs.get("labels.event_class")),
                action=action if isinstance(action, str) else None,
                status=_int(attrs.get("http.response.status_code")),
                route=route if isinstance(route, str) else None,
                client=str(attrs["client.address"]) if attrs.get("client.address") else None,
                user=str(attrs.get("user.id") or attrs.get("enduser.id") or "") or None,
                duration_ms=duration / 1e6 if isinstance(duration, (int, float)) else None,
                user_agent=agent if isinstance(agent := attrs.get("user_agent.original"), str) else None,
            )
            alerts = [a for detector in self._for_action(event.action) for a in detector.observe(event)]
        except Exception:  # noqa: BLE001 - detection must never break logging
            self.counters.add("failed")
            return []
        for alert in alerts:
            self.counters.add("alerts", alert.rule_id)
            self._emit(alert)
            if self.webhook is not None:
                self.webhook.submit(alert)
        return alerts

    def _emit(self, alert: Alert) -> None:
        if self._logger is None:
            self._logger = get_logger("otel_ext.detect", logger_provider=self.provider)
        attributes: dict[str, Any] = {
            "labels.event_class": alert.event_class,
            "tags": (alert.event_class, "alert"),
            "event.kind": "alert",
            "event.category": alert.category,
            "event.type": alert.type,
            "event.outcome": "unknown",
            "event.action": alert.action,
            "rule.id": alert.rule_id,
            "rule.name": alert.rule_name,
            # ECS labels are keyword strings; the numbers stay numeric under our namespace
            "labels.alert_key": alert.key,
            "labels.alert_key_field": alert.key_field,
            "labels.alert_count": f"{alert.count:g}",
            "labels.alert_window_s": f"{alert.window_s:g}",
            "otel_ext.alert.count": alert.count,
            "otel_ext.alert.window_s": alert.window_s,
            **_extras(alert.extra),
        }
        if alert.key_field == "source.ip" and " " in alert.key:  # scanner bursts key on "ip agent"
            attributes["source.ip"], attributes["user_agent.original"] = alert.key.split(" ", 1)
        else:
            attributes[alert.key_field] = alert.key
        try:
            self._logger.emit(LogRecord(timestamp=alert.ts_ns, observed_timestamp=time.time_ns(),
                                        severity_number=_SEVERITY[alert.severity], severity_text=alert.severity,
                                        body=alert.message, attributes=attributes, event_name=alert.action))
        except Exception:
            self.counters.add("failed")
            _logger.exception("otel-ext: could not emit an alert record")

    def state_size(self) -> int:
        return sum(d.state_size() for d in self.detectors)

    def shutdown(self) -> None:
        if self.webhook is not None:
            self.webhook.close()


class DetectorProcessor(LogRecordProcessor):
    """In-line SDK processor: register it after the classifier (alerts re-enter the provider)."""

    def __init__(self, engine: DetectionEngine) -> None:
        self.engine = engine

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        self.engine.observe(log_record.log_record)

    def shutdown(self) -> None:
        self.engine.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def engine_from_env(yaml_section: Any = None, source: str = "rules file") -> DetectionEngine | None:
    """The engine configured by ``OTEL_EXT_DETECTORS`` / the rules file, with the optional webhook."""
    config = DetectorConfig.parse(yaml_section, env_value(ENV), source)
    if not config.enabled:
        return None
    url = env_value("OTEL_EXT_ALERT_WEBHOOK")
    webhook = WebhookSink(url, service=env_value("OTEL_SERVICE_NAME")) if url else None
    return DetectionEngine(config, webhook=webhook)
