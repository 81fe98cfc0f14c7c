"""EventClassifierProcessor: labels every log record as security / error / performance / access /
application with ECS ``event.*`` fields and OWASP ``event.action`` names."""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LogRecordProcessor, ReadWriteLogRecord

from otel_ext._attrs import read_view, set_many
from otel_ext.classify.engine import Classification, RuleSet
from otel_ext.classify.fields import RecordFields
from otel_ext.classify.loader import build_ruleset
from otel_ext.classify.payload import attack_attributes
from otel_ext.telemetry import Counters, ensure_published, register_counters

_logger = logging.getLogger(__name__)

CLASS_ATTR = "labels.event_class"
_SEVERITY_TEXT = {
    SeverityNumber.WARN.value: "WARN",
    SeverityNumber.ERROR.value: "ERROR",
    SeverityNumber.FATAL.value: "FATAL",
    SeverityNumber.INFO.value: "INFO",
}

CLASSIFIER_COUNTERS = register_counters(Counters("classifier"), {"classified": ("event_class",), "failed": ()})
"""``classified`` per class, ``failed`` (records passed through unlabelled after an error)."""


class EventClassifierProcessor(LogRecordProcessor):
    """Labels each record in place before it reaches the export processor.

    Guarantee: never raises into the caller and never lowers severity; a record that breaks a rule
    passes through unlabelled and is counted under ``failed``. Records that already carry
    ``labels.event_class`` are left as they are.
    """

    def __init__(
        self,
        rules: RuleSet | list[dict[str, Any]] | None = None,
        rules_file: str | None = None,
        counters: Counters = CLASSIFIER_COUNTERS,
    ) -> None:
        self.ruleset = rules if isinstance(rules, RuleSet) else build_ruleset(rules=rules, rules_file=rules_file)
        self.counters = counters
        self._warned = False
        ensure_published()

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        scope = log_record.instrumentation_scope
        self.classify_record(log_record.log_record, scope.name if scope is not None else "")

    def classify_record(self, record: Any, scope_name: str) -> str | None:
        """Label one API ``LogRecord`` in place; returns its primary class (None on failure)."""
        try:
            attrs = read_view(record.attributes)
            existing = attrs.get(CLASS_ATTR)
            if isinstance(existing, str):
                return existing
            severity = record.severity_number.value if record.severity_number is not None else 0
            fields = RecordFields(attrs, record.body, severity, scope_name, self.ruleset.settings)
            result = self.ruleset.classify(fields)
            self._label(record, fields, result)
            self.counters.add("classified", result.event_class)
            return result.event_class
        except Exception:  # never raise into the application thread
            self.counters.add("failed")
            if not self._warned:
                self._warned = True
                _logger.warning("otel-ext: a record could not be classified; passing it through", exc_info=True)
            return None

    @staticmethod
    def _label(record: Any, fields: RecordFields, result: Classification) -> None:
        values = result.attributes()
        if fields.parsed:
            values.update(fields.parsed)
        hit = fields.attack_hit
        if hit is not None and any(rid.startswith("attack.") for rid in result.rule_ids):
            values.update(attack_attributes(hit))
        if fields.get("slow") is not None:
            values["event.duration"] = int(fields.get("duration_ms") * 1_000_000)
        explicit = fields.get("event_action")
        action = explicit or result.action
        if action:
            values["event.action"] = action
            if not record.event_name:
                record.event_name = action
        set_many(record, values)
        floor = result.min_severity
        if floor is not None:
            current = record.severity_number.value if record.severity_number is not None else 0
            if current < floor:
                record.severity_number = SeverityNumber(floor)
                record.severity_text = _SEVERITY_TEXT.get(floor, SeverityNumber(floor).name)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
