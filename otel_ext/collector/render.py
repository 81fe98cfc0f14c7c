"""Render the classification rule set (built-ins + user rules) as OTTL for the collector's
``transform`` processor, so the collector labels records exactly like EventClassifierProcessor.

How it maps: fields are derived into the per-record ``cache`` (status, route, duration, slow, …; access
lines parsed from the body for access loggers); every rule becomes one statement that sets a match
flag; the merge then runs over the flags in the engine's order (class priority, then rule order):
primary class, ``tags``, ordered unique ``event.category``/``event.type``, first outcome and action
(an app's own ``event.action`` wins), the severity floor, ``event.duration``, the event name.
Conditions OTTL cannot express (regex features RE2 lacks) are reported, never silently dropped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from otel_ext.classify import payload
from otel_ext.classify.engine import RuleSet
from otel_ext.classify.fields import (
    AGENT_PATTERN,
    CLIENT_PATTERN,
    FULL_URL_PATTERN,
    LEGACY_HTTP_NAMES,
    REQUEST_LINE_PATTERN,
    TARGET_PATTERN,
)
from otel_ext.classify.rules import SEVERITY_BY_NAME, Rule
from otel_ext.classify.vocabulary import CLASS_PRIORITY, ECS_CATEGORY_TYPES, EVENT_CLASSES

_FIELD_PATHS = {
    "status": 'cache["status"]', "method": 'cache["method"]', "route": 'cache["route"]', "path": 'cache["path"]',
    "client": 'cache["client"]', "user": 'cache["user"]', "user_agent": 'cache["user_agent"]',
    "duration_ms": 'cache["duration_ms"]', "slow": 'cache["slow"]', "logger": "instrumentation_scope.name",
    "severity": "severity_number", "body": 'cache["body"]', "exception": 'cache["exception"]',
    "event_action": 'cache["event_action"]', "attack": 'cache["attack"]',
}
_RE2_UNSUPPORTED = re.compile(r"\(\?[=!]|\(\?<[=!]|\\[1-9]|\(\?P=|[*+?}]\+|\(\?>")
_SEVERITY_TEXT = {SEVERITY_BY_NAME["INFO"]: "INFO", SEVERITY_BY_NAME["WARN"]: "WARN",
                  SEVERITY_BY_NAME["ERROR"]: "ERROR", SEVERITY_BY_NAME["FATAL"]: "FATAL"}


class Unsupported(ValueError):
    pass


def q(text: str) -> str:
    """An OTTL string literal."""
    return json.dumps(text, ensure_ascii=False)


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return q(value)
    raise Unsupported(f"value {value!r} has no OTTL literal")


def _regex(pattern: str) -> str:
    if _RE2_UNSUPPORTED.search(pattern):
        raise Unsupported(f"regex {pattern!r} uses a feature RE2 (OTTL) lacks")
    return pattern


def _path(fld: str) -> str:
    if fld.startswith("attributes."):
        return f'attributes[{q(fld[11:])}]'
    return _FIELD_PATHS[fld]


def _condition(fld: str, spec: Any) -> str:
    path = _path(fld)
    if isinstance(spec, Mapping):
        parts = [_operator(fld, path, str(op), arg) for op, arg in spec.items()]
        accepts_missing = spec.get("exists") is False
        body = " and ".join(parts)
        return f"({body})" if accepts_missing else f"({path} != nil and {body})"
    if isinstance(spec, (list, tuple)):
        return f"({path} != nil and {_operator(fld, path, 'in', list(spec))})"
    return f"({path} != nil and {_operator(fld, path, 'equals', spec)})"


def _severity_literal(fld: str, value: Any) -> Any:
    if fld == "severity" and isinstance(value, str):
        return SEVERITY_BY_NAME[value.upper()]
    return value


def _operator(fld: str, path: str, op: str, arg: Any) -> str:
    if op == "equals":
        return f"{path} == {_literal(_severity_literal(fld, arg))}"
    if op in ("in", "not_in"):
        values = [_literal(_severity_literal(fld, a)) for a in arg]
        if op == "in":
            return "(" + " or ".join(f"{path} == {v}" for v in values) + ")"
        return "(" + " and ".join(f"{path} != {v}" for v in values) + ")"
    if op == "matches":
        return f"IsMatch({path}, {q(_regex(arg))})"
    if op == "not_matches":
        return f"not IsMatch({path}, {q(_regex(arg))})"
    if op == "contains":
        phrases = [arg] if isinstance(arg, str) else list(arg)
        return f"IsMatch({path}, {q('(?i)(' + '|'.join(re.escape(p) for p in phrases) + ')')})"
    if op == "prefix":
        return f"IsMatch({path}, {q('^' + re.escape(arg))})"
    if op in ("gt", "gte", "lt", "lte"):
        sign = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
        return f"{path} {sign} {_literal(_severity_literal(fld, arg))}"
    if op == "exists":
        return f"{path} != nil" if arg else f"{path} == nil"
    raise Unsupported(f"operator {op!r}")


def _glob_regex(glob: str) -> str:
    return "^" + re.escape(glob).replace(r"\*", ".*").replace(r"\?", ".") + "$"


def _prose_condition(kind: str, kinds: frozenset[str], value: str) -> str | None:
    """The extra condition for a pattern on a field of ``kind`` (None: the pattern does not apply).
    A body is matched with the prose table when it is prose (payload.PROSE), as in Python."""
    if kind != "body":
        return "" if kind in kinds else None
    on_body, on_prose = "body" in kinds, payload.PROSE_KIND in kinds
    if on_body and on_prose:
        return ""
    if on_body:
        return f" and not IsMatch({value}, {q(payload.PROSE)})"
    if on_prose:
        return f" and IsMatch({value}, {q(payload.PROSE)})"
    return None


def _render_payload(add: Any) -> None:
    """Payload inspection as OTTL: the inspected fields are copied, lower-cased, into one map;
    every decoding step is one ``replace_all_patterns`` over that map (the same regex and
    replacement as Python, in the same order); then, field by field in the same order, the byte
    bound and the patterns in table order. The first hit wins, as in Python."""
    # url.full is inspected only when no url.path is known (it was split into url.path and url.query)
    no_path = '(not IsString(attributes["url.path"]) or attributes["url.path"] == "")'
    only = {name: (f" and {no_path}" if kind == "url" else "") for name, kind in payload.INSPECTED_FIELDS}
    for name, _ in payload.INSPECTED_FIELDS:
        add(f'set(cache["nf"][{q(name)}], ConvertCase(attributes[{q(name)}], "lower"))',
            f'IsString(attributes[{q(name)}]) and attributes[{q(name)}] != ""' + only[name])
    any_field = 'cache["nf"] != nil'
    for step in payload.decode_steps():
        where = any_field
        add(f'replace_all_patterns(cache["nf"], "value", {q(step.regex)}, {q(step.replacement)})', where)
    for name, kind in payload.INSPECTED_FIELDS:
        value = f'cache["nf"][{q(name)}]'
        add('set(cache["hit.rule"], "oversize.field")',
            f'cache["hit.rule"] == nil and IsString(attributes[{q(name)}]) and '
            f'Len(attributes[{q(name)}]) > {payload.BOUND_BYTES}' + only[name])
        for pattern in payload.PATTERNS:
            prose = _prose_condition(kind, pattern.kinds, value)
            if prose is not None:
                # a weak hit (last in the table) is kept aside; any other hit in a later field wins
                target = "weak.rule" if pattern.family in payload.WEAK_FAMILIES else "hit.rule"
                add(f'set(cache[{q(target)}], {q(pattern.id)})',
                    f'cache["hit.rule"] == nil and cache[{q(target)}] == nil and {value} != nil and '
                    f'IsMatch({value}, {q(pattern.regex)})' + prose)
        add(f'set(cache["hit.field"], {q(name)})', 'cache["hit.rule"] != nil and cache["hit.field"] == nil')
        add(f'set(cache["weak.field"], {q(name)})', 'cache["weak.rule"] != nil and cache["weak.field"] == nil')
    add('set(cache["hit.field"], cache["weak.field"])', 'cache["hit.rule"] == nil and cache["weak.rule"] != nil')
    add('set(cache["hit.rule"], cache["weak.rule"])', 'cache["hit.rule"] == nil and cache["weak.rule"] != nil')
    oversize = payload.FAMILIES["oversize"]
    for pid, family, name in (("oversize.field", oversize, oversize.description),
                              *((p.id, payload.FAMILIES[p.family], p.name) for p in payload.PATTERNS)):
        match = f'cache["hit.rule"] == {q(pid)}'
        add(f'set(cache["attack"], {q(family.name)})', match)
        add(f'set(cache["hit.name"], {q(name)})', match)
        add(f'set(cache["hit.category"], {q(family.category)})', match)


@dataclass
class Rendered:
    statements: list[str]
    unsupported: list[str] = field(default_factory=list)


def render_statements(ruleset: RuleSet) -> Rendered:
    s: list[str] = []
    unsupported: list[str] = []
    settings = ruleset.settings
    guard = 'cache["skip"] == nil'

    def add(statement: str, where: str | None = None) -> None:
        s.append(f"{statement} where {guard}" + (f" and {where}" if where else ""))

    # 0. records that already carry a class are left alone (as in Python)
    s.append('set(cache["skip"], true) where attributes["labels.event_class"] != nil')
    # 1. classic access lines: method, path, status, client from the body
    loggers = " or ".join(f"instrumentation_scope.name == {q(name)}" for name in settings.access_loggers)
    parse_when = f'attributes["http.response.status_code"] == nil and IsString(body) and ({loggers})'
    add(f'set(cache["line"], ExtractPatterns(body, {q(REQUEST_LINE_PATTERN)}))', parse_when)
    peer = q(CLIENT_PATTERN + '.*"[A-Z]{3,10} ')
    add(f'set(cache["peer"], ExtractPatterns(body, {peer}))',
        f'cache["line"]["status"] != nil and {parse_when}')
    bare_line = re.sub(r"\(\?P<\w+>", "(", REQUEST_LINE_PATTERN)
    add(f'set(cache["agent"], ExtractPatterns(body, {q(bare_line + AGENT_PATTERN)}))',
        f'cache["line"]["status"] != nil and {parse_when}')
    add('replace_pattern(cache["peer"]["client"], "^(\\\\d+\\\\.\\\\d+\\\\.\\\\d+\\\\.\\\\d+):\\\\d+$", "$1")',
        'cache["peer"]["client"] != nil')
    add('replace_pattern(cache["peer"]["client"], "^\\\\[([0-9A-Fa-f:.]+)\\\\](?::\\\\d+)?$", "$1")',
        'cache["peer"]["client"] != nil')
    add('set(attributes["http.request.method"], cache["line"]["method"])', 'cache["line"]["status"] != nil')
    add('set(attributes["url.path"], cache["line"]["path"])', 'cache["line"]["status"] != nil')
    add('set(attributes["url.query"], cache["line"]["query"])',
        'cache["line"]["status"] != nil and cache["line"]["query"] != nil and cache["line"]["query"] != ""')
    add('set(attributes["http.response.status_code"], Int(cache["line"]["status"]))', 'cache["line"]["status"] != nil')
    add('set(attributes["client.address"], cache["peer"]["client"])', 'cache["peer"]["client"] != nil')
    for group, attr in (("referrer", "http.request.referrer"), ("agent", "user_agent.original")):
        add(f'set(attributes[{q(attr)}], cache["agent"][{q(group)}])',
            f'cache["agent"][{q(group)}] != nil and cache["agent"][{q(group)}] != "" and '
            f'cache["agent"][{q(group)}] != "-"')
    # 1b. stable fields from the old HTTP semconv names and url.full (fields.derive_stable_fields)
    add('set(cache["legacy"], true)', 'cache["line"]["status"] == nil and '
        '(attributes["http.response.status_code"] == nil or attributes["url.path"] == nil)')
    for old, new in LEGACY_HTTP_NAMES:
        add(f'set(attributes[{q(new)}], attributes[{q(old)}])',
            f'cache["legacy"] == true and attributes[{q(new)}] == nil and attributes[{q(old)}] != nil')
    has_target = 'IsString(attributes["http.target"]) and attributes["http.target"] != ""'
    add(f'set(cache["split"], ExtractPatterns(attributes["http.target"], {q(TARGET_PATTERN)}))',
        f'cache["legacy"] == true and attributes["url.path"] == nil and {has_target}')
    add(f'set(cache["split"], ExtractPatterns(attributes["url.full"], {q(FULL_URL_PATTERN)}))',
        'cache["legacy"] == true and attributes["url.path"] == nil and cache["split"] == nil and '
        '(not IsString(attributes["http.target"]) or attributes["http.target"] == "") and '
        'IsString(attributes["url.full"]) and attributes["url.full"] != ""')
    add('set(attributes["url.query"], cache["split"]["query"])',
        'cache["split"]["query"] != nil and cache["split"]["query"] != "" and attributes["url.query"] == nil')
    add('set(attributes["url.path"], cache["split"]["path"])',
        'cache["split"]["path"] != nil and cache["split"]["path"] != ""')
    # 2. fields
    add('set(cache["status"], Int(attributes["http.response.status_code"]))',
        'attributes["http.response.status_code"] != nil and (IsInt(attributes["http.response.status_code"]) or '
        'IsMatch(attributes["http.response.status_code"], "^[0-9]+$"))')
    add('set(cache["status"], Int(attributes["status_code"]))',
        'cache["status"] == nil and attributes["status_code"] != nil and (IsInt(attributes["status_code"]) or '
        'IsMatch(attributes["status_code"], "^[0-9]+$"))')
    add('set(cache["route"], attributes["http.route"])',
        'IsString(attributes["http.route"]) and attributes["http.route"] != ""')
    add('set(cache["route"], attributes["url.path"])', 'cache["route"] == nil and IsString(attributes["url.path"]) and '
        'attributes["url.path"] != ""')
    add('set(cache["path"], attributes["url.path"])', 'IsString(attributes["url.path"])')
    for name, attr in (("method", "http.request.method"), ("client", "client.address"), ("user", "user.id"),
                       ("user_agent", "user_agent.original")):
        add(f'set(cache[{q(name)}], attributes[{q(attr)}])', f'IsString(attributes[{q(attr)}])')
    add('set(cache["user"], attributes["enduser.id"])', 'cache["user"] == nil and IsString(attributes["enduser.id"])')
    add('set(cache["duration_ms"], Double(attributes["http.server.request.duration"]) * 1000.0)',
        '(IsDouble(attributes["http.server.request.duration"]) or IsInt(attributes["http.server.request.duration"]))')
    add('set(cache["duration_ms"], Double(attributes["duration_ms"]))',
        'cache["duration_ms"] == nil and (IsDouble(attributes["duration_ms"]) or IsInt(attributes["duration_ms"]))')
    for glob, threshold in settings.slow_routes.items():
        add(f'set(cache["threshold"], {float(threshold)!r})',
            f'cache["threshold"] == nil and cache["route"] != nil and IsMatch(cache["route"], {q(_glob_regex(glob))})')
    add(f'set(cache["threshold"], {float(settings.slow_request_ms)!r})', 'cache["threshold"] == nil')
    add('set(cache["slow"], true)', 'cache["duration_ms"] != nil and cache["duration_ms"] >= cache["threshold"]')
    add('set(cache["slow"], false)', 'cache["duration_ms"] != nil and cache["duration_ms"] < cache["threshold"]')
    add('set(cache["body"], body)', "IsString(body)")
    add('set(cache["exception"], true)',
        '(attributes["exception.type"] != nil or attributes["exception.message"] != nil)')
    add('set(cache["exception"], false)', 'cache["exception"] == nil')
    add('set(cache["event_action"], ConvertCase(attributes["event.action"], "lower"))',
        'IsString(attributes["event.action"])')
    add('replace_pattern(cache["event_action"], "^\\\\s*([^:]*?)\\\\s*(:.*)?$", "$1")', 'cache["event_action"] != nil')
    add('delete_key(cache, "event_action")', 'cache["event_action"] == ""')
    # 2b. payload inspection (otel_ext.classify.payload): the same decoding steps and patterns
    _render_payload(add)
    # 3. one match flag per rule, in the engine's merge order
    ordered = sorted(ruleset.rules, key=lambda r: (CLASS_PRIORITY[r.event_class], ruleset._order[r.id]))
    flags: list[tuple[Rule, str]] = []
    for rule in ordered:
        try:
            when = " and ".join(_condition(str(f), c) for f, c in rule.source["when"].items())
        except Unsupported as exc:
            unsupported.append(f"rule {rule.id!r}: {exc}")
            continue
        flag = f'cache["m.{rule.id}"]'
        add(f"set({flag}, true)", when)
        flags.append((rule, flag))
    # 4. merge
    for rule, flag in flags:
        add(f'set(cache["class"], {q(rule.event_class)})', f'{flag} == true and cache["class"] == nil')
        add(f'set(cache["c.{rule.event_class}"], true)', f"{flag} == true")
        for cat in rule.category:
            add(f'append(cache["category"], {q(cat)})', f'{flag} == true and cache["cat.{cat}"] == nil')
            add(f'set(cache["cat.{cat}"], true)', f"{flag} == true")
        if rule.outcome:
            add(f'set(cache["outcome"], {q(rule.outcome)})', f'{flag} == true and cache["outcome"] == nil')
        if rule.action:
            add(f'set(cache["action"], {q(rule.action)})', f'{flag} == true and cache["action"] == nil')
        if rule.id.startswith("attack."):
            add('set(cache["attack.labelled"], true)', f"{flag} == true")
        if rule.min_severity is not None:
            add(f'set(cache["floor"], {rule.min_severity})',
                f'{flag} == true and (cache["floor"] == nil or cache["floor"] < {rule.min_severity})')
    # event.type after every category is known: only types ECS expects for one of them
    for rule, flag in flags:
        for typ in rule.type:
            allowed = " or ".join(f'cache["cat.{c}"] == true' for c, types in ECS_CATEGORY_TYPES.items()
                                  if typ in types)
            add(f'append(cache["type"], {q(typ)})', f'{flag} == true and cache["typ.{typ}"] == nil and ({allowed})')
            add(f'set(cache["typ.{typ}"], true)', f"{flag} == true and ({allowed})")
    add('set(attributes["labels.event_class"], cache["class"])', 'cache["class"] != nil')
    add('set(attributes["labels.event_class"], "application")', 'cache["class"] == nil')
    for event_class in EVENT_CLASSES:
        if event_class != "application":
            add(f'append(cache["tags"], {q(event_class)})', f'cache["c.{event_class}"] == true')
    add('append(cache["tags"], "application")', 'cache["tags"] == nil')
    add('set(attributes["tags"], cache["tags"])')
    add('set(attributes["event.kind"], "event")')
    add('set(attributes["event.category"], cache["category"])', 'cache["category"] != nil')
    add('set(attributes["event.type"], cache["type"])', 'cache["type"] != nil')
    add('set(attributes["event.outcome"], cache["outcome"])', 'cache["class"] != nil and cache["outcome"] != nil')
    add('set(attributes["event.outcome"], "unknown")', 'cache["class"] != nil and cache["outcome"] == nil')
    add('set(cache["action"], cache["event_action"])', 'cache["event_action"] != nil')
    add('set(attributes["event.action"], cache["action"])', 'cache["action"] != nil')
    add('set(event_name, cache["action"])', 'cache["action"] != nil and event_name == ""')
    add('set(attributes["event.duration"], Int(cache["duration_ms"] * 1000000.0))', 'cache["duration_ms"] != nil')
    labelled = 'cache["attack.labelled"] == true'
    add('set(attributes["rule.id"], cache["hit.rule"])', labelled)
    add('set(attributes["rule.name"], cache["hit.name"])', labelled)
    add('set(attributes["rule.category"], cache["hit.category"])', labelled)
    add(f'set(attributes["rule.ruleset"], {q(payload.RULESET)})', labelled)
    add('set(attributes["labels.attack_field"], cache["hit.field"])', labelled)
    for floor, text in sorted(_SEVERITY_TEXT.items()):
        add(f'set(severity_text, {q(text)})', f'cache["floor"] == {floor} and severity_number < {floor}')
    add('set(severity_number, cache["floor"])', 'cache["floor"] != nil and severity_number < cache["floor"]')
    return Rendered(s, unsupported)


HEADER = """\
# Generated by `otel-ext collector-config` from otel-ext's classification rules — do not edit by hand.
# Labels every log record exactly like otel_ext.EventClassifierProcessor: labels.event_class, tags,
# event.kind/category/type/outcome/action (OWASP names), event.duration; raises severity per rule.
#
# Use it as an extra config file (the collector merges them) and add the processor to your pipeline:
#   otelcol --config your-config.yaml --config classify.yaml
#   service.pipelines.logs.processors: [memory_limiter, transform/otel_ext_classify, batch]
#
# NOT RENDERED (in-process only): inspection of captured request headers (http.request.header.*:
# payloads in their values, scanner header names such as Acunetix-Product / X-Scanner). OTTL cannot
# walk attribute keys by prefix nor match inside string arrays; the collector labels such records
# from their URL, body, referrer and user agent only.
"""


def render_classify_yaml(ruleset: RuleSet) -> tuple[str, list[str]]:
    rendered = render_statements(ruleset)
    doc = {"processors": {"transform/otel_ext_classify": {
        "error_mode": "ignore",
        "log_statements": [{"context": "log", "statements": rendered.statements}],
    }}}
    notes = "".join(f"# NOT RENDERED: {line}\n" for line in rendered.unsupported)
    body = yaml.safe_dump(doc, sort_keys=False, width=1_000_000, allow_unicode=True)
    return HEADER + notes + body, rendered.unsupported
