"""The small generic engine that matches compiled rules against a record's fields.

Rules reading only low-cardinality fields (status, method, route, slow, logger, severity,
exception, event_action) are matched once per distinct combination of those fields and cached;
the other rules (body, path, client, attributes.*, ...) are grouped by the field of their first
condition so a record without that field skips the whole group. Body phrases (``contains``) are
pre-filtered by one anchor word per phrase on the lower-cased body.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.util.types import AnyValue

from otel_ext._linear import scan_text
from otel_ext.classify.fields import FieldSettings, RecordFields
from otel_ext.classify.rules import Rule, compile_rule
from otel_ext.classify.vocabulary import CLASS_PRIORITY, ECS_CATEGORY_TYPES

_CACHE_MAX = 8192
_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class Classification:
    """The merged labels of every rule that matched one record."""

    event_class: str
    tags: tuple[str, ...]
    kind: str
    category: tuple[str, ...]
    type: tuple[str, ...]
    outcome: str | None
    action: str | None
    min_severity: int | None
    rule_ids: tuple[str, ...]

    def attributes(self) -> dict[str, AnyValue]:
        """The ECS attributes this classification sets on a record (a fresh dict)."""
        cached = self.__dict__.get("_attributes_cache")  # on the instance: no hash of 9 fields per record
        if cached is None:
            cached = _ATTRIBUTES.get(self)
            if cached is None:
                cached = _ATTRIBUTES[self] = self._attributes()
            object.__setattr__(self, "_attributes_cache", cached)  # not a field: equality and hash unchanged
        return dict(cached)

    def _attributes(self) -> dict[str, AnyValue]:
        values: dict[str, AnyValue] = {
            "labels.event_class": self.event_class,
            "tags": self.tags,
            "event.kind": self.kind,
        }
        if self.category:
            values["event.category"] = self.category
        if self.type:
            values["event.type"] = self.type
        if self.rule_ids:
            values["event.outcome"] = self.outcome or "unknown"
        if self.action:
            values["event.action"] = self.action
        return values


_ATTRIBUTES: dict[Classification, dict[str, AnyValue]] = {}
APPLICATION = Classification("application", ("application",), "event", (), (), None, None, None, ())


def _anchor(phrase: str) -> str:
    words = _WORD.findall(phrase)
    return max(words, key=len) if words else phrase


class RuleSet:
    """Compiled rules plus field settings; :meth:`classify` is the per-record entry point."""

    def __init__(self, specs: Iterable[Mapping[str, Any]], settings: FieldSettings | None = None) -> None:
        self.settings = settings or FieldSettings()
        self.rules: tuple[Rule, ...] = tuple(compile_rule(s) for s in specs)
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise ValueError(f"rule {rule.id!r}: duplicate id")
            seen.add(rule.id)
        self._order = {rule.id: i for i, rule in enumerate(self.rules)}
        self._low = tuple(r for r in self.rules if r.low_cardinality)
        self._groups: dict[str, list[Rule]] = {}
        self._always: list[Rule] = []
        for rule in self.rules:
            if rule.low_cardinality:
                continue
            gate = rule.conditions[0]
            if gate.accepts_missing:
                self._always.append(rule)
            else:
                self._groups.setdefault(gate.field, []).append(rule)
        # a group whose gate is a plain equality (e.g. the `attack: <family>` rules) is indexed by
        # that value: a record is matched against the rules of its value only
        self._by_value: dict[str, tuple[dict[Any, list[Rule]], list[Rule]]] = {}
        for gate_field, rules in self._groups.items():
            index: dict[Any, list[Rule]] = {}
            rest: list[Rule] = []
            for rule in rules:
                spec = rule.source.get("when", {}).get(gate_field)
                if isinstance(spec, (str, int)) and not isinstance(spec, bool) and gate_field != "severity":
                    index.setdefault(spec, []).append(rule)
                else:
                    rest.append(rule)
            if index:
                self._by_value[gate_field] = (index, rest)
        # body rules gated by `contains` are skipped unless one of their anchor words occurs
        body_rules = self._groups.get("body", [])
        self._anchored_body = [r for r in body_rules if r.conditions[0].phrases]
        self._unanchored_body = [r for r in body_rules if not r.conditions[0].phrases]
        self._anchors: dict[str, list[Rule]] = {}
        for rule in self._anchored_body:
            for anchor in dict.fromkeys(_anchor(p) for p in rule.conditions[0].phrases):
                self._anchors.setdefault(anchor, []).append(rule)
        self._by_signature: dict[tuple[Any, ...], tuple[tuple[Rule, ...], Classification]] = {}
        self._merged: dict[tuple[str, ...], Classification] = {}
        self._body_memo: dict[str, tuple[tuple[Rule, ...], tuple[Rule, ...]]] = {}

    def _others(self, fields: RecordFields) -> list[Rule]:
        matched: list[Rule] = []
        get = fields.get
        for gate_field, rules in self._groups.items():
            value = get(gate_field)
            if value is None:
                continue
            if gate_field == "body":
                if self._anchors:
                    sure, check = self._anchor_hits(value)
                    matched.extend(sure)
                    if check:
                        matched.extend(r for r in check if r.matches(get))
                rules = self._unanchored_body
            elif gate_field in self._by_value:
                index, rest = self._by_value[gate_field]
                try:
                    candidates: Iterable[Rule] = index.get(value, ())
                except TypeError:  # an unhashable attribute value (a mapping): try every rule
                    candidates = [r for indexed in index.values() for r in indexed]
                matched.extend(r for r in candidates if r.matches(get))
                rules = rest
            matched.extend(r for r in rules if r.matches(get))
        matched.extend(r for r in self._always if r.matches(get))
        return matched

    def _anchor_hits(self, body: str) -> tuple[tuple[Rule, ...], tuple[Rule, ...]]:
        """The body rules one of whose anchor words occurs in ``body``, as (rules that match: their
        conditions read the body alone, so the answer is the body's; rules whose other conditions
        must still be checked on the record). Memoised for short bodies."""
        hits = self._body_memo.get(body)
        if hits is None:
            low = scan_text(body).lower()  # bounded: a multi-megabyte body costs what 64 KiB do
            found = tuple(dict.fromkeys(r for anchor, rs in self._anchors.items() if anchor in low for r in rs))
            body_only = [r for r in found if all(c.field == "body" for c in r.conditions)]
            get = {"body": body}.get
            hits = (tuple(r for r in body_only if r.matches(get)), tuple(r for r in found if r not in body_only))
            if len(body) <= 512:
                if len(self._body_memo) >= _CACHE_MAX:
                    self._body_memo.clear()
                self._body_memo[body] = hits
        return hits

    def classify(self, fields: RecordFields) -> Classification:
        """Labels for one record (``APPLICATION`` when no rule applies)."""
        entry = self._by_signature.get(fields.signature)
        if entry is None:
            low = tuple(r for r in self._low if r.matches(fields.get))
            entry = (low, self._merge(low))
            if len(self._by_signature) >= _CACHE_MAX:
                self._by_signature.clear()
            self._by_signature[fields.signature] = entry
        others = self._others(fields) if self._groups or self._always else None
        if not others:
            return entry[1]
        matched = entry[0] + tuple(others)
        key = tuple(sorted(r.id for r in matched))
        merged = self._merged.get(key)
        if merged is None:
            merged = self._merge(matched)
            if len(self._merged) >= _CACHE_MAX:
                self._merged.clear()
            self._merged[key] = merged
        return merged

    def _merge(self, matched: Iterable[Rule]) -> Classification:
        ordered = sorted(matched, key=lambda r: (CLASS_PRIORITY[r.event_class], self._order[r.id]))
        if not ordered:
            return APPLICATION
        severities = [r.min_severity for r in ordered if r.min_severity is not None]
        category = tuple(dict.fromkeys(c for r in ordered for c in r.category))
        return Classification(
            event_class=ordered[0].event_class,
            tags=tuple(dict.fromkeys(r.event_class for r in ordered)),
            kind="alert" if any(r.kind == "alert" for r in ordered) else ordered[0].kind,
            category=category,
            # ECS: every event.type must be expected for one of the record's categories; a type no
            # merged category allows (e.g. `error` of an exception outside a request) is left out
            type=tuple(t for t in dict.fromkeys(t for r in ordered for t in r.type)
                       if any(t in ECS_CATEGORY_TYPES[c] for c in category)),
            outcome=next((r.outcome for r in ordered if r.outcome), None),
            action=next((r.action for r in ordered if r.action), None),
            min_severity=max(severities) if severities else None,
            rule_ids=tuple(r.id for r in ordered),
        )
