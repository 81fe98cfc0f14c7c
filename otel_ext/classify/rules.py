"""The rule model: a rule is data (conditions over a record's fields -> labels).

A rule reads like ``{"id": ..., "when": {field: condition, ...}, "class": ..., "category": [...],
...}``; the same shape is used by the built-in table, by YAML rule files and by Python callers.
:func:`compile_rule` validates one rule and turns its conditions into predicates once, so matching a
record is a handful of dictionary look-ups and comparisons.

Fields a condition can read (see :mod:`otel_ext.classify.fields`): ``status``, ``method``,
``route``, ``path``, ``client``, ``user``, ``user_agent``, ``duration_ms``, ``slow``, ``logger``,
``severity``, ``body``, ``exception``, ``event_action``, ``attack`` (the payload-inspection family,
see :mod:`otel_ext.classify.payload`) and ``attributes.<key>`` for any attribute.

Conditions: a scalar (equals), a list (one of), or a mapping of operators — ``equals``, ``in``,
``not_in``, ``matches`` (regex search), ``not_matches``, ``contains`` (case-insensitive substring, or any of
a list), ``prefix``, ``gt``, ``gte``, ``lt``,
``lte``, ``exists``. Every condition of a rule must hold.

Regexes are RE2 (linear time, the collector's OTTL dialect); a pattern RE2 rejects is a rule error.
String conditions read at most :data:`otel_ext._linear.MAX_SCAN_CHARS` characters of a value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry._logs import SeverityNumber

from otel_ext._linear import LinearRegex, PatternError, scan_text
from otel_ext.classify.vocabulary import (
    ECS_CATEGORY_TYPES,
    ECS_KINDS,
    ECS_OUTCOMES,
    ECS_TYPES,
    EVENT_CLASSES,
)

FIELDS = frozenset(
    {
        "status",
        "method",
        "route",
        "path",
        "client",
        "user",
        "user_agent",
        "duration_ms",
        "slow",
        "logger",
        "severity",
        "body",
        "exception",
        "event_action",
        "attack",
    }
)
OPERATORS = frozenset(
    {"equals", "in", "not_in", "matches", "not_matches", "contains", "prefix", "gt", "gte", "lt", "lte", "exists"}
)
# Fields with few distinct values: rules reading only these are matched once per distinct
# combination and cached.
LOW_CARDINALITY_FIELDS = frozenset(
    {"status", "method", "route", "slow", "logger", "severity", "exception", "event_action"}
)
LABEL_KEYS = frozenset(
    {"id", "when", "class", "category", "type", "outcome", "action", "kind", "severity", "enabled", "description"}
)

SEVERITY_BY_NAME: dict[str, int] = {
    "TRACE": SeverityNumber.TRACE.value,
    "DEBUG": SeverityNumber.DEBUG.value,
    "INFO": SeverityNumber.INFO.value,
    "WARN": SeverityNumber.WARN.value,
    "WARNING": SeverityNumber.WARN.value,
    "ERROR": SeverityNumber.ERROR.value,
    "FATAL": SeverityNumber.FATAL.value,
    "CRITICAL": SeverityNumber.FATAL.value,
}

Predicate = Callable[[Any], bool]


class RuleError(ValueError):
    """A rule is malformed; the message names the rule and the problem."""

    def __init__(self, rule_id: str, problem: str) -> None:
        super().__init__(f"rule {rule_id!r}: {problem}")
        self.rule_id = rule_id
        self.problem = problem


@dataclass(frozen=True)
class Condition:
    field: str
    predicate: Predicate
    # lower-case phrases when the condition is a plain `contains` (used to pre-filter bodies)
    phrases: tuple[str, ...] = ()
    # True when the condition can hold for a missing value (exists: false)
    accepts_missing: bool = False


@dataclass(frozen=True)
class Rule:
    """One compiled classification rule."""

    id: str
    event_class: str
    conditions: tuple[Condition, ...]
    category: tuple[str, ...] = ()
    type: tuple[str, ...] = ()
    outcome: str | None = None
    action: str | None = None
    kind: str = "event"
    min_severity: int | None = None
    description: str = ""
    source: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def low_cardinality(self) -> bool:
        return all(c.field in LOW_CARDINALITY_FIELDS for c in self.conditions)

    def matches(self, get: Callable[[str], Any]) -> bool:
        for cond in self.conditions:
            value = get(cond.field)
            if value is None and not cond.accepts_missing:
                return False
            if not cond.predicate(value):
                return False
        return True


def _severity_value(rule_id: str, value: Any) -> int:
    if isinstance(value, bool):
        raise RuleError(rule_id, f"severity must be a name or number, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.upper() in SEVERITY_BY_NAME:
        return SEVERITY_BY_NAME[value.upper()]
    raise RuleError(rule_id, f"unknown severity {value!r} (use one of {sorted(SEVERITY_BY_NAME)})")


def _number(rule_id: str, fld: str, op: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RuleError(rule_id, f"{fld}: {op} needs a number, got {value!r}")
    return float(value)


def _compile_regex(rule_id: str, fld: str, pattern: Any) -> LinearRegex:
    if not isinstance(pattern, str):
        raise RuleError(rule_id, f"{fld}: matches needs a regex string, got {pattern!r}")
    try:
        return LinearRegex(pattern)
    except PatternError as exc:
        raise RuleError(rule_id, f"{fld}: invalid regex {pattern!r}: {exc}") from None


_as_str = scan_text  # every string condition reads a bounded prefix of the value


def _compile_op(rule_id: str, fld: str, op: str, arg: Any) -> tuple[Predicate, tuple[str, ...]]:
    if fld == "severity" and op in {"equals", "gt", "gte", "lt", "lte"}:
        arg = _severity_value(rule_id, arg)
    if op == "equals":
        return (lambda v, a=arg: v == a), ()
    if op in {"in", "not_in"}:
        if not isinstance(arg, (list, tuple)) or not arg:
            raise RuleError(rule_id, f"{fld}: {op} needs a non-empty list, got {arg!r}")
        items = frozenset(_severity_value(rule_id, a) if fld == "severity" else a for a in arg)
        if op == "in":
            return (lambda v, s=items: v in s), ()
        return (lambda v, s=items: v not in s), ()
    if op in {"matches", "not_matches"}:
        rx = _compile_regex(rule_id, fld, arg)
        if op == "matches":
            return (lambda v, r=rx: r.search(_as_str(v))), ()
        return (lambda v, r=rx: not r.search(_as_str(v))), ()
    if op == "contains":
        phrases = [arg] if isinstance(arg, str) else arg
        if not isinstance(phrases, (list, tuple)) or not phrases or not all(isinstance(p, str) and p for p in phrases):
            raise RuleError(rule_id, f"{fld}: contains needs a string or a list of strings, got {arg!r}")
        lowered = tuple(p.lower() for p in phrases)

        def contains(v: Any, ps: tuple[str, ...] = lowered) -> bool:
            low = _as_str(v).lower()
            return any(p in low for p in ps)

        return contains, lowered
    if op == "prefix":
        if not isinstance(arg, str):
            raise RuleError(rule_id, f"{fld}: prefix needs a string, got {arg!r}")
        return (lambda v, p=arg: _as_str(v).startswith(p)), ()
    if op in {"gt", "gte", "lt", "lte"}:
        num = _number(rule_id, fld, op, arg)

        def compare(v: Any, n: float = num, o: str = op) -> bool:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                return False
            return {"gt": v > n, "gte": v >= n, "lt": v < n, "lte": v <= n}[o]

        return compare, ()
    if op == "exists":
        if not isinstance(arg, bool):
            raise RuleError(rule_id, f"{fld}: exists needs true or false, got {arg!r}")
        return (lambda v, want=arg: (v is not None) == want), ()
    raise RuleError(rule_id, f"{fld}: unknown operator {op!r} (use one of {sorted(OPERATORS)})")


def _compile_condition(rule_id: str, fld: str, spec: Any) -> Condition:
    if fld not in FIELDS and not fld.startswith("attributes."):
        raise RuleError(rule_id, f"unknown field {fld!r} (use one of {sorted(FIELDS)} or attributes.<key>)")
    if isinstance(spec, Mapping):
        if not spec:
            raise RuleError(rule_id, f"{fld}: empty condition")
        preds: list[Predicate] = []
        phrases: tuple[str, ...] = ()
        for op, arg in spec.items():
            pred, found = _compile_op(rule_id, fld, str(op), arg)
            preds.append(pred)
            phrases = phrases or found
        accepts_missing = spec.get("exists") is False
        if len(preds) == 1:
            return Condition(fld, preds[0], phrases, accepts_missing)
        all_preds = tuple(preds)

        def every(v: Any) -> bool:
            return all(p(v) for p in all_preds)

        return Condition(fld, every, (), accepts_missing)
    if isinstance(spec, (list, tuple)):
        pred, _ = _compile_op(rule_id, fld, "in", list(spec))
        return Condition(fld, pred)
    pred, _ = _compile_op(rule_id, fld, "equals", spec)
    return Condition(fld, pred)


def _str_tuple(rule_id: str, key: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise RuleError(rule_id, f"{key} must be a string or a list of strings, got {value!r}")


def compile_rule(spec: Mapping[str, Any]) -> Rule:
    """Validate one rule mapping and compile it. Raises :class:`RuleError`."""
    if not isinstance(spec, Mapping):
        raise RuleError("?", f"a rule must be a mapping, got {type(spec).__name__}")
    rule_id = spec.get("id")
    if not isinstance(rule_id, str) or not rule_id:
        raise RuleError(str(rule_id or "?"), "every rule needs a non-empty string 'id'")
    unknown = set(spec) - LABEL_KEYS
    if unknown:
        raise RuleError(rule_id, f"unknown key(s) {sorted(unknown)} (allowed: {sorted(LABEL_KEYS)})")
    when = spec.get("when")
    if not isinstance(when, Mapping) or not when:
        raise RuleError(rule_id, "'when' must be a non-empty mapping of field -> condition")
    event_class = spec.get("class")
    if event_class not in EVENT_CLASSES:
        raise RuleError(rule_id, f"class must be one of {list(EVENT_CLASSES)}, got {event_class!r}")
    category = _str_tuple(rule_id, "category", spec.get("category"))
    types = _str_tuple(rule_id, "type", spec.get("type"))
    for cat in category:
        if cat not in ECS_CATEGORY_TYPES:
            raise RuleError(rule_id, f"category {cat!r} is not an ECS event.category value")
    for typ in types:
        if typ not in ECS_TYPES:
            raise RuleError(rule_id, f"type {typ!r} is not an ECS event.type value")
        if category and not any(typ in ECS_CATEGORY_TYPES[c] for c in category):
            raise RuleError(rule_id, f"type {typ!r} is not valid for ECS category {list(category)}")
    outcome = spec.get("outcome")
    if outcome is not None and outcome not in ECS_OUTCOMES:
        raise RuleError(rule_id, f"outcome must be one of {sorted(ECS_OUTCOMES)}, got {outcome!r}")
    kind = spec.get("kind", "event")
    if kind not in ECS_KINDS:
        raise RuleError(rule_id, f"kind must be one of {sorted(ECS_KINDS)}, got {kind!r}")
    action = spec.get("action")
    if action is not None and (not isinstance(action, str) or not action or ":" in action):
        raise RuleError(rule_id, f"action must be a name without ':parameters', got {action!r}")
    severity = spec.get("severity")
    conditions = tuple(_compile_condition(rule_id, str(f), c) for f, c in when.items())
    return Rule(
        id=rule_id,
        event_class=event_class,
        conditions=conditions,
        category=category,
        type=types,
        outcome=outcome,
        action=action,
        kind=kind,
        min_severity=None if severity is None else _severity_value(rule_id, severity),
        description=str(spec.get("description", "")),
        source=dict(spec),
    )


def merge_rules(
    base: list[Mapping[str, Any]], overrides: list[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """Extend ``base`` with ``overrides``; a rule with an existing id replaces it in place, and
    ``{id: X, enabled: false}`` removes it."""
    merged: dict[str, Mapping[str, Any]] = {}
    for spec in base:
        merged[str(spec.get("id"))] = spec
    for spec in overrides:
        rule_id = str(spec.get("id")) if isinstance(spec, Mapping) else "?"
        if isinstance(spec, Mapping) and spec.get("enabled") is False:
            if rule_id not in merged:
                raise RuleError(rule_id, "disables a rule that does not exist")
            merged.pop(rule_id)
            continue
        merged[rule_id] = spec
    return list(merged.values())
