"""Loading user rules from YAML (``OTEL_EXT_RULES_FILE``) and building the effective RuleSet.

A rule file holds ``rules:`` (a list of rules that extend or, by id, override the built-ins;
``{id: X, enabled: false}`` removes one) and optional ``settings:`` (``slow_request_ms``,
``slow_routes``, ``access_loggers``). Errors name the file, the rule and the problem.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from otel_ext.classify.builtin import builtin_rules
from otel_ext.classify.engine import RuleSet
from otel_ext.classify.fields import DEFAULT_ACCESS_LOGGERS, FieldSettings
from otel_ext.classify.rules import RuleError, compile_rule, merge_rules
from otel_ext.settings import env_value

RULES_FILE_ENV = "OTEL_EXT_RULES_FILE"
SETTINGS_KEYS = frozenset({"slow_request_ms", "slow_routes", "access_loggers"})


class RuleFileError(ValueError):
    """A rule file cannot be used; the message names the file, the rule and the problem."""


def _settings(path: str, raw: Any) -> FieldSettings:
    if raw is None:
        return FieldSettings()
    if not isinstance(raw, Mapping):
        raise RuleFileError(f"{path}: 'settings' must be a mapping")
    unknown = set(raw) - SETTINGS_KEYS
    if unknown:
        raise RuleFileError(f"{path}: settings: unknown key(s) {sorted(unknown)} (allowed: {sorted(SETTINGS_KEYS)})")
    slow = raw.get("slow_request_ms", 1000)
    if isinstance(slow, bool) or not isinstance(slow, (int, float)) or slow <= 0:
        raise RuleFileError(f"{path}: settings.slow_request_ms must be a positive number, got {slow!r}")
    routes = raw.get("slow_routes", {}) or {}
    if not isinstance(routes, Mapping) or not all(
        isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
        for k, v in routes.items()
    ):
        raise RuleFileError(f"{path}: settings.slow_routes must map route globs to positive milliseconds")
    loggers = raw.get("access_loggers", list(DEFAULT_ACCESS_LOGGERS))
    if not isinstance(loggers, Sequence) or isinstance(loggers, str) or not all(isinstance(x, str) for x in loggers):
        raise RuleFileError(f"{path}: settings.access_loggers must be a list of logger names")
    return FieldSettings(
        slow_request_ms=float(slow),
        slow_routes={k: float(v) for k, v in routes.items()},
        access_loggers=tuple(loggers),
    )


def parse_rule_document(path: str, doc: Any) -> tuple[list[Mapping[str, Any]], FieldSettings]:
    if doc is None:
        return [], FieldSettings()
    if not isinstance(doc, Mapping):
        raise RuleFileError(f"{path}: top level must be a mapping with 'rules' and/or 'settings'")
    unknown = set(doc) - {"rules", "settings", "detectors"}
    if unknown:
        raise RuleFileError(f"{path}: unknown top-level key(s) {sorted(unknown)} (allowed: rules, settings, detectors)")
    rules = doc.get("rules") or []
    if not isinstance(rules, list):
        raise RuleFileError(f"{path}: 'rules' must be a list")
    for i, rule in enumerate(rules):
        if not isinstance(rule, Mapping):
            raise RuleFileError(f"{path}: rule #{i + 1}: must be a mapping, got {type(rule).__name__}")
    return list(rules), _settings(path, doc.get("settings"))


def load_rule_file(path: str | os.PathLike[str]) -> tuple[list[Mapping[str, Any]], FieldSettings]:
    name = os.fspath(path)
    return parse_rule_document(name, read_rule_document(name))


def read_rule_document(name: str) -> Any:
    """The parsed YAML of a rule file (errors name the file)."""
    try:
        text = Path(name).read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleFileError(f"{name}: cannot read rule file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise RuleFileError(f"{name}: rule file is not UTF-8: {exc.reason}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RuleFileError(f"{name}: invalid YAML: {exc}") from None


def build_ruleset(
    rules: Sequence[Mapping[str, Any]] | None = None,
    rules_file: str | os.PathLike[str] | None = None,
    settings: FieldSettings | None = None,
    use_env: bool = True,
) -> RuleSet:
    """Built-ins, then the rule file (``rules_file`` or ``$OTEL_EXT_RULES_FILE``), then ``rules``."""
    if rules_file is None and use_env:
        rules_file = env_value(RULES_FILE_ENV)
    specs: list[Mapping[str, Any]] = list(builtin_rules())
    file_settings: FieldSettings | None = None
    if rules_file is not None:
        file_rules, file_settings = load_rule_file(rules_file)
        try:
            for spec in file_rules:
                if spec.get("enabled") is not False:
                    compile_rule(spec)
            specs = merge_rules(specs, file_rules)
        except RuleError as exc:
            raise RuleFileError(f"{os.fspath(rules_file)}: {exc}") from None
    return RuleSet(merge_rules(specs, list(rules or [])), settings or file_settings)
