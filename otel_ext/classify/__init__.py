"""Event classification: rule model, built-in rules, rule-file loader, EventClassifierProcessor."""

from otel_ext.classify.engine import Classification, RuleSet
from otel_ext.classify.fields import FieldSettings
from otel_ext.classify.loader import RuleFileError, build_ruleset, load_rule_file
from otel_ext.classify.processor import CLASSIFIER_COUNTERS, EventClassifierProcessor
from otel_ext.classify.rules import RuleError

__all__ = [
    "CLASSIFIER_COUNTERS",
    "Classification",
    "EventClassifierProcessor",
    "FieldSettings",
    "RuleError",
    "RuleFileError",
    "RuleSet",
    "build_ruleset",
    "load_rule_file",
]
