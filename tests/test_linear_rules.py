"""Linear-time rules: rule regexes are RE2, so a catastrophic-backtracking pattern fed its worst
input cannot stall the app thread (inline) or the export worker (deferred); patterns RE2 rejects are
rule-file errors at load time and in ``otel-ext check-rules``; string conditions read a bounded
prefix of a value."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter, LogRecordExportResult

from otel_ext._linear import MAX_SCAN_CHARS, LinearRegex, PatternError
from otel_ext.classify import EventClassifierProcessor, RuleFileError, build_ruleset
from otel_ext.deferred import DeferredProcessingExporter
from otel_ext.handler import OtelExtLoggingHandler
from otel_ext.redact import RedactionProcessor, Redactor
from otel_ext.telemetry import Counters

# (pattern, its worst input for a backtracking engine): each takes minutes to centuries with `re`
PATHOLOGICAL: list[tuple[str, str]] = [
    (r"^(a+)+$", "a" * 34 + "!"),
    (r"^(a|aa)+$", "a" * 60 + "!"),
    (r"^(a|a?)+$", "a" * 40 + "!"),
    (r"(x+x+)+y", "x" * 5000),
    (r"^(\w+\s?)*$", "An input that goes on and on and on and on and on and on and on and on!"),
    (r"(.*a){25}", "a" * 30),
    (r"^(([a-z])+.)+[A-Z]([a-z])+$", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!"),
]


class Collect(LogRecordExporter):
    def __init__(self) -> None:
        self.records: list[ReadableLogRecord] = []
        self.lock = threading.Lock()

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        with self.lock:
            self.records.extend(batch)
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def pathological_rules() -> list[dict[str, Any]]:
    return [{"id": f"evil.{i}", "when": {"body": {"matches": p}}, "class": "security", "action": "evil"}
            for i, (p, _) in enumerate(PATHOLOGICAL)]


@pytest.mark.parametrize("mode", ["inline", "deferred"])
def test_pathological_patterns_and_inputs_never_stall_the_pipeline(mode: str) -> None:
    exporter = Collect()
    provider = LoggerProvider()
    classifier = EventClassifierProcessor(pathological_rules(), counters=Counters("t"))
    redaction = RedactionProcessor()
    if mode == "inline":
        provider.add_log_record_processor(classifier)
        provider.add_log_record_processor(redaction)
        provider.add_log_record_processor(BatchLogRecordProcessor(exporter, schedule_delay_millis=50))
    else:
        wrapped = DeferredProcessingExporter(exporter, classifier, redaction)
        provider.add_log_record_processor(BatchLogRecordProcessor(wrapped, schedule_delay_millis=50))
    log = logging.getLogger(f"app.linear.{mode}")
    log.handlers[:] = [OtelExtLoggingHandler(logger_provider=provider)]
    log.propagate = False
    log.setLevel(logging.INFO)
    inputs = [text for _, text in PATHOLOGICAL] + ["a" * 200_000 + "!", "password=" + "=" * 100_000, "ok"]
    done = threading.Event()

    def app() -> None:  # the application thread: every log call must return
        for _ in range(3):
            for text in inputs:
                log.info(text)
        done.set()

    thread = threading.Thread(target=app, daemon=True)
    thread.start()
    thread.join(60)  # generous safety bound; a backtracking engine needs ~forever
    assert done.is_set(), f"{mode}: the application's log call hung"
    flushed: list[bool] = []
    flusher = threading.Thread(target=lambda: flushed.append(provider.force_flush(60_000)), daemon=True)
    flusher.start()
    flusher.join(90)
    assert flushed == [True], f"{mode}: force_flush did not return"
    provider.shutdown()
    assert len(exporter.records) == 3 * len(inputs)  # every record delivered, in both modes
    labels = [r.log_record.attributes["labels.event_class"] for r in exporter.records]  # type: ignore[index]
    regexes = [LinearRegex(p) for p, _ in PATHOLOGICAL]
    matching = sum(any(rx.search(text[:MAX_SCAN_CHARS]) for rx in regexes) for text in inputs)
    assert 0 < matching < len(inputs)
    assert labels.count("security") == 3 * matching


@pytest.mark.parametrize("pattern", [r"(a)\1", r"(?=admin)", r"(?<!x)y", r"a++", r"(?>a+)b", r"(?P=name)", "[z-a]"])
def test_patterns_re2_rejects_are_rule_errors(tmp_path: Path, pattern: str) -> None:
    with pytest.raises(PatternError):
        LinearRegex(pattern)
    path = tmp_path / "rules.yaml"
    path.write_text(f"rules:\n  - id: r.bad\n    when: {{body: {{matches: '{pattern}'}}}}\n    class: security\n")
    with pytest.raises(RuleFileError, match=r"rule 'r\.bad': body: invalid regex .*RE2"):
        build_ruleset(rules_file=path, use_env=False)


def test_check_rules_rejects_a_backreference(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - id: dup.word\n    when: {body: {matches: '(\\w+) \\1'}}\n    class: error\n")
    out = subprocess.run([sys.executable, "-m", "otel_ext.cli", "check-rules", str(path)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2, out.stdout
    assert "dup.word" in out.stderr and "RE2" in out.stderr and "Traceback" not in out.stderr
    path.write_text("rules:\n  - id: evil\n    when: {body: {matches: '^(a+)+$'}}\n    class: error\n")
    ok = subprocess.run([sys.executable, "-m", "otel_ext.cli", "check-rules", str(path)], capture_output=True,
                        text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr  # harmless under RE2: linear whatever the input


def test_string_conditions_read_a_bounded_prefix(make_pipeline: Any) -> None:
    rules = [{"id": "needle.contains", "when": {"body": {"contains": "needle"}}, "class": "security"},
             {"id": "needle.regex", "when": {"body": {"matches": "haystack-end$"}}, "class": "error"}]
    pipe = make_pipeline(EventClassifierProcessor(rules, counters=Counters("t")))
    log = pipe.logger("shop.api")
    log.info("x" * (MAX_SCAN_CHARS - 100) + " needle")
    assert pipe.attrs()["labels.event_class"] == "security"
    log.info("x" * (MAX_SCAN_CHARS + 10) + " needle haystack-end")  # beyond the bound: not read
    assert pipe.attrs()["labels.event_class"] == "application"


def test_re2_semantics_match_the_collector_dialect() -> None:
    assert LinearRegex(r"(?i)union\s+select").search("1 UNION  SELECT 2")
    assert LinearRegex(r"^/api/v\d+/").search("/api/v2/orders")
    assert not LinearRegex(r"^\d+$").search("١٢٣")  # \d is ASCII in RE2 and Go, unlike Python's re
    assert LinearRegex("caf\u00e9").search("un caf\u00e9 \ud800 cass\u00e9")  # lone surrogate: no crash


# inputs built to make a backtracking scanner go quadratic or worse; each is ~100-300 KB
HOSTILE_TEXTS: dict[str, str] = {
    "pairs": "a=" * 100_000 + " password=x1",
    "colons": "a:" * 100_000 + " token: x1",
    "open_quotes": 'k="' * 60_000 + " password=x1",
    "encoded_pairs": "a%3D" * 50_000 + " password%3Dx1",
    "padding": "password=" + "=" * 200_000,
    "keys": "password:" * 30_000,
    "pem_heads": "-----BEGIN PRIVATE KEY-----" * 8_000,
    "userinfo_ats": "redis://" + ":@" * 100_000,
    "digits_spaced": "1 " * 100_000 + " password=x",
    "digit_run": "4" * 200_000,
    "schemes": "Bearer abcdefgh1 " * 15_000,
    "headers": "Authorization: " * 15_000,
    "brackets": "user[" * 50_000 + "password]=x",
    "dots": "a." * 100_000 + "password=x",
    "jwt_heads": "eyJaaaaaa.eyJaaaaaa" * 10_000,
    "open_parens": "password=(" * 30_000,
    "json_nesting": '{"a": ' * 40_000 + '"password": "x"',
    "percent_escapes": "%3D" * 70_000 + " password=x1",
    "token_tails": "glpat-" + "a1." * 70_000 + " password=x1",
    "vendor_heads": "sk-A3-pat.4b1dAPI-" * 12_000 + " password=x1",
    "open_braces": "pwd={" * 40_000 + " password=x1",
    "open_backticks": "password=`" * 30_000 + " password=x1",
    "open_angles": "password: <" * 30_000 + " password=x1",
    "iban_runs": "DE89 " * 40_000 + " password=x1",
    "yaml_pairs": "x password: a1 " * 30_000 + " password=x1",
    "reset_paths": "/reset/" * 30_000 + " password=x1",
    "open_arrays": '{"passwords": ["a", ' + '"b", ' * 40_000 + " password=x1",
}


@pytest.mark.parametrize("name", list(HOSTILE_TEXTS))
def test_redaction_stays_linear_on_hostile_text(name: str) -> None:
    text = HOSTILE_TEXTS[name]
    redactor = Redactor(counters=Counters("r"))
    done: list[str] = []
    worker = threading.Thread(target=lambda: done.append(redactor.redact_text(text)), daemon=True)
    worker.start()
    worker.join(30)  # generous safety bound on a loaded 2-core machine; linear scans take < 1 s
    assert done, f"{name}: redaction did not finish"
    if text.endswith("x1"):
        assert not done[0].endswith("x1")  # the secret at the very end was still found
