"""User rules from YAML and Python: extend and override built-ins by id; bad files give errors that
name the file, the rule and the problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from otel_ext.classify import EventClassifierProcessor, RuleFileError, build_ruleset
from otel_ext.telemetry import Counters

EXAMPLE_RULES = Path(__file__).resolve().parents[1] / "examples" / "rules.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def classify(pipe: Any, logger: str = "shop.api", msg: str = "x", **extra: Any) -> dict[str, Any]:
    pipe.logger(logger).info(msg, extra=extra)
    return pipe.attrs()


def test_example_rule_file_loads_and_applies(make_pipeline: Any) -> None:
    pipe = make_pipeline(EventClassifierProcessor(rules_file=str(EXAMPLE_RULES), counters=Counters("t")))
    attrs = classify(pipe, **{"http.route": "/api/payments/{id}", "http.response.status_code": 402})
    assert attrs["labels.event_class"] == "error"
    assert attrs["event.action"] == "payment_declined"


def test_user_rule_extends_builtins(make_pipeline: Any, tmp_path: Path) -> None:
    path = write(tmp_path, """
rules:
  - id: billing.refund
    when: {attributes.billing.op: refund}
    class: security
    category: [iam]
    type: [change]
    action: sensitive_update
""")
    pipe = make_pipeline(EventClassifierProcessor(rules_file=str(path), counters=Counters("t")))
    attrs = classify(pipe, **{"billing.op": "refund", "http.response.status_code": 200})
    assert attrs["labels.event_class"] == "security"
    assert tuple(attrs["tags"]) == ("security", "access")
    assert attrs["event.action"] == "sensitive_update"


def test_user_rule_overrides_builtin_by_id(make_pipeline: Any, tmp_path: Path) -> None:
    path = write(tmp_path, """
rules:
  - id: http.input_invalid
    when: {status: 422}
    class: access
""")
    pipe = make_pipeline(EventClassifierProcessor(rules_file=str(path), counters=Counters("t")))
    assert classify(pipe, **{"http.response.status_code": 400})["labels.event_class"] == "access"
    assert classify(pipe, **{"http.response.status_code": 422})["labels.event_class"] == "access"
    assert "event.action" not in pipe.attrs()


def test_user_rule_disables_builtin(make_pipeline: Any, tmp_path: Path) -> None:
    path = write(tmp_path, "rules:\n  - {id: http.rate_limited, enabled: false}\n")
    pipe = make_pipeline(EventClassifierProcessor(rules_file=str(path), counters=Counters("t")))
    assert classify(pipe, **{"http.response.status_code": 429})["labels.event_class"] == "access"


def test_rules_file_from_env(make_pipeline: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "settings:\n  slow_request_ms: 100\n")
    monkeypatch.setenv("OTEL_EXT_RULES_FILE", str(path))
    pipe = make_pipeline(EventClassifierProcessor(counters=Counters("t")))
    assert classify(pipe, duration_ms=150, **{"http.response.status_code": 200})["labels.event_class"] == "performance"


def test_python_rules_extend_builtins(make_pipeline: Any) -> None:
    rules = [{"id": "vip", "when": {"user": {"prefix": "vip-"}}, "class": "security"}]
    pipe = make_pipeline(EventClassifierProcessor(rules, counters=Counters("t")))
    assert classify(pipe, **{"user.id": "vip-7"})["labels.event_class"] == "security"
    assert classify(pipe, **{"user.id": "u-7"})["labels.event_class"] == "application"


BAD_FILES = [
    ("rules:\n  - id: r1\n    when: {status: 401}\n    class: sekurity\n", "r1", "class must be one of"),
    ("rules:\n  - id: r2\n    when: {body: {matches: '(unclosed'}}\n    class: error\n", "r2", "invalid regex"),
    ("rules:\n  - id: r3\n    when: {colour: red}\n    class: error\n", "r3", "unknown field 'colour'"),
    ("rules:\n  - id: r4\n    when: {status: {around: 5}}\n    class: error\n", "r4", "unknown operator 'around'"),
    ("rules:\n  - id: r5\n    when: {status: 1}\n    class: error\n    category: [webz]\n", "r5",
     "not an ECS event.category"),
    ("rules:\n  - id: r6\n    when: {status: 1}\n    class: error\n    category: [authentication]\n    type: [denied]\n",
     "r6", "not valid for ECS category"),
    ("rules:\n  - id: r7\n    when: {status: 1}\n    class: error\n    colour: red\n", "r7", "unknown key(s) ['colour']"),
    ("rules:\n  - id: r8\n    class: error\n", "r8", "'when' must be a non-empty mapping"),
    ("rules:\n  - when: {status: 1}\n    class: error\n", "?", "non-empty string 'id'"),
    ("rules:\n  - id: r9\n    when: {status: {gte: lots}}\n    class: error\n", "r9", "gte needs a number"),
    ("rules:\n  - id: r10\n    when: {status: 1}\n    class: error\n    severity: LOUD\n", "r10", "unknown severity"),
    ("rules:\n  - id: r11\n    when: {status: 1}\n    class: error\n    action: 'authn:x'\n", "r11", "without ':parameters'"),
    ("rules:\n  - {id: nope, enabled: false}\n", "nope", "disables a rule that does not exist"),
]


@pytest.mark.parametrize(("text", "rule_id", "problem"), BAD_FILES, ids=[b[1] for b in BAD_FILES])
def test_bad_rule_names_file_rule_and_problem(tmp_path: Path, text: str, rule_id: str, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(RuleFileError) as info:
        build_ruleset(rules_file=str(path))
    message = str(info.value)
    assert str(path) in message
    assert f"rule {rule_id!r}" in message
    assert problem in message


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("rules: [\n", "invalid YAML"),
        ("- just a list\n", "top level must be a mapping"),
        ("rulez: []\n", "unknown top-level key"),
        ("rules: {a: 1}\n", "'rules' must be a list"),
        ("rules:\n  - 7\n", "rule #1: must be a mapping"),
        ("settings:\n  slow_request_ms: -3\n", "slow_request_ms must be a positive number"),
        ("settings:\n  slow_routes: {'/x': fast}\n", "slow_routes must map"),
    ],
)
def test_bad_rule_file_structure(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(RuleFileError, match=problem) as info:
        build_ruleset(rules_file=str(path))
    assert str(path) in str(info.value)


def test_missing_and_non_utf8_rule_files(tmp_path: Path) -> None:
    with pytest.raises(RuleFileError, match="cannot read rule file") as info:
        build_ruleset(rules_file=str(tmp_path / "missing.yaml"))
    assert "missing.yaml" in str(info.value)
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"rules: []\n# caf\xe9\n")
    with pytest.raises(RuleFileError, match="not UTF-8"):
        build_ruleset(rules_file=str(bad))
